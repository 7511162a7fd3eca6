"""Images in a conversation: create, edit and vary them with an image model (issue 15).

An image call is a turn of the conversation, as a chat message is: the member's prompt is a
user message (with the image being edited or varied as its attachment), the answer an
assistant reply whose attachments are the images made, saved in the private media store
(chat/media/). The reply exists from the start with status ``streaming`` (its heartbeat kept
fresh while the provider works), so every tab shows it waiting, a reload finds it, and the
sweep ends it if its worker dies.

Two steps, so the edge can announce the messages between them:

1. :func:`image_turn_start` (database thread) checks everything that can be checked without a
   provider: the model is an image model granted to the member (T07), the size, quality and
   count are ones it takes, the prompt's length, the source image is the member's own (404
   otherwise, T01) and a real image within the limits (chat/media/images.py: not an image,
   truncated, too large or a decompression bomb are refused here, before any provider call
   and before anything is saved). Then it saves the two messages and admits the call through
   the core: the budget holds n × the catalog's price per image (T34). A refusal ends the reply
   at once with its code; nothing was called.
2. :func:`image_reply_produce` (event loop) passes the prompt through the moderation gate,
   calls the provider, checks and stores each image, settles the call with the images made
   and ends the reply (complete, or error/blocked with the stable code and reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.catalog.families import ImageOptions, image_options
from chat.core.calls import Admission, Units, call_admit, call_running
from chat.core.grants import model_granted, models_granted
from chat.core.moderation import moderation_check
from chat.errors import BadRequest, Busy, ImageRefused, MessageBlocked, ParleyError
from chat.media.images import Picture, image_info, image_normalise
from chat.media.selectors import media_for_user
from chat.media.services import media_save
from chat.media.storage import stored_open
from chat.models import ChatModel, Conversation, MediaFile, Message, ModelKind, UsageKind
from chat.selectors import conversation_for_user
from chat.upstream import client, imagewire

logger = logging.getLogger(__name__)

GENERATE, EDIT, VARIATION = "generate", "edit", "variation"
OPERATIONS = (GENERATE, EDIT, VARIATION)
PURPOSE = {GENERATE: "image", EDIT: "image_edit", VARIATION: "image_variation"}
TITLE_CHARS = 80


@dataclass
class ImageRequest:
    operation: str
    model: ChatModel
    prompt: str
    size: str
    quality: str
    n: int
    options: ImageOptions
    source: Picture | None = field(default=None, repr=False)
    mask: Picture | None = field(default=None, repr=False)
    # The images as received, until image_request_normalise has checked and replaced them.
    raw_source: bytes | None = field(default=None, repr=False)
    raw_mask: bytes | None = field(default=None, repr=False)


@dataclass
class ImageTurn:
    user: object
    conversation: Conversation
    question: Message
    reply: Message
    request: ImageRequest
    admission: Admission | None
    refusal: ParleyError | None
    created_conversation: bool
    # Set by the edge before it cancels the call because the member pressed Stop.
    stopped: bool = False


def image_models_offered(*, user) -> list[dict]:
    """The image models the member may use, with what each takes (the composer's Image mode;
    an empty list hides it, as with only the local model)."""
    offered = []
    for model in models_granted(user=user, kind=ModelKind.IMAGE):
        options = image_options(model.model_id, model.image_prices)
        offered.append(
            {
                "id": model.pk,
                "name": model.label,
                "sizes": list(options.sizes),
                "qualities": list(options.qualities),
                "max_n": min(options.max_n, settings.PARLEY_IMAGE_MAX_N),
                "edits": options.edits,
                "variations": options.variations,
            }
        )
    return offered


# --- 1. checks, the messages, the admission ----------------------------------------------------


def _option(value, allowed: tuple[str, ...], name: str) -> str:
    value = str(value or "").strip()
    if not value:
        return allowed[0] if allowed else ""
    if value not in allowed:
        raise ImageRefused(
            _("This model does not take %(name)s %(value)s.") % {"name": name, "value": value[:40]},
            code="image_option_invalid",
        )
    return value


def _count(value, options: ImageOptions) -> int:
    most = max(1, min(options.max_n, settings.PARLEY_IMAGE_MAX_N))
    try:
        n = 1 if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        n = 0
    if not 1 <= n <= most:
        raise ImageRefused(
            _("Ask for between 1 and %(most)s images with this model.") % {"most": most},
            code="image_option_invalid",
        )
    return n


def _prompt(value, operation: str) -> str:
    prompt = str(value or "").strip()
    if operation != VARIATION and not prompt:
        raise BadRequest(_("Describe the image you want."))
    if len(prompt) > settings.PARLEY_IMAGE_PROMPT_MAX_CHARS:
        raise ImageRefused(
            _("The prompt is longer than %(limit)s characters.") % {"limit": settings.PARLEY_IMAGE_PROMPT_MAX_CHARS},
            code="image_option_invalid",
        )
    return prompt if operation != VARIATION else ""


def _source_bytes(*, user, source_id) -> tuple[MediaFile, bytes]:
    media = media_for_user(user=user, media_id=source_id)  # another member's file: not found
    if media.kind not in (MediaFile.Kind.IMAGE, MediaFile.Kind.UPLOAD) or not media.content_type.startswith("image/"):
        raise ImageRefused(_("Only an image can be edited or varied."), code="image_invalid")
    if media.size > settings.PARLEY_IMAGE_UPLOAD_MAX_BYTES:
        raise ImageRefused(_("This image is too large to edit."), code="image_too_large")
    with contextlib.closing(stored_open(media.storage_name)) as handle:
        return media, handle.read(settings.PARLEY_IMAGE_UPLOAD_MAX_BYTES + 1)


def image_request_check(
    *,
    user,
    operation: str,
    model_id,
    prompt="",
    size="",
    quality="",
    n=1,
    source: bytes | None = None,
    mask: bytes | None = None,
) -> ImageRequest:
    """Everything about an image request that can be refused before any provider call, except
    the pixels of its images (:func:`image_request_normalise`)."""
    if operation not in OPERATIONS:
        raise BadRequest(_("Unknown image operation."))
    model = model_granted(user=user, model_id=model_id, kind=ModelKind.IMAGE)
    options = image_options(model.model_id, model.image_prices)
    if operation == EDIT and not options.edits or operation == VARIATION and not options.variations:
        raise ImageRefused(
            _("%(model)s cannot do that; choose another image model.") % {"model": model.label},
            code="image_operation_unsupported",
        )
    if quality and not options.qualities:
        raise ImageRefused(_("This model has no quality setting."), code="image_option_invalid")
    request = ImageRequest(
        operation=operation,
        model=model,
        prompt=_prompt(prompt, operation),
        size=_option(size, options.sizes, _("size")),
        quality=_option(quality, options.qualities, _("quality")) if options.qualities else "",
        n=_count(n, options),
        options=options,
    )
    if operation == GENERATE:
        if source is not None or mask is not None:
            raise BadRequest(_("A new image starts from a prompt only."))
        return request
    if source is None:
        raise BadRequest(_("Choose the image to edit or vary."))
    if mask is not None and operation != EDIT:
        raise BadRequest(_("Only an edit takes a mask."))
    request.raw_source, request.raw_mask = source, mask
    return request


def image_request_normalise(request: ImageRequest) -> ImageRequest:
    """Check and normalise the request's images (Pillow; chat/media/images.py). CPU only, no
    database: the web edge runs it on a worker thread, not on the process's database thread
    (a phone's photo takes about a second)."""
    if request.raw_source is not None:
        request.source, request.mask = image_normalise(
            request.raw_source, square=request.options.square_inputs, mask=request.raw_mask
        )
        request.raw_source = request.raw_mask = None
    return request


@dataclass
class ImagePlan:
    """A request checked against the database (model, options, conversation, source image),
    its pixels not yet (:func:`image_request_normalise`)."""

    user: Any
    conversation: Conversation | None
    request: ImageRequest
    source_media: MediaFile | None = None
    upload_name: str = ""
    uploaded: bool = False


def image_turn_prepare(
    *,
    user,
    conversation_id,
    operation: str,
    model_id,
    prompt="",
    size="",
    quality="",
    n=1,
    source_id=None,
    upload: bytes | None = None,
    upload_name: str = "",
    mask: bytes | None = None,
) -> ImagePlan:
    """The checks that need the database; raises ParleyError (nothing is saved)."""
    existing = None
    if conversation_id is not None:
        existing = conversation_for_user(user=user, conversation_id=conversation_id)
    source_media = None
    if source_id is not None and upload is not None:
        raise BadRequest(_("Choose one image to start from."))
    source = upload
    if source_id is not None:
        source_media, source = _source_bytes(user=user, source_id=source_id)
    request = image_request_check(
        user=user,
        operation=operation,
        model_id=model_id,
        prompt=prompt,
        size=size,
        quality=quality,
        n=n,
        source=source,
        mask=mask,
    )
    return ImagePlan(user, existing, request, source_media, upload_name, uploaded=upload is not None)


def image_turn_start(**fields) -> ImageTurn:
    """Check the request, save the prompt and the waiting reply, and admit the call.

    ``source_id`` (a stored image of the member's) or ``upload`` (the bytes of a new one) is
    the image an edit or variation starts from. Raises ParleyError for a request that is
    refused outright (nothing saved); a refusal of the call itself (budget, rate) is returned
    as ``refusal``, with the reply already ended with its code. The three steps in one (the
    web edge runs them on two threads).
    """
    plan = image_turn_prepare(**fields)
    image_request_normalise(plan.request)
    return image_turn_save(plan)


def image_turn_save(plan: ImagePlan) -> ImageTurn:
    """Save the prompt (and an uploaded image) and the waiting reply, and admit the call."""
    user, request, source_media = plan.user, plan.request, plan.source_media
    created = plan.conversation is None
    if plan.conversation is None:
        title = request.prompt[:TITLE_CHARS] or _("Image variation")
        conversation = Conversation.objects.create(owner=user, title=title)
    else:
        conversation = plan.conversation
    stored = None
    try:
        if plan.uploaded and request.source is not None:
            # The normalised upload is what the model sees, so it is what the thread shows. Saved
            # before the messages (the store is not transactional); removed again if they fail.
            stored = media_save(
                owner=user,
                content=request.source.data,
                name=plan.upload_name or "image.png",
                kind=MediaFile.Kind.IMAGE,
                conversation=conversation,
            )
        question, reply = _save_turn(conversation, request, stored or source_media)
    except BaseException:
        if stored is not None:
            stored.delete()
        if created:
            conversation.delete()
        raise
    if stored is not None:
        MediaFile.objects.filter(pk=stored.pk).update(message=question)
    admission = refusal = None
    estimate = Units(images=request.n, image_size=request.size, image_quality=request.quality)
    try:
        with transaction.atomic():
            admission = call_admit(
                user=user,
                kind=UsageKind.IMAGE,
                estimate=estimate,
                purpose=PURPOSE[request.operation],
                model=request.model,
                granted=True,
                message=reply,
            )
    except ParleyError as exc:
        refusal = exc
        reply = _finish(reply.pk, status=Message.Status.ERROR, error=exc) or reply
    return ImageTurn(user, conversation, question, reply, request, admission, refusal, created)


def _attachment(media: MediaFile, *, width: int, height: int, revised_prompt: str = "") -> dict:
    return {
        "id": str(media.pk),
        "kind": "image",
        "content_type": media.content_type,
        "name": media.original_name,
        "width": width,
        "height": height,
        "revised_prompt": revised_prompt,
    }


def _save_turn(conversation: Conversation, request: ImageRequest, source: MediaFile | None):
    now = timezone.now()
    with transaction.atomic():
        # The conversation's row serialises turns: no image turn starts beside a reply in progress.
        rows = Conversation.objects.select_for_update().filter(pk=conversation.pk)
        leaf_id = rows.values_list("current_leaf_id", flat=True).get()
        if Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).exists():
            raise Busy()
        attachments = []
        if source is not None and request.source is not None:
            attachments.append(_attachment(source, width=request.source.width, height=request.source.height))
        question = Message.objects.create(
            conversation=conversation,
            parent_id=leaf_id,
            role=Message.Role.USER,
            content=request.prompt,
            attachments=attachments,
            created_at=now,
            updated_at=now,
        )
        reply = Message.objects.create(
            conversation=conversation,
            parent=question,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            model=request.model,
            model_name=request.model.label[:200],
            # After its question, always: threads and exports are read in creation order.
            created_at=now + timedelta(microseconds=1),
            updated_at=now,
            heartbeat_at=now,
        )
        Conversation.objects.filter(pk=conversation.pk).update(current_leaf=reply, updated_at=now, choosing=False)
    conversation.current_leaf_id = reply.pk
    return question, reply


def _finish(
    reply_id,
    *,
    status: str,
    error: ParleyError | None = None,
    content: str = "",
    attachments: list | None = None,
) -> Message | None:
    """End a reply still waiting; None if it ended already (the sweep) or is gone."""
    now = timezone.now()
    changes: dict = {"status": status, "updated_at": now, "heartbeat_at": now, "content": content}
    if attachments is not None:
        changes["attachments"] = attachments
    if error is not None:
        changes["error_code"] = error.code
        changes["error_text"] = error.message[:2000]
        if isinstance(error, MessageBlocked):
            changes["moderation_categories"] = list(error.detail.get("categories") or [])
    with transaction.atomic():
        if not Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING).update(**changes):
            return None
        reply = Message.objects.get(pk=reply_id)
        Conversation.objects.filter(pk=reply.conversation_id).update(updated_at=now)
    return reply


# --- 2. the call -------------------------------------------------------------------------------


def _heartbeat(reply_id) -> None:
    Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING).update(heartbeat_at=timezone.now())


async def _keep_alive(reply_id) -> None:
    """Refresh the waiting reply's heartbeat, so the sweep knows its worker is alive."""
    interval = max(0.5, min(settings.PARLEY_STALE_REPLY_SECONDS / 3, 10.0))
    while True:
        await asyncio.sleep(interval)
        await sync_to_async(_heartbeat)(reply_id)


async def _call_provider(turn: ImageTurn, call) -> list[imagewire.GeneratedImage]:
    request = turn.request
    model_id = request.model.model_id
    user = call.admission.pseudonym
    if request.operation == GENERATE:
        body = imagewire.generation_body(
            model=model_id, prompt=request.prompt, size=request.size, quality=request.quality, n=request.n, user=user
        )
        return await client.images_generate(call.endpoint, body)
    assert request.source is not None
    fields = imagewire.form_fields(model=model_id, prompt=request.prompt, size=request.size, n=request.n, user=user)
    files = {"image": ("image.png", request.source.data, "image/png")}
    if request.mask is not None:
        files["mask"] = ("mask.png", request.mask.data, "image/png")
    operation = "edits" if request.operation == EDIT else "variations"
    return await client.images_from_image(call.endpoint, operation, fields, files)


def _store(turn: ImageTurn, images: list[imagewire.GeneratedImage]) -> list[dict]:
    """Check each image the model made and store it on the reply; all or nothing."""
    checked = []
    for image in images:
        try:
            info = image_info(image.data, max_bytes=settings.PARLEY_IMAGE_MAX_RESPONSE_BYTES)
        except ImageRefused:
            raise ImageRefused(
                _("The model provider sent an image Parley could not read."), code="upstream_bad_response"
            ) from None
        checked.append((image, info))
    saved: list[MediaFile] = []
    attachments = []
    try:
        for number, (image, info) in enumerate(checked, start=1):
            media = media_save(
                owner=turn.user,
                content=image.data,
                name=f"image-{number}.{info.format.lower().replace('jpeg', 'jpg')}",
                kind=MediaFile.Kind.IMAGE,
                message=turn.reply,
            )
            saved.append(media)
            attachments.append(
                _attachment(media, width=info.width, height=info.height, revised_prompt=image.revised_prompt)
            )
    except BaseException:
        for media in saved:
            media.delete()
        raise
    return attachments


async def image_reply_produce(turn: ImageTurn) -> Message:
    """Moderate, call, store, settle and end the reply; returns the reply as it ended."""
    if turn.refusal is not None or turn.admission is None:
        return turn.reply
    request = turn.request
    reply_id = turn.reply.pk
    status: str = Message.Status.COMPLETE
    error: ParleyError | None = None
    attachments: list[dict] | None = None
    keep_alive = asyncio.ensure_future(_keep_alive(reply_id))
    try:
        async with call_running(turn.admission) as call:
            if request.prompt:
                await moderation_check(user=turn.user, texts=[request.prompt], provider=request.model.provider)
            images = await _call_provider(turn, call)
            # Billed by what came back, at the size and quality asked (the price list's units).
            call.usage = Units(images=len(images), image_size=request.size, image_quality=request.quality)
            attachments = await sync_to_async(_store)(turn, images)
    except MessageBlocked as exc:
        status, error = Message.Status.BLOCKED, exc
    except ParleyError as exc:
        status, error = Message.Status.ERROR, exc
    except asyncio.CancelledError:
        # Stopped by the member (nothing came back, so nothing is billed), or the server is
        # shutting down; either way the reply ends here, not at the sweep.
        if turn.stopped:
            # The cancellation was asked for (the edge cancels only this call): it ends here.
            stopped = await asyncio.shield(sync_to_async(_finish)(reply_id, status=Message.Status.STOPPED))
            return stopped or turn.reply
        restart = ParleyError(_("The server stopped while this image was being made."), code="server_restart")
        await asyncio.shield(sync_to_async(_finish)(reply_id, status=Message.Status.INTERRUPTED, error=restart))
        raise
    except Exception:  # the outermost boundary of an image reply: logged, and shown with a code
        logger.exception("image reply %s failed", reply_id)
        status, error = Message.Status.ERROR, ParleyError()
    finally:
        keep_alive.cancel()
    revised = " ".join(a["revised_prompt"] for a in attachments or [] if a.get("revised_prompt"))
    ended = await sync_to_async(_finish)(reply_id, status=status, error=error, content=revised, attachments=attachments)
    if ended is None:
        # Ended meanwhile (the sweep) or deleted with its conversation: the images go with it.
        for item in attachments or []:
            await sync_to_async(MediaFile.objects.filter(pk=item["id"]).delete)()
        return turn.reply
    return ended

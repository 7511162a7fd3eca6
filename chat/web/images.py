"""The image endpoint of the chat page: create, edit or vary images in a conversation.

``POST /api/images/`` (multipart, CSRF-protected): ``operation`` (generate, edit,
variation), ``model_id``, ``prompt``, ``size``, ``quality``, ``n``, ``conversation_id``
(none: a new conversation), and for an edit or a variation either ``source_id`` (an image
of the member's, from a conversation) or the file ``image``, and for an edit an optional
``mask`` (a PNG whose transparent area is what may change). It answers 202 with the prompt
and the waiting reply at once; the images arrive over the conversation's socket as
``reply.done``. Every check of chat/services/images.py has run before the answer, so a bad
image or option is a 4xx with its stable code and nothing saved or called.
"""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import JsonResponse
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from chat.errors import BadRequest, ImageRefused, ParleyError
from chat.serializers import conversation_to_dict, message_to_dict
from chat.services.images import image_models_offered, image_request_normalise, image_turn_prepare, image_turn_save
from chat.transport.images import image_reply_spawn
from chat.web.api import error_response


def _file(request, name: str) -> tuple[bytes | None, str]:
    upload = request.FILES.get(name)
    if upload is None:
        return None, ""
    limit = settings.PARLEY_IMAGE_UPLOAD_MAX_BYTES
    if upload.size > limit:
        raise ImageRefused(
            _("This image is larger than the limit of %(limit)s.") % {"limit": filesizeformat(limit)},
            code="image_too_large",
        )
    return upload.read(limit + 1), upload.name or ""


def _prepare(request, user):
    data = request.POST
    image, image_name = _file(request, "image")
    mask, _mask_name = _file(request, "mask")
    return image_turn_prepare(
        user=user,
        conversation_id=data.get("conversation_id") or None,
        operation=data.get("operation") or "generate",
        model_id=data.get("model_id") or None,
        prompt=data.get("prompt", ""),
        size=data.get("size", ""),
        quality=data.get("quality", ""),
        n=data.get("n") or 1,
        source_id=data.get("source_id") or None,
        upload=image,
        upload_name=image_name,
        mask=mask,
    )


def _unauthenticated() -> JsonResponse:
    return JsonResponse({"error": {"code": "session_ended", "message": _("Please sign in again.")}}, status=401)


async def image_create(request):
    user = await request.auser()
    if not user.is_authenticated:
        return _unauthenticated()
    if request.method != "POST":
        response = JsonResponse({"error": {"code": "bad_request", "message": _("Method not allowed.")}}, status=405)
        response["Allow"] = "POST"
        return response
    try:
        plan = await sync_to_async(_prepare)(request, user)
        # Decoding and re-encoding images is CPU work: on a worker thread of its own, never on
        # the database thread every request of this process shares.
        await asyncio.to_thread(image_request_normalise, plan.request)
        turn = await sync_to_async(image_turn_save)(plan)
    except ParleyError as exc:
        return error_response(exc)
    except ValueError:
        return error_response(BadRequest())
    image_reply_spawn(turn)
    body = {
        "conversation": conversation_to_dict(turn.conversation),
        "question": message_to_dict(turn.question),
        "reply": message_to_dict(turn.reply),
    }
    return JsonResponse(body, status=202)


async def image_models(request):
    user = await request.auser()
    if not user.is_authenticated:
        return _unauthenticated()
    return JsonResponse({"models": await sync_to_async(image_models_offered)(user=user)})

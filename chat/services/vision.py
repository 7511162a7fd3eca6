"""Images a member attaches to a message, sent to vision models as image parts.

An image is stored in the private media store (chat/media/: the member's quota, the type
sniffed from the bytes) and attached to the message it is sent with. The reply's prompt carries
the newest message's images as ``image_url`` parts holding the bytes as a data URL: Parley never
fetches a URL on a member's behalf (T51). A model the catalog does not mark ``vision`` is refused
with ``model_no_vision`` before any call, never sent the text alone (reply_begin).
"""

from __future__ import annotations

import base64

from django.conf import settings
from django.utils.translation import gettext as _

from chat.errors import NotFound, VisionImageRefused, VisionUnsupported
from chat.media.services import media_save
from chat.media.storage import stored_open
from chat.models import MediaFile

# What vision models take (OpenAI: PNG, JPEG, WEBP, non-animated GIF).
IMAGE_TYPES = frozenset(("image/png", "image/jpeg", "image/webp", "image/gif"))
# What one image costs in the prompt, for trimming and the budget's reservation: OpenAI's
# high-detail price of a 1024 x 1024 image (85 + 170 x 4 tiles); the provider's count settles it.
IMAGE_TOKENS = 765


def image_upload(*, user, name, data: bytes) -> MediaFile:
    """Store an image for the member's next message, or raise saying why not."""
    if len(data) > settings.PARLEY_VISION_IMAGE_MAX_BYTES:
        raise VisionImageRefused(
            _("The image is %(size)s bytes; the limit is %(limit)s.")
            % {"size": len(data), "limit": settings.PARLEY_VISION_IMAGE_MAX_BYTES},
            code="image_too_large",
        )
    media = media_save(owner=user, content=data, name=name or "image", kind=MediaFile.Kind.IMAGE)
    if media.content_type not in IMAGE_TYPES:
        media.delete()
        raise VisionImageRefused(_("Attach a PNG, JPEG, WEBP or GIF image."), code="image_type_unsupported")
    return media


def images_attach(*, user, conversation, message, image_ids) -> list[MediaFile]:
    """Attach the member's uploaded images to ``message`` (in the caller's transaction)."""
    if not image_ids:
        return []
    if not isinstance(image_ids, list) or len(image_ids) > settings.PARLEY_VISION_IMAGES_PER_MESSAGE:
        raise VisionImageRefused(
            _("A message can carry at most %(limit)s images.") % {"limit": settings.PARLEY_VISION_IMAGES_PER_MESSAGE},
            code="image_too_many",
        )
    ids = {str(i) for i in image_ids}
    try:
        images = list(MediaFile.objects.filter(owner=user, kind=MediaFile.Kind.IMAGE, message__isnull=True, pk__in=ids))
    except Exception:  # noqa: BLE001 - a malformed id is a missing image
        raise NotFound() from None
    if len(images) != len(ids) or any(i.conversation_id not in (None, conversation.pk) for i in images):
        raise NotFound()
    MediaFile.objects.filter(pk__in=[i.pk for i in images]).update(conversation=conversation, message=message)
    # The message lists its images, so the thread shows them (chat.serializers.attachments_to_list
    # gives each its owner-only URL), in the order they were attached.
    order = {str(i): n for n, i in enumerate(image_ids)}
    images.sort(key=lambda i: order.get(str(i.pk), 0))
    message.attachments = [*(message.attachments or []), *(_attachment(i) for i in images)]
    message.save(update_fields=["attachments"])
    return images


def _attachment(image: MediaFile) -> dict:
    return {"id": str(image.pk), "kind": "image", "content_type": image.content_type, "name": image.original_name}


def message_images(message) -> list[MediaFile]:
    return list(MediaFile.objects.filter(message=message, kind=MediaFile.Kind.IMAGE).order_by("created_at", "pk"))


def vision_check(*, model, images: list) -> None:
    if images and not model.vision:
        raise VisionUnsupported(
            _("%(model)s cannot read images. Pick a model that accepts images, or send the message without them.")
            % {"model": model.label}
        )


def image_parts(images: list[MediaFile]) -> list[dict]:
    """The ``image_url`` content parts of ``images``, as data URLs of their stored bytes."""
    parts = []
    for image in images:
        with stored_open(image.storage_name) as stream:
            data = base64.b64encode(stream.read()).decode("ascii")
        parts.append({"type": "image_url", "image_url": {"url": f"data:{image.content_type};base64,{data}"}})
    return parts

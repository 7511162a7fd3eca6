"""Upload an image for the member's next message (chat/services/vision.py); the ``send`` frame's
``image_ids`` attach it. Served back only to its owner by chat/web/media.py."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.utils.translation import gettext as _

from chat.errors import VisionImageRefused
from chat.services.vision import image_upload
from chat.web.api import api_view


@api_view("POST")
def vision_image_create(request):
    upload = request.FILES.get("file")
    if upload is None:
        raise VisionImageRefused(_("Choose an image to attach."), code="image_empty")
    if upload.size > settings.PARLEY_VISION_IMAGE_MAX_BYTES:
        raise VisionImageRefused(
            _("The image is %(size)s bytes; the limit is %(limit)s.")
            % {"size": upload.size, "limit": settings.PARLEY_VISION_IMAGE_MAX_BYTES},
            code="image_too_large",
        )
    data = upload.read(settings.PARLEY_VISION_IMAGE_MAX_BYTES + 1)
    media = image_upload(user=request.user, name=upload.name, data=data)
    return JsonResponse(
        {"image": {"id": str(media.id), "name": media.original_name, "size": media.size, "type": media.content_type}},
        status=201,
    )

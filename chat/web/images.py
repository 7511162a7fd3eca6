"""Upload an image for the member's next message (chat/services/images.py); the ``send`` frame's
``image_ids`` attach it. Served back only to its owner by chat/web/media.py."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.utils.translation import gettext as _

from chat.errors import ImageRefused
from chat.services.images import image_upload
from chat.web.api import api_view


@api_view("POST")
def image_create(request):
    upload = request.FILES.get("file")
    if upload is None:
        raise ImageRefused(_("Choose an image to attach."), code="image_empty")
    if upload.size > settings.PARLEY_IMAGE_MAX_BYTES:
        raise ImageRefused(
            _("The image is %(size)s bytes; the limit is %(limit)s.")
            % {"size": upload.size, "limit": settings.PARLEY_IMAGE_MAX_BYTES},
            code="image_too_large",
        )
    media = image_upload(user=request.user, name=upload.name, data=upload.read(settings.PARLEY_IMAGE_MAX_BYTES + 1))
    return JsonResponse(
        {"image": {"id": str(media.id), "name": media.original_name, "size": media.size, "type": media.content_type}},
        status=201,
    )

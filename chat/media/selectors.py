"""Reads of stored files that enforce ownership: another member's file does not exist (T10)."""

from __future__ import annotations

import uuid

from django.db.models import Sum

from chat.errors import MediaNotFound
from chat.models import MediaFile


def media_for_user(*, user, media_id) -> MediaFile:
    try:
        mid = media_id if isinstance(media_id, uuid.UUID) else uuid.UUID(str(media_id))
    except (TypeError, ValueError, AttributeError):
        raise MediaNotFound() from None
    if not getattr(user, "is_authenticated", False):
        raise MediaNotFound()
    try:
        return MediaFile.objects.get(id=mid, owner=user)
    except MediaFile.DoesNotExist:
        raise MediaNotFound() from None


def media_bytes_used(*, user) -> int:
    """What counts against the member's storage quota."""
    return MediaFile.objects.filter(owner=user).aggregate(total=Sum("size"))["total"] or 0

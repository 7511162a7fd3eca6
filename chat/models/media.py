"""Stored files: what members upload and what models produce for them.

A row is the record of one file in the private media store (``STORAGES["media"]``). The file's
name there is chosen by the server (a random id and an extension from the type allowlist in
chat.media.types), never taken from the client; the name the member gave is kept only for
display and downloads. A file belongs to one member and, optionally, to one of their
conversations and messages: deleting any of those deletes the row, and the file with it
(chat.media.signals).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models.conversations import Conversation, Message


class MediaFile(models.Model):
    class Kind(models.TextChoices):
        UPLOAD = "upload", _("upload")
        IMAGE = "image", _("image")
        AUDIO = "audio", _("audio")
        DOCUMENT = "document", _("document")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="media_files")
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="media_files"
    )
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="media_files")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.UPLOAD)
    original_name = models.CharField(_("name"), max_length=255)
    storage_name = models.CharField(max_length=255, unique=True, editable=False)
    content_type = models.CharField(_("type"), max_length=100)
    size = models.PositiveBigIntegerField(_("size"))
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        # The quota sums a member's sizes; the member's file list is newest first.
        indexes = [models.Index(fields=["owner", "-created_at"], name="media_owner_created")]
        verbose_name = _("file")
        verbose_name_plural = _("files")

    def __str__(self) -> str:
        return self.original_name

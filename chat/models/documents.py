"""Documents a member attaches to a conversation, the chunks they are split into, and the
passages a reply cited.

A document's original is a MediaFile in the private media store (the ingestion job reads it
from there, so a job survives a restart); its chunks carry their owner, so every search
filters by owner in the query that ranks (docs/security.md, T45). Vectors are a pgvector
``vector`` column on PostgreSQL and float32 bytes on SQLite (:class:`EmbeddingField`).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models.conversations import Conversation, Message
from chat.models.media import MediaFile


class EmbeddingField(models.Field):
    """A vector: ``vector(n)`` on PostgreSQL (pgvector), little-endian float32 bytes elsewhere.

    Values are numpy float32 arrays in Python on both databases.
    """

    description = "an embedding vector"

    def __init__(self, *args, dimensions: int | None = None, **kwargs):
        self.dimensions = dimensions
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["dimensions"] = self.dimensions
        return name, path, args, kwargs

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return f"vector({int(self.dimensions)})" if self.dimensions else "vector"
        return "blob"

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        import numpy as np  # here, not at start-up: a process that never reads vectors skips it

        array = np.asarray(value, dtype="<f4")
        if connection.vendor == "postgresql":
            from pgvector import Vector

            return Vector._to_db(array)
        return array.tobytes()

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        import numpy as np

        if isinstance(value, (bytes, memoryview)):
            return np.frombuffer(bytes(value), dtype="<f4")
        if isinstance(value, str):
            from pgvector import Vector

            return np.asarray(Vector._from_db(value), dtype="<f4")
        return np.asarray(value, dtype="<f4")


class Collection(models.Model):
    """A named set of documents (for example "HR policies") that any conversation can search.

    Private to its owner until an admin shares it with groups (in the Django admin): members of
    those groups may read its documents and use it, only its owner adds or removes files.
    Anyone else is answered as if it did not exist (docs/security.md, T45).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="collections")
    name = models.CharField(_("name"), max_length=120)
    groups = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="document_collections",
        verbose_name=_("shared with groups"),
        help_text=_("Members of these groups can read the collection's documents and use it in their conversations."),
    )
    # The conversations that search it (picked in the composer).
    conversations = models.ManyToManyField(Conversation, blank=True, related_name="collections")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="collection_owner_name")]
        verbose_name = _("collection")
        verbose_name_plural = _("collections")

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("waiting")
        READING = "reading", _("reading")
        INDEXING = "indexing", _("indexing")
        READY = "ready", _("ready")
        FAILED = "failed", _("failed")

    UNFINISHED = (Status.QUEUED, Status.READING, Status.INDEXING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents")
    # Set when the message that attaches it is sent; deleting the conversation deletes its files.
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="documents"
    )
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="documents")
    # Set for a file of a collection (then no conversation): deleting the collection deletes it.
    collection = models.ForeignKey(
        Collection, null=True, blank=True, on_delete=models.CASCADE, related_name="documents"
    )
    name = models.CharField(_("name"), max_length=255)
    kind = models.CharField(max_length=16)  # pdf, docx, text, markdown, csv, html
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, default="")
    # The original, in the private media store (chat/media/); gone when reading it failed.
    file = models.OneToOneField(MediaFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="document")
    pages = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.CharField(max_length=500, blank=True, default="")
    # The worker's claim: which attempt holds it and when it last showed it was alive.
    attempt = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "status"], name="doc_owner_status"),
            models.Index(fields=["conversation", "status"], name="doc_conv_status"),
            models.Index(fields=["status", "claimed_at"], name="doc_status_claim"),
            models.Index(fields=["collection", "status"], name="doc_collection_status"),
        ]
        verbose_name = _("document")
        verbose_name_plural = _("documents")

    def __str__(self) -> str:
        return self.name


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    ordinal = models.PositiveIntegerField()
    page = models.PositiveIntegerField(default=0)  # 1-based; 0 when the format has no pages
    text = models.TextField()
    tokens = models.PositiveIntegerField(default=0)
    embedding = EmbeddingField(dimensions=settings.PARLEY_EMBEDDING_DIMENSIONS, null=True)

    class Meta:
        ordering = ["document", "ordinal"]
        indexes = [models.Index(fields=["owner", "document"], name="chunk_owner_doc")]
        constraints = [models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_doc_ordinal")]


class Citation(models.Model):
    """Source ``number`` of a reply's prompt: the passage [number] in the reply opens."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="citations")
    number = models.PositiveSmallIntegerField()
    chunk = models.ForeignKey(Chunk, on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = ["message", "number"]
        constraints = [models.UniqueConstraint(fields=["message", "number"], name="citation_msg_number")]

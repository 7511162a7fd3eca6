"""Search by meaning over a member's own conversations: each message's passages and vectors.

A completed turn's messages (the member's message and the reply) are embedded by a background
job (chat/jobs/search.py). ``MessageIndex`` is a message's place in that work (waiting, done,
failed) and the job's claim on it, so two workers never embed one message twice;
``MessageChunk`` holds the passages and their vectors, stored like document chunks (a pgvector
column with an HNSW index on PostgreSQL, float32 bytes scanned in memory on SQLite). Both
carry their owner and conversation and are deleted with the message, the conversation or the
member (docs/security.md, T45).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from chat.models.conversations import Conversation, Message
from chat.models.documents import EmbeddingField


class MessageIndex(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    message = models.OneToOneField(Message, primary_key=True, on_delete=models.CASCADE, related_name="search_index")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # The worker's claim: the token of the worker holding it, since when, and how many times
    # it was taken; a claim whose lease ran out is taken up again (chat.services.search).
    attempt = models.PositiveIntegerField(default=0)
    claim = models.UUIDField(null=True, blank=True)  # the token of the worker holding it
    claimed_at = models.DateTimeField(null=True, blank=True)
    tries = models.PositiveSmallIntegerField(default=0)  # failed attempts so far
    error_code = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "status"], name="msgindex_conv_status"),
            models.Index(fields=["status", "claimed_at"], name="msgindex_status_claim"),
        ]


class MessageChunk(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="search_chunks")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    tokens = models.PositiveIntegerField(default=0)
    embedding = EmbeddingField(dimensions=settings.PARLEY_EMBEDDING_DIMENSIONS)

    class Meta:
        ordering = ["message", "ordinal"]
        indexes = [models.Index(fields=["owner", "conversation"], name="msgchunk_owner_conv")]
        constraints = [models.UniqueConstraint(fields=["message", "ordinal"], name="msgchunk_msg_ordinal")]

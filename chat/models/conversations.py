"""Conversations and their messages.

One row per message, indexed by (conversation, created): nothing stores a conversation as
one blob. A reply in progress is a Message with status ``streaming`` whose ``heartbeat_at``
its worker refreshes while it is alive (see chat.transport.sweep).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models.catalog import ChatModel


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(_("title"), max_length=200, blank=True)
    model = models.ForeignKey(ChatModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    system_prompt = models.TextField(_("system prompt"), blank=True)
    temperature = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(2)])
    top_p = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(1)])
    max_tokens = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    presence_penalty = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-2), MaxValueValidator(2)]
    )
    frequency_penalty = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-2), MaxValueValidator(2)]
    )
    stop = models.JSONField(default=list, blank=True)  # up to 4 sequences (chat completions API)
    # Answers per turn (the API's ``n``): several are saved as sibling replies, the member picks one.
    n = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(4)])
    # Words to avoid or prefer: [{"text": "...", "bias": -100..100}], turned into token ids with the
    # model's encoding when a prompt is built (chat.services.prompt, chat.tokens.bias_token_ids).
    logit_bias = models.JSONField(default=list, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    response_format = models.CharField(max_length=16, blank=True, default="")  # "", "text" or "json_object"
    # The last message of the branch the member sees: the thread is the path from the root to
    # it, and it is the history a new message continues. Null for an empty conversation.
    current_leaf = models.ForeignKey("Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # True after a turn that asked for several answers, until the member picks one (or goes on
    # from the first): the thread shows the answers side by side.
    choosing = models.BooleanField(default=False)
    pinned = models.BooleanField(default=False)
    # Set once a document is attached, so prompts of conversations without any never look for one.
    has_documents = models.BooleanField(default=False)
    # The member's folder in the sidebar (chat.models.library.Folder); none: outside folders.
    folder = models.ForeignKey(
        "chat.Folder", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    # The preset it started from, and that preset's name then (shown even after the preset is
    # renamed or deleted).
    preset = models.ForeignKey(
        "chat.Preset", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    preset_name = models.CharField(max_length=100, blank=True, default="")
    # The owner's consent to use this conversation for fine-tuning (chat.services.training), and
    # the moment a dataset holding it left Parley, after which consent cannot be withdrawn.
    training_consent_at = models.DateTimeField(null=True, blank=True)
    training_locked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-pinned", "-updated_at"]
        indexes = [models.Index(fields=["owner", "-pinned", "-updated_at"], name="conv_owner_list")]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")

    def __str__(self) -> str:
        return self.title or str(self.id)

    @property
    def training_state(self) -> str:
        """The member's consent to fine-tuning: "off", "on", or "locked" (sent in an uploaded dataset)."""
        if self.training_locked_at is not None:
            return "locked"
        return "on" if self.training_consent_at is not None else "off"


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system", _("system")
        USER = "user", _("user")
        ASSISTANT = "assistant", _("assistant")

    class Status(models.TextChoices):
        COMPLETE = "complete", _("complete")
        STREAMING = "streaming", _("streaming")
        STOPPED = "stopped", _("stopped")
        INTERRUPTED = "interrupted", _("interrupted")
        ERROR = "error", _("error")
        BLOCKED = "blocked", _("blocked")
        # A member's message the moderation gate could not check (the moderation call failed):
        # never replayed to a model until a later gate passes it (chat.core.moderation).
        UNCHECKED = "unchecked", _("not yet checked")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # Messages form a tree: an edit or a regeneration adds a sibling and keeps the old branch.
    # A root message has no parent (an edit of the first message makes a second root).
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children", db_index=False
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    # Which of a turn's answers this is (the API's choice index; 0 unless the turn asked for several).
    choice = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # Client-generated id of a user message, so a resend after a reconnect is not a duplicate.
    client_id = models.CharField(max_length=64, blank=True, default="")
    # Token count of ``content`` under ``token_encoding``, stored when saved so that building
    # a prompt never re-tokenizes old messages.
    token_count = models.PositiveIntegerField(default=0)
    token_encoding = models.CharField(max_length=32, blank=True, default="")
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    # How many earlier messages were left out of the prompt that produced this reply.
    omitted_messages = models.PositiveIntegerField(default=0)
    passages = models.PositiveIntegerField(default=0)  # numbered document sources in the prompt
    omitted_passages = models.PositiveIntegerField(default=0)  # document passages that did not fit
    # How many messages above this one on its branch are replayed to a model (the history's
    # length for a reply to it), stored with a reply once every one of them has a status that
    # no longer changes: counting a long history then stops at the nearest message that knows
    # (chat.selectors.count_up). Null: not known, counted by walking further up.
    replayed_above = models.PositiveIntegerField(null=True, blank=True, editable=False)
    moderation_categories = models.JSONField(default=list, blank=True)
    moderation_unchecked = models.BooleanField(default=False)
    # Files shown with the message: the images a model made (a reply of an image call) or the
    # image a member edits or varies, [{"id", "kind", "content_type", "name", "width",
    # "height", "revised_prompt"}]; each names a MediaFile (chat/models/media.py), which the
    # owner-only media view serves. Kept on the row so a thread is read without another query.
    attachments = models.JSONField(default=list, blank=True)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_text = models.TextField(blank=True, default="")
    model_name = models.CharField(max_length=200, blank=True, default="")
    model = models.ForeignKey(ChatModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Refreshed by the reply's worker at every periodic save; a streaming message whose
    # heartbeat is stale belongs to a dead worker and is swept to ``interrupted``.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When the member last switched to this message as the end of the branch shown: switching
    # back to a version shows the branch below it that was shown last, not merely the newest
    # (chat.services.branches.branch_switch). Null: never switched to (its created_at counts).
    shown_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # The history index: (conversation, created_at) first for listing and for reading a
            # conversation newest first; role, status and token_count after them so building a
            # prompt counts the replayable history from the index alone, without reading
            # message bodies (chat.services.prompt; bench/prompt_build.py).
            models.Index(
                fields=["conversation", "created_at", "role", "status", "token_count", "token_encoding"],
                name="msg_conv_history",
            ),
            models.Index(fields=["status", "heartbeat_at"], name="msg_status_heartbeat"),
            # The tree: a message's children (versions under one parent) and the walk up a path.
            models.Index(fields=["parent", "created_at"], name="msg_parent_created"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~models.Q(client_id=""),
                name="msg_unique_client_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

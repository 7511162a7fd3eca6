"""Parley's chat data: providers, models, conversations, messages, usage, moderation.

One row per message, indexed by (conversation, created): nothing stores a conversation as
one blob (PEERS.md item 6). A reply in progress is a Message with status ``streaming`` whose
``heartbeat_at`` its worker refreshes while it is alive (see chat.transport.sweep).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat import crypto


class Provider(models.Model):
    """An OpenAI-compatible endpoint and the key Parley uses for it.

    The base URL is set by admins only and is trusted; members can never point a request at
    another host (SECURITY.md policy).
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    base_url = models.URLField(_("base URL"), max_length=500, help_text=_("For example https://api.openai.com/v1"))
    api_key_encrypted = models.TextField(blank=True, default="", editable=False)
    organization = models.CharField(_("organization id"), max_length=200, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    timeout = models.FloatField(
        _("read timeout (seconds)"), default=120.0, validators=[MinValueValidator(1), MaxValueValidator(3600)]
    )
    use_moderation = models.BooleanField(
        _("use this provider's /moderations"),
        default=False,
        help_text=_("Check every user message with POST /moderations before any model sees it."),
    )
    moderation_provider = models.ForeignKey(
        "self",
        verbose_name=_("moderation provider"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text=_("Another provider whose /moderations checks messages sent to this one."),
    )
    from_environment = models.BooleanField(default=False, editable=False)
    models_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("provider")
        verbose_name_plural = _("providers")

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # Rotation: a key stored under an older PARLEY_ENCRYPTION_KEYS entry is re-encrypted
        # under the newest one whenever the row is saved (decrypting fails loudly if no key opens it).
        if self.api_key_encrypted and not crypto.is_current(self.api_key_encrypted):
            self.api_key_encrypted = crypto.encrypt(crypto.decrypt(self.api_key_encrypted))
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "api_key_encrypted"}
        super().save(*args, **kwargs)

    @property
    def api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted)

    @api_key.setter
    def api_key(self, value: str) -> None:
        self.api_key_encrypted = crypto.encrypt(value or "")

    @property
    def api_key_masked(self) -> str:
        try:
            return crypto.mask(self.api_key)
        except crypto.KeyDecryptionError:
            return "(cannot decrypt)"


class ChatModel(models.Model):
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="chat_models")
    model_id = models.CharField(_("model id"), max_length=200)
    display_name = models.CharField(_("display name"), max_length=200, blank=True)
    context_window = models.PositiveIntegerField(_("context window (tokens)"), default=8192)
    max_output_tokens = models.PositiveIntegerField(_("maximum output tokens"), default=4096)
    input_price_per_million = models.DecimalField(
        _("input price per 1M tokens (USD)"), max_digits=12, decimal_places=4, null=True, blank=True
    )
    output_price_per_million = models.DecimalField(
        _("output price per 1M tokens (USD)"), max_digits=12, decimal_places=4, null=True, blank=True
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    is_default = models.BooleanField(_("default"), default=False)
    groups = models.ManyToManyField(
        Group,
        verbose_name=_("allowed groups"),
        blank=True,
        help_text=_("Leave empty to let every member use this model."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "model_id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model_id"], name="chatmodel_unique_per_provider"),
            # One model is preselected for new chats: never two, whatever writes the rows.
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="chatmodel_one_default"
            ),
        ]
        verbose_name = _("model")
        verbose_name_plural = _("models")

    def __str__(self) -> str:
        return self.display_name or self.model_id

    def save(self, *args, **kwargs):
        if not self.is_default:
            return super().save(*args, **kwargs)
        # Becoming the default takes it from whichever model had it, in one transaction.
        with transaction.atomic():
            ChatModel.objects.filter(is_default=True).exclude(pk=self.pk).update(is_default=False)
            return super().save(*args, **kwargs)

    def validate_constraints(self, exclude=None):
        # A form may make this model the default while another has it: save() hands it over.
        exclude = {*(exclude or ()), "is_default"} if self.is_default else exclude
        super().validate_constraints(exclude=exclude)

    @property
    def label(self) -> str:
        return self.display_name or self.model_id

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        price_in = self.input_price_per_million or Decimal(0)
        price_out = self.output_price_per_million or Decimal(0)
        return (Decimal(prompt_tokens) * price_in + Decimal(completion_tokens) * price_out) / Decimal(1_000_000)


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
    pinned = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-pinned", "-updated_at"]
        indexes = [models.Index(fields=["owner", "-pinned", "-updated_at"], name="conv_owner_list")]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")

    def __str__(self) -> str:
        return self.title or str(self.id)


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

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
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
    # The worst case this reply reserved against the member's budget; released when settled.
    reserved_tokens = models.PositiveIntegerField(default=0)
    reserved_cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    moderation_categories = models.JSONField(default=list, blank=True)
    moderation_unchecked = models.BooleanField(default=False)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_text = models.TextField(blank=True, default="")
    model_name = models.CharField(max_length=200, blank=True, default="")
    model = models.ForeignKey(ChatModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Refreshed by the reply's worker at every periodic save; a streaming message whose
    # heartbeat is stale belongs to a dead worker and is swept to ``interrupted``.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

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


class UsageRecord(models.Model):
    """One reply's usage, priced at the model's prices at that moment."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records")
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.OneToOneField(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage")
    model = models.ForeignKey(ChatModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=200)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    estimated = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"], name="usage_user_created")]
        verbose_name = _("usage record")
        verbose_name_plural = _("usage")

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageMonth(models.Model):
    """A member's running totals for one calendar month (UTC), the row budgets lock on.

    ``reserved_*`` hold the worst case of replies in flight: a reply reserves prompt plus
    max tokens before its upstream call and settles to the real usage after it, so
    concurrent replies cannot overspend (SECURITY.md T34).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_months")
    month = models.DateField()  # first day of the month
    tokens_used = models.PositiveBigIntegerField(default=0)
    cost_used = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    tokens_reserved = models.PositiveBigIntegerField(default=0)
    cost_reserved = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "month"], name="usagemonth_unique")]


class BlocklistEntry(models.Model):
    pattern = models.CharField(_("word or pattern"), max_length=500)
    is_regex = models.BooleanField(_("regular expression"), default=False)
    category = models.CharField(_("category"), max_length=100, default="blocklist")
    enabled = models.BooleanField(_("enabled"), default=True)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pattern"]
        verbose_name = _("blocklist entry")
        verbose_name_plural = _("blocklist")

    def __str__(self) -> str:
        return self.pattern


class ModerationEvent(models.Model):
    class Source(models.TextChoices):
        BLOCKLIST = "blocklist", _("blocklist")
        PROVIDER = "provider", _("provider moderation")
        UNCHECKED = "unchecked", _("moderation unavailable, let through")
        FAILED = "failed", _("moderation unavailable, refused")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField()
    categories = models.JSONField(default=list)
    source = models.CharField(max_length=16, choices=Source.choices)
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("moderation event")
        verbose_name_plural = _("moderation events")

"""Usage: one record per model call, and each member's running totals per month."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models.api import ApiToken
from chat.models.catalog import ChatModel, ModelKind
from chat.models.conversations import Conversation, Message

# The kind of a model call, for usage records: the model kinds, and training (a fine-tuning job
# trains on a chat model).
UsageKind = models.TextChoices(
    "UsageKind",
    [(kind.name, (kind.value, kind.label)) for kind in ModelKind] + [("TRAINING", ("training", _("training")))],
)


class UsageRecord(models.Model):
    """One model call's usage in its kind's units, priced at the model's prices at that moment."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records")
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.OneToOneField(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage")
    model = models.ForeignKey(ChatModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=200)
    kind = models.CharField(_("kind"), max_length=16, choices=UsageKind.choices, default=UsageKind.CHAT)
    # What the call was for: a reply, a title, a moderation check, an API request...
    purpose = models.CharField(_("purpose"), max_length=32, default="reply")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    images = models.PositiveIntegerField(default=0)
    audio_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=Decimal(0))
    characters = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    estimated = models.BooleanField(default=False)
    # The member's API token the call was made with (None: the chat app, or a deleted token).
    api_token = models.ForeignKey(
        ApiToken, verbose_name=_("API token"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="usage_user_created"),
            models.Index(fields=["kind", "created_at"], name="usage_kind_created"),
        ]
        verbose_name = _("usage record")
        verbose_name_plural = _("usage")

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageMonth(models.Model):
    """A member's running totals for one calendar month (UTC), the row budgets lock on.

    ``reserved_*`` hold the worst case of calls in flight (the sum of their Reservation rows):
    a call reserves its estimate before it reaches a provider and settles to the real usage
    after it, so concurrent calls cannot overspend (docs/security.md T34).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_months")
    month = models.DateField()  # first day of the month
    tokens_used = models.PositiveBigIntegerField(default=0)
    cost_used = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    tokens_reserved = models.PositiveBigIntegerField(default=0)
    cost_reserved = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "month"], name="usagemonth_unique")]


class Reservation(models.Model):
    """A model call admitted and not yet settled: what it holds against its member's month.

    Created by admission (chat.core.calls) in the same transaction that adds it to
    ``UsageMonth.*_reserved``; deleted by settlement in the transaction that releases it and
    records the usage, so a reservation is released exactly once. A chat reply's reservation
    points at its message; the sweep settles reservations whose worker died.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(ChatModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=UsageKind.choices, default=UsageKind.CHAT)
    purpose = models.CharField(max_length=32, default="reply")
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="reservation"
    )
    month = models.DateField()  # the UsageMonth the amounts were added to
    tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    api_token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("reservation")
        verbose_name_plural = _("reservations")

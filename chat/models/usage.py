"""Usage: one record per model call, and each member's running totals per month."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models.catalog import ChatModel
from chat.models.conversations import Conversation, Message


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

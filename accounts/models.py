"""Parley's users and the invites that let people join."""

from __future__ import annotations

import secrets

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def _invite_code() -> str:
    return secrets.token_urlsafe(24)


class User(AbstractUser):
    """A member (chats) or an admin (``is_staff``: manages the deployment in the admin)."""

    # Monthly budgets; blank means unlimited. Enforced before each reply (chat.core.budget).
    monthly_token_budget = models.PositiveBigIntegerField(_("monthly token budget"), null=True, blank=True)
    monthly_cost_budget = models.DecimalField(
        _("monthly cost budget (USD)"), max_digits=12, decimal_places=4, null=True, blank=True
    )
    # Defaults for new conversations: model, system prompt and sampling parameters.
    chat_defaults = models.JSONField(_("defaults for new chats"), default=dict, blank=True)
    invite = models.ForeignKey(
        "accounts.Invite",
        verbose_name=_("joined through invite"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="members",
    )

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")


class Invite(models.Model):
    code = models.CharField(max_length=64, unique=True, default=_invite_code, editable=False)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="invites_created"
    )
    expires_at = models.DateTimeField(_("expires at"))
    max_uses = models.PositiveIntegerField(_("number of uses"), default=1)
    uses = models.PositiveIntegerField(_("times used"), default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("invite")
        verbose_name_plural = _("invites")

    def __str__(self) -> str:
        return self.note or f"Invite {self.code[:6]}…"

    @property
    def is_expired(self) -> bool:
        return timezone.now() >= self.expires_at

    @property
    def is_used_up(self) -> bool:
        return self.uses >= self.max_uses


class SignupCount(models.Model):
    """How many accounts one client address created in one clock hour (the sign-up limit).

    Counted in the database, inside the transaction that creates the account, so the limit
    holds across workers and concurrent requests, and a sign-up that fails gives its count
    back (accounts.services.signup_count_take).
    """

    address = models.CharField(max_length=64)
    hour = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["address", "hour"], name="signup_count_per_address_hour")]

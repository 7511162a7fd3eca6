"""The member API (``/v1/``): personal tokens, and the admin's policy of who may have them."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models.catalog import ChatModel

# What every token starts with: recognisable in a leaked config file and by secret scanners.
TOKEN_PREFIX = "pk-parley-"  # noqa: S105 - a prefix, not a secret


def token_hash(secret: str) -> str:
    """The SHA-256 of a token, hex: what is stored. The secret itself has 256 bits of
    randomness, so a fast hash is enough (nothing to brute-force, unlike a password)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class ApiToken(models.Model):
    """A member's personal API token. It acts as its member: grants, rate, budget, moderation.

    Only the hash of the secret is kept; the secret is shown once, when the token is made.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("member"), on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(_("name"), max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the secret, so a member can tell their tokens apart.
    hint = models.CharField(_("starts with"), max_length=24, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    allowed_models = models.ManyToManyField(
        ChatModel,
        verbose_name=_("models"),
        blank=True,
        related_name="+",
        help_text=_("Leave empty to allow every model the member may use."),
    )
    save_conversations = models.BooleanField(
        _("save requests as conversations"),
        default=False,
        help_text=_("Chat completions made with this token appear in the member's history."),
    )
    revoked = models.BooleanField(_("revoked"), default=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    last_used_ip = models.GenericIPAddressField(_("last used from"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        indexes = [models.Index(fields=["user", "-created_at"], name="apitoken_user_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return not self.revoked and not self.is_expired


class ApiPolicy(models.Model):
    """Who may use the member API, set by admins (one row). ``PARLEY_API_ENABLED`` turns it
    off for the whole deployment whatever this says."""

    enabled = models.BooleanField(
        _("members may use the API"), default=True, help_text=_("Off: every token is refused and none can be made.")
    )
    groups = models.ManyToManyField(
        Group,
        verbose_name=_("allowed groups"),
        blank=True,
        help_text=_("Leave empty to let every member use the API."),
    )

    class Meta:
        verbose_name = _("API access")
        verbose_name_plural = _("API access")

    def __str__(self) -> str:
        return str(_("API access"))

    @classmethod
    def current(cls) -> ApiPolicy:
        policy, _created = cls.objects.get_or_create(pk=1)
        return policy

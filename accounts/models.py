"""Parley's users and the invites that let people join."""

from __future__ import annotations

import secrets

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from chat.prepared import PreparedRead


def _invite_code() -> str:
    return secrets.token_urlsafe(24)


class MemberManager(UserManager):
    """Django's own, but ``User.objects.get(pk=...)`` alone is composed once (chat/prepared.py):
    Django's ``get_user`` reads the member so on every request and every websocket send (T23)."""

    def get(self, *args, **kwargs):
        if not args and kwargs.keys() == {"pk"} and self._db is None:
            return _MEMBER_BY_PK.get(pk=kwargs["pk"])
        return super().get(*args, **kwargs)


class User(AbstractUser):
    """A member (chats) or an admin (``is_staff``: manages the deployment in the admin)."""

    objects = MemberManager()

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

    # Raised to sign a member out everywhere at once: it is part of the hash every session
    # carries, so each of their sessions (tracked or not) stops signing them in (T23).
    session_epoch = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")

    def _get_session_auth_hash(self, secret=None):
        # Django's own hash (of the password) when the epoch was never raised, so sessions
        # opened before this field existed stay valid.
        if not self.session_epoch:
            return super()._get_session_auth_hash(secret=secret)
        key_salt = "accounts.User.get_session_auth_hash"
        value = f"{self.password}:{self.session_epoch}"
        return salted_hmac(key_salt, value, secret=secret, algorithm="sha256").hexdigest()


_MEMBER_BY_PK = PreparedRead(lambda p: User._default_manager.get_queryset().filter(pk=p.pk), pk=User._meta.pk)


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


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", " ").split() if part.strip()]


class OIDCProvider(models.Model):
    """An OpenID Connect identity provider people can sign in with (accounts/oidc.py).

    The client secret is stored encrypted like provider API keys (chat/crypto.py).
    """

    slug = models.SlugField(
        _("short name"),
        max_length=40,
        unique=True,
        help_text=_("Part of the redirect URI registered with the provider; changing it breaks sign-in."),
    )
    label = models.CharField(_("button label"), max_length=80, help_text=_("Shown as “Sign in with …”."))
    issuer = models.URLField(
        _("issuer URL"), help_text=_("Its discovery document is read from /.well-known/openid-configuration.")
    )
    client_id = models.CharField(_("client ID"), max_length=255)
    client_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    scopes = models.CharField(_("scopes"), max_length=255, default="openid email profile")
    allowed_domains = models.CharField(
        _("allowed email domains"),
        max_length=500,
        blank=True,
        help_text=_("Separated by commas or spaces; empty allows any domain."),
    )
    create_members = models.BooleanField(
        _("may create members"),
        default=False,
        help_text=_("Otherwise only people who already have a Parley account with the same email can sign in."),
    )
    groups_claim = models.CharField(
        _("groups claim"),
        max_length=100,
        blank=True,
        help_text=_("The ID token claim listing the person's groups, for example “groups”. Empty: no mapping."),
    )
    group_mapping = models.TextField(
        _("group mapping"),
        blank=True,
        help_text=_(
            "One “claim value = Parley group” per line; only the groups named here are managed. "
            "Empty: every Parley group is managed and matched by name."
        ),
    )
    admin_values = models.CharField(
        _("admin claim values"),
        max_length=500,
        blank=True,
        help_text=_(
            "Claim values that make someone an admin. Used only when the deployment allows it "
            "(PARLEY_OIDC_ALLOW_ADMIN_MAPPING)."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label"]
        verbose_name = _("single sign-on provider")
        verbose_name_plural = _("single sign-on providers")

    def __str__(self) -> str:
        return self.label

    def save(self, *args, **kwargs):
        # Rotation, as for provider keys: a secret under an older PARLEY_ENCRYPTION_KEYS entry is
        # re-encrypted under the newest one whenever the row is saved.
        from chat import crypto

        if self.client_secret_encrypted and not crypto.is_current(self.client_secret_encrypted):
            self.client_secret_encrypted = crypto.encrypt(crypto.decrypt(self.client_secret_encrypted))
        super().save(*args, **kwargs)

    def clean(self):
        from accounts.oidc import ENV_SLUG

        if self.slug == ENV_SLUG:
            raise ValidationError({"slug": _("This short name is kept for the provider set in the environment.")})
        mapping_errors = [line for line in self.group_mapping.splitlines() if line.strip() and "=" not in line]
        if mapping_errors:
            raise ValidationError({"group_mapping": _("Each line needs the form “claim value = Parley group”.")})

    @property
    def client_secret(self) -> str:
        from chat import crypto

        return crypto.decrypt(self.client_secret_encrypted)

    @client_secret.setter
    def client_secret(self, value: str) -> None:
        from chat import crypto

        self.client_secret_encrypted = crypto.encrypt(value or "")

    @property
    def domain_list(self) -> list[str]:
        return [d.lower().lstrip("@") for d in _split(self.allowed_domains)]

    @property
    def mapping(self) -> dict[str, str]:
        pairs = [line.split("=", 1) for line in self.group_mapping.splitlines() if "=" in line]
        return {value.strip(): group.strip() for value, group in pairs if value.strip() and group.strip()}


class OIDCIdentity(models.Model):
    """A person at an identity provider, linked to one member: later sign-ins match on
    (issuer, subject), never on the email again."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="oidc_identities")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    provider_slug = models.CharField(max_length=40)
    made_admin = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="one_member_per_oidc_subject")]
        verbose_name = _("single sign-on identity")
        verbose_name_plural = _("single sign-on identities")


REQUIRE_2FA_NOBODY = "nobody"
REQUIRE_2FA_ADMINS = "admins"
REQUIRE_2FA_EVERYONE = "everyone"


class SignInPolicy(models.Model):
    """How people may sign in; one row, edited in the admin (accounts/selectors.py reads it)."""

    password_for_members = models.BooleanField(
        _("members may sign in with a password"),
        default=True,
        help_text=_("Turn off when everyone signs in through single sign-on."),
    )
    password_for_admins = models.BooleanField(
        _("admins may sign in with a password"),
        default=True,
        help_text=_("The break-glass way in when the identity provider is down. Keep it unless you are sure."),
    )
    require_two_factor = models.CharField(
        _("two-factor sign-in required for"),
        max_length=10,
        default=REQUIRE_2FA_NOBODY,
        choices=[
            (REQUIRE_2FA_NOBODY, _("nobody (optional for everyone)")),
            (REQUIRE_2FA_ADMINS, _("admins")),
            (REQUIRE_2FA_EVERYONE, _("everyone who signs in with a password")),
        ],
    )

    class Meta:
        verbose_name = _("sign-in policy")
        verbose_name_plural = _("sign-in policy")

    def __str__(self) -> str:
        return str(_("Sign-in policy"))

    def save(self, *args, **kwargs):
        self.pk = 1  # one row
        super().save(*args, **kwargs)

    def password_allowed(self, user) -> bool:
        return self.password_for_admins if user.is_staff else self.password_for_members

    def two_factor_required(self, user) -> bool:
        if self.require_two_factor == REQUIRE_2FA_EVERYONE:
            return True
        return self.require_two_factor == REQUIRE_2FA_ADMINS and user.is_staff


class MemberSession(models.Model):
    """A signed-in browser of a member, for their sessions page: what it is, where from, when
    last seen. The session itself lives in Django's session store under ``session_key``."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="member_sessions")
    session_key = models.CharField(max_length=64, unique=True)
    user_agent = models.CharField(max_length=300, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    provider_slug = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_seen"]
        verbose_name = _("session")
        verbose_name_plural = _("sessions")

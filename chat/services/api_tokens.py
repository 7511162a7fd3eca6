"""Members' API tokens: made, revoked, and recognised (services write; the reads that enforce
ownership are in chat.selectors).

A token is ``pk-parley-`` and 43 characters of ``secrets.token_urlsafe(32)`` (256 bits). Only
its SHA-256 is stored: the database never holds a usable token, and a token is recognised by
looking its hash up (an index) and comparing the hashes in constant time (T46).
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.core.grants import models_granted
from chat.errors import BadRequest
from chat.models import TOKEN_PREFIX, ApiPolicy, ApiToken, ChatModel, ModelKind, token_hash

NAME_MAX = 100
# last_used_* is written at most this often per token: a script's every request is not a write.
TOUCH_EVERY = dt.timedelta(seconds=60)


class ApiDisabled(BadRequest):
    code = "api_disabled"


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once, never stored


def api_access_allowed(*, user) -> bool:
    """Whether ``user`` may use the member API: the deployment's switch, the admin's policy
    (on, and the member in one of its groups if it names any), an active account."""
    if not settings.PARLEY_API_ENABLED or not user.is_active:
        return False
    policy = ApiPolicy.objects.filter(pk=1).first()
    if policy is None:
        return True
    if not policy.enabled:
        return False
    groups = policy.groups.values("pk")
    return not groups.exists() or user.groups.filter(pk__in=groups).exists()


def _new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def api_token_create(
    *,
    user,
    name: str,
    expires_at: dt.datetime | None = None,
    model_ids: list | None = None,
    save_conversations: bool = False,
) -> NewToken:
    """Make a token for ``user``; the secret is in the answer and nowhere else."""
    if not api_access_allowed(user=user):
        raise ApiDisabled(_("The API is not available to your account."))
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise BadRequest(_("Give the token a name of at most %(max)s characters.") % {"max": NAME_MAX})
    if expires_at is not None and expires_at <= timezone.now():
        raise BadRequest(_("The expiry date must be in the future."))
    allowed: list[ChatModel] = []
    if model_ids:
        granted = {m.pk: m for kind in ModelKind.values for m in models_granted(user=user, kind=kind)}
        try:
            allowed = [granted[int(pk)] for pk in model_ids]
        except (KeyError, TypeError, ValueError):
            raise BadRequest(_("A token can only be limited to models you may use.")) from None
    with transaction.atomic():
        count = ApiToken.objects.select_for_update().filter(user=user, revoked=False).count()
        if count >= settings.PARLEY_API_TOKENS_PER_MEMBER:
            raise BadRequest(
                _("You have %(count)s active tokens, the most allowed. Revoke one first.") % {"count": count}
            )
        secret = _new_secret()
        token = ApiToken.objects.create(
            user=user,
            name=name,
            token_hash=token_hash(secret),
            hint=secret[: len(TOKEN_PREFIX) + 4],
            expires_at=expires_at,
            save_conversations=bool(save_conversations),
        )
        if allowed:
            token.allowed_models.set(allowed)
    return NewToken(token=token, secret=secret)


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke ``token`` (already checked to be the caller's, or the caller is an admin).
    It stops working on its next request: every request reads the row."""
    if not token.revoked:
        token.revoked = True
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked", "revoked_at"])
    return token


def api_token_authenticate(*, secret: str, address: str | None) -> ApiToken | None:
    """The active token whose secret is ``secret``, with its member loaded, or None.

    Revoked, expired, a deactivated member's, or unknown: all None, alike. Records when and
    from where the token was last used (at most once a minute per token).
    """
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    digest = token_hash(secret)
    token = ApiToken.objects.select_related("user").filter(token_hash=digest).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    if token.revoked or token.is_expired or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY or token.last_used_ip != address:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=address)
        token.last_used_at, token.last_used_ip = now, address
    return token

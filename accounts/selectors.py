"""Reads about accounts and invites (writes live in accounts/services.py)."""

from __future__ import annotations

from django.conf import settings

from accounts.errors import InviteExpired, InviteInvalid, InviteUsedUp
from accounts.models import Invite

SIGNUP_MODES = ("closed", "invite", "open")


def signup_mode() -> str:
    """The configured sign-up mode; anything unrecognised counts as ``closed``.

    Failing closed means a typo in PARLEY_SIGNUP_MODE never opens the doors; the system check
    in accounts/checks.py reports the typo at start-up.
    """
    mode = str(settings.PARLEY_SIGNUP_MODE).strip().lower()
    return mode if mode in SIGNUP_MODES else "closed"


def invite_usable(*, code: str | None) -> Invite:
    """The invite for ``code`` if it can still be used, else the reason it cannot.

    This only looks; :func:`accounts.services.invite_redeem` is what takes a use, atomically.
    """
    invite = Invite.objects.filter(code=code).first() if code else None
    if invite is None:
        raise InviteInvalid()
    if invite.is_expired:
        raise InviteExpired()
    if invite.is_used_up:
        raise InviteUsedUp()
    return invite


def sign_in_policy():
    """The admin's sign-in policy (defaults when never saved: passwords on, 2FA optional)."""
    from accounts.models import SignInPolicy

    return SignInPolicy.objects.filter(pk=1).first() or SignInPolicy(pk=1)

"""Session records follow sign-in, sign-out and deactivation (accounts/sessions.py, T23)."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_save, pre_save

from accounts import sessions
from accounts.models import User


def _signed_in(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        sessions.session_record(request=request, user=user)


def _signed_out(sender, request, user, **kwargs):
    # Sent before Django flushes the session: its key is still the one the sockets hold.
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key and user is not None:
        sessions.session_signed_out(user=user, session_key=key)


def _remember_active(sender, instance: User, update_fields=None, **kwargs):
    if update_fields is not None and "is_active" not in update_fields:
        return  # e.g. last_login at sign-in: no extra query
    instance._was_active = bool(User.objects.filter(pk=instance.pk, is_active=True).exists()) if instance.pk else False


def _deactivated(sender, instance: User, created: bool, **kwargs):
    # Deactivating a member ends every session and open socket of theirs at once.
    if not created and not instance.is_active and getattr(instance, "_was_active", False):
        sessions.sessions_end_all(user=instance)


def connect() -> None:
    user_logged_in.connect(_signed_in, dispatch_uid="parley_session_record")
    user_logged_out.connect(_signed_out, dispatch_uid="parley_session_forget")
    pre_save.connect(_remember_active, sender=User, dispatch_uid="parley_user_was_active")
    post_save.connect(_deactivated, sender=User, dispatch_uid="parley_user_deactivated")

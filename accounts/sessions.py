"""A member's signed-in browsers: recorded at sign-in, listed on their sessions page, ended one
by one, all at once, by an admin, or when the member is deactivated (T23).

Ending a session deletes it from Django's session store and tells the member's open
websockets at once (the ``session.ended`` event the chat consumer listens for on the member's
group), instead of waiting for the socket's next periodic session check.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from importlib import import_module

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY
from django.core.cache import cache
from django.db.models import F
from django.http import Http404
from django.utils import timezone

from accounts.models import MemberSession, User
from accounts.throttle import client_ip_address
from chat.transport import events

logger = logging.getLogger(__name__)

SEEN_EVERY = timedelta(minutes=1)  # last-seen is written at most this often per session


def _store(session_key: str | None = None):
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


def session_record(*, request, user: User, provider_slug: str = "") -> None:
    """Remember the browser that just signed in (called on ``user_logged_in``)."""
    key = request.session.session_key
    if not key:
        return
    MemberSession.objects.update_or_create(
        session_key=key,
        defaults={
            "user": user,
            "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300],
            "ip_address": client_ip_address(request),
            "provider_slug": provider_slug,
            "last_seen": timezone.now(),
        },
    )
    cache.set(_seen_key(key), 1, timeout=SEEN_EVERY.total_seconds())


def session_came_from(*, session_key: str, provider_slug: str) -> None:
    """Note which single sign-on provider signed this session in."""
    MemberSession.objects.filter(session_key=session_key).update(provider_slug=provider_slug)


def _seen_key(session_key: str) -> str:
    return f"parley:session-seen:{session_key}"


def session_seen(*, session_key: str) -> None:
    """Note that the session was used now; at most one database write a minute per session,
    decided in the cache so that most requests cost no query at all."""
    if not cache.add(_seen_key(session_key), 1, timeout=SEEN_EVERY.total_seconds()):
        return
    now = timezone.now()
    MemberSession.objects.filter(session_key=session_key, last_seen__lt=now - SEEN_EVERY).update(last_seen=now)


def sessions_for_member(*, user: User) -> list[MemberSession]:
    """The member's sessions that still sign them in, newest first; stale records are dropped."""
    rows = list(MemberSession.objects.filter(user=user))
    gone = [row.pk for row in rows if not _store().exists(row.session_key)]
    if gone:
        MemberSession.objects.filter(pk__in=gone).delete()
    return [row for row in rows if row.pk not in gone]


def _notify(user_id: int, session_key: str | None) -> None:
    """Close the member's open websockets of that session (all of them when None) now."""
    try:
        async_to_sync(get_channel_layer().group_send)(
            events.user_group(user_id), events.session_ended(session_key=session_key)
        )
    except Exception:  # noqa: BLE001 - the socket's own periodic check still ends it
        logger.warning("could not tell open sockets that a session ended", exc_info=True)


def session_end(*, user: User, session_id: int) -> str:
    """End one of the member's own sessions (404 for anybody else's); its session key."""
    row = MemberSession.objects.filter(user=user, pk=session_id).first()
    if row is None:
        raise Http404
    _store().delete(row.session_key)
    row.delete()
    _notify(user.pk, row.session_key)
    return row.session_key


def session_signed_out(*, user: User, session_key: str) -> None:
    """The member signed this browser out: forget it.

    Its open sockets are not told at once: the tab that signed out is navigating away (to the
    provider's end-session page, perhaps), and a chat page told its session ended goes to the
    sign-in page, cutting that navigation short. The browser's other tabs end at their next
    frame or session check (chat/transport/consumer.py).
    """
    MemberSession.objects.filter(session_key=session_key).delete()


def sessions_end_all(*, user: User, keep_request=None) -> None:
    """Sign the member out everywhere: every session, recorded or not, stops signing them in.

    Raising the member's session epoch changes the hash each session carries (see
    ``User._get_session_auth_hash``), which also ends sessions opened before they were
    recorded. With ``keep_request`` the browser asking stays signed in, as after a password
    change.
    """
    User.objects.filter(pk=user.pk).update(session_epoch=F("session_epoch") + 1)
    user.refresh_from_db(fields=["session_epoch"])
    keep = keep_request.session.session_key if keep_request is not None else None
    ended = []
    for row in MemberSession.objects.filter(user=user).exclude(session_key=keep or ""):
        _store().delete(row.session_key)
        row.delete()
        ended.append(row.session_key)
    if keep_request is None:
        _notify(user.pk, None)
        return
    # The same session key with the new hash (Django's update_session_auth_hash would also
    # change the key, and this browser's open sockets would then end).
    keep_request.session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    keep_request.session.save()
    # Sockets of the browser that stays are left open; sessions never recorded end at their
    # socket's next periodic check.
    for key in ended:
        _notify(user.pk, key)


def describe_device(user_agent: str) -> str:
    """ "Firefox on Linux" from a User-Agent header: enough for a person to recognise a device."""
    ua = user_agent or ""
    browser = next(
        (
            name
            for token, name in (
                ("Edg/", "Edge"),
                ("OPR/", "Opera"),
                ("Firefox/", "Firefox"),
                ("Chromium/", "Chromium"),
                ("Chrome/", "Chrome"),
                ("Safari/", "Safari"),
                ("curl/", "curl"),
            )
            if token in ua
        ),
        "",
    )
    system = next(
        (
            name
            for token, name in (
                ("Android", "Android"),
                ("iPhone", "iOS"),
                ("iPad", "iPadOS"),
                ("Windows", "Windows"),
                ("Mac OS X", "macOS"),
                ("CrOS", "ChromeOS"),
                ("Linux", "Linux"),
            )
            if token in ua
        ),
        "",
    )
    if browser and system:
        return f"{browser} · {system}"
    return browser or system or ua[:60]

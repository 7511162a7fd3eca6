"""Django's database sessions, with the session's row read composed once (chat/prepared.py).

The websocket re-reads the member's session before every send (T23 in docs/security.md) and
every request reads it: the same row, the same rules (a session past its expiry is not
loaded), without the ORM composing the read each time. ``SESSION_ENGINE`` names this module.
"""

from __future__ import annotations

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from chat.prepared import PreparedRead

_SESSION = PreparedRead(
    lambda p: Session.objects.filter(session_key=p.session_key, expire_date__gt=p.now),
    session_key=Session._meta.pk,
    now=Session._meta.get_field("expire_date"),
)


class SessionStore(DatabaseSessionStore):
    def _get_session_from_db(self):
        try:
            return _SESSION.get(session_key=self.session_key, now=timezone.now())
        except Session.DoesNotExist:
            self._session_key = None
            return None

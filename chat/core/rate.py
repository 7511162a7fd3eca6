"""Per-member rates, shared by every worker process through Django's cache.

Two limits over the same sliding minute: requests (``PARLEY_RATE_LIMIT_PER_MINUTE``), and the
bytes of text a member's messages add to the database (``PARLEY_MESSAGE_BYTES_PER_MINUTE``).
Both are checked before a message is saved, so a refused message takes no room at all
(issue 20: a socket sending 150 messages of 100,000 characters once stored all of them).
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from chat.errors import RateLimited, TextRateLimited

RATE_WINDOW = 60  # seconds: the limit is "per minute"

# Read through this name so tests can move time forward without sleeping.
_clock = time.time


def rate_limit_hit(*, user) -> None:
    """Count one reply request of ``user``; raise RateLimited past the per-minute limit.

    Keyed by the member's id only: new sockets, sessions or a forged X-Forwarded-For cannot
    reset it (T32). A limit of 0 turns it off. Refused requests are not counted.
    """
    limit = settings.PARLEY_RATE_LIMIT_PER_MINUTE
    seconds = _hit("rate", user.pk, 1, limit)
    if seconds is not None:
        raise RateLimited(
            _("You can send %(limit)s messages a minute. Try again in %(seconds)s seconds.")
            % {"limit": limit, "seconds": seconds},
            retry_after=seconds,
        )


def message_admit(*, user, size: int) -> None:
    """Count one new message of ``size`` bytes, or refuse it before it is saved.

    Raises RateLimited past the request rate, TextRateLimited past the bytes a member may
    store a minute; a refused message is counted in neither.
    """
    rate_limit_hit(user=user)
    limit = settings.PARLEY_MESSAGE_BYTES_PER_MINUTE
    seconds = _hit("bytes", user.pk, size, limit)
    if seconds is not None:
        _unhit("rate", user.pk, 1)
        raise TextRateLimited(
            _("You can send %(limit)s of text a minute. Try again in %(seconds)s seconds.")
            % {"limit": filesizeformat(limit), "seconds": seconds},
            retry_after=seconds,
        )


def _key(kind: str, user_id, window: int) -> str:
    # The request counter keeps its historical key: a deploy does not reset running counts.
    return f"parley:{kind}:{user_id}:{window}"


def _hit(kind: str, user_id, amount: int, limit: int) -> int | None:
    """Add ``amount`` to the member's count, or return the whole seconds until it would fit.

    A sliding window approximated from two fixed one-minute windows (the previous window's
    count weighted by how much of it still overlaps the last minute), kept in Django's cache:
    Redis in production, so every worker process shares the counts. An amount larger than
    the whole limit counts as the limit, so it fits into an empty minute. A limit of 0 turns
    the check off.
    """
    if not limit or limit <= 0:
        return None
    amount = min(amount, limit)
    now = _clock()
    window = int(now // RATE_WINDOW)
    elapsed = now - window * RATE_WINDOW
    key = _key(kind, user_id, window)
    # Two windows must stay readable: this one and, during the next, as "previous".
    cache.add(key, 0, timeout=RATE_WINDOW * 2 + 5)
    try:
        current = cache.incr(key, amount)
    except ValueError:
        # The key vanished between add and incr (evicted): start this window again.
        cache.set(key, amount, timeout=RATE_WINDOW * 2 + 5)
        current = amount
    previous = cache.get(_key(kind, user_id, window - 1), 0)
    weight = 1 - elapsed / RATE_WINDOW
    if previous * weight + current <= limit:
        return None
    cache.decr(key, amount)
    return _retry_after(limit, amount, previous, current - amount, elapsed)


def _unhit(kind: str, user_id, amount: int) -> None:
    """Take back a count made this window (the request was refused by a later check)."""
    try:
        cache.decr(_key(kind, user_id, int(_clock() // RATE_WINDOW)), amount)
    except ValueError:
        pass  # the window turned or the key was evicted: nothing left to take back


def _retry_after(limit: int, amount: int, previous: int, current: int, elapsed: float) -> int:
    """Whole seconds until ``amount`` more fits, if nothing else is counted meanwhile."""
    if current + amount > limit:
        # This window alone is full: wait for the next, then for enough of this one to slide out.
        wait = (RATE_WINDOW - elapsed) + RATE_WINDOW * (1 - (limit - amount) / current)
    else:
        # The previous window's share is what is over: wait until enough of it slides out
        # (at the latest the next window, where this one's count alone fits).
        wait = min(RATE_WINDOW * (1 - (limit - amount - current) / previous) - elapsed, RATE_WINDOW - elapsed)
    return max(1, math.ceil(wait))

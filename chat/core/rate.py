"""The per-member request rate, shared by every worker process through Django's cache."""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext as _

from chat.errors import RateLimited

RATE_WINDOW = 60  # seconds: the limit is "per minute"

# Read through this name so tests can move time forward without sleeping.
_clock = time.time


def rate_limit_hit(*, user) -> None:
    """Count one reply request of ``user``; raise RateLimited past the per-minute limit.

    A sliding window approximated from two fixed one-minute windows (the previous window's
    count weighted by how much of it still overlaps the last minute), kept in Django's cache:
    Redis in production, so every worker process shares the counts. Keyed by the member's
    id only: new sockets, sessions or a forged X-Forwarded-For cannot reset it (T32).
    A limit of 0 turns it off. Refused requests are not counted.
    """
    limit = settings.PARLEY_RATE_LIMIT_PER_MINUTE
    if not limit or limit <= 0:
        return
    now = _clock()
    window = int(now // RATE_WINDOW)
    elapsed = now - window * RATE_WINDOW
    key = f"parley:rate:{user.pk}:{window}"
    # Two windows must stay readable: this one and, during the next, as "previous".
    cache.add(key, 0, timeout=RATE_WINDOW * 2 + 5)
    try:
        current = cache.incr(key)
    except ValueError:
        # The key vanished between add and incr (evicted): start this window again.
        cache.set(key, 1, timeout=RATE_WINDOW * 2 + 5)
        current = 1
    previous = cache.get(f"parley:rate:{user.pk}:{window - 1}", 0)
    weight = 1 - elapsed / RATE_WINDOW
    if previous * weight + current <= limit:
        return
    cache.decr(key)
    seconds = _retry_after(limit, previous, current - 1, elapsed)
    raise RateLimited(
        _("You can send %(limit)s messages a minute. Try again in %(seconds)s seconds.")
        % {"limit": limit, "seconds": seconds},
        retry_after=seconds,
    )


def _retry_after(limit: int, previous: int, current: int, elapsed: float) -> int:
    """Whole seconds until one more request fits, if no other request arrives meanwhile."""
    if current + 1 > limit:
        # This window alone is full: wait for the next, then for enough of this one to slide out.
        wait = (RATE_WINDOW - elapsed) + RATE_WINDOW * (1 - (limit - 1) / current)
    else:
        # The previous window's share is what is over: wait until enough of it slides out
        # (at the latest the next window, where this one's count alone fits).
        wait = min(RATE_WINDOW * (1 - (limit - 1 - current) / previous) - elapsed, RATE_WINDOW - elapsed)
    return max(1, math.ceil(wait))

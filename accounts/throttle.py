"""How django-axes identifies a client when counting failed sign-ins (T33).

Axes is pointed here by ``AXES_CLIENT_IP_CALLABLE``. Without a trusted proxy in front
(``PARLEY_TRUSTED_PROXY_COUNT=0``, the default) X-Forwarded-For is ignored entirely: anyone
can send that header, so trusting it would let an attacker pick a fresh address, and a fresh
failure counter, for every guess.

With N trusted proxies, each proxy appends the address it received the request from, so the
right-most N entries were written by proxies we trust and the N-th from the right is the
client as our outermost proxy saw it. Entries further left came from the client and are
ignored, which is why this does not use django-ipware's left-most default.
"""

from __future__ import annotations

import ipaddress
import time

from django.conf import settings
from django.core.cache import cache

SIGNUP_WINDOW = 3600  # seconds: PARLEY_SIGNUP_RATE_PER_HOUR counts sign-ups per clock hour


def _valid_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def client_ip_address(request) -> str | None:
    remote = request.META.get("REMOTE_ADDR")
    proxies = int(getattr(settings, "PARLEY_TRUSTED_PROXY_COUNT", 0) or 0)
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if len(hops) < proxies:
        # Fewer hops than proxies: the request did not come through the proxy chain we were
        # told about, so the header proves nothing. Count the connecting address instead.
        return remote
    candidate = hops[-proxies]
    return candidate if _valid_address(candidate) else remote


def _signup_key(request) -> str:
    return f"parley:signup:{client_ip_address(request) or 'unknown'}:{int(time.time() // SIGNUP_WINDOW)}"


def signup_allowed(request) -> bool:
    """Whether the client's address may create another account this hour (open and invite
    sign-up). Counted in the cache (Redis in a team deployment, so across workers), by the
    same address axes uses, so X-Forwarded-For counts only behind trusted proxies."""
    limit = int(getattr(settings, "PARLEY_SIGNUP_RATE_PER_HOUR", 0) or 0)
    return limit <= 0 or int(cache.get(_signup_key(request), 0)) < limit


def signup_counted(request) -> None:
    key = _signup_key(request)
    if not cache.add(key, 1, timeout=SIGNUP_WINDOW + 60):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=SIGNUP_WINDOW + 60)

"""How Parley identifies a client when counting failed sign-ins (T33) and new accounts.

Axes is pointed here by ``AXES_CLIENT_IP_CALLABLE``, and the sign-up limit counts by the same
address. Without a trusted proxy in front (``PARLEY_TRUSTED_PROXY_COUNT=0``, the default)
X-Forwarded-For is ignored entirely: anyone can send that header, so trusting it would let an
attacker pick a fresh address, and a fresh failure counter, for every guess.

With N trusted proxies, each proxy appends the address it received the request from, so the
right-most N entries were written by proxies we trust and the N-th from the right is the
client as our outermost proxy saw it. Entries further left came from the client and are
ignored, which is why this does not use django-ipware's left-most default.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _valid_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def client_ip_address(request) -> str | None:
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.PARLEY_TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if len(hops) < proxies:
        # Fewer hops than proxies: the request did not come through the proxy chain we were
        # told about, so the header proves nothing. Count the connecting address instead.
        return remote
    candidate = hops[-proxies]
    return candidate if _valid_address(candidate) else remote

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

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone


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


# --- password spraying: failed sign-ins per address, across accounts --------------------------


def address_failures(request) -> int:
    """Failed sign-ins from the client's address on any account within the cool-off time.

    Counted from django-axes' own records (one row per account, address and browser with its
    failures), so axes' cool-off, its reset commands (``axes_reset_ip``) and its admin page
    apply to this limit as they do to its own.
    """
    attempts = AccessAttempt.objects.filter(ip_address=client_ip_address(request))
    cool_off = get_cool_off(request)
    if cool_off is not None:  # None: axes keeps failures until an admin resets them
        now = getattr(request, "axes_attempt_time", None) or timezone.now()
        attempts = attempts.filter(attempt_time__gte=now - cool_off)
    return attempts.aggregate(failures=Sum("failures_since_start"))["failures"] or 0


def address_blocked(request) -> bool:
    limit = settings.PARLEY_LOGIN_ADDRESS_FAILURE_LIMIT
    return limit > 0 and address_failures(request) >= limit


class SignInHandler(AxesDatabaseHandler):
    """Axes' database handler, with a second limit: failed sign-ins per address across accounts.

    Axes locks an (account, address) pair after ``AXES_FAILURE_LIMIT`` failures, so one guess
    at each of many accounts (password spraying) was never slowed. This handler also locks the
    address after ``PARLEY_LOGIN_ADDRESS_FAILURE_LIMIT`` failures on any accounts, through axes'
    own flow: the backend refuses even the right password and AxesMiddleware answers with the
    lockout page, on the app and the admin sign-in alike. The limit is higher than axes' own
    because a whole office may share one address.
    """

    def is_locked(self, request, credentials=None) -> bool:
        return super().is_locked(request, credentials) or address_blocked(request)

    def user_login_failed(self, sender, credentials, request=None, **kwargs):
        super().user_login_failed(sender, credentials, request=request, **kwargs)
        # The failure that reaches the limit is answered with the lockout page, as axes does.
        if request is not None and not getattr(request, "axes_locked_out", False) and address_blocked(request):
            request.axes_locked_out = True
            request.axes_credentials = credentials

"""The password sign-in's way through a second factor, shared by the sign-in views
(accounts/views.py) and the two-factor set-up a policy may require (accounts/security_views.py).

A password sign-in that needs a second factor does not sign anyone in until the code is
right: the person is "pending" in their session (for PENDING_SECONDS) and nothing else.
"""

from __future__ import annotations

import time

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib.auth import login, user_login_failed
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme

from accounts import selectors, throttle, twofactor
from accounts.models import User

PENDING = "_parley_pending_sign_in"
PENDING_SECONDS = 300


def safe_next(request, url: str | None) -> str:
    hosts = {request.get_host()}
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts=hosts, require_https=request.is_secure()):
        return url
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def hold_or_sign_in(request, user: User, backend: str, next_url: str):
    """Finish a password sign-in, or hold it for a second factor (or its set-up) first."""
    policy = selectors.sign_in_policy()
    has_code = twofactor.two_factor_enabled(user=user)
    if has_code or policy.two_factor_required(user):
        request.session.cycle_key()  # nothing said before this point carries over
        request.session[PENDING] = {"user": user.pk, "backend": backend, "next": next_url, "at": time.time()}
        return redirect("two_factor_verify" if has_code else "two_factor_setup")
    login(request, user, backend=backend)
    return redirect(next_url)


def pending_user(request) -> tuple[User, dict] | tuple[None, None]:
    """Who passed the password step in this browser and still owes a second factor."""
    pending = request.session.get(PENDING)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        request.session.pop(PENDING, None)
        return None, None
    user = User.objects.filter(pk=pending.get("user"), is_active=True).first()
    return (user, pending) if user else (None, None)


def finish_pending(request, user: User, pending: dict):
    request.session.pop(PENDING, None)
    login(request, user, backend=pending["backend"])
    return redirect(safe_next(request, pending.get("next")))


def axes_credentials(username: str) -> dict:
    return {"username": username}


def failure_counted(request, username: str) -> bool:
    """Count a wrong second-factor code like a wrong password, on the same account and
    address (T33); whether sign-in is still allowed afterwards."""
    credentials = axes_credentials(username)
    user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    return AxesProxyHandler.is_allowed(request, credentials)


def allowed(request, username: str) -> bool:
    return AxesProxyHandler.is_allowed(request, axes_credentials(username))


def lockout(request, *args, **kwargs):
    """What django-axes answers once sign-in is locked (``AXES_LOCKOUT_CALLABLE``).

    Our own view rather than axes' template path so that the answer is the same page for
    every client: axes' AJAX branch would add ``Access-Control-Allow-Origin: *`` (T22).
    Axes calls this with (request, response, credentials) or, from its async path,
    (request, credentials); neither is needed here.
    """
    cool_off = get_cool_off(request)
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    # The address-wide lock (password spraying) says so: another account would not help.
    address_blocked = throttle.address_blocked(request)
    limit = settings.PARLEY_LOGIN_ADDRESS_FAILURE_LIMIT if address_blocked else settings.AXES_FAILURE_LIMIT
    return render(
        request,
        "registration/lockout.html",
        {"cooloff_minutes": minutes, "failure_limit": limit, "address_blocked": address_blocked},
        status=429,
    )

"""Who is calling the member API: a member's token in ``Authorization: Bearer``, nothing else.

- Only the header counts: a session cookie alone never authorizes ``/v1/`` (and, without one,
  no CSRF token is needed); a token in the query string is refused, since URLs end up in
  logs, histories and Referer headers (T46).
- A token is recognised by its hash, compared in constant time (chat.services.api_tokens).
- Failed attempts are counted per client address (the address django-axes uses, so
  X-Forwarded-For only counts behind trusted proxies) in the shared cache; past
  ``PARLEY_API_AUTH_FAILURE_LIMIT`` in a minute, every attempt from that address is refused
  with 429 and ``Retry-After`` until the minute ends, a right token included (T46).
- A revoked or expired token, a deactivated member's, or one whose member the admin's API
  policy leaves out stops at once: every request reads the row.
"""

from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext as _

from accounts.throttle import client_ip_address
from chat.models import TOKEN_PREFIX
from chat.services.api_tokens import api_access_allowed, api_token_authenticate
from chat.v1.calls import Caller, Credentials
from chat.v1.errors import ApiError

FAILURE_WINDOW = 60  # seconds
# Query parameters that clients use to pass a key in a URL.
KEY_PARAMETERS = {"api_key", "api-key", "apikey", "key", "token", "access_token", "auth", "authorization"}


def _failure_key(address: str | None, window: int) -> str:
    return f"parley:api-auth-failures:{address or 'unknown'}:{window}"


def _failure_counted(address: str | None) -> None:
    key = _failure_key(address, int(time.time() // FAILURE_WINDOW))
    cache.add(key, 0, timeout=FAILURE_WINDOW + 5)
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=FAILURE_WINDOW + 5)


def _refuse_key_in_url(request) -> None:
    for name, values in request.GET.lists():
        if name.lower() in KEY_PARAMETERS or any(TOKEN_PREFIX in value for value in values):
            raise ApiError(
                401,
                _(
                    "API keys are not accepted in the URL, where logs and browser histories keep them. Send "
                    "it in the Authorization header (Authorization: Bearer YOUR_KEY), and revoke this key on "
                    "Parley's API keys page: it may have been recorded."
                ),
                code="api_key_in_url",
            )


def authenticate(header: str, address: str | None) -> Caller:
    """The caller the Authorization header names, or the OpenAI API's refusal: one trip to the
    database thread (the throttle, the token, its member, the admin's policy)."""
    limit = settings.PARLEY_API_AUTH_FAILURE_LIMIT
    window = int(time.time() // FAILURE_WINDOW)
    if limit > 0 and int(cache.get(_failure_key(address, window), 0)) >= limit:
        wait = (window + 1) * FAILURE_WINDOW - time.time()
        raise ApiError(
            429,
            _("Too many requests with an invalid API key came from your address. Try again in %(seconds)s seconds.")
            % {"seconds": max(1, int(wait + 0.999))},
            type="requests",
            code="rate_limit_exceeded",
            retry_after=wait,
        )
    if not header.strip():
        raise ApiError(
            401,
            _(
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can make one on Parley's API "
                "keys page."
            ),
        )
    scheme, _sep, secret = header.strip().partition(" ")
    token = None
    if scheme.lower() == "bearer" and secret.strip():
        token = api_token_authenticate(secret=secret.strip(), address=address)
    if token is None:
        _failure_counted(address)
        raise ApiError(
            401,
            _(
                "Incorrect API key provided. It may be mistyped, revoked or expired. You can find your API "
                "keys on Parley's API keys page."
            ),
            code="invalid_api_key",
        )
    if not api_access_allowed(user=token.user):
        raise ApiError(
            403,
            _("The API is not available to your account. Ask an admin if you need it."),
            code="api_access_denied",
        )
    return Caller(token=token, user=token.user)


def credentials_for(request) -> Credentials:
    """The key of ``request``, to be checked on the database thread (Credentials.caller); a key
    in the URL is refused at once."""
    _refuse_key_in_url(request)
    return Credentials(header=request.headers.get("Authorization", ""), address=client_ip_address(request))


async def caller_for(request) -> Caller:
    """The caller of ``request``, or the :class:`ApiError` the OpenAI API would answer."""
    return await sync_to_async(credentials_for(request).caller)()

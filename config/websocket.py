"""The websocket's origin check: Parley's own origin (scheme, host and port) or a trusted one.

Channels' ``AllowedHostsOriginValidator`` compared only the Origin's host name with
``ALLOWED_HOSTS``, so ``http://localhost:9999`` was accepted for a server on port 8000, and
``http://chat.example.com:8080`` for ``https://chat.example.com``. A websocket handshake is a
request like a form post, so it gets the check Django's CSRF middleware gives a form post's
Origin (T20, T21), by calling that check itself: the Origin must equal the handshake's own
scheme and Host (the Host one of ``DJANGO_ALLOWED_HOSTS``; https when the connection is wss, or
when ``SECURE_PROXY_SSL_HEADER`` says a TLS proxy received it), or be one of
``DJANGO_CSRF_TRUSTED_ORIGINS``. Settings are read per handshake, as Django reads them per request.
"""

from __future__ import annotations

import io
import logging

from django.core.handlers.asgi import ASGIRequest
from django.middleware.csrf import CsrfViewMiddleware

logger = logging.getLogger(__name__)


def _handshake_request(scope) -> ASGIRequest:
    """The handshake as the HTTP request it is, so Django's host and scheme rules apply to it."""
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    return ASGIRequest({**scope, "type": "http", "method": "GET", "scheme": scheme}, io.BytesIO())


def origin_allowed(scope) -> bool:
    request = _handshake_request(scope)
    if "HTTP_ORIGIN" not in request.META:
        return False  # every browser sends one with a websocket handshake
    # The CSRF middleware's own comparison (a private method, pinned by
    # tests/config/test_websocket_origin.py): one rule for form posts and websockets.
    return CsrfViewMiddleware(lambda request: None)._origin_verified(request)


class SameOriginValidator:
    """Refuse a websocket from any origin but Parley's own or a trusted one, before accept."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator only guards websocket connections")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        await _refuse(receive, send)


async def _refuse(receive, send) -> None:
    """Close the handshake before accepting it (daphne answers 403). Not through Channels'
    ``WebsocketDenier``: a consumer first takes a channel on the layer, a trip to Redis in the
    team deployment, and keeps waiting on it after the close until the socket's disconnect."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close"})

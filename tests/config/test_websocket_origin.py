"""The websocket accepts only Parley's own origin, scheme, host and port, or a trusted one (T20, T21).

Compared as Django's CSRF check compares a form post's Origin: with the handshake's own scheme
and Host (which must be one of DJANGO_ALLOWED_HOSTS), then with DJANGO_CSRF_TRUSTED_ORIGINS.
"""

import pytest
from channels.testing import WebsocketCommunicator

from tests.chat.wsclient import handshake, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_titles(settings):
    settings.PARLEY_AUTO_TITLE = False


async def _connects(alice, *, host: str, origin: str, scheme: str | None = None, **headers) -> bool:
    from config.asgi import application

    cookie = await session_cookie(alice)
    sent = [(b"host", host.encode()), (b"origin", origin.encode()), (b"cookie", f"sessionid={cookie}".encode())]
    sent += [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=sent)
    if scheme is not None:
        communicator.scope["scheme"] = scheme
    return await handshake(communicator)


async def test_the_servers_own_origin_with_its_port_is_accepted(alice):
    assert await _connects(alice, host="localhost:8000", origin="http://localhost:8000")


async def test_an_origin_on_another_port_of_the_same_host_is_refused(alice):
    assert not await _connects(alice, host="localhost:8000", origin="http://localhost:9999")
    assert not await _connects(alice, host="localhost:8000", origin="http://localhost")


async def test_an_origin_with_another_scheme_is_refused(alice):
    assert not await _connects(alice, host="localhost:8000", origin="https://localhost:8000")
    assert await _connects(alice, host="localhost:8000", origin="https://localhost:8000", scheme="wss")
    assert not await _connects(alice, host="localhost:8000", origin="http://localhost:8000", scheme="wss")


async def test_behind_a_tls_proxy_only_the_https_origin_is_accepted(alice, settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    forwarded = {"x_forwarded_proto": "https"}
    assert await _connects(alice, host="chat.example.com", origin="https://chat.example.com", **forwarded)
    assert not await _connects(alice, host="chat.example.com", origin="http://chat.example.com:8080", **forwarded)
    assert not await _connects(alice, host="chat.example.com", origin="http://chat.example.com", **forwarded)


async def test_a_host_that_is_not_allowed_is_refused_even_from_its_own_origin(alice):
    # A page on a rebound DNS name talks to Parley with its own name as Host and Origin.
    assert not await _connects(alice, host="evil.example", origin="http://evil.example")


async def test_trusted_origins_are_the_exceptions(alice, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com:8443", "https://*.team.example"]
    assert await _connects(alice, host="localhost:8000", origin="https://chat.example.com:8443")
    assert not await _connects(alice, host="localhost:8000", origin="https://chat.example.com")
    assert await _connects(alice, host="localhost:8000", origin="https://eu.team.example")
    assert not await _connects(alice, host="localhost:8000", origin="http://eu.team.example")


async def test_a_handshake_without_a_host_header_is_refused(alice):
    from config.asgi import application

    cookie = await session_cookie(alice)
    headers = [(b"origin", b"http://localhost"), (b"cookie", f"sessionid={cookie}".encode())]
    assert not await handshake(WebsocketCommunicator(application, "/ws/chat/", headers=headers))


async def test_a_refused_handshake_takes_no_channel_on_the_layer(alice, monkeypatch):
    # A consumer takes a channel before it can close (a trip to Redis in the team deployment);
    # a handshake from a wrong origin is closed without one.
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    taken = []
    real = layer.new_channel

    async def new_channel(*args, **kwargs):
        taken.append(True)
        return await real(*args, **kwargs)

    monkeypatch.setattr(layer, "new_channel", new_channel)
    assert not await _connects(alice, host="localhost:8000", origin="http://localhost:9999")
    assert taken == []
    assert await _connects(alice, host="localhost:8000", origin="http://localhost:8000")
    assert taken == [True]

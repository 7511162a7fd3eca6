"""A live Parley for the member API's tests: daphne itself, serving config.asgi in a thread of
the test process, on a free loopback port, for the whole session.

Real sockets and real streaming (what the official ``openai`` package and plain HTTP see),
yet the same process: the server reads the test database (tests using it are
``transactional_db``, so what a test writes is committed and visible), the same cache (the
rate limits), and the settings a test overrides with the ``settings`` fixture.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from tests.conftest import create_default_model


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def live_url():
    # daphne.server installs Twisted's asyncio reactor when imported: first, as daphne's CLI does.
    from daphne.server import Server
    from twisted.internet import reactor

    from config.asgi import application

    port = _free_port()
    server = Server(
        application,
        endpoints=[f"tcp:port={port}:interface=127.0.0.1"],
        signal_handlers=False,
        verbosity=0,
    )
    thread = threading.Thread(target=server.run, name="daphne", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("daphne did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    reactor.callFromThread(reactor.stop)
    thread.join(10)


@pytest.fixture
def api_model(transactional_db, fake_upstream):
    """The fake upstream as a provider with moderation on, its default chat model (gpt-4o-mini),
    an embedding model and a legacy completions model."""
    from chat.models import ChatModel, ModelKind, Provider

    provider = Provider(name="Fake", base_url=fake_upstream.base_url, use_moderation=True)
    provider.api_key = "sk-test-KEY0123456789abcd"
    provider.save()
    model = create_default_model(provider)
    ChatModel.objects.create(
        provider=provider,
        model_id="text-embedding-3-small",
        kind=ModelKind.EMBEDDING,
        input_price_per_million="0.02",
    )
    ChatModel.objects.create(provider=provider, model_id="gpt-3.5-turbo-instruct", max_output_tokens=256)
    return model


@pytest.fixture
def make_token(transactional_db):
    """``make_token(user, **options)``: a new token's secret for ``user``."""
    from chat.services.api_tokens import api_token_create

    def make(user, name="script", **options):
        return api_token_create(user=user, name=name, **options).secret

    return make


@pytest.fixture
def alice_key(alice, api_model, make_token):
    return make_token(alice)


@pytest.fixture
def openai_client(live_url):
    """``openai_client(key)``: the official client pointed at Parley, without retries."""
    from openai import OpenAI

    clients = []

    def make(key, **options):
        client = OpenAI(api_key=key, base_url=f"{live_url}/v1", max_retries=0, timeout=30, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def error(self) -> dict:
        return self.json()["error"]


class Http:
    """Plain HTTP/1.1 to the live server (the standard library's client, nothing OpenAI-aware)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, path: str, body=None, headers=None) -> Answer:
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        connection = self.connection()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def post(self, path: str, body=None, key: str | None = None, headers=None) -> Answer:
        return self.request("POST", path, body, {**(bearer(key) if key else {}), **(headers or {})})

    def get(self, path: str, key: str | None = None, headers=None) -> Answer:
        return self.request("GET", path, None, {**(bearer(key) if key else {}), **(headers or {})})


@pytest.fixture(name="http")
def http_client(live_url):
    """Plain HTTP to the live server (:class:`Http`)."""
    return Http(live_url)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def in_a_day():
    return timezone.now() + timedelta(days=1)

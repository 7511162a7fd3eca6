"""A member's browser tab, as far as the websocket protocol goes: for consumer tests.

Connects to the full ``config.asgi.application`` with a real session cookie and an Origin
header, and assembles replies exactly as docs/websocket-protocol.md tells a client to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from autobahn.exception import Disconnected
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from tests.reply_texts import apply_frame

ORIGIN = "http://localhost"
HOST = "localhost"  # the Host a browser on ORIGIN sends; the origin check compares the two


@database_sync_to_async
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


class Tab:
    def __init__(self, communicator: WebsocketCommunicator):
        self.ws = communicator
        self.frames: list[dict] = []
        self.texts: dict[str, str] = {}
        self.gaps = 0

    @classmethod
    async def open(cls, user=None, *, origin: str | None = ORIGIN, cookie: str | None = None, application=None) -> Tab:
        """``application``: the ASGI app to connect to; ``config.asgi.application`` by default."""
        if application is None:
            from config.asgi import application

        headers = [(b"host", HOST.encode())]
        if user is not None or cookie is not None:
            key = cookie or await session_cookie(user)
            headers.append((b"cookie", f"sessionid={key}".encode()))
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        tab = cls(WebsocketCommunicator(application, "/ws/chat/", headers=headers))
        tab.connected, tab.close_code = await tab.ws.connect(timeout=5)
        return tab

    async def send(self, frame) -> None:
        # send_input, not send_to: an empty text frame is a frame a client can send too.
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.ws.send_input({"type": "websocket.receive", "text": text})

    async def next(self, timeout: float = 5) -> dict:
        frame = json.loads(await self.ws.receive_from(timeout=timeout))
        self._assemble(frame)
        self.frames.append(frame)
        return frame

    async def until(self, predicate, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame in {timeout}s; got {[f['type'] for f in self.frames]}")
            frame = await self.next(timeout=remaining)
            if predicate(frame):
                return frame

    async def until_type(self, kind: str, timeout: float = 10) -> dict:
        return await self.until(lambda f: f["type"] == kind, timeout)

    def _assemble(self, frame: dict) -> None:
        if not apply_frame(self.texts, frame):
            self.gaps += 1

    async def send_message(self, content: str, *, conversation_id=None, client_id: str | None = None, **extra):
        await self.send(
            {
                "type": "send",
                "conversation_id": conversation_id,
                "client_id": client_id or f"c-{time.monotonic_ns()}",
                "content": content,
                **extra,
            }
        )

    async def reply(self, timeout: float = 10) -> dict:
        """Wait for the reply to end; returns the final message."""
        return (await self.until_type("reply.done", timeout))["message"]

    async def close(self) -> None:
        await self.ws.disconnect()


async def handshake(communicator: WebsocketCommunicator) -> bool:
    """Whether the application accepts ``communicator``'s handshake; the application is ended
    either way, as daphne ends it when a socket closes. A refused one left running is cancelled
    only when the test's event loop closes, and on the Redis layer that cancellation can hang
    the loop's teardown past the test's timeout."""
    connected, _ = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return connected


async def settle(timeout: float = 10) -> None:
    """Wait for every reply task of this process to end."""
    from chat import runtime

    pending = runtime.running()
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    await asyncio.sleep(0)


class DaphneRules:
    """The application as daphne serves it, where WebsocketCommunicator is more forgiving.

    Between the browser's close frame and the ``websocket.disconnect`` daphne then delivers,
    every ``websocket.send`` raises autobahn's ``Disconnected`` ("Attempt to send on a closed
    protocol"); set ``closing`` to open that window. ``failing``: an exception every send
    raises instead (a real failure). An exception that escapes the application is logged as
    daphne's server logs it, traceback included.
    """

    def __init__(self, application=None):
        if application is None:
            from config.asgi import application
        self.application = application
        self.closing = False
        self.failing: Exception | None = None

    async def __call__(self, scope, receive, send):
        async def guarded(message):
            if message["type"] == "websocket.send":
                if self.failing is not None:
                    raise self.failing
                if self.closing:
                    raise Disconnected("Attempt to send on a closed protocol")
            await send(message)

        try:
            await self.application(scope, receive, guarded)
        except Exception as exc:
            logging.getLogger("daphne.server").error("Exception inside application: %s", exc, exc_info=exc)
            raise

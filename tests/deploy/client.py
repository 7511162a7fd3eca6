"""A member's browser tab over a real TCP connection, and plain HTTP requests, for deploy tests.

The tab speaks docs/websocket-protocol.md through the ``websockets`` library (it answers
daphne's pings as a browser does) and assembles replies the way the protocol tells a client
to, noting when each frame arrived.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time

from websockets.asyncio.client import connect

from tests.reply_texts import apply_frame

# What nginx sends behind TLS, and what lets the production settings accept plain HTTP here.
FORWARDED = {"X-Forwarded-Proto": "https"}


class NetTab:
    def __init__(self, ws):
        self.ws = ws
        self.frames: list[tuple[float, dict]] = []
        self.texts: dict[str, str] = {}
        self.conversation_id: str | None = None
        self.gaps = 0  # deltas that arrived past the text held, each answered with a sync
        self._syncing = False

    @classmethod
    async def open(cls, port: int, session: str | None, *, timeout: float = 20) -> NetTab:
        headers = dict(FORWARDED)
        if session:
            headers["Cookie"] = f"sessionid={session}"
        ws = await connect(
            f"ws://127.0.0.1:{port}/ws/chat/",
            origin=f"https://127.0.0.1:{port}",
            additional_headers=headers,
            # Only the server pings: an idle-socket test must not be kept alive by the client.
            ping_interval=None,
            open_timeout=timeout,
            close_timeout=2,
        )
        return cls(ws)

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, frame: dict) -> None:
        if isinstance(frame.get("conversation_id"), str):
            self.conversation_id = frame["conversation_id"]
        await self.ws.send(json.dumps(frame))

    async def next(self, timeout: float = 20) -> dict:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append((time.monotonic(), frame))
        self._assemble(frame)
        return frame

    async def until(self, predicate, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame in {timeout}s; got {[f['type'] for _, f in self.frames]}")
            try:
                frame = await self.next(timeout=remaining)
            except TimeoutError:
                continue
            if predicate(frame):
                return frame

    async def until_type(self, kind: str, timeout: float = 30) -> dict:
        return await self.until(lambda f: f["type"] == kind, timeout)

    async def reply_done(self, message_id: str, timeout: float = 60) -> dict:
        frame = await self.until(lambda f: f["type"] == "reply.done" and f["message"]["id"] == message_id, timeout)
        return frame["message"]

    async def new_chat(self, content: str, *, client_id: str = "c1") -> tuple[str, str]:
        """Send the first message of a new conversation: its id and the reply's message id."""
        await self.send({"type": "send", "conversation_id": None, "client_id": client_id, "content": content})
        created = await self.until_type("conversation.created")
        reply = await self.assistant_created()
        return created["conversation"]["id"], reply

    async def say(self, conversation_id: str, content: str, *, client_id: str) -> str:
        await self.send(
            {"type": "send", "conversation_id": conversation_id, "client_id": client_id, "content": content}
        )
        return await self.assistant_created()

    async def assistant_created(self, timeout: float = 30) -> str:
        frame = await self.until(
            lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant" or f["type"] == "error",
            timeout,
        )
        assert frame["type"] != "error", frame
        return frame["message"]["id"]

    def deltas(self, message_id: str) -> list[tuple[float, dict]]:
        return [(t, f) for t, f in self.frames if f["type"] == "reply.delta" and f["message_id"] == message_id]

    def arrival(self, kind: str, message_id: str) -> float:
        for t, f in self.frames:
            if f["type"] == kind and (f.get("message_id") or f.get("message", {}).get("id")) == message_id:
                return t
        raise AssertionError(f"no {kind} for {message_id}")

    def _assemble(self, frame: dict) -> None:
        if frame["type"] == "conversation.created":
            self.conversation_id = frame["conversation"]["id"]
        elif frame["type"] == "conversation.state":
            self._syncing = False
        if not apply_frame(self.texts, frame):
            # A delta went missing on the way (the channel layer is allowed to drop messages;
            # docs/websocket-protocol.md): do what the browser does, ask for the saved state and
            # the live snapshot, and fold on. ``gaps`` counts how often that happened.
            self.gaps += 1
            if not self._syncing and self.conversation_id is not None:
                self._syncing = True
                asyncio.ensure_future(self.send({"type": "sync", "conversation_id": self.conversation_id}))


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    session: str | None = None,
    headers: dict | None = None,
    body: bytes | None = None,
    timeout: float = 20,
):
    """One request; returns (status, headers as a dict with lower-case names, body, cookies)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sent = {"Host": f"127.0.0.1:{port}", **FORWARDED, **(headers or {})}
    if session:
        sent["Cookie"] = "; ".join(filter(None, [sent.get("Cookie"), f"sessionid={session}"]))
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        cookies = {}
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                cookies[key] = rest.split(";", 1)[0]
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data, cookies
    finally:
        connection.close()

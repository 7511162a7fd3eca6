"""The two clients every relay scenario compares: a member's tab on Parley's websocket, and a
program talking to the upstream directly.

Both time one reply from the moment the request leaves the client: the time to the first
content (TTFT) and to the end of the reply. The tab is opened before the clock starts, as a
browser tab is; the direct client keeps its HTTP/1.1 connection alive between requests, as
Parley's own upstream client does, so neither side pays a connect in the timed part.

The direct client is a small raw-socket HTTP/1.1 + SSE reader on asyncio rather than a full
HTTP library: the upstream's own figure should be the best the upstream can do, so that any
difference is Parley's.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from websockets.asyncio.client import connect

from bench.harness import MODEL_ID
from tests.fakeupstream import default_reply


def prompt(tokens: int, token_delay: float, tag: str, first_token_delay: float = 0) -> str:
    """A user message that makes the fake upstream answer ``tokens`` deltas ``token_delay`` apart,
    the first ``first_token_delay`` seconds after the request.

    ``tag`` makes each reply's text different (the fake picks its words by a hash of the message).
    """
    first = f" first_token_delay={first_token_delay:g}" if first_token_delay else ""
    return f"bench {tag} [[fake tokens={tokens} token_delay={token_delay:g}{first}]]"


@dataclass(frozen=True)
class Shape:
    """What the upstream streams for each reply of a load: how many tokens, how far apart, and
    after how long the first (a real model thinks before its first token)."""

    tokens: int = 200
    token_delay: float = 0.02
    first_token_delay: float = 0.0

    def prompt(self, tag: str) -> str:
        return prompt(self.tokens, self.token_delay, tag, self.first_token_delay)


def expected_text(content: str, tokens: int) -> str:
    """The exact reply the fake upstream writes for ``content`` (tests/fakeupstream.py)."""
    return "".join(default_reply(content, tokens))


@dataclass
class Reply:
    ttft: float | None = None  # seconds from the request to the first content
    total: float | None = None  # seconds from the request to the end of the reply
    text: str = ""
    status: str = ""  # "complete" when it ended normally
    error: str = ""
    message_id: str = ""
    conversation_id: str = ""
    frames: int = 0
    gaps: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "complete" and not self.error and self.gaps == 0


class Tab:
    """A signed-in browser tab, as far as docs/websocket-protocol.md goes."""

    def __init__(self, ws):
        self.ws = ws

    @classmethod
    async def open(cls, url: str, origin: str, session: str) -> Tab:
        ws = await connect(
            url,
            origin=origin,
            additional_headers={"Cookie": f"sessionid={session}"},
            max_size=None,
            open_timeout=60,
            ping_interval=None,
        )
        return cls(ws)

    async def close(self) -> None:
        await self.ws.close()

    async def ask(
        self, content: str, *, conversation_id: str | None = None, timeout: float = 120, reply: Reply | None = None
    ) -> Reply:
        """Send ``content`` and read its reply to the end; ``reply``: the caller's object to fill,
        to watch it while it streams (its ``ttft`` is set at the first token)."""
        reply = reply if reply is not None else Reply()
        client_id = f"b{time.perf_counter_ns()}"
        frame = {"type": "send", "conversation_id": conversation_id, "client_id": client_id, "content": content}
        started = time.perf_counter()
        await self.ws.send(json.dumps(frame))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = json.loads(await self.ws.recv())
                    reply.frames += 1
                    if self._take(event, reply, started):
                        break
        except TimeoutError:
            reply.error = reply.error or "timeout"
        except Exception as exc:  # noqa: BLE001 - a closed socket or a bad frame is an error to count
            reply.error = reply.error or f"{type(exc).__name__}: {exc}"
        return reply

    @staticmethod
    def _take(event: dict, reply: Reply, started: float) -> bool:
        """Fold one server frame into ``reply``; True when the reply is over."""
        kind = event.get("type")
        if kind == "reply.delta":
            if reply.ttft is None:
                reply.ttft = time.perf_counter() - started
            offset, text = event["offset"], event["text"]
            if offset > len(reply.text):
                reply.gaps += 1
            reply.text += text[len(reply.text) - offset :]
        elif kind == "conversation.created":
            reply.conversation_id = event["conversation"]["id"]
        elif kind == "message.created" and event["message"]["role"] == "assistant":
            reply.message_id = event["message"]["id"]
        elif kind == "reply.snapshot" and len(event["text"]) > len(reply.text):
            reply.text = event["text"]
        elif kind == "reply.done":
            reply.total = time.perf_counter() - started
            message = event["message"]
            reply.status = message["status"]
            reply.message_id = message["id"]
            if message.get("error"):
                reply.error = message["error"].get("code") or "error"
            if message["content"] != reply.text:
                reply.error = reply.error or "streamed text differs from the saved reply"
            return True
        elif kind == "error":
            reply.error = event.get("code") or "error"
            return True
        return False


class Direct:
    """One keep-alive HTTP/1.1 connection to an OpenAI-compatible /v1/chat/completions, streaming:
    the upstream's (with its bench key), or Parley's member API (with a member's token)."""

    def __init__(self, port: int, host: str = "127.0.0.1", key: str = "sk-bench-0123456789abcdef"):
        self.host, self.port, self.key = host, port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Direct:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass

    def _request(self, content: str) -> bytes:
        body = json.dumps(
            {
                "model": MODEL_ID,
                "messages": [{"role": "user", "content": content}],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.key}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def ask(self, content: str, *, timeout: float = 120) -> Reply:
        if self.writer is None:
            await self.open()
        reply = Reply()
        parts: list[str] = []
        started = time.perf_counter()
        self.writer.write(self._request(content))
        try:
            async with asyncio.timeout(timeout):
                await self._stream(reply, parts, started)
        except TimeoutError:
            reply.error = "timeout"
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            reply.error = f"{type(exc).__name__}: {exc}"
        reply.text = "".join(parts)
        if reply.error:
            await self.close()
            self.writer = None
        return reply

    async def _stream(self, reply: Reply, parts: list[str], started: float) -> None:
        reader = self.reader
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise ValueError(f"upstream answered {status.decode()}")
        if b"chunked" not in head.lower():
            raise ValueError("expected a chunked event stream")
        buffer = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return
            buffer += (await reader.readexactly(size + 2))[:-2]
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        reply.total = time.perf_counter() - started
                        reply.status = "complete"
                        continue
                    chunk = json.loads(data)
                    reply.frames += 1
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            if reply.ttft is None:
                                reply.ttft = time.perf_counter() - started
                            parts.append(text)

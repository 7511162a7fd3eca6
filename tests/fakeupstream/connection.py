"""One client connection of the fake upstream, and the record of one request."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
from dataclasses import dataclass
from typing import Any


@dataclass
class RequestRecord:
    id: int
    method: str
    path: str
    headers: dict[str, str]
    raw_body: bytes
    body: Any
    received_at: float
    status: int | None = None
    deltas_sent: int = 0
    finished_at: float | None = None
    disconnected_at: float | None = None
    # A multipart request's fields: for audio uploads (tests/fakeupstream/audio.py) text fields
    # and files (name, type, size, SHA-256) together; for images (tests/fakeupstream/images.py)
    # the text fields here and the files apart, their bytes in ``file_bytes``.
    form: dict[str, str] = dataclasses.field(default_factory=dict)
    files: dict[str, dict] = dataclasses.field(default_factory=dict)
    file_bytes: dict[str, bytes] = dataclasses.field(default_factory=dict)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    def as_json(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("raw_body")
        data.pop("file_bytes")
        return data


class Disconnected(Exception):
    """The client went away while we were answering."""


class ServerClosed(Exception):
    """We dropped the connection on purpose (a scripted reset)."""


class Conn:
    """One TCP connection: buffered reads plus a watcher that notices the client leaving."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.gone = asyncio.Event()
        self._watch: asyncio.Task | None = None
        self.crlf = "\n"

    async def read_until(self, sep: bytes, limit: int = 1 << 20) -> bytes | None:
        while True:
            idx = self.buf.find(sep)
            if idx >= 0:
                out = bytes(self.buf[: idx + len(sep)])
                del self.buf[: idx + len(sep)]
                return out
            if len(self.buf) > limit:
                return None
            chunk = await self.reader.read(65536)
            if not chunk:
                return None
            self.buf += chunk

    async def read_exactly(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            chunk = await self.reader.read(65536)
            if not chunk:
                return None
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def start_watching(self) -> None:
        """While we answer, a read of b"" means the client closed: HTTP/1.1 clients don't pipeline."""
        self.gone.clear()

        async def watch():
            try:
                chunk = await self.reader.read(65536)
            except (ConnectionError, OSError):
                chunk = b""
            if chunk:
                self.buf += chunk  # a pipelined request, kept for the next round
            else:
                self.gone.set()

        self._watch = asyncio.ensure_future(watch())

    async def stop_watching(self) -> None:
        if self._watch is not None and not self._watch.done():
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        self._watch = None

    async def write(self, data: bytes) -> None:
        if self.gone.is_set() or self.writer.is_closing():
            raise Disconnected
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.gone.set()
            raise Disconnected from None

    async def pause(self, seconds: float) -> None:
        """Sleep, but stop at once if the client leaves meanwhile."""
        if seconds > 0.25:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.gone.wait(), seconds)
        elif seconds > 0:
            # Short gaps between tokens: a plain sleep is several times cheaper than wait_for,
            # which matters with 500 streams, and the next write notices a departed client.
            await asyncio.sleep(seconds)
        if self.gone.is_set():
            raise Disconnected

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0), like a crashed or overloaded proxy."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
        self.gone.set()


def frame(data: bytes, chunked: bool) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

"""The fake upstream's server: control from tests, the asyncio listener, request routing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
import uuid
from collections import deque
from typing import Any

from tests.fakeupstream import audio, embeddings, images
from tests.fakeupstream.behaviour import (
    DEFAULT_MODELS,
    MODERATION_CATEGORIES,
    STATUS_TEXT,
    Behaviour,
    coerce_knobs,
    default_error_message,
    default_error_type,
    error_body,
    last_user_text,
    parse_directive,
)
from tests.fakeupstream.connection import (
    Conn,
    Disconnected,
    RequestRecord,
    ServerClosed,
)
from tests.fakeupstream.stream import ChatStream


class FakeUpstream(ChatStream):
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.models = list(DEFAULT_MODELS)
        self.moderation_triggers = {"FLAGME": "violence", "HATEME": "hate"}
        self.require_key: str | None = None
        self.image_answer = "b64"  # or "url", "not_png" (tests/fakeupstream/images.py)
        self.transcript = audio.DEFAULT_TRANSCRIPT
        self.translation = audio.DEFAULT_TRANSLATION
        # What /audio/speech answers (a real MP3 a test made: tests/audio_support.py), sent in
        # chunks of ``speech_chunk`` bytes ``speech_pause`` seconds apart.
        self.speech_audio: bytes | None = None
        self.speech_chunk = 4096
        self.speech_pause = 0.02
        self._lock = threading.Lock()
        self._queue: deque[Behaviour] = deque()
        self._defaults: dict[str, Behaviour] = {}
        self._requests: list[RequestRecord] = []
        self._stats = {
            "open_streams": 0,
            "max_open_streams": 0,
            "open_connections": 0,
            "connections_total": 0,
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._conn_tasks: set[asyncio.Task] = set()

    # --- control, from any thread ----------------------------------------------------------
    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def script(self, *behaviours: Behaviour, **knobs) -> FakeUpstream:
        """Queue behaviours for the next requests; ``script(status=500)`` queues one from knobs."""
        if knobs:
            behaviours = (*behaviours, Behaviour(**coerce_knobs(knobs)))
        with self._lock:
            self._queue.extend(dataclasses.replace(b) for b in behaviours)
        return self

    def always(self, endpoint: str = "chat", **knobs) -> FakeUpstream:
        """Set the standing behaviour of ``endpoint`` ("chat", "moderations", "models" or "any"),
        used when the queue has nothing for a request. Other endpoints keep answering normally."""
        behaviour = Behaviour(endpoint=endpoint, **coerce_knobs(knobs))
        with self._lock:
            for name in ("chat", "moderations", "models") if endpoint == "any" else (endpoint,):
                self._defaults[name] = behaviour
        return self

    def audio_knobs(
        self, *, transcript=None, translation=None, speech_seconds=None, speech_pause=None, speech_chunk=None
    ) -> None:
        """What the audio endpoints answer (also over the control API, ``POST /_fake/audio``):
        the texts heard, and speech as an MP3 tone of ``speech_seconds`` made here."""
        with self._lock:
            if transcript is not None:
                self.transcript = str(transcript)
            if translation is not None:
                self.translation = str(translation)
            if speech_pause is not None:
                self.speech_pause = float(speech_pause)
            if speech_chunk is not None:
                self.speech_chunk = int(speech_chunk)
        if speech_seconds is not None:
            from tests.audio_support import mp3_bytes

            self.speech_audio = mp3_bytes(float(speech_seconds))

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._defaults.clear()
            self._requests.clear()
            self._stats["max_open_streams"] = self._stats["open_streams"]
            self.models = list(DEFAULT_MODELS)
            self.moderation_triggers = {"FLAGME": "violence", "HATEME": "hate"}
            self.require_key = None
            self.image_answer = "b64"
            self.transcript = audio.DEFAULT_TRANSCRIPT
            self.translation = audio.DEFAULT_TRANSLATION
            self.speech_audio = None

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def audio_requests(self, kind: str) -> list[RequestRecord]:
        """Requests to /audio/<kind> (transcriptions, translations, speech)."""
        return [r for r in self.requests if r.path.endswith(f"/audio/{kind}")]

    @property
    def completion_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def stats(self) -> dict:
        with self._lock:
            return dict(self._stats)

    def wait_until(self, predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    async def await_until(self, predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
        """``wait_until`` for async tests, so the test's own event loop keeps running."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(interval)

    # --- running ---------------------------------------------------------------------------
    def start(self) -> FakeUpstream:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run():
            try:
                asyncio.run(self.serve(ready))
            except BaseException as exc:  # reported to the starting thread below
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name=f"fake-upstream-{id(self)}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    async def serve(self, ready: threading.Event | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port, backlog=2048)
        self.port = self._server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        try:
            await self._stopping.wait()
        finally:
            self._server.close()
            for task in list(self._conn_tasks):
                task.cancel()
            await asyncio.gather(*self._conn_tasks, return_exceptions=True)
            await self._server.wait_closed()

    # --- protocol --------------------------------------------------------------------------
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conn_tasks.add(task)
        conn = Conn(reader, writer)
        with self._lock:
            self._stats["open_connections"] += 1
            self._stats["connections_total"] += 1
        try:
            while await self._one_request(conn):
                pass
        except (
            Disconnected,
            ServerClosed,
            ConnectionError,
            OSError,
            asyncio.IncompleteReadError,
        ):
            pass
        except asyncio.CancelledError:
            # Only stop() cancels these; ending quietly keeps asyncio from logging each one.
            conn.writer.transport.abort()
        finally:
            await conn.stop_watching()
            with self._lock:
                self._stats["open_connections"] -= 1
            if not writer.is_closing():
                writer.close()
            self._conn_tasks.discard(task)

    async def _one_request(self, conn: Conn) -> bool:
        head = await conn.read_until(b"\r\n\r\n")
        if head is None:
            return False
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            await conn.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
        length = int(headers.get("content-length") or 0)
        raw = await conn.read_exactly(length) if length else b""
        if raw is None:
            return False
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = target.split("?", 1)[0]
        keep_alive = headers.get("connection", "").lower() != "close"

        if path.startswith("/_fake/"):
            await self._control(conn, method, path, body)
            return keep_alive

        with self._lock:
            record = RequestRecord(
                len(self._requests) + 1,
                method,
                path,
                headers,
                raw,
                body,
                time.monotonic(),
                form=audio.form_fields(headers.get("content-type", ""), raw) or {},
            )
            self._requests.append(record)
        conn.start_watching()
        try:
            keep_alive = await self._answer(conn, record) and keep_alive
        except Disconnected:
            record.disconnected_at = record.disconnected_at or time.monotonic()
            raise
        finally:
            await conn.stop_watching()
        record.finished_at = time.monotonic()
        if conn.gone.is_set():
            # The client hung up just as we finished; the connection is useless either way.
            return False
        return keep_alive

    def _behaviour_for(self, endpoint: str, body: Any) -> Behaviour:
        with self._lock:
            for i, queued in enumerate(self._queue):
                if queued.matches(endpoint):
                    queued.times -= 1
                    if queued.times <= 0:
                        del self._queue[i]
                    return queued
            behaviour = self._defaults.get(endpoint) or Behaviour(endpoint=endpoint)
        knobs = parse_directive(last_user_text(body)) if endpoint == "chat" else {}
        return behaviour.merged(**knobs) if knobs else behaviour

    async def _answer(self, conn: Conn, record: RequestRecord) -> bool:
        path, method = record.path, record.method
        if method == "POST" and path.endswith("/chat/completions"):
            endpoint = "chat"
        elif method == "POST" and path.endswith("/completions"):
            endpoint = "completions"  # legacy prompt completions
        elif method == "POST" and path.endswith("/moderations"):
            endpoint = "moderations"
        elif method == "POST" and path.endswith("/embeddings"):
            endpoint = "embeddings"
        elif method == "GET" and path.endswith("/models"):
            endpoint = "models"
        elif method == "POST" and path.endswith(("/images/generations", "/images/edits", "/images/variations")):
            endpoint = "images"
        elif method == "POST" and path.endswith(("/audio/transcriptions", "/audio/translations", "/audio/speech")):
            endpoint = path.rsplit("/", 1)[1]
        else:
            return await self._json(
                conn,
                record,
                404,
                error_body("Unknown request URL", "invalid_request_error"),
            )
        if self.require_key is not None and record.authorization != f"Bearer {self.require_key}":
            body = error_body(
                "Incorrect API key provided.",
                "invalid_request_error",
                "invalid_api_key",
            )
            return await self._json(conn, record, 401, body)

        b = self._behaviour_for(endpoint, record.body)
        if b.headers_delay:
            await conn.pause(b.headers_delay)
        if b.drop:
            conn.reset()
            raise ServerClosed
        if b.silence:
            # Accept, read, never answer: the client's read timeout must fire.
            await conn.gone.wait()
            raise Disconnected
        if b.redirect:
            return await self._json(conn, record, 302, {}, {"Location": b.redirect, **b.headers})
        if b.status >= 300:
            if b.body is not None:
                body = b.body
            else:
                body = error_body(
                    b.error_message or default_error_message(b.status, b.error_code),
                    b.error_type or b.error_code or default_error_type(b.status),
                    b.error_code,
                )
            return await self._json(conn, record, b.status, body, b.headers)
        if endpoint == "models":
            data = [
                {
                    "id": m,
                    "object": "model",
                    "created": 1700000000,
                    "owned_by": "system",
                }
                for m in self.models
            ]
            return await self._json(conn, record, 200, {"object": "list", "data": data}, b.headers)
        if endpoint == "moderations":
            return await self._json(conn, record, 200, self._moderation(record.body), b.headers)
        if endpoint == "embeddings":
            status, body = embeddings.answer(record.body)
            return await self._json(conn, record, status, body, b.headers)
        if endpoint == "images":
            return await self._images(conn, record, b)
        if endpoint in ("transcriptions", "translations"):
            text = self.transcript if endpoint == "transcriptions" else self.translation
            status, body = audio.transcription_answer(record.form, text)
            return await self._json(conn, record, status, body, b.headers)
        if endpoint == "speech":
            return await self._speech(conn, record)
        if endpoint == "completions":
            return await self._legacy(conn, record, b)
        return await self._chat(conn, record, b)

    async def _images(self, conn: Conn, record: RequestRecord, b: Behaviour) -> bool:
        if record.path.endswith("/generations"):
            fields = record.body if isinstance(record.body, dict) else {}
        else:
            content_type = record.headers.get("content-type", "")
            record.form, record.files, record.file_bytes = images.parse_multipart(content_type, record.raw_body)
            fields = record.form
            if "image" not in record.files:
                body = error_body("'image' is a required property", "invalid_request_error")
                return await self._json(conn, record, 400, body, b.headers)
        status, body = images.answer(fields, mode=self.image_answer)
        return await self._json(conn, record, status, body, b.headers)

    def _moderation(self, body: Any) -> dict:
        inputs = body.get("input") if isinstance(body, dict) else ""
        if isinstance(inputs, str):
            inputs = [inputs]
        results = []
        for text in inputs or [""]:
            text = text if isinstance(text, str) else json.dumps(text)
            hit = {cat for word, cat in self.moderation_triggers.items() if word in text}
            results.append(
                {
                    "flagged": bool(hit),
                    "categories": {c: c in hit for c in MODERATION_CATEGORIES},
                    "category_scores": {c: (0.97 if c in hit else 0.0001) for c in MODERATION_CATEGORIES},
                    "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES},
                }
            )
        return {
            "id": f"modr-{uuid.uuid4().hex[:24]}",
            "model": "omni-moderation-latest",
            "results": results,
        }

    async def _speech(self, conn: Conn, record: RequestRecord) -> bool:
        body = record.body if isinstance(record.body, dict) else {}
        if not body.get("input") or not body.get("voice") or not body.get("model"):
            error = {"error": {"message": "model, input and voice are required", "type": "invalid_request_error"}}
            return await self._json(conn, record, 400, error)
        data = self.speech_audio
        if data is None:
            from tests.audio_support import mp3_bytes

            data = mp3_bytes(1.0)
        record.status = 200
        await conn.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(data), self.speech_chunk):
            piece = data[start : start + self.speech_chunk]
            await conn.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            record.deltas_sent += 1
            await conn.pause(self.speech_pause)
        await conn.write(b"0\r\n\r\n")
        return True

    async def _json(self, conn: Conn, record: RequestRecord, status: int, body: Any, headers=None) -> bool:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Status')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"x-request-id: req_{uuid.uuid4().hex[:16]}\r\n{extra}\r\n"
        )
        record.status = status
        await conn.write(head.encode() + data)
        return True

    async def _control(self, conn: Conn, method: str, path: str, body: Any) -> None:
        status, answer = 200, {"ok": True}
        try:
            if method == "GET" and path == "/_fake/requests":
                answer = [r.as_json() for r in self.requests]
            elif method == "GET" and path == "/_fake/stats":
                answer = self.stats()
            elif method == "POST" and path == "/_fake/script":
                self.script(*(Behaviour(**coerce_knobs(k)) for k in (body or {}).get("behaviours", [])))
            elif method == "POST" and path == "/_fake/always":
                self.always(**(body or {}))
            elif method == "POST" and path == "/_fake/reset":
                self.reset()
            elif method == "POST" and path == "/_fake/audio":
                self.audio_knobs(**(body or {}))
            else:
                status, answer = 404, {"error": "unknown control path"}
        except (TypeError, ValueError) as exc:
            status, answer = 400, {"error": str(exc)}
        data = json.dumps(answer, default=str).encode()
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        await conn.write(head.encode() + data)

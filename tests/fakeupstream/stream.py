"""The streaming answer to ``POST /chat/completions``: OpenAI's SSE chunks, and its faults."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from tests.fakeupstream.behaviour import (
    DEFAULT_TOKENS,
    Behaviour,
    default_reply,
    estimate_prompt_tokens,
    last_user_text,
    split_reply,
)
from tests.fakeupstream.connection import (
    Conn,
    Disconnected,
    RequestRecord,
    ServerClosed,
    frame,
)


class ChatStream:
    """The chat completion half of :class:`tests.fakeupstream.server.FakeUpstream`."""

    async def _chat(self, conn: Conn, record: RequestRecord, b: Behaviour) -> bool:
        body = record.body if isinstance(record.body, dict) else {}
        model = body.get("model") or "gpt-4o-mini"
        if b.deltas is not None:
            deltas = [str(d) for d in b.deltas]
        elif b.reply is not None:
            deltas = split_reply(b.reply, b.tokens)
        else:
            deltas = default_reply(last_user_text(body), DEFAULT_TOKENS if b.tokens is None else b.tokens)
        n_choices = b.choices or (body.get("n") if isinstance(body.get("n"), int) else 1) or 1
        prompt_tokens = estimate_prompt_tokens(body)
        chat_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        if not (body.get("stream") if b.stream is None else b.stream):
            text = "".join(deltas)
            choices = [
                {
                    "index": i,
                    "message": {
                        "role": "assistant",
                        "content": text if i == 0 else f"(choice {i}) {text}",
                    },
                    "logprobs": None,
                    "finish_reason": b.finish_reason,
                }
                for i in range(n_choices)
            ]
            # As OpenAI counts: the completion tokens of every choice, added up.
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(deltas) * n_choices,
                "total_tokens": prompt_tokens + len(deltas) * n_choices,
            }
            result = {
                "id": chat_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
            }
            await conn.pause(b.first_token_delay)
            return await self._json(conn, record, 200, result, b.headers)

        odd = set(b.oddities)
        nl = "\r\n" if "crlf" in odd else "\n"
        include_usage = b.usage
        if include_usage is None:
            opts = body.get("stream_options")
            include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))

        def chunk(choices: list, **extra) -> dict:
            data = {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            if "extra_fields" in odd:
                data.update(
                    system_fingerprint="fp_fake",
                    service_tier="default",
                    obfuscation="xYz",
                )
            data.update(extra)
            return data

        def choice(index: int, delta: dict, finish=None) -> dict:
            c = {"index": index, "delta": delta, "finish_reason": finish}
            if "extra_fields" in odd:
                c["logprobs"] = None
                delta.setdefault("refusal", None)
            return c

        def event(data: Any, name: str | None = None) -> bytes:
            text = data if isinstance(data, str) else json.dumps(data)
            if "multiline" in odd and not isinstance(data, str) and len(text) > 2:
                # Per the SSE spec, data lines are joined with "\n": still one valid JSON.
                mid = text.index(",") + 1 if "," in text else len(text) // 2
                lines = f"data: {text[:mid]}{nl}data: {text[mid:]}{nl}"
            else:
                lines = f"data: {text}{nl}"
            if name:
                lines = f"event: {name}{nl}{lines}"
            return (lines + nl).encode()

        async def send(data: bytes) -> None:
            if "split" in odd and len(data) > 4:
                half = len(data) // 2
                await conn.write(frame(data[:half], b.chunked))
                await asyncio.sleep(0.002)
                data = data[half:]
            await conn.write(frame(data, b.chunked))

        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
        head += "Transfer-Encoding: chunked\r\n" if b.chunked else "Connection: close\r\n"
        head += f"x-request-id: req_{uuid.uuid4().hex[:16]}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in b.headers.items()) + "\r\n"
        record.status = 200

        with self._lock:
            self._stats["open_streams"] += 1
            self._stats["max_open_streams"] = max(self._stats["max_open_streams"], self._stats["open_streams"])
        try:
            await conn.write(head.encode())
            if "empty_choices" in odd:
                await send(
                    event(
                        {
                            "id": "",
                            "object": "",
                            "created": 0,
                            "model": "",
                            "choices": [],
                            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
                        }
                    )
                )
            if "ping" in odd:
                await send(f": ping{nl}{nl}".encode())
            if "unknown_event" in odd:
                await send(
                    event(
                        {
                            "code": "window.__pwned = 1",
                            "html": "<img src=x onerror=alert(1)>",
                        },
                        "execute",
                    )
                )
            if "no_role" not in odd:
                for i in range(n_choices):
                    await send(event(chunk([choice(i, {"role": "assistant", "content": ""})])))
            if "not_json" in odd:
                await send(event("not-json"))
            await conn.pause(b.first_token_delay)
            started = time.monotonic()
            for n, text in enumerate(deltas):
                if b.cut_after is not None and n >= b.cut_after:
                    return await self._cut(conn, record, b, send, event)
                if n and b.token_delay:
                    # Paced against a schedule, so a busy loop does not stretch every gap.
                    await conn.pause(started + n * b.token_delay - time.monotonic())
                await send(event(chunk([choice(0, {"content": text})])))
                record.deltas_sent += 1
                for i in range(1, n_choices):
                    await send(event(chunk([choice(i, {"content": f"(choice {i}) {text}"})])))
                if "ping" in odd and n % 3 == 1:
                    await send(f": ping{nl}{nl}".encode())
                if "unknown_event" in odd and n == 1:
                    await send(
                        event(
                            {"type": "execute", "payload": "<script>alert(1)</script>"},
                            "execute",
                        )
                    )
                if "empty_choices" in odd and n == 2:
                    await send(event(chunk([])))
                if "extra_fields" in odd and n == 0:
                    tool = {"tool_calls": [{"index": 0, "id": "call_1", "type": "function"}]}
                    await send(event(chunk([choice(0, tool)])))
            if b.cut_after is not None and b.cut_after >= len(deltas):
                return await self._cut(conn, record, b, send, event)
            if b.finish_reason is not None:
                for i in range(n_choices):
                    await send(event(chunk([choice(i, {}, b.finish_reason)])))
            if include_usage:
                usage = {  # every choice's tokens added up, as OpenAI counts them
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(deltas) * n_choices,
                    "total_tokens": prompt_tokens + len(deltas) * n_choices,
                    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                    "completion_tokens_details": {
                        "reasoning_tokens": 0,
                        "audio_tokens": 0,
                    },
                }
                await send(event(chunk([], usage=usage)))
            if b.done:
                await send(event("[DONE]"))
            return await self._end(conn, b)
        finally:
            with self._lock:
                self._stats["open_streams"] -= 1

    async def _cut(self, conn: Conn, record: RequestRecord, b: Behaviour, send, event) -> bool:
        if b.cut == "reset":
            # A reset discards what the client has not read yet; give it a moment to read what
            # was sent, as when a proxy dies between two tokens.
            await conn.pause(0.25)
            conn.reset()
            record.finished_at = time.monotonic()
            raise ServerClosed
        if b.cut == "hang":
            await conn.gone.wait()
            raise Disconnected
        if b.cut == "error":
            error = {
                "message": b.stream_error,
                "type": b.stream_error_type,
                "code": b.stream_error_code,
            }
            await send(event({"error": error}))
            await send(event("[DONE]"))
        return await self._end(conn, b)

    async def _end(self, conn: Conn, b: Behaviour) -> bool:
        if b.chunked:
            await conn.write(b"0\r\n\r\n")
            return True
        # Without chunked framing the body ends with the connection.
        await conn.writer.drain()
        conn.writer.close()
        return False

    async def _legacy(self, conn: Conn, record: RequestRecord, b: Behaviour) -> bool:
        """``POST /v1/completions``: a ``text_completion``, whole or streamed, for the prompt."""
        body = record.body if isinstance(record.body, dict) else {}
        model = body.get("model") or "gpt-3.5-turbo-instruct"
        prompt = body.get("prompt")
        prompt_text = prompt if isinstance(prompt, str) else " ".join(p for p in prompt or [] if isinstance(p, str))
        if b.reply is not None:
            deltas = split_reply(b.reply, b.tokens)
        else:
            deltas = default_reply(prompt_text, DEFAULT_TOKENS if b.tokens is None else b.tokens)
        prompt_tokens = max(1, len(prompt_text) // 4)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(deltas),
            "total_tokens": prompt_tokens + len(deltas),
        }
        cmpl_id = f"cmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def result(choices: list, **extra) -> dict:
            return {
                "id": cmpl_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }

        if not body.get("stream"):
            choice = {"text": "".join(deltas), "index": 0, "logprobs": None, "finish_reason": b.finish_reason}
            return await self._json(conn, record, 200, result([choice], usage=usage), b.headers)
        opts = body.get("stream_options")
        include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        record.status = 200
        await conn.write(head.encode())
        started = time.monotonic()
        for n, text in enumerate(deltas):
            if n and b.token_delay:
                await conn.pause(started + n * b.token_delay - time.monotonic())
            data = result([{"text": text, "index": 0, "logprobs": None, "finish_reason": None}])
            await conn.write(frame(f"data: {json.dumps(data)}\n\n".encode(), True))
            record.deltas_sent += 1
        final = result([{"text": "", "index": 0, "logprobs": None, "finish_reason": b.finish_reason}])
        await conn.write(frame(f"data: {json.dumps(final)}\n\n".encode(), True))
        if include_usage:
            await conn.write(frame(f"data: {json.dumps(result([], usage=usage))}\n\n".encode(), True))
        await conn.write(frame(b"data: [DONE]\n\n", True))
        await conn.write(b"0\r\n\r\n")
        return True

"""What the fake upstream says: behaviours and their knobs, directives, deterministic replies."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TOKENS = 12
DEFAULT_MODELS = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4o-2024-08-06",
    "gpt-4.1-nano",
    "o3-mini",
    "gpt-3.5-turbo",
    "text-embedding-3-small",
    "whisper-1",
    "tts-1",
    "dall-e-3",
    "omni-moderation-latest",
]
MODERATION_CATEGORIES = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
]
_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu amber basil cedar dune ember fern "
    "glade harbor iris jade kestrel lagoon meadow north orchard pebble quartz river stone thistle umber "
    "valley willow yarrow zephyr"
).split()
_DIRECTIVE = re.compile(r"\[\[fake\s+(.*?)\]\](?!\S*\])", re.S)
# key=value, where a value is "a JSON string", 'single quoted', a JSON list/object, or a bare word.
_KNOB = re.compile(r"""(\w+)=("(?:[^"\\]|\\.)*"|'[^']*'|\[.*?\](?=\s|$)|\{.*?\}(?=\s|$)|\S+)""", re.S)
STATUS_TEXT = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Behaviour:
    """How to answer one request; every knob is described in tests/fakeupstream/__init__.py."""

    endpoint: str = "chat"
    times: int = 1
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error_code: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    redirect: str | None = None
    headers_delay: float = 0.0
    silence: bool = False
    drop: bool = False
    stream: bool | None = None
    reply: str | None = None
    deltas: list[str] | None = None
    tokens: int | None = None
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    finish_reason: str | None = "stop"
    choices: int | None = None
    usage: bool | None = None
    done: bool = True
    cut_after: int | None = None
    cut: str = "eof"
    stream_error: str = "The server is overloaded. Please retry."
    stream_error_type: str = "server_error"
    stream_error_code: str | None = None
    chunked: bool = True
    oddities: tuple[str, ...] = ()

    def matches(self, endpoint: str) -> bool:
        return self.endpoint in ("any", endpoint)

    def merged(self, **knobs) -> Behaviour:
        return dataclasses.replace(self, **coerce_knobs(knobs))


_FIELDS = {f.name: f for f in dataclasses.fields(Behaviour)}


def coerce_knobs(knobs: dict) -> dict:
    out = {}
    for key, value in knobs.items():
        if key == "retry_after":
            out.setdefault("headers", {})["Retry-After"] = str(value)
            continue
        if key == "retry_after_ms":
            out.setdefault("headers", {})["retry-after-ms"] = str(value)
            continue
        if key not in _FIELDS:
            raise ValueError(f"unknown fake upstream knob: {key}")
        if key == "oddities" and isinstance(value, str):
            value = tuple(v for v in value.split(",") if v)
        elif key == "oddities":
            value = tuple(value)
        if key == "headers" and "headers" in out:
            value = {**value, **out["headers"]}
        out[key] = value
    return out


def parse_directive(text: str) -> dict:
    """Knobs from ``[[fake k=v ...]]`` in a message (the last directive wins)."""
    found = _DIRECTIVE.findall(text or "")
    if not found:
        return {}
    return {key: _parse_value(raw) for key, raw in _KNOB.findall(found[-1])}


def _parse_value(raw: str) -> Any:
    if raw.startswith(("[", "{", '"')):
        return json.loads(raw)
    if raw.startswith("'"):
        return raw[1:-1]
    low = raw.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def default_reply(prompt: str, tokens: int = DEFAULT_TOKENS) -> list[str]:
    """The deltas of the deterministic reply to ``prompt``: ``tokens`` words picked by its hash."""
    rng = random.Random(hashlib.sha256((prompt or "").encode()).digest())
    words = [rng.choice(_WORDS) for _ in range(tokens)]
    if words:
        words[0] = words[0].capitalize()
        words[-1] += "."
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def split_reply(text: str, tokens: int | None = None) -> list[str]:
    """``text`` as deltas: word by word, or in ``tokens`` nearly equal pieces."""
    if not text:
        return []
    if not tokens:
        return re.findall(r"\s*\S+|\s+$", text) or [text]
    tokens = max(1, min(tokens, len(text)))
    size, extra = divmod(len(text), tokens)
    pieces, start = [], 0
    for i in range(tokens):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def last_user_text(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


def estimate_prompt_tokens(body: Any) -> int:
    """A stable stand-in for the upstream's prompt count: ~4 characters a token, 3 per message."""
    messages = body.get("messages") if isinstance(body, dict) else None
    return sum(3 + max(1, len(_message_text(m)) // 4) for m in (messages or []) if isinstance(m, dict)) + 3


def error_body(message: str, type_: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def default_error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def default_error_message(status: int, code: str | None) -> str:
    if code == "insufficient_quota":
        return "You exceeded your current quota, please check your plan and billing details."
    if code == "context_length_exceeded":
        return (
            "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            "9000 tokens. Please reduce the length of the messages."
        )
    if status == 429:
        return "Rate limit reached for requests. Please try again in 2s."
    if status == 401:
        return "Incorrect API key provided."
    if status >= 500:
        return "The server had an error while processing your request. Sorry about that!"
    return f"Fake upstream error {status}."

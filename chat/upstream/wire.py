"""The OpenAI wire format and what Parley makes of it, without any I/O.

chat/upstream/client.py does the HTTP; this module holds the parts that are pure functions of what was
received, so they are tested on their own: endpoint validation (T25c), the retry arithmetic of
the official client (T35), reading error bodies into stable codes with the provider's text
cleaned of keys by chat.upstream.redact (T27), and reading stream chunks, of which only content
deltas of choice 0, finish_reason and usage pass on (T15, T38).
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import logging
import random
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

import idna
from django.conf import settings
from django.utils.translation import gettext as _

from chat import crypto
from chat.errors import UpstreamError
from chat.upstream import redact, sse

logger = logging.getLogger(__name__)

INITIAL_RETRY_DELAY = 0.5  # openai-python _constants.py
MAX_RETRY_DELAY = 8.0
_RETRY_STATUSES = {408, 409, 429}
_KEY_CHARS = re.compile(r"[\x21-\x7e]*")
_IPV4_STYLE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")  # httpx reads such a host as IPv4
MAX_BASE_URL_LENGTH = 500  # Provider.base_url's column


class InvalidEndpoint(ValueError):
    """A provider base URL or key that Parley refuses to use."""


def validate_base_url(url: str) -> str:
    """``url`` without trailing slashes, or :class:`InvalidEndpoint` (T25c).

    Only http(s) with a host; no user info, query or fragment, so a URL that merely
    *contains* a trusted host (``https://evil/?api.openai.com``, ``https://api.openai.com@evil``)
    is refused rather than half-trusted.
    """
    url = (url or "").strip()
    if len(url) > MAX_BASE_URL_LENGTH:
        raise InvalidEndpoint(_("The base URL is longer than %(max)d characters.") % {"max": MAX_BASE_URL_LENGTH})
    # Category C: control, format (soft hyphen, zero-width space), surrogate and unassigned.
    if any(c.isspace() or unicodedata.category(c)[0] == "C" or c == "\\" for c in url):
        raise InvalidEndpoint(_("The base URL must not contain spaces, control characters or backslashes."))
    try:
        parts = urlsplit(url)  # ValueError for an unclosed "[" or characters NFKC turns into "/", "#"...
    except ValueError:
        raise InvalidEndpoint(_("The base URL is not a valid URL.")) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidEndpoint(_("The base URL must start with http:// or https:// and name a host."))
    if "@" in parts.netloc:
        raise InvalidEndpoint(_("The base URL must not contain a user name or password."))
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise InvalidEndpoint(_("The base URL must not contain a query string or a fragment."))
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise InvalidEndpoint(_("The base URL has an invalid port.")) from None
    _check_host(parts)
    return url.rstrip("/")


def _check_host(parts) -> None:
    """Refuse a host the HTTP client would refuse when the first request is sent.

    The same tests as httpx's URL parser, with the libraries it uses: an IP literal must be an
    address, a name outside ASCII must encode to IDNA, a punycode label must decode.
    """
    host = parts.hostname
    try:
        if parts.netloc.rpartition("@")[2].startswith("["):
            ipaddress.IPv6Address(host)
        elif _IPV4_STYLE.fullmatch(host):
            ipaddress.IPv4Address(host)
        elif not host.isascii():
            idna.encode(host)
        elif any(label.startswith("xn--") for label in host.split(".")):
            idna.decode(host)
    except ValueError:  # ipaddress' errors and idna's (a UnicodeError) are ValueErrors
        raise InvalidEndpoint(_("The base URL's host is not a valid host name or IP address.")) from None


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one provider. ``repr`` never shows the key."""

    base_url: str
    api_key: str = field(default="", repr=False)
    organization: str = ""
    read_timeout: float = 120.0
    connect_timeout: float = 10.0

    def __post_init__(self):
        object.__setattr__(self, "base_url", validate_base_url(self.base_url))
        # A key with a newline or a non-ASCII character would make the HTTP library raise
        # an error that quotes the header value, key included; refuse it here instead.
        if not _KEY_CHARS.fullmatch(self.api_key or ""):
            raise InvalidEndpoint(_("The API key contains spaces or characters an API key cannot have."))
        if not _KEY_CHARS.fullmatch(self.organization or ""):
            raise InvalidEndpoint(_("The organization id contains spaces or characters it cannot have."))

    @classmethod
    def for_provider(cls, provider) -> Endpoint:
        """The endpoint of a :class:`chat.models.Provider` (decrypts its key)."""
        try:
            key = provider.api_key
        except crypto.KeyDecryptionError:
            raise UpstreamError(
                _("The provider's stored API key cannot be decrypted. An admin needs to enter it again."),
                code="upstream_auth_failed",
            ) from None
        try:
            return cls(
                base_url=provider.base_url,
                api_key=key,
                organization=provider.organization or "",
                read_timeout=float(provider.timeout or settings.PARLEY_UPSTREAM_READ_TIMEOUT),
                connect_timeout=float(settings.PARLEY_UPSTREAM_CONNECT_TIMEOUT),
            )
        except InvalidEndpoint as exc:
            raise UpstreamError(
                _("The provider is misconfigured: %(reason)s") % {"reason": exc}, code="upstream_unavailable"
            ) from None

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


MAX_CHOICES = 4  # the most answers per request Parley asks for (Conversation.n)


class StreamEvent(NamedTuple):
    # A named tuple, not a frozen dataclass: one is made per token, and a frozen dataclass's
    # __init__ (object.__setattr__ per field) was 5% of a 5,000-token reply's CPU.
    delta: str = ""  # content text of choice 0
    finish_reason: str | None = None
    usage: Usage | None = None
    # The other choices of a request with n > 1: {index: (delta, finish_reason)}; None otherwise.
    others: dict | None = None


@dataclass(frozen=True)
class ModerationResult:
    flagged: bool
    categories: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Embeddings:
    """A ``/embeddings`` answer: one vector per input, in input order, and the tokens billed."""

    vectors: list[list[float]]
    prompt_tokens: int


# --- retries ------------------------------------------------------------------------------
def retry_after_seconds(headers) -> float | None:
    """Seconds the upstream asks us to wait (``retry-after-ms``, ``Retry-After`` seconds or date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        with contextlib.suppress(ValueError):
            return float(raw_ms) / 1000
    raw = headers.get("retry-after")
    if not raw:
        return None
    with contextlib.suppress(ValueError):
        return float(raw)
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    return email.utils.mktime_tz(parsed) - time.time()


def backoff_seconds(retries_done: int) -> float:
    """openai-python ``_calculate_retry_timeout`` without a Retry-After: 0.5 s doubling to 8 s, −25 % jitter."""
    delay = min(INITIAL_RETRY_DELAY * 2.0 ** min(retries_done, 1000), MAX_RETRY_DELAY)
    return delay * (1 - 0.25 * random.random())


def retryable(status: int, error: dict) -> bool:
    """Whether the status may be retried: 408, 409, 429 and 5xx, but never a used-up quota."""
    if error.get("code") == "insufficient_quota" or error.get("type") == "insufficient_quota":
        return False
    return status in _RETRY_STATUSES or status >= 500


# --- errors -------------------------------------------------------------------------------
def error_fields(raw: bytes | str | dict) -> dict:
    """``{"message", "type", "code"}`` from the many shapes of error bodies (OpenAI and not)."""
    data = raw
    if isinstance(raw, bytes | str):
        try:
            data = json.loads(raw)
        except ValueError:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            return {"message": text[:1000]}
    if not isinstance(data, dict):
        return {"message": str(data)[:1000]}
    error = data.get("error", data)
    if isinstance(error, str):
        return {"message": error}
    if not isinstance(error, dict):
        return {}
    message = error.get("message") or error.get("detail") or data.get("message") or data.get("detail") or ""
    return {
        "message": message if isinstance(message, str) else json.dumps(message)[:1000],
        "type": str(error.get("type") or ""),
        "code": str(error.get("code") or ""),
    }


def _error(code: str, text: str, error: dict, endpoint: Endpoint, status=None, retry_after=None) -> UpstreamError:
    said = redact.clean(error.get("message"), [endpoint.api_key])
    message = text if not said else _("%(message)s (The provider said: %(said)s)") % {"message": text, "said": said}
    detail = {"upstream_message": said} if said else {}
    return UpstreamError(message, code=code, status=status, retry_after=retry_after, **detail)


def status_error(status: int, error: dict, endpoint: Endpoint, retry_after=None) -> UpstreamError:
    kind = f"{error.get('code', '')} {error.get('type', '')}"
    if 300 <= status < 400:
        code, text = (
            "upstream_bad_response",
            _("The model provider answered with a redirect, which Parley never follows."),
        )
    elif "insufficient_quota" in kind:
        code, text = "upstream_quota_exhausted", _("The model provider's quota for this key is used up.")
    elif status == 429:
        code, text = "rate_limited", _("The model provider is rate limiting requests. Try again in a moment.")
    elif status in (401, 403):
        code, text = "upstream_auth_failed", _("The model provider refused Parley's API key.")
    elif "context_length_exceeded" in kind or status == 413:
        code, text = "context_too_long", _("The conversation is too long for this model's context window.")
    elif status in (408, 504):
        code, text = "upstream_timeout", _("The model provider did not answer in time.")
    elif status >= 500 or status == 409:
        code, text = "upstream_unavailable", _("The model provider is unavailable. Try again in a moment.")
    else:
        code, text = "bad_request", _("The model provider refused the request.")
    return _error(code, text, error, endpoint, status=status, retry_after=retry_after)


def stream_error(error: dict, endpoint: Endpoint) -> UpstreamError:
    """An ``{"error": ...}`` object inside a 200 response (mid-stream, or instead of a body)."""
    kind = f"{error.get('code', '')} {error.get('type', '')}"
    if "insufficient_quota" in kind:
        return status_error(429, error, endpoint)
    if "rate_limit" in kind:
        return status_error(429, error, endpoint)
    if "context_length_exceeded" in kind:
        return status_error(400, error, endpoint)
    if "invalid_request" in kind:
        return status_error(400, error, endpoint)
    return _error("upstream_unavailable", _("The model provider failed while answering."), error, endpoint)


# --- chunks -------------------------------------------------------------------------------
_json_decode = json.JSONDecoder().decode  # json.loads without its per-call argument checks


def chunk_event(message: sse.Message, endpoint: Endpoint) -> StreamEvent | None:
    """The meaningful part of one chunk; unknown events, non-JSON and other fields are dropped (T15, T38)."""
    data = _chunk_data(message, endpoint)
    return _choice_event(data, "delta") if data is not None else None


def _chunk_data(message: sse.Message, endpoint: Endpoint) -> dict | None:
    """A chunk's JSON object; None for unknown events and non-JSON; an error chunk raises."""
    if message.event not in (None, "message", "error"):
        return None
    try:
        data = _json_decode(message.data)
    except ValueError:
        logger.debug("upstream %s sent a data line that is not JSON", endpoint.base_url)
        return None
    if not isinstance(data, dict):
        return None
    if data.get("error") or message.event == "error":
        raise stream_error(error_fields(data), endpoint)
    return data


def _choice_event(data: dict, key: str) -> StreamEvent | None:
    # Called once per token: exact type checks and one lookup per field (docs/performance.md).
    delta, finish = "", None
    others: dict[int, tuple[str, str | None]] | None = None
    choices = data.get("choices")
    for choice in choices if type(choices) is list else ():
        if type(choice) is not dict:
            continue
        index = choice.get("index", 0)
        part = choice.get(key)
        content = part.get("content") if type(part) is dict else None
        reason = choice.get("finish_reason")
        if index != 0:
            # n > 1: the other answers, each saved as a sibling reply (at most MAX_CHOICES).
            if type(index) is int and 0 < index < MAX_CHOICES:
                text = content if type(content) is str else ""
                finished = reason if type(reason) is str else None
                if text or finished is not None:
                    others = others or {}
                    was_text, was_finish = others.get(index, ("", None))
                    others[index] = (was_text + text, finished or was_finish)
            continue
        if type(content) is str:
            delta += content
        if type(reason) is str:
            finish = reason
    raw_usage = data.get("usage")
    usage = _usage(raw_usage) if raw_usage is not None else None
    if not delta and finish is None and usage is None and others is None:
        return None
    return StreamEvent(delta, finish, usage, others)


def _usage(raw) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt_tokens=max(prompt, 0), completion_tokens=max(completion, 0))


def completion_events(data, endpoint: Endpoint) -> list[StreamEvent]:
    if isinstance(data, dict) and data.get("error"):
        raise stream_error(error_fields(data), endpoint)
    event = _choice_event(data, "message") if isinstance(data, dict) else None
    if event is None or (event.finish_reason is None and not event.delta):
        raise UpstreamError(
            _("The model provider sent a response Parley could not read."), code="upstream_bad_response"
        )
    if event.usage and (event.delta or event.finish_reason):
        # Same order as a stream: text, then finish, then usage.
        return [event._replace(usage=None), StreamEvent(usage=event.usage)]
    return [event]


def bad_shape(what: str) -> UpstreamError:
    return UpstreamError(
        _("The model provider sent an unexpected %(what)s response.") % {"what": what}, code="upstream_bad_response"
    )


def moderation_results(data, count: int) -> list[ModerationResult]:
    """Read a ``/moderations`` answer for ``count`` inputs: one verdict per input, in order."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or len(results) != count or not all(isinstance(r, dict) for r in results):
        raise bad_shape("moderation")
    return [moderation_result({"results": [result]}) for result in results]


def moderation_result(data) -> ModerationResult:
    """Read a ``/moderations`` answer: flagged if any result is, with the categories that are."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or not results or not all(isinstance(r, dict) for r in results):
        raise bad_shape("moderation")
    categories: set[str] = set()
    flagged = False
    for result in results:
        flagged = flagged or bool(result.get("flagged"))
        cats = result.get("categories")
        if isinstance(cats, dict):
            categories.update(str(name) for name, hit in cats.items() if hit is True)
    if flagged and not categories:
        categories.add("flagged")
    return ModerationResult(flagged=flagged, categories=sorted(categories) if flagged else [])


def embeddings_result(data, count: int) -> Embeddings:
    """Read a ``/embeddings`` answer for ``count`` inputs: vectors put back in input order
    (the API gives each an ``index``), all of one length, with the usage it reports."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != count:
        raise bad_shape("embeddings")
    vectors: list[list[float] | None] = [None] * count
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("embedding"), list):
            raise bad_shape("embeddings")
        index = item.get("index", position)
        if type(index) is not int or not 0 <= index < count or vectors[index] is not None:
            raise bad_shape("embeddings")
        vector = item["embedding"]
        if not vector or not all(type(x) in (int, float) for x in vector):
            raise bad_shape("embeddings")
        vectors[index] = [float(x) for x in vector]
    if len({len(v) for v in vectors if v is not None}) != 1:
        raise bad_shape("embeddings")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    prompt_tokens = usage.get("prompt_tokens")
    return Embeddings(
        vectors=[v for v in vectors if v is not None],
        prompt_tokens=prompt_tokens if type(prompt_tokens) is int and prompt_tokens >= 0 else 0,
    )


def model_ids(data) -> list[str]:
    """Read a ``/models`` answer: the ids in the provider's order, without duplicates."""
    items = data.get("data") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise bad_shape("model list")
    ids = [item.get("id") if isinstance(item, dict) else item for item in items]
    return list(dict.fromkeys(i for i in ids if isinstance(i, str) and i and len(i) <= 200))


# --- audio: /audio/transcriptions, /audio/translations, /audio/speech -----------------------
# Speech comes back as MP3: every browser plays it as it arrives, and it is what OpenAI sends
# by default. Transcripts are asked as plain JSON ({"text": ...}).
SPEECH_FORMAT = "mp3"
SPEECH_CONTENT_TYPE = "audio/mpeg"
MAX_TRANSCRIPT_CHARS = 2_000_000


def transcription_fields(*, model: str, language: str = "", prompt: str = "") -> dict[str, str]:
    """The form fields of a transcription or translation request (the file goes beside them)."""
    fields = {"model": model, "response_format": "json"}
    if language:
        fields["language"] = language
    if prompt:
        fields["prompt"] = prompt
    return fields


def transcription_text(data) -> str:
    """Read a transcription's ``{"text": ...}``: the text, stripped."""
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or len(text) > MAX_TRANSCRIPT_CHARS:
        raise bad_shape("transcription")
    return text.strip()


def speech_body(*, model: str, text: str, voice: str, speed) -> dict:
    return {"model": model, "input": text, "voice": voice, "speed": float(speed), "response_format": SPEECH_FORMAT}


# --- the member API: OpenAI's own shapes, passed through ------------------------------------
class RawChunk(NamedTuple):
    """One chunk of a streamed completion as the provider sent it: its JSON text (relayed as
    is), the parsed object, the text it adds (every choice, for billing an interrupted
    stream), whether a choice finished in it, and its usage if it reports one."""

    data: str
    body: dict
    text: str
    finished: bool
    usage: Usage | None


def raw_chunk(message: sse.Message, endpoint: Endpoint) -> RawChunk | None:
    """A chat or legacy completion chunk to relay; unknown events and non-JSON are dropped (T15)."""
    data = _chunk_data(message, endpoint)
    if data is None:
        return None
    text, finished = _choices_text(data, "delta")
    raw_usage = data.get("usage")
    return RawChunk(message.data, data, text, finished, _usage(raw_usage) if raw_usage is not None else None)


def _choices_text(data: dict, key: str) -> tuple[str, bool]:
    text, finished = "", False
    choices = data.get("choices")
    for choice in choices if type(choices) is list else ():
        if type(choice) is not dict:
            continue
        part = choice.get(key)
        if type(part) is dict and type(part.get("content")) is str:
            text += part["content"]
        elif type(choice.get("text")) is str:  # legacy completions
            text += choice["text"]
        finished = finished or type(choice.get("finish_reason")) is str
    return text, finished


def completion_body(data, what: str = "completion") -> dict:
    """A non-streamed ``/chat/completions`` or ``/completions`` answer, checked for its shape."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise bad_shape(what)
    return data


def completion_usage(data: dict) -> Usage | None:
    return _usage(data.get("usage"))


def completion_text(data: dict) -> str:
    """The text of every choice of a non-streamed answer (for an estimate when usage is missing)."""
    return _choices_text(data, "message")[0]


def completion_as_chunk(data: dict) -> dict:
    """A non-streamed chat completion as the single chunk a stream would have carried
    (for a provider that ignores ``stream``)."""
    choices = [
        {
            "index": choice.get("index", 0),
            "delta": choice.get("message") or {},
            "finish_reason": choice.get("finish_reason"),
        }
        for choice in data.get("choices") or []
        if isinstance(choice, dict)
    ]
    chunk = {key: data[key] for key in ("id", "created", "model", "system_fingerprint") if key in data}
    return {**chunk, "object": "chat.completion.chunk", "choices": choices, "usage": data.get("usage")}


def embeddings_body(data) -> dict:
    """A ``/embeddings`` answer passed through, checked for its shape (vectors as floats or base64)."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise bad_shape("embeddings")
    return data


def moderations_body(data) -> dict:
    moderation_result(data)  # raises on a shape Parley cannot read
    return data

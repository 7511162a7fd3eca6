"""The one door out: every HTTP request to a model provider goes through this module.

It is the only module that imports httpx (docs/architecture.md; tests/test_architecture.py
enforces it). It speaks the OpenAI API (``/chat/completions`` as server-sent events,
``/embeddings``, ``/moderations``, ``/models``, ``/images/*``); what the bytes mean is read by the
pure :mod:`chat.upstream.wire`, :mod:`chat.upstream.imagewire` and :mod:`chat.upstream.sse`.
Every transport or protocol failure becomes :class:`chat.errors.UpstreamError` with a stable code.

Rules kept here, each with its docs/security.md row:

- Retries follow the official OpenAI client (T35): at most ``PARLEY_UPSTREAM_MAX_RETRIES``
  (2), only before the response starts streaming, only on connection errors, 408, 409, 429 and
  5xx, honouring ``Retry-After`` / ``retry-after-ms`` up to ``PARLEY_RETRY_AFTER_MAX`` and
  otherwise backing off 0.5 s → 8 s with jitter; never on 400/401/403/404 or an
  ``insufficient_quota`` 429. A stream cut after its first token is never re-requested (T37).
- Explicit timeouts (T36): connect ``connect_timeout`` (10 s), and a *read* timeout of
  ``read_timeout`` (120 s) between bytes, so a slow first token succeeds and silence fails.
- Redirects are never followed (T25): the key goes only to the configured origin.
- The key never reaches a log line, an exception message or an error page (T27):
  :class:`Endpoint` hides it from ``repr``, headers travel as ``httpx.Headers`` (whose repr
  masks ``Authorization``), upstream error text is scrubbed before it is kept, and httpx's
  own exceptions are not chained onto ours (their frames would be shown on a debug page).
- Closing the stream (``aclose()``, ``contextlib.aclosing``, or cancelling the consuming task)
  closes the HTTP response at once, so the provider sees the connection end (T39, T40).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import logging
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import httpx  # noqa: TID251 - this is the one module allowed to talk HTTP to upstreams
from django.conf import settings
from django.utils.translation import gettext as _

from chat.errors import UpstreamError
from chat.upstream import redact, sse
from chat.upstream.imagewire import GeneratedImage, images_result
from chat.upstream.wire import (
    Embeddings,
    Endpoint,
    InvalidEndpoint,
    ModerationResult,
    RawChunk,
    StreamEvent,
    Usage,
    backoff_seconds,
    chunk_event,
    completion_as_chunk,
    completion_body,
    completion_events,
    embeddings_body,
    embeddings_result,
    error_fields,
    model_ids,
    moderation_result,
    moderation_results,
    moderations_body,
    raw_chunk,
    retry_after_seconds,
    retryable,
    speech_body,
    status_error,
    stream_error,
    transcription_fields,
    transcription_text,
    validate_base_url,
)

__all__ = [
    "Endpoint",
    "InvalidEndpoint",
    "ModerationResult",
    "RawChunk",
    "StreamEvent",
    "Usage",
    "UpstreamError",
    "chat_completion",
    "close_clients",
    "completion",
    "edit",
    "embeddings",
    "images_from_image",
    "images_generate",
    "list_models",
    "moderate",
    "moderations",
    "stream_chat",
    "stream_chunks",
    "speech",
    "transcribe",
    "validate_base_url",
]

logger = logging.getLogger(__name__)
_Item = typing.TypeVar("_Item")

USER_AGENT = "Parley/0.1"
MAX_ERROR_BODY = 64 * 1024
MAX_JSON_BODY = 8 * 1024 * 1024
DONE_DRAIN_SECONDS = 1.0

# --- connection pools ---------------------------------------------------------------------
# httpx connections belong to the event loop that opened them, so each loop gets its own
# clients. A loop's clients are "shards" of at most _SHARD_SIZE connections: httpcore's pool
# scans every connection on each request (quadratic in its size), which at 500 concurrent
# streams in one pool costs seconds of CPU; small shards keep each scan short.
_SHARD_SIZE = 32


class _Shard:
    __slots__ = ("client", "inflight")

    def __init__(self):
        limits = httpx.Limits(max_connections=_SHARD_SIZE, max_keepalive_connections=_SHARD_SIZE, keepalive_expiry=30.0)
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            limits=limits,
            verify=_ssl_context(),
            headers={"User-Agent": USER_AGENT},
            transport=_aiohttp_transport(limits) if settings.PARLEY_UPSTREAM_TRANSPORT == "aiohttp" else None,
        )
        self.inflight = 0

    def forget(self) -> None:
        """Drop this shard of a closed event loop, whose connections cannot be closed politely."""
        transport = self.client._transport
        session = getattr(transport, "client", None)
        if session is not None and hasattr(session, "detach"):  # aiohttp's: no "unclosed" warning
            connector = session.connector
            session.detach()
            if connector is not None:
                connector._close()


# --- the transport under httpx -------------------------------------------------------------
# PARLEY_UPSTREAM_TRANSPORT=aiohttp puts httpx-aiohttp under the same AsyncClient: aiohttp's
# C HTTP parser reads the stream (docs/performance.md). Its own error mapping reports a server
# that hangs up, and a read timeout, as a *connect* timeout (which would be retried and called
# "could not connect"), and lets some aiohttp errors through unmapped; Parley maps them again
# here, from the aiohttp exception, to the httpx exception httpx's own transport raises.
def _aiohttp_errors():
    import aiohttp

    # Most specific first: the first match wins.
    return (
        (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
        (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
        (aiohttp.ClientConnectorError, httpx.ConnectError),
        (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
        (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
        (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
        (aiohttp.ClientConnectionError, httpx.ReadError),
        (aiohttp.ClientError, httpx.TransportError),
        (TimeoutError, httpx.TimeoutException),
    )


def _remap(exc: BaseException, errors) -> httpx.HTTPError:
    source = exc.__cause__ if isinstance(exc, httpx.HTTPError) and exc.__cause__ is not None else exc
    for kind, httpx_error in errors:
        if isinstance(source, kind):
            return httpx_error(str(source) or type(source).__name__)
    return exc if isinstance(exc, httpx.HTTPError) else httpx.TransportError(str(exc) or type(exc).__name__)


@functools.cache
def _aiohttp_transport_class():
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    errors = _aiohttp_errors()
    catch = (httpx.HTTPError, aiohttp.ClientError, TimeoutError)

    class Stream(httpx.AsyncByteStream):
        def __init__(self, inner):
            self._inner = inner

        async def __aiter__(self):
            try:
                async for chunk in self._inner:
                    yield chunk
            except catch as exc:
                raise _remap(exc, errors) from None

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            except catch as exc:
                raise _remap(exc, errors) from None

    class Transport(AiohttpTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            try:
                response = await super().handle_async_request(request)
            except catch as exc:
                raise _remap(exc, errors) from None
            response.stream = Stream(response.stream)
            return response

    return Transport


def _aiohttp_transport(limits: httpx.Limits):
    return _aiohttp_transport_class()(verify=_ssl_context(), limits=limits)


_pools: dict[asyncio.AbstractEventLoop, list[_Shard]] = {}


@atexit.register
def _forget_all() -> None:
    # At exit the loops are gone: drop what is left without aiohttp's "unclosed session" errors.
    for shards in _pools.values():
        for shard in shards:
            with contextlib.suppress(Exception):
                shard.forget()
    _pools.clear()


@functools.cache
def _ssl_context():
    # Loading the CA bundle takes ~0.1 s; do it once per process, not once per client.
    return httpx.create_ssl_context()


def _shards() -> list[_Shard]:
    loop = asyncio.get_running_loop()
    shards = _pools.get(loop)
    if shards is None:
        # A closed loop's connections are dead; drop them (their sockets close when collected).
        for old in [other for other in _pools if other.is_closed()]:
            for shard in _pools.pop(old):
                shard.forget()
        shards = _pools[loop] = []
    return shards


@contextlib.contextmanager
def _lease():
    shards = _shards()
    shard = min(shards, key=lambda s: s.inflight) if shards else None
    if shard is None or shard.inflight >= _SHARD_SIZE:
        shard = _Shard()
        shards.append(shard)
    shard.inflight += 1
    try:
        yield shard.client
    finally:
        shard.inflight -= 1


async def close_clients() -> None:
    """Close this event loop's connections (at shutdown, and between tests)."""
    shards = _pools.pop(asyncio.get_running_loop(), [])
    for shard in shards:
        await shard.client.aclose()


def _timeout(endpoint: Endpoint) -> httpx.Timeout:
    # ``read`` bounds the silence between two bytes, not the whole reply: a 30 s first token
    # passes under the 120 s default. write/pool: a body goes out well within the connect
    # bound, and the pool never makes a request wait (each shard has room; see _lease).
    return httpx.Timeout(
        connect=endpoint.connect_timeout,
        read=endpoint.read_timeout,
        write=max(endpoint.connect_timeout, 10.0),
        pool=endpoint.connect_timeout,
    )


async def _sleep(seconds: float) -> None:
    """The backoff sleep; tests replace it to stay fast."""
    await asyncio.sleep(seconds)


# --- requests and retries -----------------------------------------------------------------
def _headers(endpoint: Endpoint, accept: str) -> httpx.Headers:
    headers = httpx.Headers({"Accept": accept})
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    if endpoint.organization:
        headers["OpenAI-Organization"] = endpoint.organization
    if accept == "text/event-stream":
        # A compressed event stream is buffered by some proxies until it ends.
        headers["Accept-Encoding"] = "identity"
    return headers


async def _send(client: httpx.AsyncClient, endpoint: Endpoint, request: httpx.Request, max_retries: int | None):
    """The streamed 2xx response to ``request``, after the retry policy; the caller closes it."""
    retries = settings.PARLEY_UPSTREAM_MAX_RETRIES if max_retries is None else max_retries
    done = 0
    while True:
        try:
            response = await client.send(request, stream=True)
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.ReadError,
            httpx.WriteError,
            httpx.RemoteProtocolError,
        ) as exc:
            # The connection failed before any answer: safe to try again (nothing was generated).
            # Read timeouts are not retried: silence must fail within read_timeout (T36).
            if done >= retries:
                raise _transport_error(exc, endpoint) from None
            delay = backoff_seconds(done)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, endpoint) from None
        else:
            if response.status_code < 300:
                return response
            try:
                raw = await _read_capped(response, MAX_ERROR_BODY)
            except httpx.HTTPError:
                raw = b""
            finally:
                await response.aclose()
            error = error_fields(raw)
            wait = retry_after_seconds(response.headers)
            status = response.status_code
            if wait is not None and wait > settings.PARLEY_RETRY_AFTER_MAX:
                # Waiting that long would leave the member staring at nothing: tell them when.
                raise status_error(status, error, endpoint, retry_after=wait)
            should = retryable(status, error) and response.headers.get("x-should-retry", "").lower() != "false"
            if not should or done >= retries:
                raise status_error(status, error, endpoint, retry_after=wait if wait and wait > 0 else None)
            delay = wait if wait is not None and wait > 0 else backoff_seconds(done)
            logger.info(
                "upstream %s answered %s; retry %s of %s in %.2fs", request.url.host, status, done + 1, retries, delay
            )
        done += 1
        await _sleep(delay)


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) >= cap:
            break
    return bytes(buf[:cap])


def _transport_error(exc: httpx.HTTPError, endpoint: Endpoint) -> UpstreamError:
    # httpx messages name hosts and socket errors, never header values; still scrubbed.
    logger.warning("upstream %s: %s %s", endpoint.base_url, type(exc).__name__, redact.clean(exc, [endpoint.api_key]))
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return UpstreamError(_("Parley could not connect to the model provider."), code="upstream_unavailable")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError(_("The model provider did not answer in time."), code="upstream_timeout")
    if isinstance(exc, httpx.DecodingError):
        return UpstreamError(
            _("The model provider sent a response Parley could not read."), code="upstream_bad_response"
        )
    return UpstreamError(_("The connection to the model provider broke."), code="upstream_unavailable")


# --- the calls ----------------------------------------------------------------------------
async def stream_chat(
    endpoint: Endpoint, payload: dict, *, max_retries: int | None = None
) -> AsyncGenerator[StreamEvent, None]:
    """Stream a chat completion: content deltas of choice 0, then finish_reason, then usage.

    An async generator; close it (``contextlib.aclosing``) or cancel its consumer to close the
    upstream request at once. Raises :class:`UpstreamError`; after events were yielded a
    failure is raised after them and nothing is re-requested.
    """
    body = dict(payload)
    body["stream"] = True
    body["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
    with _lease() as client:
        request = client.build_request(
            "POST",
            endpoint.url("chat/completions"),
            json=body,
            headers=_headers(endpoint, "text/event-stream"),
            timeout=_timeout(endpoint),
        )
        response = await _send(client, endpoint, request, max_retries)
        try:
            if "json" in response.headers.get("content-type", ""):
                # Some servers ignore "stream" or report errors as JSON with a 200.
                for event in completion_events(await _read_json(response, endpoint), endpoint):
                    yield event
                return
            async with contextlib.aclosing(_stream_events(response, endpoint)) as events:
                async for event in events:
                    yield event
        finally:
            await response.aclose()


def _split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines of ``data`` (CRLF, LF and CR all end one) and the unfinished rest.

    A CR at the very end stays in the rest: the LF of its CRLF may come in the next chunk.
    """
    carry_cr = data.endswith(b"\r")
    if carry_cr:
        data = data[:-1]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = data.split(b"\n")
    rest = lines.pop()
    return lines, rest + b"\r" if carry_cr else rest


def _body_chunks(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    # The raw body when it is not compressed (we ask for identity): httpx's aiter_lines stacks
    # three more generators (bytes, text, lines) over it, which cost a third of the CPU of a
    # 5,000-token reply (docs/performance.md). A server that compresses anyway is decoded.
    if response.headers.get("content-encoding", "identity").strip().lower() in ("", "identity"):
        return typing.cast(AsyncGenerator[bytes, None], response.aiter_raw())
    return typing.cast(AsyncGenerator[bytes, None], response.aiter_bytes())


def _stream_events(response: httpx.Response, endpoint: Endpoint) -> AsyncGenerator[StreamEvent, None]:
    """The chat completion's events, as Parley reads them (wire.chunk_event)."""
    return _sse_items(response, endpoint, chunk_event, lambda event: event.finish_reason is not None)


async def _sse_items(
    response: httpx.Response,
    endpoint: Endpoint,
    parse: Callable[[sse.Message, Endpoint], _Item | None],
    finishes: Callable[[_Item], bool],
) -> AsyncGenerator[_Item, None]:
    """The items ``parse`` makes of a server-sent event stream, until ``[DONE]`` or its end.

    A stream that ends before an item that ``finishes`` the reply is an error; one that breaks
    after it only lost its trailing usage chunk or ``[DONE]`` and is taken as complete.
    """
    decoder = sse.Decoder()
    finished = False
    rest = b""
    try:
        async with contextlib.aclosing(_body_chunks(response)) as chunks:
            async for chunk in chunks:
                lines, rest = _split_lines(rest + chunk)
                for message in decoder.feed_lines(lines):
                    if message.data == "[DONE]":
                        await _drain(chunks)
                        return
                    item = parse(message, endpoint)
                    if item is not None:
                        finished = finished or finishes(item)
                        yield item
        if rest:
            # The body ended without a final line break: its last line still counts (a field
            # line, never a blank one, so the flush below dispatches it).
            decoder.feed(rest.removesuffix(b"\r").decode("utf-8", "replace"))
        tail = decoder.flush()
        if tail is not None and tail.data == "[DONE]":
            return
        item = parse(tail, endpoint) if tail is not None else None
        if item is not None:
            finished = finished or finishes(item)
            yield item
    except httpx.HTTPError as exc:
        if finished and not isinstance(exc, httpx.TimeoutException):
            # The reply was complete; only the trailing usage chunk or [DONE] was lost.
            logger.info("upstream %s broke after finish_reason: %s", endpoint.base_url, type(exc).__name__)
            return
        raise _transport_error(exc, endpoint) from None
    if not finished:
        raise UpstreamError(
            _("The model provider ended the reply before it was complete."), code="upstream_bad_response"
        )


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read the end of the body after [DONE], so the connection can be reused; briefly."""
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(DONE_DRAIN_SECONDS):
            async for _chunk in chunks:
                pass


async def _read_json(response: httpx.Response, endpoint: Endpoint, cap: int = MAX_JSON_BODY):
    try:
        raw = await _read_capped(response, cap + 1)
        if len(raw) > cap:
            raise UpstreamError(
                _("The model provider sent a response larger than Parley reads."), code="upstream_bad_response"
            )
    except httpx.HTTPError as exc:
        raise _transport_error(exc, endpoint) from None
    try:
        return json.loads(raw)
    except ValueError:
        raise UpstreamError(
            _("The model provider sent a response Parley could not read."), code="upstream_bad_response"
        ) from None


async def _call_json(
    endpoint: Endpoint,
    method: str,
    path: str,
    body=None,
    max_retries=None,
    *,
    files: dict | None = None,
    cap: int = MAX_JSON_BODY,
):
    """One request with a JSON answer. ``files`` makes it multipart: ``body`` its text fields,
    ``files`` its files as ``{field: (name, bytes, type)}`` (bytes, so a retry sends them again)."""
    with _lease() as client:
        if files is None:
            request = client.build_request(
                method,
                endpoint.url(path),
                json=body,
                headers=_headers(endpoint, "application/json"),
                timeout=_timeout(endpoint),
            )
        else:
            request = client.build_request(
                method,
                endpoint.url(path),
                data=body,
                files=files,
                headers=_headers(endpoint, "application/json"),
                timeout=_timeout(endpoint),
            )
        response = await _send(client, endpoint, request, max_retries)
        try:
            data = await _read_json(response, endpoint, cap)
        finally:
            await response.aclose()
    if isinstance(data, dict) and data.get("error"):
        raise stream_error(error_fields(data), endpoint)
    return data


async def moderate(endpoint: Endpoint, text: str | list[str], *, max_retries: int | None = None) -> ModerationResult:
    """``POST /moderations`` for one text or several: flagged if any is, with the flagged categories."""
    if isinstance(text, list) and len(text) == 1:
        text = text[0]  # the plain form every compatible server understands
    return moderation_result(await _call_json(endpoint, "POST", "moderations", {"input": text}, max_retries))


async def moderate_each(
    endpoint: Endpoint, texts: list[str], *, max_retries: int | None = None
) -> list[ModerationResult]:
    """``POST /moderations`` for several texts in one call: a verdict for each, in order."""
    data = await _call_json(endpoint, "POST", "moderations", {"input": list(texts)}, max_retries)
    return moderation_results(data, len(texts))


async def embed(
    endpoint: Endpoint,
    model: str,
    inputs: list[str],
    *,
    user: str = "",
    dimensions: int | None = None,
    max_retries=None,
) -> Embeddings:
    """``POST /embeddings`` for a batch of texts: their vectors in input order and the tokens billed.

    ``dimensions`` asks for shorter vectors (the text-embedding-3 models' parameter)."""
    body: dict = {"model": model, "input": list(inputs), "encoding_format": "float"}
    if dimensions:
        body["dimensions"] = int(dimensions)
    if user:
        body["user"] = user
    return embeddings_result(await _call_json(endpoint, "POST", "embeddings", body, max_retries), len(inputs))


async def list_models(endpoint: Endpoint, *, max_retries: int | None = None) -> list[str]:
    """The model ids ``GET /models`` lists, in the provider's order, without duplicates."""
    return model_ids(await _call_json(endpoint, "GET", "models", max_retries=max_retries))


# --- images (chat/upstream/imagewire.py reads the answers) -----------------------------------
async def images_generate(endpoint: Endpoint, body: dict, *, max_retries: int | None = None) -> list[GeneratedImage]:
    """``POST /images/generations`` (a JSON body from ``imagewire.generation_body``): the images."""
    data = await _call_json(
        endpoint, "POST", "images/generations", body, max_retries, cap=settings.PARLEY_IMAGE_MAX_RESPONSE_BYTES
    )
    return images_result(data, most=int(body.get("n") or 1))


async def images_from_image(
    endpoint: Endpoint,
    operation: str,
    fields: dict[str, str],
    files: dict[str, tuple[str, bytes, str]],
    *,
    max_retries: int | None = None,
) -> list[GeneratedImage]:
    """``POST /images/edits`` or ``/images/variations`` (``operation``: "edits" or
    "variations"), multipart: ``fields`` from ``imagewire.form_fields``, ``files`` the PNGs."""
    if operation not in ("edits", "variations"):
        raise ValueError(f"unknown image operation {operation!r}")
    data = await _call_json(
        endpoint,
        "POST",
        f"images/{operation}",
        fields,
        max_retries,
        files=files,
        cap=settings.PARLEY_IMAGE_MAX_RESPONSE_BYTES,
    )
    return images_result(data, most=int(fields.get("n") or 1))


# --- audio ----------------------------------------------------------------------------------
async def transcribe(
    endpoint: Endpoint,
    *,
    model: str,
    audio: bytes,
    filename: str,
    content_type: str,
    translate: bool = False,
    language: str = "",
    max_retries: int | None = None,
) -> str:
    """``POST /audio/transcriptions`` (or ``/audio/translations``, into English) as a multipart
    form: the text the provider heard."""
    path = "audio/translations" if translate else "audio/transcriptions"
    fields = transcription_fields(model=model, language="" if translate else language)
    with _lease() as client:
        request = client.build_request(
            "POST",
            endpoint.url(path),
            data=fields,
            files={"file": (filename, audio, content_type)},
            headers=_headers(endpoint, "application/json"),
            timeout=_timeout(endpoint),
        )
        response = await _send(client, endpoint, request, max_retries)
        try:
            data = await _read_json(response, endpoint)
        finally:
            await response.aclose()
    if isinstance(data, dict) and data.get("error"):
        raise stream_error(error_fields(data), endpoint)
    return transcription_text(data)


async def speech(
    endpoint: Endpoint, *, model: str, text: str, voice: str, speed, max_retries: int | None = None
) -> AsyncGenerator[bytes, None]:
    """``POST /audio/speech``: the MP3 bytes as they arrive, to relay before the file is whole.

    Retried only before the answer starts; close the generator (or cancel its consumer) to
    close the request at once, like a chat stream.
    """
    body = speech_body(model=model, text=text, voice=voice, speed=speed)
    with _lease() as client:
        request = client.build_request(
            "POST",
            endpoint.url("audio/speech"),
            json=body,
            headers=_headers(endpoint, "audio/mpeg"),
            timeout=_timeout(endpoint),
        )
        response = await _send(client, endpoint, request, max_retries)
        try:
            if "json" in response.headers.get("content-type", ""):
                data = await _read_json(response, endpoint)  # an error reported with a 200
                raise stream_error(error_fields(data), endpoint) if isinstance(data, dict) else bad_audio()
            try:
                async for chunk in response.aiter_bytes():
                    if chunk:
                        yield chunk
            except httpx.HTTPError as exc:
                raise _transport_error(exc, endpoint) from None
        finally:
            await response.aclose()


def bad_audio() -> UpstreamError:
    return UpstreamError(_("The model provider sent a response Parley could not read."), code="upstream_bad_response")


# --- the member API: the provider's answers in OpenAI's shapes, passed through ----------------
async def chat_completion(endpoint: Endpoint, body: dict, *, max_retries: int | None = None) -> dict:
    """``POST /chat/completions`` without streaming: the provider's ``chat.completion`` object."""
    payload = {**body, "stream": False}
    payload.pop("stream_options", None)
    return completion_body(await _call_json(endpoint, "POST", "chat/completions", payload, max_retries))


async def completion(endpoint: Endpoint, body: dict, *, max_retries: int | None = None) -> dict:
    """``POST /completions`` (legacy prompt completions) without streaming."""
    payload = {**body, "stream": False}
    payload.pop("stream_options", None)
    return completion_body(await _call_json(endpoint, "POST", "completions", payload, max_retries))


async def edit(endpoint: Endpoint, body: dict, *, max_retries: int | None = None) -> dict:
    """``POST /edits``, for the providers that still serve it (OpenAI's own answers 404)."""
    return completion_body(await _call_json(endpoint, "POST", "edits", body, max_retries), "edit")


async def embeddings(endpoint: Endpoint, body: dict, *, max_retries: int | None = None) -> dict:
    """``POST /embeddings`` passed through (any ``encoding_format``): the provider's list object."""
    return embeddings_body(await _call_json(endpoint, "POST", "embeddings", body, max_retries))


async def moderations(endpoint: Endpoint, body: dict, *, max_retries: int | None = None) -> dict:
    """``POST /moderations`` passed through: the provider's moderation object."""
    return moderations_body(await _call_json(endpoint, "POST", "moderations", body, max_retries))


async def stream_chunks(
    endpoint: Endpoint, path: str, body: dict, *, max_retries: int | None = None
) -> AsyncGenerator[RawChunk, None]:
    """Stream ``POST /chat/completions`` or ``/completions`` chunk by chunk, as the provider
    sent them (every choice, tool calls, logprobs), always asking for the usage chunk so the
    call can be billed.

    The same rules as :func:`stream_chat`: retried only before the first byte, closed at once
    when closed or cancelled, a stream cut before its end raises :class:`UpstreamError` after
    the chunks that came.
    """
    payload = {**body, "stream": True}
    payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    with _lease() as client:
        request = client.build_request(
            "POST",
            endpoint.url(path),
            json=payload,
            headers=_headers(endpoint, "text/event-stream"),
            timeout=_timeout(endpoint),
        )
        response = await _send(client, endpoint, request, max_retries)
        try:
            if "json" in response.headers.get("content-type", ""):
                # A provider that ignores "stream" answers with the whole completion.
                data = await _read_json(response, endpoint)
                if isinstance(data, dict) and data.get("error"):
                    raise stream_error(error_fields(data), endpoint)
                whole = completion_body(data)
                as_chunk = completion_as_chunk(whole) if path == "chat/completions" else whole
                only = raw_chunk(sse.Message(json.dumps(as_chunk)), endpoint)
                if only is not None:
                    yield only
                return
            async with contextlib.aclosing(_raw_chunks(response, endpoint)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            await response.aclose()


def _raw_chunks(response: httpx.Response, endpoint: Endpoint) -> AsyncGenerator[RawChunk, None]:
    """Chat or legacy completion chunks to relay as they are (wire.raw_chunk)."""
    return _sse_items(response, endpoint, raw_chunk, lambda chunk: chunk.finished)

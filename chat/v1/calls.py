"""What each member API request does, through the model-call core (docs/architecture.md).

Every request is one admitted call (``chat.core.calls.model_call``: the model granted to the
token's member and of the endpoint's kind, the member's rate, the budget reserved for the
worst case) with the moderation gate on the text the model will read, then one provider call
through ``chat.upstream.client``, then settlement with the usage the provider reported (or
an estimate, flagged, when a stream was cut). Usage is recorded with purpose ``api`` and the
token. The provider's key never leaves: requests are rebuilt from the validated fields, and
answers are the provider's JSON bodies, whose error texts are cleaned before they are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from asgiref.sync import SyncToAsync, sync_to_async

from chat import tokens
from chat.core.calls import Admission, Call, Units, call_admit, call_running, model_call
from chat.core.grants import model_granted, models_granted
from chat.core.moderation import blocklist_match, moderation_check, moderation_text
from chat.core.rate import rate_limit_hit
from chat.errors import NoProvider, ParleyError
from chat.models import ApiToken, ChatModel, ModelKind, UsageKind
from chat.services.api_exchanges import api_exchange_save, message_text
from chat.upstream import client
from chat.upstream.wire import RawChunk, completion_text, completion_usage
from chat.v1.errors import from_parley, model_not_found

logger = logging.getLogger(__name__)

PURPOSE = "api"
DONE = b"data: [DONE]\n\n"
# The roles whose text a member writes (everything but the model's own earlier answers).
MODERATED_ROLES = {"system", "developer", "user", "tool", "function"}


@dataclass(frozen=True)
class Caller:
    """Who is calling: a member's token, which acts as its member."""

    token: ApiToken
    user: object

    @property
    def token_id(self) -> int:
        return self.token.pk


@dataclass
class Credentials:
    """A request's key, not checked yet: the endpoints that admit a model call check it in
    their one trip to the database thread (:func:`_begin`), not in a trip of its own. Each trip
    waits behind every other queued there, so with 100 requests at once every second trip
    waited until all the first ones were done: no request reached the provider before all 100
    keys were checked (docs/performance.md, "The member API")."""

    header: str
    address: str | None
    checked: bool = False

    def caller(self) -> Caller:
        """The caller the key names, or the OpenAI API's refusal (chat.v1.auth). Database thread."""
        from chat.v1.auth import authenticate  # chat.v1.auth imports this module

        self.checked = True
        return authenticate(self.header, self.address)


@contextlib.contextmanager
def database_thread():
    """Within it, this task's database calls (``sync_to_async``, thread-sensitive) run on the
    process's one database thread, as the websocket's do, not on the thread Django makes for
    each request: 100 streaming requests at once then meant 100 SQLite connections fighting
    for the write lock and a new connection per request (docs/performance.md, "The member
    API"). Only within it: Django's middleware after the view went to that one thread too and
    waited there behind every other request's admission, so no streamed answer began before
    all 100 were admitted."""
    token = SyncToAsync.thread_sensitive_context.set(None)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # a stream closed from another context
            SyncToAsync.thread_sensitive_context.reset(token)


# --- models -------------------------------------------------------------------------------
def _granted(caller: Caller, kind: str):
    qs = models_granted(user=caller.user, kind=kind)
    if caller.token.allowed_models.exists():
        qs = qs.filter(pk__in=caller.token.allowed_models.values("pk"))
    return qs


def model_resolve(*, caller: Caller, name: str, kind: str) -> ChatModel:
    """The granted model of ``kind`` whose id is ``name`` (the first provider's, if several
    serve it), or the OpenAI API's 404: a model that is missing, disabled, of another kind,
    not granted or not on the token's list is refused alike (T07)."""
    model = _granted(caller, kind).filter(model_id=name).first()
    if model is None:
        raise model_not_found(name)
    return model


def models_list(*, caller: Caller) -> list[dict]:
    """Every model the token may call, of every kind, once per id, as OpenAI model objects."""
    seen: dict[str, dict] = {}
    for kind in ModelKind.values:
        for model in _granted(caller, kind):
            seen.setdefault(model.model_id, model_object(model))
    return list(seen.values())


def model_object(model: ChatModel) -> dict:
    return {"id": model.model_id, "object": "model", "created": int(model.created_at.timestamp()), "owned_by": "parley"}


def model_get(*, caller: Caller, name: str) -> dict:
    for kind in ModelKind.values:
        model = _granted(caller, kind).filter(model_id=name).first()
        if model is not None:
            return model_object(model)
    raise model_not_found(name)


# --- estimates ----------------------------------------------------------------------------
def chat_prompt_tokens(body: dict, encoding: str) -> int:
    """The prompt's tokens as the provider will count them (OpenAI's cookbook rule), plus the
    tool definitions, which the provider bills as prompt too."""
    total = tokens.REPLY_PRIMING
    for message in body.get("messages") or []:
        total += tokens.TOKENS_PER_MESSAGE + tokens.ROLE_TOKENS
        total += tokens.count_tokens(message_text(message.get("content")), encoding)
        for extra in ("name", "tool_calls", "function_call", "tool_call_id"):
            if message.get(extra):
                value = message[extra]
                total += tokens.count_tokens(value if isinstance(value, str) else json.dumps(value), encoding)
    for extra in ("tools", "functions", "response_format"):
        if body.get(extra):
            total += tokens.count_tokens(json.dumps(body[extra]), encoding)
    return total


def text_or_tokens_count(value, encoding: str) -> int:
    """Tokens of a prompt or embedding input: text, texts, token ids, or lists of token ids."""
    if isinstance(value, str):
        return tokens.count_tokens(value, encoding)
    if isinstance(value, list):
        return sum(
            1 if isinstance(item, int) else len(item) if isinstance(item, list) else tokens.count_tokens(item, encoding)
            for item in value
        )
    return 0


def _texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _output_budget(body: dict, model: ChatModel) -> int:
    per_choice = body.get("max_completion_tokens") or body.get("max_tokens") or model.max_output_tokens
    return int(per_choice) * int(body.get("n") or 1)


def _estimated(call: Call, prompt_tokens: int, text: str, encoding: str) -> None:
    call.usage = Units(input_tokens=prompt_tokens, output_tokens=tokens.count_tokens(text, encoding))
    call.estimated = True


# --- admission ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Begun:
    """A request admitted on the database thread in one trip: its model, its admission, the
    prompt's tokens as estimated, the text the gate reads and the blocklist's verdict on it."""

    caller: Caller
    model: ChatModel
    admission: Admission
    prompt_tokens: int
    texts: list[str]
    blocklist_hits: list[str]

    @property
    def encoding(self) -> str:
        return tokens.encoding_name_for_model(self.model.model_id)


def _plan(path: str, body: dict, model: ChatModel) -> tuple[int, int, list[str]]:
    """The prompt's tokens, the most output tokens, and the texts to moderate, of one request."""
    encoding = tokens.encoding_name_for_model(model.model_id)
    if path == "chat/completions":
        texts = [message_text(m.get("content")) for m in body["messages"] if m.get("role") in MODERATED_ROLES]
        return chat_prompt_tokens(body, encoding), _output_budget(body, model), texts
    if path == "completions":
        suffix = body.get("suffix") or ""
        prompt = text_or_tokens_count(body.get("prompt"), encoding) + tokens.count_tokens(suffix, encoding)
        return prompt, _output_budget(body, model), [*_texts(body.get("prompt")), suffix]
    if path == "edits":
        texts = [body.get("instruction") or "", body.get("input") or ""]
        return sum(tokens.count_tokens(t, encoding) for t in texts), _output_budget(body, model), texts
    # embeddings
    return text_or_tokens_count(body["input"], encoding), 0, _texts(body["input"])


def _begin(caller: Caller | Credentials, path: str, body: dict) -> Begun:
    """Check the key, resolve the model, check the blocklist and admit the call: one trip to
    the database thread for what the first token waits on."""
    if isinstance(caller, Credentials):
        caller = caller.caller()
    kind = ModelKind.EMBEDDING if path == "embeddings" else ModelKind.CHAT
    model = model_resolve(caller=caller, name=body["model"], kind=kind)
    prompt, output, texts = _plan(path, body, model)
    hits = blocklist_match(moderation_text(texts))
    admission = call_admit(
        user=caller.user,
        kind=UsageKind.EMBEDDING if path == "embeddings" else UsageKind.CHAT,
        estimate=Units(input_tokens=prompt, output_tokens=output),
        purpose=PURPOSE,
        model=model,
        granted=True,
        api_token_id=caller.token_id,
    )
    return Begun(caller, model, admission, prompt, texts, hits)


async def _gate(caller: Caller, begun: Begun) -> None:
    await moderation_check(
        user=caller.user,
        texts=begun.texts,
        provider=begun.model.provider,
        api_token_id=caller.token_id,
        blocklist_hits=begun.blocklist_hits,
    )


def _upstream_body(body: dict, call: Call) -> dict:
    payload = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    payload["model"] = call.model.model_id
    # The provider learns a pseudonym for the member, never who they are or the client's own value.
    payload["user"] = call.admission.pseudonym
    if "safety_identifier" in payload:
        payload["safety_identifier"] = call.admission.pseudonym
    return payload


# --- JSON answers -------------------------------------------------------------------------
async def _billed_if_cancelled(call: Call, begun: Begun, request):
    """Await the provider's answer; a client that hangs up first cancels the request, and the
    prompt the provider had already read is billed, as an estimate (its answer is unknown)."""
    try:
        return await request
    except asyncio.CancelledError:
        call.usage, call.estimated = Units(input_tokens=begun.prompt_tokens), True
        raise


_SENDERS = {"chat/completions": client.chat_completion, "completions": client.completion, "edits": client.edit}


async def completion_json(*, caller: Caller | Credentials, body: dict, path: str) -> dict:
    """One non-streamed chat completion (``chat/completions``), legacy completion
    (``completions``) or edit (``edits``): the provider's answer, as it gave it."""
    begun = await sync_to_async(_begin)(caller, path, body)
    caller = begun.caller
    async with call_running(begun.admission) as call:
        await _gate(caller, begun)
        data = await _billed_if_cancelled(call, begun, _SENDERS[path](call.endpoint, _upstream_body(body, call)))
        usage = completion_usage(data)
        if usage is not None:
            call.usage = Units(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)
        else:
            _estimated(call, begun.prompt_tokens, completion_text(data), begun.encoding)
    if path == "chat/completions" and caller.token.save_conversations:
        await _save(caller, begun.model, body, data, call)
    return data


async def _save(caller: Caller, model: ChatModel, body: dict, data: dict, call: Call) -> None:
    first = next((c for c in data.get("choices") or [] if isinstance(c, dict) and c.get("index", 0) == 0), {})
    reply = message_text((first.get("message") or {}).get("content"))
    await _save_text(caller, model, body, reply, first.get("finish_reason") or "", call)


async def _save_text(caller: Caller, model: ChatModel, body: dict, reply: str, finish: str, call: Call) -> None:
    try:
        await sync_to_async(api_exchange_save)(
            user=caller.user,
            model=model,
            messages=body["messages"],
            reply=reply,
            finish_reason=finish,
            usage_record=call.record,
        )
    except Exception:  # the answer was given and billed; a failed save must not turn it into an error
        logger.exception("saving an API chat completion of member %s as a conversation failed", caller.user.pk)


async def embeddings_json(*, caller: Caller | Credentials, body: dict) -> dict:
    begun = await sync_to_async(_begin)(caller, "embeddings", body)
    caller = begun.caller
    async with call_running(begun.admission) as call:
        await _gate(caller, begun)
        data = await _billed_if_cancelled(call, begun, client.embeddings(call.endpoint, _upstream_body(body, call)))
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        billed = usage.get("prompt_tokens")
        if type(billed) is int and billed >= 0:
            call.usage = Units(input_tokens=billed)
        else:
            call.usage, call.estimated = Units(input_tokens=begun.prompt_tokens), True
    return data


def _moderation_route(caller: Caller, name: str | None) -> tuple[ChatModel | None, client.Endpoint]:
    """Which provider answers ``/v1/moderations``: the moderation model asked for (it must be
    granted), else the first granted one, else the checker of the member's default chat model."""
    granted = _granted(caller, ModelKind.MODERATION)
    if name:
        model = granted.filter(model_id=name).first()
        if model is None:
            raise model_not_found(name)
        return model, client.Endpoint.for_provider(model.provider)
    model = granted.first()
    if model is not None:
        return model, client.Endpoint.for_provider(model.provider)
    try:
        chat = model_granted(user=caller.user, model_id=None, kind=ModelKind.CHAT)
    except NoProvider:
        raise model_not_found("omni-moderation-latest") from None
    provider = chat.provider
    if provider.moderation_provider_id and provider.moderation_provider.enabled:
        provider = provider.moderation_provider
    return None, client.Endpoint.for_provider(provider)


async def moderations_json(*, caller: Caller, body: dict) -> dict:
    model, endpoint = await sync_to_async(_moderation_route)(caller, body.get("model"))
    inputs = body["input"]
    characters = sum(len(t) for t in _texts(inputs)) or len(json.dumps(inputs))
    payload = {"input": inputs, **({"model": model.model_id} if model is not None else {})}
    if model is not None:
        admit = {"model": model, "granted": True}
    else:
        # Admitted as Parley's own gate (no catalog model), so the request rate is counted here.
        await sync_to_async(rate_limit_hit)(user=caller.user)
        admit = {"endpoint": endpoint, "rate": False}
    async with model_call(
        user=caller.user,
        kind=UsageKind.MODERATION,
        estimate=Units(characters=characters),
        purpose=PURPOSE,
        api_token_id=caller.token_id,
        **admit,
    ) as call:
        data = await client.moderations(call.endpoint, payload)
        call.usage = Units(characters=characters)
    return data


# --- streams ------------------------------------------------------------------------------
# Settlements of streams whose client left before their first byte, kept until they finish
# (the event loop holds only weak references to tasks).
_unstarted: set[asyncio.Future] = set()
# At most this many provider chunks read ahead of what the client has been sent.
_PUMP_CHUNKS = 256


class Relay:
    """An admitted streaming call whose first chunk has arrived: relays the provider's chunks
    as server-sent events, ends with ``data: [DONE]``, and settles when it ends, whichever way
    (a client that hangs up cancels the task: the provider's connection is closed at once and
    what was generated is billed, estimated if the provider had not said)."""

    def __init__(self, *, caller, model, body, stack, call, chunks, first, prompt_tokens, chat: bool):
        self.caller, self.model, self.body = caller, model, body
        self.stack, self.call, self.chunks, self.first = stack, call, chunks, first
        self.prompt_tokens = prompt_tokens
        self.chat = chat
        options = body.get("stream_options") or {}
        self.include_usage = bool(options.get("include_usage"))
        self.save = chat and caller.token.save_conversations
        self.text: list[str] = []
        self.reply: list[str] = []
        self.finish = ""
        self.usage = None
        self.started = False
        self.settled = False
        self._reader: asyncio.Future | None = None  # events()'s reader of the chunks
        # A client that leaves between this answer's start and its first byte cancels the
        # request's task before events() ever runs: settle then, not at the sweep's worst case.
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(self._request_done)

    def _request_done(self, _task) -> None:
        if not self.started and not self.settled:
            settling = asyncio.ensure_future(self._settle())
            _unstarted.add(settling)
            settling.add_done_callback(_unstarted.discard)

    def _relayed(self, chunk: RawChunk) -> bytes | None:
        data = chunk.data
        if chunk.usage is not None and not self.include_usage:
            # Parley always asks the provider for usage (to bill); the client did not.
            if not chunk.body.get("choices"):
                return None
            data = json.dumps({k: v for k, v in chunk.body.items() if k != "usage"})
        return b"data: " + data.encode() + b"\n\n"

    async def _pump(self, queue: asyncio.Queue) -> None:
        """Read the provider's chunks into ``queue`` while events() writes, then None; a
        failure (any exception) is queued in the chunks' place, so events() raises it. The
        queue is bounded: a client that reads slowly slows the reading of the provider."""
        try:
            async for chunk in self.chunks:
                await queue.put(chunk)
        except Exception as exc:  # noqa: BLE001 - not handled here: events() raises it
            await queue.put(exc)
        else:
            await queue.put(None)

    async def events(self) -> AsyncIterator[bytes]:
        """The answer's events. The chunks that arrived while the previous write was made go
        out together, in one write (the websocket coalesces its deltas the same way): one
        event and one daphne write per chunk held a 5,000-token answer at 0.38x the provider's
        rate (docs/performance.md). The first chunk, and any chunk that finds nothing waiting,
        is written at once; chunks before a failure are written before its error event."""
        # Its database calls (the settlement, the saved exchange) go to the one database thread.
        with database_thread():
            self.started = True
            queue: asyncio.Queue = asyncio.Queue(maxsize=_PUMP_CHUNKS)
            queue.put_nowait(self.first)
            self._reader = asyncio.ensure_future(self._pump(queue))
            try:
                while True:
                    batch = [await queue.get()]
                    while not queue.empty():
                        batch.append(queue.get_nowait())
                    last = batch[-1]
                    ended = last is None or isinstance(last, Exception)
                    if ended:
                        batch.pop()  # the reader's last item: the end, or a failure
                    pieces = []
                    for chunk in batch:
                        self._note(chunk)
                        out = self._relayed(chunk)
                        if out is not None:
                            pieces.append(out)
                    if pieces:
                        yield b"".join(pieces)
                    if isinstance(last, Exception):
                        raise last
                    if ended:
                        break
                # Settled before [DONE]: a client that has read the whole answer finds it billed.
                await self._settle()
                if self.save:
                    await _save_text(self.caller, self.model, self.body, "".join(self.reply), self.finish, self.call)
                yield DONE
            except ParleyError as exc:
                # After the first chunk the status is sent: the OpenAI API reports a failure as an
                # error event, which the official clients raise.
                logger.info("API stream of member %s failed: %s", self.caller.user.pk, exc.code)
                await self._settle()
                yield b"data: " + json.dumps(from_parley(exc).body()).encode() + b"\n\n"
            finally:
                # Also on a client that hung up: the task is cancelled here, the provider's
                # connection closed at once, and what was generated billed.
                await self._settle()

    def _note(self, chunk: RawChunk) -> None:
        self.text.append(chunk.text)
        if chunk.usage is not None:
            self.usage = chunk.usage
        if self.save:
            for choice in chunk.body.get("choices") or ():
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    self.reply.append(message_text((choice.get("delta") or {}).get("content")))
                    self.finish = choice.get("finish_reason") or self.finish

    async def _settle(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            # The reader stops first: the chunks cannot be closed while it is inside them.
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if self.settled:
            return
        self.settled = True
        await self.chunks.aclose()
        if self.usage is not None:
            self.call.usage = Units(input_tokens=self.usage.prompt_tokens, output_tokens=self.usage.completion_tokens)
        else:
            encoding = tokens.encoding_name_for_model(self.model.model_id)
            _estimated(self.call, self.prompt_tokens, "".join(self.text), encoding)
        await self.stack.aclose()  # settles, shielded from a cancellation


async def completion_stream(*, caller: Caller | Credentials, body: dict, path: str) -> Relay:
    """Admit, moderate and start a streamed chat or legacy completion; the first chunk has
    arrived when this returns, so a refusal (ours or the provider's) is still a status code."""
    begun = await sync_to_async(_begin)(caller, path, body)
    caller = begun.caller
    stack = contextlib.AsyncExitStack()
    chunks = None
    try:
        call = await stack.enter_async_context(call_running(begun.admission))
        await _gate(caller, begun)
        chunks = client.stream_chunks(call.endpoint, path, _upstream_body(body, call))
        first = await anext(chunks, None)
    except BaseException:
        # Refused, failed, or the client left before the answer began: nothing was generated.
        if chunks is not None:
            await chunks.aclose()
        await stack.aclose()
        raise
    return Relay(
        caller=caller,
        model=begun.model,
        body=body,
        stack=stack,
        call=call,
        chunks=chunks,
        first=first,
        prompt_tokens=begun.prompt_tokens,
        chat=path == "chat/completions",
    )

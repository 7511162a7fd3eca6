"""One reply, from the moderation gate to the final save: the task that owns it.

The task is independent of the socket that asked for it (a consumer handles one frame at a
time, so a reply inside ``receive`` would make "stop" wait). It streams to the conversation's
channel-layer group, saves its text at least every ``PARLEY_SAVE_INTERVAL`` seconds (which is
also its heartbeat), and listens on the conversation's control group for ``stop`` and for
``sync`` requests from sockets that open the conversation mid-reply.

The database is the record; the channel layer is only the fast path and may drop messages
when full (its spec says so), so the final ``reply.done`` carries the saved message whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils.translation import gettext as _

from chat import runtime, tokens
from chat.core.moderation import moderation_gate
from chat.errors import MessageBlocked, ModerationUnavailable, ParleyError
from chat.jobs.search import turn_index_enqueue
from chat.models import Message
from chat.serializers import message_to_dict
from chat.services.replies import replies_save_progress, reply_finish
from chat.services.turns import ReplyPlan
from chat.transport import events
from chat.transport.events import control_group, conversation_group
from chat.transport.titles import title_generate
from chat.upstream import client

logger = logging.getLogger(__name__)

_STOP = "stopped"
FIRST_DELTA_WAIT = 0.05  # seconds the stream waits for a socket here to write its first delta
COALESCE_MAX = 0.25  # seconds: however busy the process, a reply shows new text 4 times a second
LISTENER_CLOSE_WAIT = 2.0  # seconds the control listener gets to return before it is cancelled
_LISTENER_CLOSE = "reply.listener.close"


class OtherChoice:
    """The text of one more answer of a request with n > 1 (choice ``index``), saved as a
    sibling reply; the runner streams and finishes it with its first answer."""

    def __init__(self, reply_id):
        self.reply_id = reply_id
        self.parts: list[str] = []
        self.length = 0
        self.sent = 0
        self.finish_reason = ""

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def delta_event(self) -> dict | None:
        if self.length == self.sent:
            return None
        text = self.text
        offset, self.sent = self.sent, self.length
        return events.reply_delta(message_id=self.reply_id, offset=offset, text=text[offset:])


class ReplyRunner:
    def __init__(self, plan: ReplyPlan):
        self.plan = plan
        self.reply_id = plan.reply.id
        self.conversation_id = plan.conversation.id
        self.group = conversation_group(self.conversation_id)
        self.layer = get_channel_layer()
        provider = plan.conversation.model.provider
        self.provider = provider
        # Built (key decrypted, address checked) once, by the admission of this reply.
        self.endpoint = plan.admission.endpoint
        self.model_id = plan.conversation.model.model_id
        self.parts: list[str] = []
        self.length = 0  # code points received so far
        self.sent = 0  # code points already published as deltas
        self.finish_reason = ""
        self.usage: client.Usage | None = None
        self.outcome: str | None = None
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._coalesce = settings.PARLEY_DELTA_COALESCE_MS / 1000
        self._frame_budget = settings.PARLEY_DELTA_FRAMES_PER_SECOND
        self._beats: Heartbeats | None = None  # this process's live replies, once streaming
        self._stream_task: asyncio.Task | None = None
        self.control: str | None = None
        self._first_written = asyncio.Event()
        # The reply's reservation is sent upstream as its limit; this ends a stream that goes
        # on past it anyway, so the member's usage stays within what was reserved.
        self.cap = tokens.ReplyCap(plan.prompt.reply_tokens, plan.prompt.encoding)
        # n > 1: the other answers by their choice index (1, 2, 3), streamed by the same request.
        self.others = {index: OtherChoice(reply.id) for index, reply in enumerate(plan.others, start=1)}

    # --- the text -------------------------------------------------------------------------
    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def _on_delta(self, delta: str) -> None:
        self.parts.append(delta)
        self.length += len(delta)
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._last_flush + self.coalesce_interval() - loop.time()
        if self.sent == 0 or delay <= 0:
            # The first delta goes out at once (time to first token); later ones are
            # coalesced so a fast model costs one frame per interval, not one per token.
            self._flush()
        else:
            self._flush_handle = loop.call_later(delay, self._flush)

    def coalesce_interval(self) -> float:
        """Seconds of tokens gathered into one frame: ``PARLEY_DELTA_COALESCE_MS``, widened when
        this process streams so many replies at once that their frames would pass
        ``PARLEY_DELTA_FRAMES_PER_SECOND`` (each frame costs the same CPU however short; at
        200 replies 30 ms apart they were a fifth of the process's CPU, docs/performance.md),
        and never wider than ``COALESCE_MAX``."""
        live = len(self._beats.runners) if self._beats is not None else 1
        budget = self._frame_budget
        widened = min(live / budget, COALESCE_MAX) if budget > 0 else 0.0
        return max(self._coalesce, widened)

    def _on_other(self, others: dict) -> None:
        for index, (delta, finish) in others.items():
            choice = self.others.get(index)
            if choice is None:
                continue
            if delta:
                choice.parts.append(delta)
                choice.length += len(delta)
            if finish:
                choice.finish_reason = finish
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            delay = max(self._last_flush + self.coalesce_interval() - loop.time(), 0)
            self._flush_handle = loop.call_later(delay, self._flush)

    def texts(self) -> dict:
        """{reply id: text so far} of every answer this task writes (for the periodic save)."""
        return {self.reply_id: self.text, **{c.reply_id: c.text for c in self.others.values()}}

    def _flush(self) -> None:
        self._flush_handle = None
        for choice in self.others.values():
            event = choice.delta_event()
            if event is not None:
                self._outbox.put_nowait((self.group, event))
        if self.length == self.sent:
            return
        text = self.text
        chunk = text[self.sent :] if self.sent else text
        offset = self.sent
        self.sent = self.length
        self._last_flush = asyncio.get_running_loop().time()
        self._outbox.put_nowait((self.group, events.reply_delta(message_id=self.reply_id, offset=offset, text=chunk)))

    async def _sender(self) -> None:
        # One sender keeps group messages in order (Redis group_send awaits the network).
        while True:
            target, event = await self._outbox.get()
            try:
                if target.startswith("conv."):
                    await self.layer.group_send(target, event)
                else:
                    await self.layer.send(target, event)
            except Exception:  # noqa: BLE001 - the layer is the fast path; the DB is the record
                logger.warning("channel layer send failed for reply %s", self.reply_id, exc_info=True)
            finally:
                self._outbox.task_done()

    # --- control: stop and sync -----------------------------------------------------------
    async def _listen(self, channel: str) -> None:
        while True:
            event = await self.layer.receive(channel)
            kind = event.get("type")
            if kind == _LISTENER_CLOSE:
                return
            if kind == events.REPLY_STOP:
                self.outcome = _STOP
                if self._stream_task is not None:
                    self._stream_task.cancel()
            elif kind == events.REPLY_SYNC and isinstance(event.get("reply_channel"), str):
                # The snapshot is exactly what was already published, so the next delta
                # continues it with no gap and no overlap; it queues behind earlier deltas.
                self._outbox.put_nowait(
                    (
                        event["reply_channel"],
                        events.reply_snapshot(message_id=self.reply_id, text=self.text[: self.sent]),
                    )
                )
                for choice in self.others.values():
                    self._outbox.put_nowait(
                        (
                            event["reply_channel"],
                            events.reply_snapshot(message_id=choice.reply_id, text=choice.text[: choice.sent]),
                        )
                    )

    def _gone(self) -> None:
        """The conversation was deleted or the reply was ended elsewhere: stop paying."""
        if self._stream_task is not None and self.outcome is None:
            self.outcome = _STOP
            self._stream_task.cancel()

    # --- the reply ------------------------------------------------------------------------
    async def _stream(self) -> None:
        first_out = False
        async with contextlib.aclosing(client.stream_chat(self.endpoint, self.plan.prompt.payload)) as stream:
            async for event in stream:
                if event.delta:
                    delta = self.cap.take(event.delta)
                    if delta:
                        self._on_delta(delta)
                    if self.cap.reached:
                        # Leaving the loop closes the upstream request (aclosing).
                        self.finish_reason = "length"
                        return
                if event.finish_reason:
                    self.finish_reason = event.finish_reason
                if event.usage:
                    self.usage = event.usage
                if event.others:
                    self._on_other(event.others)
                if self.sent and not first_out:
                    # A fast upstream fills the socket faster than we read it, so reading never
                    # waits and nothing else on the loop would run until the burst ends: the
                    # first token would reach the browser with the last. Wait (bounded, in case
                    # no socket here follows the reply) until a socket of this process has
                    # written the first delta, then let its write go out. Only the first:
                    # yielding after every flush made each token its own frame under load.
                    first_out = True
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(FIRST_DELTA_WAIT):
                            await self._first_written.wait()
                    await asyncio.sleep(0)

    async def prepare(self) -> None:
        """Listen for stop before anyone can see the reply: a stop sent the moment the
        reply is announced must find its task (call before publishing ``message.created``)."""
        self.control = await self.layer.new_channel()
        await self.layer.group_add(control_group(self.conversation_id), self.control)

    async def run(self) -> None:
        if self.control is None:
            await self.prepare()
        control = self.control
        sender = asyncio.create_task(self._sender(), name=f"reply-sender-{self.reply_id}")
        listener = asyncio.create_task(self._listen(control), name=f"reply-control-{self.reply_id}")
        runtime.first_delta_written[str(self.reply_id)] = self._first_written
        try:
            status, error = await self._produce()
        except asyncio.CancelledError:
            # The runner itself is cancelled (the server is shutting down): keep the text.
            listener.cancel()
            error = ParleyError("The server restarted while this reply was being written.", code="server_restart")
            with contextlib.suppress(Exception):
                await asyncio.shield(self._finish(Message.Status.INTERRUPTED, error))
            sender.cancel()
            raise
        except BaseException:
            listener.cancel()
            sender.cancel()
            raise
        finally:
            runtime.first_delta_written.pop(str(self.reply_id), None)
            _heartbeats().discard(self)
            with contextlib.suppress(Exception):
                await self.layer.group_discard(control_group(self.conversation_id), control)
        try:
            message = await self._finish(status, error)
        finally:
            sender.cancel()
            await self._close_listener(listener, control)
        if message is not None and status == Message.Status.COMPLETE:
            await _index_for_search(message, owner_id=self.plan.conversation.owner_id)
            await title_generate(plan=self.plan, endpoint=self.endpoint)

    async def _close_listener(self, listener: asyncio.Task, control: str) -> None:
        """Ask the control listener to return, and cancel it only if it does not.

        Cancelling a task blocked in the Redis layer's ``receive`` can be lost on Python 3.11:
        redis-py sends BRPOP inside ``asyncio.wait_for``, which swallows a cancel that races
        the write (redis/redis-py#2028), and the task then polls Redis every few seconds for
        ever (it held the event loop of the rate-limit test open until pytest-timeout fired).
        A message on its own channel ends it without cancelling anything in flight.
        """
        if listener.done():
            return
        with contextlib.suppress(Exception):
            await self.layer.send(control, {"type": _LISTENER_CLOSE})
        done, _ = await asyncio.wait({listener}, timeout=LISTENER_CLOSE_WAIT)
        if not done:
            listener.cancel()

    async def _produce(self) -> tuple[str, ParleyError | None]:
        try:
            try:
                await moderation_gate(
                    message=self.plan.question,
                    provider=self.provider,
                    blocklist_hits=self.plan.blocklist_hits,
                    blocklist_where=self.plan.blocklist_where,
                    gate=self.plan.gate,
                )
            except MessageBlocked as exc:
                return Message.Status.BLOCKED, exc
            except ModerationUnavailable as exc:
                return Message.Status.ERROR, exc
            if self.outcome == _STOP:
                return Message.Status.STOPPED, None
            self._stream_task = asyncio.create_task(self._stream(), name=f"reply-stream-{self.reply_id}")
            self._beats = _heartbeats()
            self._beats.add(self)
            try:
                await self._stream_task
            except asyncio.CancelledError:
                if self.outcome != _STOP:
                    raise
                return Message.Status.STOPPED, None
            except ParleyError as exc:
                # After the first token nothing is re-requested: the partial text is kept.
                return (Message.Status.INTERRUPTED if self.length else Message.Status.ERROR), exc
            return Message.Status.COMPLETE, None
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - outermost boundary of a reply: log, and tell the member
            logger.exception("reply %s failed", self.reply_id)
            return (Message.Status.INTERRUPTED if self.length else Message.Status.ERROR), ParleyError()

    async def _finish(self, status: str, error: ParleyError | None) -> Message | None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        text = self.text
        if self.usage is not None:
            prompt_tokens, completion_tokens, estimated = self.usage.prompt_tokens, self.usage.completion_tokens, False
        elif (
            self.length
            or any(choice.length for choice in self.others.values())  # n > 1: any answer wrote
            or status in (Message.Status.STOPPED, Message.Status.INTERRUPTED)
        ):
            # The stream ended without the provider's usage chunk (stop, cut): bill an
            # estimate of what was generated, flagged as such (T34b).
            encoding = tokens.encoding_name_for_model(self.model_id)
            prompt_tokens = self.plan.prompt.prompt_tokens
            written = "".join([text, *(c.text for c in self.others.values())])
            completion_tokens = await asyncio.to_thread(tokens.count_tokens, written, encoding)
            if self.cap.reached:
                completion_tokens = min(completion_tokens, self.cap.limit * (1 + len(self.others)))
            estimated = True
        else:
            prompt_tokens = completion_tokens = 0
            estimated = False
        if status == Message.Status.COMPLETE and self.finish_reason == "":
            self.finish_reason = "stop"
        if status == Message.Status.COMPLETE and self.cap.reached:
            error = ParleyError(
                _(
                    "Parley ended this reply at %(limit)s tokens, the length reserved for it: "
                    "the model provider kept writing past the limit it was sent."
                )
                % {"limit": self.cap.limit},
                code="reply_limit_reached",
            )
        message = await database_sync_to_async(reply_finish)(
            reply_id=self.reply_id,
            content=text,
            status=status,
            finish_reason=self.finish_reason,
            error_code=error.code if error else "",
            error_text=error.message if error else "",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            estimated=estimated,
            reservation_id=self.plan.admission.reservation_id,
        )
        if message is not None:
            self._outbox.put_nowait((self.group, events.reply_done(message=message_to_dict(message))))
        for choice in self.others.values():
            # The other answers: their text and status; the request's usage is on the first.
            other = await database_sync_to_async(reply_finish)(
                reply_id=choice.reply_id,
                content=choice.text,
                status=status,
                finish_reason=choice.finish_reason or (self.finish_reason if choice.length else ""),
                error_code=error.code if error else "",
                error_text=error.message if error else "",
            )
            if other is not None:
                self._outbox.put_nowait((self.group, events.reply_done(message=message_to_dict(other))))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._outbox.join(), timeout=5)
        return message


async def _index_for_search(reply: Message, *, owner_id: int) -> None:
    """The completed turn is queued for search by meaning (chat/jobs/search.py). The reply is
    saved already; a failure here only leaves the turn for the backfill."""
    try:
        await database_sync_to_async(turn_index_enqueue)(reply=reply, owner_id=owner_id)
    except Exception:  # noqa: BLE001 - never fails the reply
        logger.warning("reply %s not queued for search by meaning", reply.pk, exc_info=True)


class Heartbeats:
    """Saves the text of every live reply of an event loop, together, every
    ``PARLEY_SAVE_INTERVAL`` seconds: the save that keeps a reply's partial text safe is also
    its heartbeat (chat.transport.sweep).

    One trip to the database thread and one transaction for all of the process's replies,
    instead of one of each per reply: with 200 replies streaming, per-reply saves were 200
    trips a second, queued in front of the next reply's start (docs/performance.md).
    """

    def __init__(self):
        self.runners: dict = {}
        self._task: asyncio.Task | None = None

    def add(self, runner: ReplyRunner) -> None:
        self.runners[runner.reply_id] = runner
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="reply-heartbeats")

    def discard(self, runner: ReplyRunner) -> None:
        if self.runners.get(runner.reply_id) is runner:
            del self.runners[runner.reply_id]
        if not self.runners and self._task is not None:
            # No reply left to save: no task lingers (a new reply starts a new one).
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while self.runners:
            await asyncio.sleep(settings.PARLEY_SAVE_INTERVAL)
            runners = dict(self.runners)  # discard() cancels this task when the last one leaves
            try:
                texts = {}
                for runner in runners.values():
                    texts.update(runner.texts())
                alive = await database_sync_to_async(replies_save_progress)(texts=texts)
            except Exception:  # noqa: BLE001 - the next interval tries again; the sweep is the backstop
                logger.warning("saving %d streaming replies failed", len(runners), exc_info=True)
                continue
            for reply_id, runner in runners.items():
                if reply_id not in alive and self.runners.get(reply_id) is runner:
                    runner._gone()


_by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _heartbeats() -> Heartbeats:
    loop = asyncio.get_running_loop()
    heartbeats = _by_loop.get(loop)
    if heartbeats is None:
        heartbeats = _by_loop[loop] = Heartbeats()
    return heartbeats

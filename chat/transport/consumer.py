"""The chat websocket: protocol in, service calls, protocol out (docs/websocket-protocol.md).

The consumer never streams a reply itself: Channels hands a consumer one frame at a time, so
a reply inside ``receive`` would make "stop" wait behind it (T40). Replies run as tasks
(chat.transport.runner) that publish to the conversation's group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import import_module
from types import SimpleNamespace

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib import auth
from django.utils.translation import gettext as _

from chat import runtime
from chat.errors import BadRequest, NotFound, ParleyError
from chat.selectors import conversation_choices, conversation_for_user, conversation_messages
from chat.serializers import collection_to_dict, conversation_to_dict, message_to_dict
from chat.services import branches, documents, turns
from chat.services.collections import conversation_collections
from chat.transport import events
from chat.transport.documents import documents_watch
from chat.transport.events import control_group, conversation_group, user_group
from chat.transport.runner import ReplyRunner

logger = logging.getLogger(__name__)

CLOSE_SESSION_ENDED = 4401
STATE_MESSAGES = 500
SNAPSHOT_WAIT = 3.0  # seconds to wait for a live snapshot before giving up on it
SESSION_RECHECK = 30.0  # seconds between session checks on an idle socket (T23)
CLOSE_INTERNAL_ERROR = 1011
# What a send raises once the browser has closed the socket and before the server has told the
# consumer (websocket.disconnect comes next): daphne raises autobahn's Disconnected ("Attempt to
# send on a closed protocol"); the ASGI spec asks other servers for a subclass of OSError.
SOCKET_CLOSED_ERRORS = (Disconnected, OSError)


class ChatConsumer(AsyncWebsocketConsumer):
    conversation_id = None
    socket_gone = False  # the browser is gone, or a send failed: nothing more is sent

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_SESSION_ENDED)
            return
        self.user = user
        self.session_key = self.scope["session"].session_key
        self.groups_joined: set[str] = set()
        # Deltas of a reply already in progress, held until its live snapshot arrives,
        # so a socket that opens mid-reply sees no gap and no duplicate (T41).
        self.awaiting_snapshot: dict[str, list[dict]] = {}
        # Whether each conversation this socket has opened has documents, as last read: a send
        # to one without them skips the trip that looks for an embedding model (do_send). One
        # attached from another tab since is seen at the next send; until then, keywords rank.
        self.has_documents: dict[str, bool] = {}
        await self._join(user_group(user.pk))
        await self.accept()
        runtime.socket_opened(self)
        self.session_watch = asyncio.create_task(self._watch_session())

    async def disconnect(self, code):
        # Closing a tab never stops its replies: they belong to the conversation.
        runtime.socket_closed(self)
        self.awaiting_snapshot = {}
        for name in ("session_watch", "document_watch"):
            watch = getattr(self, name, None)
            if watch is not None:
                watch.cancel()
        for group in list(getattr(self, "groups_joined", ())):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def _leave(self, group: str) -> None:
        await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.discard(group)

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    async def send(self, text_data=None, bytes_data=None, close=False):
        """Every frame out goes through here. A tab that closes while events for it are in
        flight (deltas of a reply, another tab's updates) makes the server refuse the sends
        that follow: expected, and silent. Any other failure is logged once, with its
        traceback, and ends the socket; the frames after it are dropped, not logged again.
        """
        if self.socket_gone:
            return
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except SOCKET_CLOSED_ERRORS:
            self.socket_gone = True
        except Exception:  # noqa: BLE001 - the outermost boundary of a send: log once, end the socket
            self.socket_gone = True
            logger.exception("sending a frame failed; the socket is closed")
            with contextlib.suppress(Exception):
                await self.close(code=CLOSE_INTERNAL_ERROR)

    async def dispatch(self, message):
        # Channels' own dispatch first hops to the database thread to close stale connections,
        # for every message: each relayed reply.delta waited there behind other sockets' queries
        # (docs/performance.md). Every database call of this consumer goes through
        # database_sync_to_async, which closes stale connections itself, so the hop is skipped.
        # Only what chat/transport/events.py calls public reaches the browser; events with
        # their own handling (deltas held for a snapshot, session ends) have a method.
        handler = getattr(self, get_handler_name(message), None)
        if handler is not None:
            await handler(message)
        elif message.get("type") in events.PUBLIC:
            await self.send_json(message)
        else:
            logger.warning("event %r is not public: not relayed", message.get("type"))

    # --- frames in ------------------------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        frame = None
        try:
            frame = self._parse(text_data, bytes_data)
            # A send checks the session inside its one database call (do_send); every other
            # frame checks it here first (T23).
            if frame["type"] != "send" and not await self._session_valid():
                await self._end_session()
                return
            handler = getattr(self, f"do_{frame['type']}", None)
            if handler is None:
                raise BadRequest(_("Unknown frame type."), code="bad_frame")
            await handler(frame)
        except ParleyError as exc:
            await self._send_error(exc, frame)
        except Exception:  # noqa: BLE001 - outermost boundary of a frame: log, answer, keep serving
            logger.exception("websocket frame failed")
            await self._send_error(ParleyError(), frame)

    def _parse(self, text_data, bytes_data) -> dict:
        if text_data is None:
            raise BadRequest(_("Frames must be JSON text."), code="bad_frame")
        if len(text_data) > settings.PARLEY_MAX_MESSAGE_CHARS * 4 + 4096:
            raise turns.MessageTooLong(_("This frame is too large."))
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            raise BadRequest(_("Frames must be JSON text."), code="bad_frame") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str) or not frame["type"].isidentifier():
            raise BadRequest(_("Every frame needs a type."), code="bad_frame")
        return frame

    async def _send_error(self, exc: ParleyError, frame: dict | None) -> None:
        out = exc.as_frame()
        if frame:
            out["request"] = frame.get("type") if isinstance(frame.get("type"), str) else None
            if isinstance(frame.get("client_id"), str):
                out["client_id"] = frame["client_id"][:64]
        await self.send_json(out)

    @staticmethod
    def _field(frame: dict, name: str, kind=str, required=True):
        value = frame.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise BadRequest(
                _("The field “%(name)s” is missing or has the wrong type.") % {"name": name}, code="bad_frame"
            )
        return value

    # --- session revocation (T23) ---------------------------------------------------------
    async def _session_valid(self) -> bool:
        return await database_sync_to_async(self._session_user)() is not None

    def _session_user(self):
        """The member, read afresh through their session; None when it no longer signs them in.

        Sign-out elsewhere (the session row is gone), a password change (session hash) or
        deactivation all end it. The scope's own session object caches what it read at
        connect, so the session is loaded again. Runs on the database thread.
        """
        fresh = import_module(settings.SESSION_ENGINE).SessionStore(self.session_key)
        user = auth.get_user(SimpleNamespace(session=fresh))
        return user if user.is_authenticated and user.pk == self.user.pk else None

    async def _end_session(self) -> None:
        await self.send_json(events.error(code="session_ended", message=_("Your session ended. Please sign in again.")))
        await self.close(code=CLOSE_SESSION_ENDED)

    async def _watch_session(self) -> None:
        while True:
            await asyncio.sleep(SESSION_RECHECK)
            try:
                if not await self._session_valid():
                    await self._end_session()
                    return
            except Exception:  # noqa: BLE001 - a failed check is retried at the next interval
                logger.warning("session check failed", exc_info=True)

    async def session_ended(self, event):
        if event.get("session_key") in (None, self.session_key):
            await self._end_session()

    # --- subscribe and sync -----------------------------------------------------------------
    async def do_subscribe(self, frame):
        await self._subscribe(self._field(frame, "conversation_id"))

    async def do_sync(self, frame):
        await self._subscribe(self._field(frame, "conversation_id"))

    async def _subscribe(self, conversation_id) -> None:
        conversation = await database_sync_to_async(conversation_for_user)(
            user=self.user, conversation_id=conversation_id
        )
        await self._follow(conversation.id)
        self.has_documents[str(conversation.id)] = conversation.has_documents
        messages, choices, collections = await database_sync_to_async(self._branch)(conversation, self.user)
        has_more = len(messages) > STATE_MESSAGES
        messages = messages[-STATE_MESSAGES:]
        streaming = [m for m in [*messages, *choices] if m.status == "streaming"]
        # Joined the group first, read the database second: nothing published after the
        # read can be missed. The live text comes from the reply task as a snapshot.
        for message in streaming:
            self.awaiting_snapshot.setdefault(str(message.id), [])
        await self.send_json(
            events.conversation_state(
                conversation=conversation_to_dict(conversation),
                messages=[message_to_dict(m) for m in messages],
                has_more=has_more,
                choices=[message_to_dict(m) for m in choices],
                collections=collections,
            )
        )
        if streaming:
            await self.channel_layer.group_send(
                control_group(conversation.id), events.reply_sync(reply_channel=self.channel_name)
            )
            asyncio.get_running_loop().call_later(SNAPSHOT_WAIT, self._snapshot_timeout, [str(m.id) for m in streaming])

    @staticmethod
    def _branch(conversation, user):
        """The branch shown (at most STATE_MESSAGES + 1 messages), the answers to pick from, and
        the collections it searches (read only for a conversation with documents: a collection
        picked sets ``has_documents``, so a plain chat costs no query)."""
        messages = conversation_messages(conversation=conversation, limit=STATE_MESSAGES + 1)
        choices = conversation_choices(conversation=conversation, leaf=messages[-1] if messages else None)
        collections = []
        if conversation.has_documents:
            collections = [
                collection_to_dict(c, user=user) for c in conversation_collections(user=user, conversation=conversation)
            ]
        return messages, choices, collections

    async def _follow(self, conversation_id) -> None:
        if self.conversation_id == conversation_id:
            return
        if self.conversation_id is not None:
            await self._leave(conversation_group(self.conversation_id))
        self.awaiting_snapshot.clear()
        self.conversation_id = conversation_id
        await self._join(conversation_group(conversation_id))

    def _snapshot_timeout(self, message_ids) -> None:
        # No live task answered (its worker died, or the layer dropped the request): pass on
        # what was held back; the client resyncs on a gap, and the sweep ends the reply.
        for message_id in message_ids:
            held = self.awaiting_snapshot.pop(message_id, None)
            if held:
                runtime.spawn(self._send_many(held), name="ws-release-held")

    async def _send_many(self, events) -> None:
        for event in events:
            await self.send_json(event)

    # --- send, stop, regenerate, edit ---------------------------------------------------------
    async def do_send(self, frame):
        conversation_id = frame.get("conversation_id")
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise BadRequest(_("The field “conversation_id” has the wrong type."), code="bad_frame")
        client_id = self._field(frame, "client_id")
        content = self._field(frame, "content")
        model_id = frame.get("model_id")
        if model_id is not None and (not isinstance(model_id, int) or isinstance(model_id, bool)):
            raise BadRequest(_("The field “model_id” has the wrong type."), code="bad_frame")
        chat_settings = self._field(frame, "settings", dict, required=False)
        preset_id = frame.get("preset_id")  # a new chat started from a preset (chat.services.library)
        if preset_id is not None and (not isinstance(preset_id, int) or isinstance(preset_id, bool)):
            raise BadRequest(_("The field “preset_id” has the wrong type."), code="bad_frame")
        document_ids = frame.get("document_ids") or None  # files attached (chat/services/documents.py)
        collection_ids = frame.get("collection_ids") or None  # collections picked (chat/services/collections.py)
        # The question's embedding, when the turn retrieves passages: an upstream call, so made
        # here, before the trip to the database thread and outside its transaction.
        query_vector = None
        if (
            document_ids
            or collection_ids
            or (conversation_id is not None and self.has_documents.get(conversation_id, True))
            or (conversation_id is None and preset_id is not None)  # a preset's collections
        ):
            query_vector = await documents.question_vector(
                user=self.user,
                question=content,
                conversation_id=conversation_id,
                document_ids=document_ids,
                collection_ids=collection_ids,
                preset_id=preset_id if conversation_id is None else None,
            )
        # The session check, the message's save and the reply's start in one trip to the
        # database thread: each trip waits behind every other socket's queries (performance.md).
        start = await database_sync_to_async(self._send_in_thread)(
            conversation_id=conversation_id,
            client_id=client_id,
            content=content,
            model_id=model_id,
            chat_settings=chat_settings,
            document_ids=document_ids,
            collection_ids=collection_ids,
            image_ids=frame.get("image_ids") or None,  # images attached (chat/services/vision.py)
            query_vector=query_vector,
            preset_id=preset_id,
        )
        if start is None:
            await self._end_session()
            return
        saved = start.saved
        conversation = saved.conversation
        self.has_documents[str(conversation.id)] = conversation.has_documents
        if saved.created_conversation:
            await self._follow(conversation.id)
            await self.send_json(
                events.conversation_created(
                    conversation=conversation_to_dict(conversation),
                    client_id=client_id,
                    collections_skipped=saved.collections_skipped,
                )
            )
            await self.channel_layer.group_send(
                user_group(self.user.pk),
                events.conversation_updated(conversation=conversation_to_dict(conversation)),
            )
        if saved.duplicate:
            await self._subscribe(conversation.id)
            return
        await self._publish(
            conversation.id,
            events.message_created(message=message_to_dict(saved.message), client_id=client_id),
        )
        if start.refusal is not None:
            # The member's message is saved; only the reply was refused. Say why.
            raise start.refusal
        await self._run_reply(start.plan)

    async def do_watch_documents(self, frame):
        """Progress of the member's files being indexed, as document.updated frames."""
        ids = self._field(frame, "document_ids", list)
        previous = getattr(self, "document_watch", None)
        if previous is not None:
            previous.cancel()
        self.document_watch = asyncio.create_task(documents_watch(self.send_json, user=self.user, document_ids=ids))

    def _send_in_thread(self, **fields) -> turns.TurnStart | None:
        user = self._session_user()
        if user is None:
            return None
        return turns.turn_start(user=user, **fields)

    async def do_regenerate(self, frame):
        conversation, question = await database_sync_to_async(turns.regenerate_prepare)(
            user=self.user,
            conversation_id=self._field(frame, "conversation_id"),
            message_id=self._field(frame, "message_id", required=False),
        )
        await self._start_reply(conversation, question)

    async def do_edit(self, frame):
        conversation, question = await database_sync_to_async(turns.edit_prepare)(
            user=self.user,
            conversation_id=self._field(frame, "conversation_id"),
            message_id=self._field(frame, "message_id"),
            content=self._field(frame, "content"),
        )
        await self._start_reply(conversation, question)

    async def do_switch(self, frame):
        """Show another version (``message_id``: a sibling, or an answer to continue from)."""
        conversation = await database_sync_to_async(branches.branch_switch)(
            user=self.user,
            conversation_id=self._field(frame, "conversation_id"),
            message_id=self._field(frame, "message_id"),
        )
        leaf_id = conversation.current_leaf_id
        await self._publish(conversation.id, events.branch_changed(conversation_id=conversation.id, leaf_id=leaf_id))

    async def do_stop(self, frame):
        conversation = await database_sync_to_async(conversation_for_user)(
            user=self.user, conversation_id=self._field(frame, "conversation_id")
        )
        # The reply task may live in another worker process: ask it through the layer.
        await self.channel_layer.group_send(control_group(conversation.id), events.reply_stop())

    async def do_ping(self, frame):
        await self.send_json(events.pong())

    async def _start_reply(self, conversation, question) -> None:
        """A new branch (an edit or a regeneration): every tab shows it, then its reply streams."""
        query_vector = None
        if conversation.has_documents:  # embedded before the trip, as in do_send
            query_vector = await documents.question_vector(
                user=self.user, question=question.content, conversation_id=conversation.id
            )
        try:
            plan = await database_sync_to_async(turns.reply_begin)(
                conversation=conversation, question=question, user=self.user, query_vector=query_vector
            )
        except ParleyError as exc:
            # The member's message is saved; only the reply was refused. Say why.
            exc.detail.setdefault("message_id", str(question.id))
            await self._publish(
                conversation.id, events.branch_changed(conversation_id=conversation.id, leaf_id=question.id)
            )
            raise
        await self._run_reply(plan, announce=False)

    async def _run_reply(self, plan: turns.ReplyPlan, announce: bool = True) -> None:
        """Start the reply task; ``announce``: a single reply continuing the branch shown is
        announced with ``message.created``, anything else (several answers, a new branch)
        makes every tab read the branch again."""
        runner = ReplyRunner(plan)
        await runner.prepare()
        if announce and not plan.others:
            await self._publish(plan.conversation.id, events.message_created(message=message_to_dict(plan.reply)))
        else:
            await self._publish(
                plan.conversation.id,
                events.branch_changed(conversation_id=plan.conversation.id, leaf_id=plan.reply.id),
            )
        runtime.spawn(runner.run(), name=f"reply-{plan.reply.id}")

    async def _publish(self, conversation_id, event: dict) -> None:
        await self.channel_layer.group_send(conversation_group(conversation_id), event)

    # --- events from the layer ---------------------------------------------------------------
    async def branch_changed(self, event):
        # Another version is shown (in this tab or another): send this tab the branch again.
        if self.conversation_id is not None and str(self.conversation_id) == event.get("conversation_id"):
            try:
                await self._subscribe(self.conversation_id)
            except ParleyError as exc:
                await self._send_error(exc, None)

    async def reply_delta(self, event):
        held = self.awaiting_snapshot.get(event["message_id"])
        if held is not None:
            held.append(event)
            return
        await self.send_json(event)
        if event["offset"] == 0 and (written := runtime.first_delta_written.get(event["message_id"])) is not None:
            written.set()  # the reply task, in this process, may read on (runner._stream)

    async def reply_snapshot(self, event):
        held = self.awaiting_snapshot.pop(event["message_id"], None)
        await self.send_json(event)
        for delta in held or ():
            await self.send_json(delta)

    async def reply_done(self, event):
        self.awaiting_snapshot.pop(event["message"]["id"], None)
        await self.send_json(event)


async def reply_stop(conversation_id) -> None:
    """Ask the reply task of a conversation (on any worker) to stop: used when it is deleted."""
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(control_group(conversation_id), events.reply_stop())


__all__ = ["ChatConsumer", "NotFound", "reply_stop"]

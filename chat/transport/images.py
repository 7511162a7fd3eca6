"""An image reply's life on the event loop: announced to the conversation's sockets, run, ended.

The turn is started by the edge that received it (chat/web/images.py). From here on the
reply belongs to its conversation, like a chat reply (promise 1): the task is kept by
chat/runtime.py, not by the request, so a member who closes the tab still finds the images
when they come back; every socket showing the conversation hears ``message.created`` for the
prompt and the waiting reply, then ``reply.done`` with the images (events from
chat/transport/events.py, the one vocabulary). Stop works as for a chat reply: the task
listens on the conversation's control group, and ``reply.stop`` closes the provider's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.layers import get_channel_layer

from chat import runtime
from chat.serializers import conversation_to_dict, message_to_dict
from chat.services.images import ImageTurn, image_reply_produce
from chat.transport import events

logger = logging.getLogger(__name__)


async def _publish(group: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, event)
    except Exception:  # noqa: BLE001 - the layer is the fast path; the database is the record
        logger.warning("could not publish %s to %s", event.get("type"), group, exc_info=True)


async def image_turn_announce(turn: ImageTurn) -> None:
    """Tell the member's sockets about the new messages (and a new conversation)."""
    if turn.created_conversation:
        await _publish(
            events.user_group(turn.conversation.owner_id),
            events.conversation_updated(conversation=conversation_to_dict(turn.conversation)),
        )
    group = events.conversation_group(turn.conversation.pk)
    await _publish(group, events.message_created(message=message_to_dict(turn.question)))
    await _publish(group, events.message_created(message=message_to_dict(turn.reply)))
    if turn.refusal is not None:
        await _publish(group, events.reply_done(message=message_to_dict(turn.reply)))


async def _listen(layer, channel: str, turn: ImageTurn, call: asyncio.Task) -> None:
    while True:
        event = await layer.receive(channel)
        if event.get("type") == events.REPLY_STOP:
            turn.stopped = True
            call.cancel()
            return


async def image_reply_run(turn: ImageTurn) -> None:
    """Listen for stop, announce the turn, make the images, announce the end."""
    layer = get_channel_layer()
    control = None
    if layer is not None and turn.refusal is None:
        # Listening before the reply is announced: a stop sent the moment it shows finds it.
        control = await layer.new_channel()
        await layer.group_add(events.control_group(turn.conversation.pk), control)
    await image_turn_announce(turn)
    if turn.refusal is not None:
        return
    call = asyncio.ensure_future(image_reply_produce(turn))
    listener = asyncio.ensure_future(_listen(layer, control, turn, call)) if control else None
    try:
        # A stop ends the call as ``stopped`` and returns; a cancellation of this task (the
        # server shutting down) ends it as ``interrupted`` and goes on up.
        reply = await call
    finally:
        if listener is not None:
            listener.cancel()
        if control is not None:
            with contextlib.suppress(Exception):
                await layer.group_discard(events.control_group(turn.conversation.pk), control)
    await _publish(events.conversation_group(turn.conversation.pk), events.reply_done(message=message_to_dict(reply)))


def image_reply_spawn(turn: ImageTurn) -> asyncio.Task:
    """Run the reply as a task of the process (chat/runtime.py keeps it), not of the request."""
    return runtime.spawn(image_reply_run(turn), name=f"image-reply-{turn.reply.pk}")

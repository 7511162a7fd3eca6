"""An image reply's life on the event loop: announced to the conversation's sockets, run, ended.

The turn is started by the edge that received it (chat/web/images.py). From here on the
reply belongs to its conversation, like a chat reply (promise 1): the task is kept by
chat/runtime.py, not by the request, so a member who closes the tab still finds the images
when they come back; every socket showing the conversation hears ``message.created`` for the
prompt and the waiting reply, then ``reply.done`` with the images (events from
chat/transport/events.py, the one vocabulary).
"""

from __future__ import annotations

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


async def image_reply_run(turn: ImageTurn) -> None:
    reply = await image_reply_produce(turn)
    await _publish(events.conversation_group(turn.conversation.pk), events.reply_done(message=message_to_dict(reply)))


def image_reply_spawn(turn: ImageTurn):
    """Run the reply as a task of the process (chat/runtime.py keeps it), not of the request."""
    if turn.refusal is not None:
        return None
    return runtime.spawn(image_reply_run(turn), name=f"image-reply-{turn.reply.pk}")

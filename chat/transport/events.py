"""Every event Parley publishes to a channel-layer group, and every frame it sends a browser.

Three kinds of group (their names are built here):

- ``conv.<id>``: the sockets that show a conversation; ``user.<id>``: all sockets of one member.
  Events published to them are *public*: a socket relays them to its browser as a frame of
  the same shape (docs/websocket-protocol.md).
- ``ctl.<id>``: the reply task writing in a conversation, on whichever worker runs it. Its
  events are instructions (stop, send me a snapshot) and never reach a browser.

Every event and frame is built by a function of this module, so there is one place that
says what a browser may receive; the consumer forwards an event only if its type is in
``PUBLIC`` (``tests/test_architecture.py`` checks that no other module builds one).
"""

from __future__ import annotations

import uuid

# --- groups -----------------------------------------------------------------------------------


def conversation_group(conversation_id) -> str:
    """Every socket that has the conversation open: receives deltas and message events."""
    return f"conv.{_hex(conversation_id)}"


def control_group(conversation_id) -> str:
    """The reply task writing in this conversation (on whichever worker): stop and sync requests."""
    return f"ctl.{_hex(conversation_id)}"


def user_group(user_id) -> str:
    """Every socket of one member: conversation updates and session revocation."""
    return f"user.{int(user_id)}"


def _hex(value) -> str:
    return uuid.UUID(str(value)).hex


# --- public events: published to conv./user. groups, relayed to the browser as they are --------

REPLY_DELTA = "reply.delta"
REPLY_SNAPSHOT = "reply.snapshot"
REPLY_DONE = "reply.done"
MESSAGE_CREATED = "message.created"
CONVERSATION_UPDATED = "conversation.updated"
CONVERSATION_DELETED = "conversation.deleted"
# Published to conv. groups but not relayed: each socket answers it with conversation.state.
BRANCH_CHANGED = "branch.changed"

PUBLIC = frozenset(
    {
        REPLY_DELTA,
        REPLY_SNAPSHOT,
        REPLY_DONE,
        MESSAGE_CREATED,
        CONVERSATION_UPDATED,
        CONVERSATION_DELETED,
    }
)


def reply_delta(*, message_id, offset: int, text: str) -> dict:
    """Text of a streaming reply from code point ``offset`` on (the browser appends it)."""
    return {"type": REPLY_DELTA, "message_id": str(message_id), "offset": offset, "text": text}


def reply_snapshot(*, message_id, text: str) -> dict:
    """All the text a reply has published so far, for a socket that joined mid-reply."""
    return {"type": REPLY_SNAPSHOT, "message_id": str(message_id), "text": text}


def reply_done(*, message: dict) -> dict:
    """A reply ended (complete, stopped, interrupted, failed or blocked): its saved state."""
    return {"type": REPLY_DONE, "message": message}


def message_created(*, message: dict, client_id: str | None = None) -> dict:
    event = {"type": MESSAGE_CREATED, "message": message}
    if client_id is not None:
        event["client_id"] = client_id
    return event


def branch_changed(*, conversation_id, leaf_id) -> dict:
    """The branch shown changed (an edit, a regeneration, a switch, a picked answer): every
    socket with the conversation open sends its browser ``conversation.state`` again (the
    consumer handles this event; it is not public)."""
    return {
        "type": BRANCH_CHANGED,
        "conversation_id": str(conversation_id),
        "leaf_id": None if leaf_id is None else str(leaf_id),
    }


def conversation_updated(*, conversation: dict) -> dict:
    return {"type": CONVERSATION_UPDATED, "conversation": conversation}


def conversation_deleted(*, conversation_id) -> dict:
    return {"type": CONVERSATION_DELETED, "conversation_id": str(conversation_id)}


# --- frames sent to one socket only ---------------------------------------------------------------

CONVERSATION_STATE = "conversation.state"
CONVERSATION_CREATED = "conversation.created"
DOCUMENT_UPDATED = "document.updated"
ERROR = "error"
PONG = "pong"


def conversation_state(
    *,
    conversation: dict,
    messages: list[dict],
    has_more: bool,
    choices: list[dict] | None = None,
    collections: list[dict] | None = None,
) -> dict:
    """What a socket that opens a conversation sees first: the saved state of the branch shown,
    newest messages; ``choices``, the answers of the last turn while the member picks one;
    ``collections``, those it searches (the composer's picker shows them)."""
    return {
        "type": CONVERSATION_STATE,
        "conversation": conversation,
        "messages": messages,
        "has_more": has_more,
        "choices": choices or [],
        "collections": collections or [],
    }


def conversation_created(*, conversation: dict, client_id: str, collections_skipped: int = 0) -> dict:
    """A new chat saved; ``collections_skipped``: how many collections of the preset it
    started from the member may not read, so it does not search (the page says so)."""
    frame = {"type": CONVERSATION_CREATED, "conversation": conversation, "client_id": client_id}
    if collections_skipped:
        frame["collections_skipped"] = collections_skipped
    return frame


def document_updated(*, document: dict) -> dict:
    """An attached file's progress (waiting, reading, indexing, ready, failed with its reason)."""
    return {"type": DOCUMENT_UPDATED, "document": document}


def error(*, code: str, message: str, **detail) -> dict:
    """A failure, with its stable code (chat/errors.py) and a readable message."""
    return {"type": ERROR, "code": code, "message": message, **detail}


def pong() -> dict:
    return {"type": PONG}


# --- control events: to a ctl. group or one reply task's channel; never to a browser -------------

REPLY_STOP = "reply.stop"
REPLY_SYNC = "reply.sync"
SESSION_ENDED = "session.ended"  # to a user. group: the consumer closes the socket, sends no event


def reply_stop() -> dict:
    return {"type": REPLY_STOP}


def reply_sync(*, reply_channel: str) -> dict:
    """Ask the reply task for a snapshot, sent to ``reply_channel`` (one socket)."""
    return {"type": REPLY_SYNC, "reply_channel": reply_channel}


def session_ended(*, session_key: str | None = None) -> dict:
    """End the sockets of one session (``session_key``) or of every session of the member."""
    return {"type": SESSION_ENDED, "session_key": session_key}

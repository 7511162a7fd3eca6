"""Saving a reply as it streams and when it ends (called by chat.transport.runner)."""

from __future__ import annotations

import typing

from django.db import transaction
from django.db.models import Field
from django.utils import timezone

from chat import tokens
from chat.core.calls import USAGE_FIELDS, Units, call_settle
from chat.models import Conversation, Message
from chat.prepared import PreparedRead, PreparedUpdate

# Read at every reply's end: composed once (chat/prepared.py). of=("self",): PostgreSQL refuses
# FOR UPDATE on the nullable side of the outer join that select_related("model") makes; only
# the message row needs the lock. The model prices the usage; nothing reads the conversation
# but its id. get() rather than first(), whose ORDER BY costs a fifth of the read to compose.
_REPLY = PreparedRead(
    lambda p: Message.objects.select_for_update(of=("self",)).select_related("model").filter(id=p.id),
    id=Message._meta.pk,
)


# Every reply's text so far and heartbeat, every PARLEY_SAVE_INTERVAL seconds: composed once.
_PROGRESS = PreparedUpdate(
    lambda p: (
        Message.objects.filter(id=p.id, status=Message.Status.STREAMING),
        {"content": p.content, "heartbeat_at": p.now, "updated_at": p.now},
    ),
    id=Message._meta.pk,
    content=Message._meta.get_field("content"),
    now=Message._meta.get_field("heartbeat_at"),
)


# A reply's end: its final state, with the usage call_settle set on it, in one UPDATE of the row
# (what a save() of the row would write for the fields that change; Message has no save() of
# its own and no signal receivers), and the conversation's time. Composed once.
_FINAL_FIELDS = (
    "content",
    "token_count",
    "token_encoding",
    "status",
    "finish_reason",
    "error_code",
    "error_text",
    "updated_at",
    "heartbeat_at",
    *USAGE_FIELDS,
)
_FINAL = PreparedUpdate(
    lambda p: (Message.objects.filter(id=p.id), {name: getattr(p, name) for name in _FINAL_FIELDS}),
    id=Message._meta.pk,
    **{name: typing.cast(Field, Message._meta.get_field(name)) for name in _FINAL_FIELDS},
)
_TOUCHED = PreparedUpdate(
    lambda p: (Conversation.objects.filter(pk=p.pk), {"updated_at": p.now}),
    pk=Conversation._meta.pk,
    now=Conversation._meta.get_field("updated_at"),
)


def replies_save_progress(*, texts: dict) -> set:
    """Save the text so far of several replies ({reply id: text}) in one transaction, and
    refresh their heartbeats; returns the ids still streaming (the others are gone or ended)."""
    now = timezone.now()
    alive = set()
    with transaction.atomic():
        for reply_id in sorted(texts, key=str):  # one order everywhere: no lock cycles on PostgreSQL
            if _PROGRESS.run(id=reply_id, content=texts[reply_id], now=now):
                alive.add(reply_id)
    return alive


def reply_finish(
    *,
    reply_id,
    content: str,
    status: str,
    finish_reason: str = "",
    error_code: str = "",
    error_text: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    estimated: bool = False,
    reservation_id: int | None = None,
) -> Message | None:
    """Write the final state of a reply and settle its usage against the member's budget.

    Only a reply still ``streaming`` is finished, so a reply the sweep already marked
    interrupted (or that was deleted with its conversation) is left alone; the usage of a
    deleted one is still settled through ``reservation_id``.
    """
    with transaction.atomic():
        try:
            message = _REPLY.get(id=reply_id)
        except Message.DoesNotExist:
            message = None
        if message is None or message.status != Message.Status.STREAMING:
            if message is None and reservation_id is not None:
                # The conversation was deleted mid-reply: what was generated is still billed,
                # and the hold released (a reply the sweep ended was settled by the sweep).
                call_settle(
                    reservation_id=reservation_id,
                    units=Units(input_tokens=prompt_tokens, output_tokens=completion_tokens),
                    estimated=estimated,
                )
            return None
        encoding = tokens.encoding_name_for_model(message.model.model_id if message.model else "")
        now = timezone.now()
        message.content = content
        message.token_count = tokens.count_tokens(content, encoding)
        message.token_encoding = encoding
        message.status = status
        message.finish_reason = finish_reason or ""
        message.error_code = error_code
        message.error_text = error_text[:2000]
        message.updated_at = now
        message.heartbeat_at = now
        # Seen streaming under the lock, so not settled yet: settle, then one UPDATE of the row.
        call_settle(
            message=message,
            units=Units(input_tokens=prompt_tokens, output_tokens=completion_tokens),
            estimated=estimated,
        )
        _FINAL.run(id=message.pk, **{name: getattr(message, name) for name in _FINAL_FIELDS})
        _TOUCHED.run(pk=message.conversation_id, now=now)
    return message

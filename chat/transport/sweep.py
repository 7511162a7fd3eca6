"""The sweep: replies whose worker died are marked ``interrupted``, keeping their text.

A live reply task saves (and so refreshes ``heartbeat_at``) every PARLEY_SAVE_INTERVAL
seconds; a streaming message whose heartbeat is older than PARLEY_STALE_REPLY_SECONDS has no
live worker. The check is repeated under the row lock, so a reply whose worker is alive and
saving is never touched. Runs at start-up and periodically (``manage.py serve``), and by
``manage.py sweep_replies``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import tokens
from chat.core.calls import Units, call_settle
from chat.models import Message
from chat.serializers import message_to_dict
from chat.transport import events
from chat.transport.events import conversation_group

logger = logging.getLogger(__name__)


def _stale(cutoff):
    return Q(status=Message.Status.STREAMING) & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))


def _other_answers_tokens(message: Message, encoding: str) -> int:
    """Tokens written by the other answers of ``message``'s turn (n > 1: siblings saved in the
    same instant under the same question), when ``message`` is the first of them."""
    if message.choice != 0:
        return 0
    others = Message.objects.filter(
        conversation_id=message.conversation_id,
        parent_id=message.parent_id,
        created_at=message.created_at,
        role=Message.Role.ASSISTANT,
        choice__gt=0,
    ).values_list("content", flat=True)
    return sum(tokens.count_tokens(text, encoding) for text in others)


def sweep_stale_replies(*, stale_seconds: float | None = None) -> int:
    seconds = settings.PARLEY_STALE_REPLY_SECONDS if stale_seconds is None else stale_seconds
    cutoff = timezone.now() - timedelta(seconds=seconds)
    swept = []
    for reply_id in list(Message.objects.filter(_stale(cutoff)).values_list("id", flat=True)[:1000]):
        with transaction.atomic():
            message = Message.objects.select_for_update().filter(_stale(cutoff), id=reply_id).first()
            if message is None:
                continue  # its worker saved in the meantime: alive
            encoding = tokens.encoding_name_for_model(message.model.model_id if message.model else "")
            message.status = Message.Status.INTERRUPTED
            message.error_code = "worker_lost"
            message.error_text = _("The server stopped while this reply was being written. You can regenerate it.")
            message.token_count = tokens.count_tokens(message.content, encoding)
            message.token_encoding = encoding
            message.updated_at = timezone.now()
            prompt_tokens = message.prompt_tokens or 0
            message.prompt_tokens = None
            # Several answers are one request whose reservation hangs on the first (choice 0):
            # its settlement bills what every answer of the turn wrote, not only its own text
            # (the others find no reservation and settle nothing).
            written = message.token_count + _other_answers_tokens(message, encoding)
            call_settle(
                message=message,
                units=Units(input_tokens=prompt_tokens, output_tokens=written),
                estimated=True,
            )
            message.save()
            swept.append(message)
    layer = get_channel_layer()
    for message in swept:
        message.refresh_from_db()
        try:
            async_to_sync(layer.group_send)(
                conversation_group(message.conversation_id), events.reply_done(message=message_to_dict(message))
            )
        except Exception:  # noqa: BLE001 - the database is the record; open tabs resync
            logger.warning("sweep could not notify open tabs", exc_info=True)
    if swept:
        logger.info("sweep marked %d stale replies interrupted", len(swept))
    return len(swept)

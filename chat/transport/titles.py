"""Automatic conversation titles, written by the model after the first reply.

Runs after ``reply.done`` has gone out, so it never delays the reply. When the model cannot
write one, the provisional title (the first words of the first message) stays.
"""

from __future__ import annotations

import contextlib
import logging
import re

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model

from chat import tokens
from chat.core.calls import Units, model_call
from chat.errors import ParleyError
from chat.models import Conversation, Message, ModelKind
from chat.serializers import conversation_to_dict
from chat.services.turns import title_fallback
from chat.transport import events
from chat.transport.events import user_group
from chat.upstream import client

logger = logging.getLogger(__name__)

# What the chat format adds around two messages and the reply's priming (an upper bound).
TITLE_FRAMING_TOKENS = 16
TITLE_INSTRUCTION = (
    "Write a title of at most six words for a conversation that begins with the message below. "
    "Answer with the title only, no quotes, in the language of the message."
)


def _title_wanted(conversation_id, question_text: str) -> bool:
    conversation = Conversation.objects.filter(pk=conversation_id).only("title").first()
    if conversation is None or conversation.title != title_fallback(question_text):
        return False  # renamed by the member, or already titled
    return Message.objects.filter(conversation_id=conversation_id, role=Message.Role.ASSISTANT).count() == 1


def _title_save(conversation_id, provisional: str, title: str):
    updated = Conversation.objects.filter(pk=conversation_id, title=provisional).update(title=title)
    return Conversation.objects.filter(pk=conversation_id).first() if updated else None


def clean_title(raw: str) -> str:
    """One line of plain text: models like to answer with quotes, markdown or a "Title:" label."""
    text = re.sub(r"[*_`#>]+", "", raw.strip().split("\n", 1)[0])
    text = re.sub(r"^\s*(title|标题)\s*[:：]\s*", "", text, flags=re.IGNORECASE)
    title = " ".join(text.split()).strip(" \"'“”‘’.")
    return title[:80]


async def title_generate(*, plan, endpoint: client.Endpoint) -> None:
    if not settings.PARLEY_AUTO_TITLE:
        return
    question = plan.question.content
    if not await database_sync_to_async(_title_wanted)(plan.conversation.id, question):
        return
    payload = {
        "model": plan.conversation.model.model_id,
        "messages": [
            {"role": "system", "content": TITLE_INSTRUCTION},
            {"role": "user", "content": question[:2000]},
        ],
        "max_tokens": 24,
        "temperature": 0.3,
    }
    parts: list[str] = []
    owner = get_user_model()(pk=plan.conversation.owner_id)
    encoding = tokens.encoding_name_for_model(payload["model"])
    asked = sum(tokens.count_tokens(m["content"], encoding) for m in payload["messages"]) + TITLE_FRAMING_TOKENS
    try:
        # A title is a model call like any other: granted, reserved and billed (not rate-counted:
        # it belongs to the reply the member already asked for).
        async with model_call(
            user=owner,
            kind=ModelKind.CHAT,
            estimate=Units(input_tokens=asked, output_tokens=payload["max_tokens"]),
            purpose="title",
            model=plan.conversation.model,
            rate=False,
            conversation_id=plan.conversation.id,
        ) as call:
            payload["user"] = call.admission.pseudonym
            usage = None
            try:
                async with contextlib.aclosing(client.stream_chat(endpoint, payload, max_retries=0)) as stream:
                    async for event in stream:
                        parts.append(event.delta)
                        usage = event.usage or usage
            finally:
                if usage is not None:
                    call.usage = Units(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)
                elif parts:
                    call.usage = Units(input_tokens=asked, output_tokens=tokens.count_tokens("".join(parts), encoding))
                    call.estimated = True
    except ParleyError as exc:
        logger.info("title for %s not written: %s", plan.conversation.id, exc.code)
        return
    title = clean_title("".join(parts))
    if not title:
        return
    conversation = await database_sync_to_async(_title_save)(plan.conversation.id, title_fallback(question), title)
    if conversation is not None:
        await get_channel_layer().group_send(
            user_group(conversation.owner_id),
            events.conversation_updated(conversation=conversation_to_dict(conversation)),
        )

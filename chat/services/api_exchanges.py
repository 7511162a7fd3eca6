"""Member API requests saved as conversations, for the tokens that ask for it (issue 16).

Scripts are not chats: by default nothing of an API request is kept but its usage record.
A token with ``save_conversations`` on keeps each chat completion as a conversation of its
member (the messages sent, the reply), so it shows in their history like any other.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from chat.models import ChatModel, Conversation, Message, UsageRecord
from chat.services.turns import title_fallback

_ROLES = {"user": Message.Role.USER, "assistant": Message.Role.ASSISTANT}


def message_text(content) -> str:
    """The text of an OpenAI message's content: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def api_exchange_save(
    *,
    user,
    model: ChatModel,
    messages: list[dict],
    reply: str,
    finish_reason: str = "",
    usage_record: UsageRecord | None = None,
) -> Conversation:
    """Save one chat completion as a conversation: the system prompt, the messages sent, the reply."""
    system = "\n\n".join(message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    turns = [(m["role"], message_text(m.get("content"))) for m in messages if m.get("role") in _ROLES]
    last_user = next((text for role, text in reversed(turns) if role == "user"), "") or reply
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=user, title=title_fallback(last_user), model=model, system_prompt=system, created_at=now
        )
        # One microsecond apart: the history is ordered by creation time.
        at = [now + dt.timedelta(microseconds=i) for i in range(len(turns) + 1)]
        rows = [
            Message(conversation=conversation, role=_ROLES[role], content=text, created_at=at[i], updated_at=at[i])
            for i, (role, text) in enumerate(turns)
        ]
        answer = Message(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            content=reply,
            finish_reason=(finish_reason or "")[:32],
            model=model,
            model_name=model.model_id[:200],
            created_at=at[-1],
            updated_at=at[-1],
        )
        if usage_record is not None:
            answer.prompt_tokens = usage_record.prompt_tokens
            answer.completion_tokens = usage_record.completion_tokens
            answer.usage_estimated = usage_record.estimated
            answer.cost = usage_record.cost
        Message.objects.bulk_create([*rows, answer])
        conversation.updated_at = at[-1]
        conversation.save(update_fields=["updated_at"])
        if usage_record is not None:
            UsageRecord.objects.filter(pk=usage_record.pk).update(conversation=conversation, message=answer)
    return conversation

"""Conversations to fine-tune on: message trees built row by row, as the chat path leaves them."""

from __future__ import annotations

from django.utils import timezone

from chat.models import ChatModel, Conversation, Message


def make_thread(owner, model, turns, *, title="", consent=True, system_prompt="") -> Conversation:
    """A conversation whose current branch is ``turns``: (question, answer[, reply status]) each;
    an answer of None leaves the question unanswered. Marked for training unless ``consent=False``."""
    conversation = Conversation.objects.create(
        owner=owner,
        model=model,
        title=title,
        system_prompt=system_prompt,
        training_consent_at=timezone.now() if consent else None,
    )
    parent = None
    for turn in turns:
        question, reply = turn[0], turn[1]
        status = turn[2] if len(turn) > 2 else Message.Status.COMPLETE
        parent = Message.objects.create(conversation=conversation, parent=parent, role="user", content=question)
        if reply is not None:
            parent = Message.objects.create(
                conversation=conversation, parent=parent, role="assistant", content=reply, status=status
            )
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent)
    conversation.refresh_from_db()
    return conversation


def make_base_model(provider, **fields) -> ChatModel:
    defaults = {
        "model_id": "gpt-4o-mini",
        "display_name": "GPT-4o mini",
        "context_window": 128_000,
        "max_output_tokens": 4096,
        "input_price_per_million": "0.15",
        "output_price_per_million": "0.60",
        "training_price_per_million": "3.00",
        "is_default": True,
    }
    model = ChatModel.objects.create(provider=provider, **{**defaults, **fields})
    model.refresh_from_db()  # prices as the database gives them (Decimal)
    return model

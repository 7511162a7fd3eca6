"""Branches: which version of a conversation the member sees, and forks into a new conversation.

Messages form a tree (``Message.parent``); the conversation's ``current_leaf`` names the branch
shown, saved in the database so every tab and every reload shows the same one. Editing a
message or regenerating a reply adds a sibling (chat.services.turns); nothing here deletes.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.errors import Busy
from chat.models import Conversation, Message
from chat.selectors import conversation_for_user, descendant_ids, message_for_user, message_path
from chat.services.conversations import TITLE_MAX

# The conversation fields a fork copies (its settings); the messages are copied separately.
_FORKED_FIELDS = (
    "model_id",
    "system_prompt",
    "temperature",
    "top_p",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "n",
    "logit_bias",
    "seed",
    "response_format",
)
# The message fields a fork copies: what the member sees and what a prompt replays.
_COPIED = (
    "role",
    "content",
    "choice",
    "status",
    "token_count",
    "token_encoding",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "usage_estimated",
    "cost",
    "omitted_messages",
    "moderation_categories",
    "moderation_unchecked",
    "error_code",
    "error_text",
    "model_name",
    "model_id",
    "created_at",
    "updated_at",
)


def branch_switch(*, user, conversation_id, message_id) -> Conversation:
    """Show the branch through ``message_id``: the current leaf becomes the message below it
    (itself included) that was shown last, else the newest. A reply streaming on another
    branch goes on.

    "Shown last": every switch stamps the leaf it lands on (``shown_at``), and a message saved
    later is newer still, so going back to a version returns to the sub-branch, or the answer
    among several, the member was reading there, and the same one after a reload.
    """
    conversation = conversation_for_user(user=user, conversation_id=conversation_id)
    message = message_for_user(user=user, conversation=conversation, message_id=message_id)
    leaf = (
        Message.objects.filter(conversation_id=conversation.pk, id__in=descendant_ids(message.pk))
        .annotate(seen=Coalesce("shown_at", "created_at"))
        .order_by("-seen", "-created_at", "-choice")
        .values_list("id", flat=True)
        .first()
    )
    now = timezone.now()
    with transaction.atomic():
        if leaf is not None:
            Message.objects.filter(pk=leaf).update(shown_at=now)
        Conversation.objects.filter(pk=conversation.pk).update(current_leaf_id=leaf, choosing=False)
    conversation.current_leaf_id = leaf
    conversation.choosing = False
    return conversation


def conversation_fork(*, user, conversation_id, message_id) -> Conversation:
    """A new conversation of ``user`` holding the path from the root to ``message_id``, with the
    same model and settings. The original is unchanged."""
    source = conversation_for_user(user=user, conversation_id=conversation_id)
    message = message_for_user(user=user, conversation=source, message_id=message_id)
    if message.status == Message.Status.STREAMING:
        raise Busy(_("Wait for this reply to finish before forking from it."))
    path = [m for m in message_path(conversation=source, leaf_id=message.pk) if m.status != Message.Status.STREAMING]
    title = _("%(title)s (fork)") % {"title": source.title or _("New chat")}
    now = timezone.now()
    with transaction.atomic():
        fork = Conversation.objects.create(
            owner=user,
            title=title[:TITLE_MAX],
            created_at=now,
            updated_at=now,
            **{name: getattr(source, name) for name in _FORKED_FIELDS},
        )
        copies = []
        parent = None
        for original in path:
            copy = Message(conversation=fork, parent=parent, **{name: getattr(original, name) for name in _COPIED})
            copies.append(copy)
            parent = copy
        Message.objects.bulk_create(copies)
        if copies:
            Conversation.objects.filter(pk=fork.pk).update(current_leaf=copies[-1])
            fork.current_leaf_id = copies[-1].pk
    return fork

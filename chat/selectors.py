"""Reads that enforce ownership. Every view and consumer reads through these.

A row that is not the caller's is treated exactly like a row that does not exist (T01).
"""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from chat.errors import ModelUnavailable, NotFound
from chat.models import ChatModel, Conversation, Message


def _as_uuid(value) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise NotFound() from None


def conversation_for_user(*, user, conversation_id) -> Conversation:
    cid = _as_uuid(conversation_id)
    try:
        return Conversation.objects.select_related("model__provider").get(id=cid, owner=user)
    except Conversation.DoesNotExist:
        raise NotFound() from None


def message_for_user(*, user, message_id) -> Message:
    mid = _as_uuid(message_id)
    try:
        return Message.objects.select_related("conversation").get(id=mid, conversation__owner=user)
    except Message.DoesNotExist:
        raise NotFound() from None


def conversation_list(*, user, query: str = "", before=None, limit: int = 50) -> QuerySet[Conversation]:
    """The sidebar: pinned first, newest first, never loading message bodies."""
    qs = Conversation.objects.filter(owner=user).only("id", "title", "pinned", "updated_at", "created_at")
    if query:
        qs = qs.filter(Q(title__icontains=query) | Q(messages__content__icontains=query)).distinct()
    if before is not None:
        qs = qs.filter(updated_at__lt=before, pinned=False)
    return qs.order_by("-pinned", "-updated_at")[:limit]


def conversation_messages(*, conversation: Conversation, limit: int | None = None) -> list[Message]:
    qs = conversation.messages.order_by("created_at")
    if limit is not None:
        return list(reversed(conversation.messages.order_by("-created_at")[:limit]))
    return list(qs)


def models_for_user(*, user) -> QuerySet[ChatModel]:
    """Enabled models of enabled providers that the member is allowed to use (T07)."""
    qs = ChatModel.objects.filter(enabled=True, provider__enabled=True).select_related("provider")
    # One query: the member's groups are a subquery, not a separate round trip.
    granted = ChatModel.groups.through.objects.filter(group__user=user).values("chatmodel_id")
    return qs.filter(Q(groups__isnull=True) | Q(pk__in=granted)).distinct().order_by("provider__name", "model_id")


def model_for_user(*, user, model_id) -> ChatModel:
    """The member's chosen model, or the default one. Ungranted and disabled models are refused."""
    qs = models_for_user(user=user)
    if model_id in (None, ""):
        model = qs.filter(is_default=True).first() or qs.first()
        if model is None:
            from chat.errors import NoProvider

            raise NoProvider()
        return model
    try:
        return qs.get(pk=int(model_id))
    except (ChatModel.DoesNotExist, TypeError, ValueError):
        raise ModelUnavailable() from None


def usage_for_month(*, user, since, recent: int = 20) -> dict:
    """The member's own usage since ``since`` (the month start): totals per model and the latest replies."""
    from django.db.models import Count, Sum

    from chat.models import UsageRecord

    qs = UsageRecord.objects.filter(user=user, created_at__gte=since)
    by_model = list(
        qs.values("model_name")
        .annotate(
            replies=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
        .order_by("-cost", "model_name")
    )
    latest = list(qs.select_related("conversation").order_by("-created_at")[:recent])
    return {"by_model": by_model, "latest": latest}

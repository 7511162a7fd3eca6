"""Reads that enforce ownership. Every view and consumer reads through these.

A row that is not the caller's is treated exactly like a row that does not exist (T01).
"""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from chat.errors import NotFound
from chat.models import ApiToken, Citation, Conversation, Document, Message


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


def api_tokens_for_user(*, user) -> QuerySet[ApiToken]:
    """The member's own API tokens, newest first, with their model lists."""
    return ApiToken.objects.filter(user=user).prefetch_related("allowed_models").order_by("-created_at")


def api_token_for_user(*, user, token_id) -> ApiToken:
    try:
        return ApiToken.objects.get(pk=int(token_id), user=user)
    except (ApiToken.DoesNotExist, TypeError, ValueError):
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


def usage_for_month(*, user, since, recent: int = 20) -> dict:
    """The member's own usage since ``since`` (the month start): totals per model and kind, and the latest calls."""
    from django.db.models import Count, Sum

    from chat.models import UsageRecord

    qs = UsageRecord.objects.filter(user=user, created_at__gte=since)
    by_model = list(
        qs.values("model_name", "kind")
        .annotate(
            replies=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            images=Sum("images"),
            audio_seconds=Sum("audio_seconds"),
            characters=Sum("characters"),
            cost=Sum("cost"),
        )
        .order_by("-cost", "model_name", "kind")
    )
    for row in by_model:
        row["other_units"] = usage_units_text(row)
    latest = list(qs.select_related("conversation", "api_token").order_by("-created_at")[:recent])
    return {"by_model": by_model, "latest": latest}


def usage_units_text(row) -> str:
    """What a usage row counted besides tokens, in its kind's units ("3 images, 1.5 minutes")."""
    from decimal import Decimal

    from django.utils.formats import number_format
    from django.utils.translation import ngettext

    parts = []
    images = row.get("images") or 0
    if images:
        parts.append(
            ngettext("%(n)s image", "%(n)s images", images) % {"n": number_format(images, force_grouping=True)}
        )
    seconds = Decimal(str(row.get("audio_seconds") or 0))
    if seconds:
        minutes = (seconds / 60).quantize(Decimal("0.1"))
        count = 1 if minutes == 1 else 2  # "1.5 minutes": only exactly one is singular
        parts.append(ngettext("%(n)s minute", "%(n)s minutes", count) % {"n": number_format(minutes)})
    characters = row.get("characters") or 0
    if characters:
        parts.append(
            ngettext("%(n)s character", "%(n)s characters", characters)
            % {"n": number_format(characters, force_grouping=True)}
        )
    return ", ".join(parts)


# --- documents (chat/services/documents.py) ---


def document_for_user(*, user, document_id) -> Document:
    try:
        return Document.objects.get(id=_as_uuid(document_id), owner=user)
    except Document.DoesNotExist:
        raise NotFound() from None


def documents_for_user(*, user, document_ids) -> list[Document]:
    """The member's documents among ``document_ids`` (others' are simply not there)."""
    ids = []
    for value in document_ids:
        try:
            ids.append(_as_uuid(value))
        except NotFound:
            continue
    return list(Document.objects.filter(id__in=ids, owner=user))


def citation_for_user(*, user, message_id, number) -> Citation:
    """Source ``number`` of a reply in one of the member's conversations (T48)."""
    try:
        return Citation.objects.select_related("chunk__document", "message").get(
            message_id=_as_uuid(message_id),
            message__conversation__owner=user,
            chunk__owner=user,
            number=number,
        )
    except Citation.DoesNotExist:
        raise NotFound() from None

"""Reads that enforce ownership. Every view and consumer reads through these.

A row that is not the caller's is treated exactly like a row that does not exist (T01).
"""

from __future__ import annotations

import uuid

from django.db import connection
from django.db.models import Case, Count, IntegerField, OuterRef, Q, QuerySet, Subquery, UUIDField, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from chat.errors import NotFound
from chat.models import (
    ApiToken,
    Citation,
    Collection,
    Conversation,
    Document,
    Folder,
    Message,
    Preset,
    Prompt,
    ShareLink,
)


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


# What the sidebar shows of a conversation (never a message body).
CONVERSATION_LIST_FIELDS = (
    "id",
    "title",
    "pinned",
    "folder_id",
    "updated_at",
    "created_at",
    "training_consent_at",
    "training_locked_at",
)


def conversation_list(*, user, query: str = "", before=None, limit: int = 50) -> QuerySet[Conversation]:
    """The sidebar: pinned first, newest first, never loading message bodies."""
    qs = Conversation.objects.filter(owner=user).only(*CONVERSATION_LIST_FIELDS)
    if query:
        # The folder's name too: searching a folder's name finds the conversations filed in it.
        qs = qs.filter(
            Q(title__icontains=query) | Q(folder__name__icontains=query) | Q(messages__content__icontains=query)
        ).distinct()
    if before is not None:
        qs = qs.filter(updated_at__lt=before, pinned=False)
    return qs.order_by("-pinned", "-updated_at")[:limit]


def message_for_user(*, user, conversation: Conversation, message_id) -> Message:
    """A message of ``conversation`` (already the caller's): any other id is a missing row."""
    try:
        return conversation.messages.get(id=_as_uuid(message_id))  # knows its conversation
    except Message.DoesNotExist:
        raise NotFound() from None


# The table name is the model's own (never input); the message id is a bound parameter.
_PATH_SQL = (
    "WITH RECURSIVE path(id, parent_id) AS ("
    " SELECT id, parent_id FROM {table} WHERE id = %s"
    " UNION ALL SELECT m.id, m.parent_id FROM {table} m JOIN path ON m.id = path.parent_id"
    ") SELECT id FROM path"
)
_BELOW_SQL = (
    "WITH RECURSIVE below(id) AS ("
    " SELECT id FROM {table} WHERE id = %s"
    " UNION ALL SELECT m.id FROM {table} m JOIN below ON m.parent_id = below.id"
    ") SELECT id FROM below"
)


def _recursive(template: str, message_id) -> RawSQL:
    table = connection.ops.quote_name(Message._meta.db_table)
    key = Message._meta.pk.get_db_prep_value(_as_uuid(message_id), connection)
    return RawSQL(template.format(table=table), (key,))  # noqa: S611 - bound parameter, fixed table


def path_ids(message_id) -> RawSQL:
    """The ids of the path from the root to ``message_id`` (itself included), as a subquery.

    One recursive query walks up the parents by primary key; a path is ordered by
    ``created_at`` (a child is always saved after its parent). ``WITH RECURSIVE`` inside
    ``IN (...)`` is the same SQL on PostgreSQL and SQLite.
    """
    return _recursive(_PATH_SQL, message_id)


def descendant_ids(message_id) -> RawSQL:
    """The ids of ``message_id`` and every message below it, as a subquery."""
    return _recursive(_BELOW_SQL, message_id)


def message_path(*, conversation: Conversation, leaf_id=None, limit: int | None = None) -> list[Message]:
    """The messages from the root to ``leaf_id`` (the current leaf by default), oldest first:
    the newest ``limit`` of them when a limit is given. One query."""
    leaf_id = leaf_id if leaf_id is not None else conversation.current_leaf_id
    if leaf_id is None:
        return []
    qs = Message.objects.filter(conversation_id=conversation.pk, id__in=path_ids(leaf_id))
    if limit is not None:
        return list(reversed(qs.order_by("-created_at")[:limit]))
    return list(qs.order_by("created_at"))


def _versions_of():
    """Annotations of a message's versions (the messages under its parent, itself included,
    in (created_at, choice) order): how many, its position, the previous and the next. Each is
    a correlated subquery on the (parent, created_at) index, so the path and its versions come
    in one query; a first message's versions are the conversation's other roots."""

    def siblings(root: bool):
        rows = Message.objects.filter(conversation_id=OuterRef("conversation_id"))
        return rows.filter(parent__isnull=True) if root else rows.filter(parent_id=OuterRef("parent_id"))

    def before(root: bool):
        return siblings(root).filter(
            Q(created_at__lt=OuterRef("created_at"))
            | Q(created_at=OuterRef("created_at"), choice__lt=OuterRef("choice"))
        )

    def after(root: bool):
        return siblings(root).filter(
            Q(created_at__gt=OuterRef("created_at"))
            | Q(created_at=OuterRef("created_at"), choice__gt=OuterRef("choice"))
        )

    def count(rows):
        counted = Subquery(rows.order_by().values("conversation_id").annotate(n=Count("pk")).values("n")[:1])
        return Coalesce(counted, 0)  # no row at all: no group, so no count

    def either(make, output_field):
        return Case(When(parent__isnull=True, then=make(True)), default=make(False), output_field=output_field)

    return {
        "version_count": either(lambda root: count(siblings(root)), IntegerField()),
        "versions_before": either(lambda root: count(before(root)), IntegerField()),
        "version_previous": either(
            lambda root: Subquery(before(root).order_by("-created_at", "-choice").values("id")[:1]), UUIDField()
        ),
        "version_next": either(
            lambda root: Subquery(after(root).order_by("created_at", "choice").values("id")[:1]), UUIDField()
        ),
    }


def conversation_messages(*, conversation: Conversation, limit: int | None = None) -> list[Message]:
    """The branch the member sees (the path to the current leaf), each message with its
    versions (``version_count``, ``versions_before``, ``version_previous``, ``version_next``:
    chat.serializers turns them into "2 / 3" and the ids to switch to). One query, whatever
    the tree's size."""
    leaf_id = conversation.current_leaf_id
    if leaf_id is None:
        return []
    qs = Message.objects.filter(conversation_id=conversation.pk, id__in=path_ids(leaf_id)).annotate(**_versions_of())
    if limit is not None:
        return list(reversed(qs.order_by("-created_at")[:limit]))
    return list(qs.order_by("created_at"))


def conversation_choices(*, conversation: Conversation, leaf: Message | None) -> list[Message]:
    """The answers of the last turn while the member has not picked one (``choosing``): the
    leaf and its siblings written in the same turn, in choice order. One query, or none."""
    if not conversation.choosing or leaf is None or leaf.role != Message.Role.ASSISTANT:
        return []
    return list(
        Message.objects.filter(
            conversation_id=conversation.pk, parent_id=leaf.parent_id, created_at=leaf.created_at
        ).order_by("choice")
    )


def conversation_tree(*, conversation: Conversation) -> list[Message]:
    """Every message of every branch, oldest first (the JSON export)."""
    return list(conversation.messages.order_by("created_at"))


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


def readable_collection_ids(user_id) -> QuerySet:
    """Ids of the collections a member may read: their own, and those shared with a group of
    theirs. A subquery, so every read filters by it in the same statement (T45)."""
    return Collection.objects.filter(Q(owner_id=user_id) | Q(groups__user__id=user_id)).values("pk").distinct()


def readable_documents(user) -> QuerySet:
    """The documents a member may read: their own, and those of the collections they may read."""
    return Document.objects.filter(Q(owner=user) | Q(collection__in=readable_collection_ids(user.pk)))


def document_for_user(*, user, document_id) -> Document:
    """A document the member may read (their own, or in a collection shared with them)."""
    try:
        return readable_documents(user).get(id=_as_uuid(document_id))
    except Document.DoesNotExist:
        raise NotFound() from None


def collections_for_user(*, user) -> list[Collection]:
    return list(
        Collection.objects.filter(pk__in=readable_collection_ids(user.pk))
        .select_related("owner")
        .annotate(document_count=Count("documents", filter=~Q(documents__status=Document.Status.FAILED)))
        .order_by("name", "pk")
    )


def collection_for_user(*, user, collection_id) -> Collection:
    """A collection the member may read, or NotFound (another member's private one included)."""
    try:
        return Collection.objects.select_related("owner").get(
            pk=_as_uuid(collection_id), pk__in=readable_collection_ids(user.pk)
        )
    except Collection.DoesNotExist:
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
    """Source ``number`` of a reply in one of the member's conversations, from a document they
    may still read (a collection no longer shared with them is gone from their citations: T45, T48)."""
    try:
        return Citation.objects.select_related("chunk__document", "message").get(
            message_id=_as_uuid(message_id),
            message__conversation__owner=user,
            chunk__document__in=readable_documents(user),
            number=number,
        )
    except Citation.DoesNotExist:
        raise NotFound() from None


# --- presets, prompts, folders, share links (chat/services/library.py) ---


def _int_id(value) -> int:
    if isinstance(value, bool):
        raise NotFound()
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise NotFound() from None


def _seen_by(model, user) -> Q:
    """The member's own rows and those published to a group they are in: one query, the
    member's groups a subquery (as chat.core.grants does for models)."""
    published = model.groups.through.objects.filter(group__user=user).values(f"{model._meta.model_name}_id")
    return Q(owner=user) | Q(pk__in=published)


def presets_for_user(*, user) -> list[Preset]:
    """The presets "New chat" offers the member, by name. One query."""
    return list(Preset.objects.filter(_seen_by(Preset, user)).order_by("name", "pk"))


def preset_for_user(*, user, preset_id, own: bool = False) -> Preset:
    """A preset the member may use (``own``: one they may change, their own)."""
    rule = Q(owner=user) if own else _seen_by(Preset, user)
    try:
        return Preset.objects.filter(rule).get(pk=_int_id(preset_id))
    except Preset.DoesNotExist:
        raise NotFound(_("That preset does not exist.")) from None


def prompts_for_user(*, user) -> list[Prompt]:
    """The member's prompt library: their own and those shared with their groups. One query."""
    return list(Prompt.objects.filter(_seen_by(Prompt, user)).order_by("title", "pk"))


def prompt_for_user(*, user, prompt_id, own: bool = False) -> Prompt:
    rule = Q(owner=user) if own else _seen_by(Prompt, user)
    try:
        return Prompt.objects.filter(rule).get(pk=_int_id(prompt_id))
    except Prompt.DoesNotExist:
        raise NotFound(_("That prompt does not exist.")) from None


def folders_for_user(*, user) -> list[Folder]:
    """The member's folders, by name: one query for the whole sidebar, whatever the number of
    conversations (a conversation names its folder by id)."""
    return list(Folder.objects.filter(owner=user).order_by("name", "created_at"))


def folder_for_user(*, user, folder_id) -> Folder:
    try:
        return Folder.objects.get(pk=_int_id(folder_id), owner=user)
    except Folder.DoesNotExist:
        raise NotFound(_("That folder does not exist.")) from None


def share_links_for_user(*, user) -> list[ShareLink]:
    """The member's share links, newest first, without their snapshots."""
    return list(ShareLink.objects.filter(owner=user).defer("messages").order_by("-created_at"))


def share_link_for_user(*, user, share_id) -> ShareLink:
    try:
        return ShareLink.objects.defer("messages").get(pk=_int_id(share_id), owner=user)
    except ShareLink.DoesNotExist:
        raise NotFound(_("That share link does not exist.")) from None


def share_link_by_token(*, token) -> ShareLink:
    """The shared snapshot behind a link; a revoked (deleted) or made-up token is missing."""
    if not isinstance(token, str) or not 20 <= len(token) <= 64:
        raise NotFound()
    try:
        return ShareLink.objects.get(token=token)
    except ShareLink.DoesNotExist:
        raise NotFound() from None

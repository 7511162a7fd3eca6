"""Reads that enforce ownership. Every view and consumer reads through these.

A row that is not the caller's is treated exactly like a row that does not exist (T01).
"""

from __future__ import annotations

import uuid

from django.db import connection
from django.db.models import (
    Case,
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    UUIDField,
    When,
)
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
from chat.prepared import PreparedRead


def _as_uuid(value) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise NotFound() from None


# Read on every follow-up and stop: composed once (chat/prepared.py).
_CONVERSATION_OWNED = PreparedRead(
    lambda p: Conversation.objects.select_related("model__provider").filter(id=p.id, owner_id=p.owner_id),
    id=Conversation._meta.pk,
    owner_id=Conversation._meta.get_field("owner"),
)


def conversation_for_user(*, user, conversation_id) -> Conversation:
    cid = _as_uuid(conversation_id)
    try:
        return _CONVERSATION_OWNED.get(id=cid, owner_id=user.pk)
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


def conversation_list(
    *, user, query: str = "", before=None, limit: int = 50, folder: Folder | None = None
) -> QuerySet[Conversation]:
    """The sidebar: pinned first, newest first, never loading message bodies (``folder``: only
    the conversations filed in that folder, one of the member's)."""
    qs = Conversation.objects.filter(owner=user).only(*CONVERSATION_LIST_FIELDS)
    if folder is not None:
        qs = qs.filter(folder=folder)
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


# Walking up one branch with the columns the prompt needs, newest first. Each step of the
# recursion yields exactly one row (a message has one parent), so the first ``limit`` rows
# produced are the nearest ``limit`` ancestors and both databases stop the walk there:
# PostgreSQL evaluates a WITH query only as far as the outer query fetches, SQLite runs the
# recursion as a queue feeding the outer LIMIT. ``depth`` orders them without trusting that.
_WALK_COLUMNS = ("id", "parent_id", "role", "status", "token_count", "token_encoding")
_WALK_SQL = (
    "WITH RECURSIVE walk(depth, {columns}) AS ("
    " SELECT 0, {columns} FROM {table} WHERE id = %s AND conversation_id = %s"
    " UNION ALL SELECT walk.depth + 1, {prefixed} FROM {table} m JOIN walk ON m.id = walk.parent_id"
    " WHERE m.conversation_id = %s{stop}"
    ") {outer}"
)


def _walk_sql(columns: tuple[str, ...], outer: str, *, stop_at_known: bool = False) -> str:
    return _WALK_SQL.format(
        table=connection.ops.quote_name(Message._meta.db_table),
        columns=", ".join(columns),
        prefixed=", ".join(f"m.{column}" for column in columns),
        stop=" AND walk.replayed_above IS NULL" if stop_at_known else "",
        outer=outer,
    )


def _walk_params(message_id, conversation_id) -> list:
    key = Message._meta.pk.get_db_prep_value(_as_uuid(message_id), connection)
    owner = Conversation._meta.pk.get_db_prep_value(_as_uuid(conversation_id), connection)
    return [key, owner, owner]


def walk_up(*, conversation_id, message_id, limit: int) -> list[tuple]:
    """``message_id`` and its ancestors in its conversation, nearest first, at most ``limit``.

    Rows are ``(id, parent_id, role, status, token_count, token_encoding, content)``, ids as
    the database gives them (a UUID, or SQLite's hex text; ``walk_up`` takes either back).
    One query that reads only the rows it returns: the next page starts from the last row's
    ``parent_id``, so paging never walks the same part of the branch twice.
    """
    columns = (*_WALK_COLUMNS, "content")
    sql = _walk_sql(columns, "SELECT depth, " + ", ".join(columns) + " FROM walk LIMIT %s")  # noqa: S608 - fixed names
    with connection.cursor() as cursor:
        cursor.execute(sql, [*_walk_params(message_id, conversation_id), limit])
        rows = sorted(cursor.fetchall())
    return [row[1:] for row in rows]


_STREAMING_SQL = (
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN m.conversation_id = %s THEN 1 ELSE 0 END), 0)"
    " FROM {message} m JOIN {conversation} c ON c.id = m.conversation_id WHERE c.owner_id = %s AND m.status = %s"
)


def replies_streaming(*, owner_id, conversation_id) -> tuple[int, int]:
    """How many of the member's replies are streaming, in all and in ``conversation_id``.

    Read at the start of every reply, on the database thread every socket's start waits for:
    one statement written out, because the ORM's aggregate of the same query spent about
    30 times as long composing it as the database took to answer (docs/performance.md).
    """
    quote = connection.ops.quote_name
    sql = _STREAMING_SQL.format(message=quote(Message._meta.db_table), conversation=quote(Conversation._meta.db_table))
    conversation = Conversation._meta.pk.get_db_prep_value(_as_uuid(conversation_id), connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [conversation, owner_id, str(Message.Status.STREAMING)])
        total, here = cursor.fetchone()
    return total, here


# Statuses that never change once set (a streaming reply ends, the moderation gate settles
# an unchecked message later): a count over messages in them can be kept.
SETTLED = tuple(
    str(status)
    for status in (
        Message.Status.COMPLETE,
        Message.Status.STOPPED,
        Message.Status.INTERRUPTED,
        Message.Status.ERROR,
        Message.Status.BLOCKED,
    )
)


_COUNTED = "role IN ({roles}) AND status IN ({statuses}) AND NOT (token_count = 0 AND token_encoding > '')"
_COUNT_SQL = (
    "SELECT COALESCE(SUM(CASE WHEN {replayed} THEN 1 ELSE 0 END), 0), COALESCE(MAX(replayed_above), 0),"
    " SUM(CASE WHEN status IN ({settled}) THEN 0 ELSE 1 END) FROM walk"
)


def _marks(values) -> str:
    return ", ".join(["%s"] * len(values))


def count_up(*, conversation_id, message_id, roles, statuses) -> tuple[int, bool]:
    """How many of ``message_id`` and its ancestors have one of ``roles`` and ``statuses`` and
    are not known to be empty (a stored count of 0 made under some encoding), and whether that
    count can be kept (every message counted has a settled status).

    One walk that reads no message bodies and stops at the first message that knows how many
    replayed messages are above it (``Message.replayed_above``, stored with each reply): in a
    conversation replied to since, two or three rows, however long it is. (``roles`` and
    ``statuses`` are the prompt's; only they are ever stored.)
    """
    replayed = _COUNTED.format(roles=_marks(roles), statuses=_marks(statuses))
    outer = _COUNT_SQL.format(replayed=replayed, settled=_marks(SETTLED))
    sql = _walk_sql((*_WALK_COLUMNS, "replayed_above"), outer, stop_at_known=True)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*_walk_params(message_id, conversation_id), *roles, *statuses, *SETTLED])
        counted, above, unsettled = cursor.fetchone()
    return counted + above, not unsettled


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


def search_scope(*, owner_id, conversation_id) -> list[tuple]:
    """(id, version) of the ready documents a question in the conversation searches: the
    owner's documents attached to it, and those of the collections it uses that the owner may
    still read (their own, or shared with a group of theirs). The version changes whenever the
    chunks do. One query."""
    used = Collection.conversations.through.objects.filter(conversation_id=conversation_id).values("collection_id")
    rows = (
        Document.objects.filter(status=Document.Status.READY)
        .filter(
            Q(owner_id=owner_id, conversation_id=conversation_id)
            | Q(collection_id__in=used) & Q(collection_id__in=readable_collection_ids(owner_id))
        )
        .values_list("pk", "updated_at")
    )
    return [(pk, updated_at) for pk, updated_at in rows]


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


def _changed_by(model, user, action: str) -> Q:
    """The rows ``user`` may change (``action``: "change" or "delete"): their own, and for an
    admin allowed to in the console, the published ones (no owner) too."""
    rule = Q(owner=user)
    if user.is_staff and user.has_perm(f"chat.{action}_{model._meta.model_name}"):
        rule |= Q(owner__isnull=True)
    return rule


def may_change(obj, user) -> bool:
    """Whether ``user`` may change ``obj`` (a preset or prompt) from the chat page."""
    if obj.owner_id is not None:
        return obj.owner_id == user.pk
    return bool(user.is_staff and user.has_perm(f"chat.change_{obj._meta.model_name}"))


def _with_readable(user) -> QuerySet[Collection]:
    # Each collection marked with whether ``user`` may read it (one subquery, T45).
    readable = readable_collection_ids(user.pk).filter(pk=OuterRef("pk"))
    return Collection.objects.annotate(readable=Exists(readable)).only("id", "name", "owner_id").order_by("name", "pk")


def presets_for_user(*, user, collections: bool = False) -> list[Preset]:
    """The presets "New chat" offers the member, by name. One query (``collections``: and one
    more for their collections, each marked readable or not by the member)."""
    presets = Preset.objects.filter(_seen_by(Preset, user)).order_by("name", "pk")
    if collections:
        presets = presets.prefetch_related(Prefetch("collections", queryset=_with_readable(user)))
    return list(presets)


def preset_for_user(*, user, preset_id, own: bool = False, action: str = "change") -> Preset:
    """A preset the member may use (``own``: one they may change, their own, or as an admin a
    published one; ``action``, "change" or "delete", names the admin's permission)."""
    rule = _changed_by(Preset, user, action) if own else _seen_by(Preset, user)
    try:
        return Preset.objects.filter(rule).get(pk=_int_id(preset_id))
    except Preset.DoesNotExist:
        raise NotFound(_("That preset does not exist.")) from None


def preset_collections_for_user(*, user, preset: Preset) -> tuple[list[Collection], int]:
    """The preset's collections the member may read, by name, and how many others it names
    (never their names: a collection not shared with the member is not theirs to know). One
    query, or none when prefetched by ``presets_for_user(collections=True)``."""
    if "collections" in getattr(preset, "_prefetched_objects_cache", {}):
        rows = list(preset.collections.all())
    else:
        rows = list(_with_readable(user).filter(presets=preset))
    readable = [c for c in rows if c.readable]
    return readable, len(rows) - len(readable)


def prompts_for_user(*, user) -> list[Prompt]:
    """The member's prompt library: their own and those shared with their groups. One query."""
    return list(Prompt.objects.filter(_seen_by(Prompt, user)).order_by("title", "pk"))


def prompt_for_user(*, user, prompt_id, own: bool = False, action: str = "change") -> Prompt:
    rule = _changed_by(Prompt, user, action) if own else _seen_by(Prompt, user)
    try:
        return Prompt.objects.filter(rule).get(pk=_int_id(prompt_id))
    except Prompt.DoesNotExist:
        raise NotFound(_("That prompt does not exist.")) from None


def folders_for_user(*, user) -> list[Folder]:
    """The member's folders, by name: one query for the whole sidebar, whatever the number of
    conversations (a conversation names its folder by id)."""
    # With how many conversations each holds, in the same query: the sidebar fetches an open
    # folder's own pages only when its first page of the list does not hold them all.
    return list(
        Folder.objects.filter(owner=user)
        .annotate(conversation_count=Count("conversations"))
        .order_by("name", "created_at")
    )


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

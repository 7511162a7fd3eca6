"""Search by meaning: a member's messages embedded after each turn, and the sidebar search that
fuses text matches with the conversations nearest the search by meaning.

Indexing. When a turn completes, ``turn_queue`` queues the member's message and the
reply (a ``MessageIndex`` row each) and the caller enqueues ``conversation_index``
(chat/jobs/search.py), the job's body. The job claims the due rows of the conversation with
one conditional UPDATE that stamps a fresh claim token (a row another worker holds, or that is
done, is not due: two workers never embed one message twice), splits each message into
passages by tokens, embeds them through the model-call core (billed to the member, kind
``embedding``, purpose ``search``) and writes the passages, in one transaction, only for the
rows its claim still holds. A failed call leaves the rows queued with a try counted; they are
due again once the lease (``PARLEY_DOCUMENT_LEASE_SECONDS``) has passed, and housekeeping
enqueues them (``search_requeue``); after ``MAX_TRIES`` a row is marked failed (the
``search_backfill`` command takes failed rows up again). The reply itself is never touched.
With no embedding model for the member nothing is queued; ``search_backfill`` catches up.

Search. ``conversation_search`` ranks the member's conversations twice: by text (the
sidebar's title, folder name and message text match, newest first, as before) and by meaning
(the question's embedding, one admitted call, against the member's passages: pgvector's
``<=>`` over the HNSW index on PostgreSQL, an exact scan of a float32 matrix kept in this
process on SQLite), and fuses both by reciprocal rank (k=60). Both rankings filter by owner in
the query that ranks, and the conversations are read again by owner, so another member's
conversation, or a deleted one, is never a result (docs/security.md, T45). With no embedding
model, or when the question's call is refused or fails, the answer is the text matches with a
notice whose code says why.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest, Lower, StrIndex, Substr
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.errors import NoProvider, ParleyError
from chat.models import Conversation, Message, MessageChunk, MessageIndex
from chat.services.chunking import chunk_pages
from chat.services.documents import embed_texts, embedding_model_of
from chat.services.extract import Page

logger = logging.getLogger(__name__)

RRF_K = 60
MAX_TRIES = 5  # failed embedding attempts before a message is marked failed
MAX_CHUNKS_PER_MESSAGE = 16  # passages embedded of one message (its first ~4,800 tokens)
CLAIM_BATCH = 64  # messages one pass of the job embeds
MEANING_CANDIDATES = 200  # nearest passages looked at, grouped into conversations
MEANING_RESULTS = 20  # conversations found by meaning, at most
# PostgreSQL: a member with at most this many passages is ranked exactly (every passage of
# theirs); more, by the HNSW index (approximate).
EXACT_PASSAGES = 50_000
SNIPPET_CHARS = 180
INDEXED_STATUSES = (Message.Status.COMPLETE,)


# --- indexing --------------------------------------------------------------------------------------


def search_model(user):
    """The member's embedding model, or None: search by meaning is unavailable, and search stays
    by text."""
    return _search_model_of(user.pk)


def _search_model_of(user_id: int):
    # None is an answer here, not a refusal, so it is not rechecked against the database
    # (``granted_copies``): every sidebar search and finished turn asks.
    try:
        return embedding_model_of(user_id, recheck=False)
    except NoProvider:
        return None


def turn_queue(*, reply: Message, owner_id: int):
    """Queue a reply its caller has just saved complete (the reply's task,
    chat.transport.runner) and the member's message it answers for embedding, with nothing read
    back; the conversation's id to enqueue ``conversation_index`` for, or None when the member
    has no embedding model (from the process's copy of the catalog: no query at the end of
    every reply)."""
    if _search_model_of(owner_id) is None:
        return None
    ids = [reply.pk]
    if reply.parent_id:
        ids += list(
            Message.objects.filter(pk=reply.parent_id, role=Message.Role.USER, status__in=INDEXED_STATUSES).values_list(
                "pk", flat=True
            )
        )
    messages_queue(conversation_id=reply.conversation_id, owner_id=owner_id, message_ids=ids)
    return reply.conversation_id


def messages_queue(*, conversation_id, owner_id, message_ids) -> None:
    """MessageIndex rows for these messages of the conversation (a row that exists is kept)."""
    MessageIndex.objects.bulk_create(
        [MessageIndex(message_id=m, conversation_id=conversation_id, owner_id=owner_id) for m in message_ids],
        ignore_conflicts=True,
    )


def _due() -> Q:
    cutoff = timezone.now() - timedelta(seconds=settings.PARLEY_DOCUMENT_LEASE_SECONDS)
    return Q(status=MessageIndex.Status.QUEUED) & (Q(claimed_at__isnull=True) | Q(claimed_at__lt=cutoff))


def _claim(conversation_id) -> tuple[uuid.UUID, list]:
    """Take up to CLAIM_BATCH due rows of the conversation for this worker: (token, message ids).

    One UPDATE whose WHERE says "due": on PostgreSQL a racing worker's UPDATE re-checks it on
    the row the first one wrote (and finds it claimed), on SQLite writes are serialised; either
    way one worker holds a row.
    """
    token = uuid.uuid4()
    candidates = list(
        MessageIndex.objects.filter(_due(), conversation_id=conversation_id)
        .order_by("created_at")
        .values_list("pk", flat=True)[:CLAIM_BATCH]
    )
    if not candidates:
        return token, []
    now = timezone.now()
    MessageIndex.objects.filter(_due(), pk__in=candidates).update(
        claim=token, claimed_at=now, attempt=F("attempt") + 1, updated_at=now
    )
    return token, list(MessageIndex.objects.filter(claim=token).values_list("pk", flat=True))


def _pieces(content: str) -> list:
    if not content.strip():
        return []
    return chunk_pages([Page(0, content)], settings.PARLEY_DOCUMENT_CHUNK_TOKENS)[:MAX_CHUNKS_PER_MESSAGE]


def conversation_index(conversation_id, *, after_claim=None) -> str:
    """Embed the conversation's queued messages (the job's body): "ready" when this worker
    embedded some, "skipped" when none was due (another worker holds them, or all are done),
    "waiting" when the member has no embedding model, "retry" when the call failed.

    ``after_claim`` is called once the first rows are claimed (tests race a second worker there).
    """
    outcome = "skipped"
    while True:
        token, ids = _claim(conversation_id)
        if not ids:
            return outcome
        if after_claim is not None:
            after_claim(ids)
            after_claim = None
        result = _index_claimed(conversation_id, token, ids)
        if result != "ready":
            return result
        outcome = "ready"


def _release(token, *, tries: bool, error_code: str = "") -> None:
    rows = MessageIndex.objects.filter(claim=token)
    now = timezone.now()
    if not tries:
        rows.update(claim=None, claimed_at=None, updated_at=now)
        return
    rows.filter(tries__gte=MAX_TRIES - 1).update(
        status=MessageIndex.Status.FAILED, claim=None, claimed_at=None, tries=MAX_TRIES, error_code=error_code[:64]
    )
    # Due again once the lease has passed (claimed_at stays: the retry waits for it).
    rows.update(claim=None, claimed_at=now, tries=F("tries") + 1, error_code=error_code[:64], updated_at=now)


def _index_claimed(conversation_id, token, ids) -> str:
    conversation = Conversation.objects.filter(pk=conversation_id).select_related("owner").first()
    if conversation is None:
        return "skipped"  # deleted meanwhile: its rows went with it
    owner = conversation.owner
    model = search_model(owner)
    if model is None:
        _release(token, tries=False)
        return "waiting"
    contents = dict(Message.objects.filter(pk__in=ids).values_list("pk", "content"))
    plan = [(message_id, piece) for message_id in ids for piece in _pieces(contents.get(message_id, ""))]
    try:
        vectors = (
            async_to_sync(embed_texts)(user=owner, model=model, texts=[p.text for _, p in plan], purpose="search")
            if plan
            else []
        )
    except ParleyError as exc:
        logger.info("messages of %s not embedded (%s): retried later", conversation_id, exc.code)
        _release(token, tries=True, error_code=exc.code)
        return "retry"
    with transaction.atomic():
        held = set(
            MessageIndex.objects.select_for_update().filter(claim=token, pk__in=ids).values_list("pk", flat=True)
        )
        if not held:
            return "skipped"
        MessageChunk.objects.filter(message_id__in=held).delete()  # a lease taken over: written once
        ordinals: dict = {}
        rows = []
        for (message_id, piece), vector in zip(plan, vectors, strict=True):
            if message_id not in held:
                continue
            ordinal = ordinals[message_id] = ordinals.get(message_id, -1) + 1
            rows.append(
                MessageChunk(
                    message_id=message_id,
                    conversation_id=conversation_id,
                    owner_id=owner.pk,
                    ordinal=ordinal,
                    text=piece.text,
                    tokens=piece.tokens,
                    embedding=vector,
                )
            )
        MessageChunk.objects.bulk_create(rows, batch_size=500)
        MessageIndex.objects.filter(claim=token, pk__in=held).update(
            status=MessageIndex.Status.READY, claim=None, claimed_at=None, error_code="", updated_at=timezone.now()
        )
    return "ready"


def search_due_conversations(limit: int = 1000) -> list:
    """Conversations with messages due again: a failed call's retry, or a claim whose worker
    died, once the lease has passed. (A row never claimed has its job in the queue.)"""
    cutoff = timezone.now() - timedelta(seconds=settings.PARLEY_DOCUMENT_LEASE_SECONDS)
    rows = MessageIndex.objects.filter(status=MessageIndex.Status.QUEUED, claimed_at__lt=cutoff)
    return list(rows.values_list("conversation_id", flat=True).distinct()[:limit])


def search_backfill(*, owner_ids=None, retry_failed: bool = False) -> list:
    """Queue every complete message of the members' conversations not yet queued (all members
    with an embedding model when ``owner_ids`` is None); returns the conversations to enqueue."""
    from django.contrib.auth import get_user_model

    members = get_user_model().objects.filter(is_active=True)
    if owner_ids is not None:
        members = members.filter(pk__in=owner_ids)
    conversations = []
    for member in members.iterator():
        if search_model(member) is None:
            continue
        if retry_failed:
            MessageIndex.objects.filter(owner=member, status=MessageIndex.Status.FAILED).update(
                status=MessageIndex.Status.QUEUED, tries=0, claimed_at=None, error_code=""
            )
        missing = (
            Message.objects.filter(
                conversation__owner=member,
                role__in=[Message.Role.USER, Message.Role.ASSISTANT],
                status__in=INDEXED_STATUSES,
                search_index__isnull=True,
            )
            .exclude(content="")
            .values_list("pk", "conversation_id")
        )
        by_conversation: dict = {}
        for message_id, conversation_id in missing.iterator():
            by_conversation.setdefault(conversation_id, []).append(message_id)
        for conversation_id, ids in by_conversation.items():
            for start in range(0, len(ids), 1000):
                messages_queue(
                    conversation_id=conversation_id, owner_id=member.pk, message_ids=ids[start : start + 1000]
                )
        conversations += list(
            MessageIndex.objects.filter(_due(), owner=member).values_list("conversation_id", flat=True).distinct()
        )
    return conversations


# --- the nearest passages --------------------------------------------------------------------------


class _Kept:
    __slots__ = ("chunk_ids", "conversation_ids", "count", "last", "matrix")

    def __init__(self, chunk_ids, conversation_ids, matrix, count, last):
        self.chunk_ids, self.conversation_ids, self.matrix = chunk_ids, conversation_ids, matrix
        self.count, self.last = count, last

    @property
    def nbytes(self) -> int:
        return self.chunk_ids.nbytes + self.conversation_ids.nbytes + self.matrix.nbytes


class _MemberMatrices:
    """SQLite: each member's passage vectors as one unit-length float32 matrix (and the chunk
    and conversation of each row), kept in this process while the member's passages are the
    same: (count, largest id) is read per search (ids only grow, so it changes with every
    insert and delete). New passages are appended; a deletion reloads. Least recently searched
    first out past ``PARLEY_RETRIEVAL_CACHE_MB``. A cache, rebuilt on demand."""

    def __init__(self):
        self._lock = threading.Lock()
        self._kept: OrderedDict[int, _Kept] = OrderedDict()
        self._bytes = 0

    def get(self, owner_id) -> _Kept:
        import numpy as np  # here, not at start-up: only a search by meaning needs it

        count, last = _count_max(owner_id)
        with self._lock:
            kept = self._kept.get(owner_id)
            if kept is not None:
                self._kept.move_to_end(owner_id)
        if kept is not None and (kept.count, kept.last) == (count, last):
            return kept
        fresh = None
        if kept is not None and last is not None and kept.last is not None and count > kept.count:
            more = _load(owner_id, after=kept.last)
            if kept.count + len(more[0]) == count:
                fresh = _Kept(
                    np.concatenate([kept.chunk_ids, more[0]]),
                    np.concatenate([kept.conversation_ids, more[1]]),
                    np.concatenate([kept.matrix, more[2]]),
                    count,
                    last,
                )
        if fresh is None:
            chunk_ids, conversation_ids, matrix = _load(owner_id)
            fresh = _Kept(chunk_ids, conversation_ids, matrix, count, last)
        with self._lock:
            old = self._kept.pop(owner_id, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._kept[owner_id] = fresh
            self._bytes += fresh.nbytes
            budget = settings.PARLEY_RETRIEVAL_CACHE_MB * 1024 * 1024
            while self._bytes > budget and len(self._kept) > 1:
                _, gone = self._kept.popitem(last=False)
                self._bytes -= gone.nbytes
        return fresh

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0


def _count_max(owner_id) -> tuple[int, int | None]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), max(id) FROM {MessageChunk._meta.db_table} WHERE owner_id = %s",  # noqa: S608 - model's table
            [owner_id],
        )
        count, last = cursor.fetchone()
    return count or 0, last


def _load(owner_id, after=None):
    import numpy as np  # here, not at start-up: only a search by meaning needs it

    rows = MessageChunk.objects.filter(owner_id=owner_id)
    if after is not None:
        rows = rows.filter(pk__gt=after)
    found = list(rows.order_by("pk").values_list("pk", "conversation_id", "embedding"))
    dimensions = settings.PARLEY_EMBEDDING_DIMENSIONS
    chunk_ids = np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))
    conversation_ids = np.array([r[1].hex for r in found], dtype="<U32")
    if not found:
        return chunk_ids, conversation_ids, np.zeros((0, dimensions), dtype=np.float32)
    matrix = np.ascontiguousarray(np.stack([np.asarray(r[2]) for r in found]).astype(np.float32, copy=False))
    norms = np.linalg.norm(matrix, axis=1)
    matrix /= np.where(norms == 0, 1.0, norms)[:, None]
    return chunk_ids, conversation_ids, matrix


MATRICES = _MemberMatrices()


def nearest_passages(owner_id, vector, limit: int = MEANING_CANDIDATES) -> list[tuple[int, str, float]]:
    """The member's passages nearest ``vector``: (chunk id, conversation id hex, cosine), best first."""
    import numpy as np  # here, not at start-up: only a search by meaning needs it

    query = np.asarray(vector, dtype=np.float32)
    if connection.vendor == "postgresql":
        from pgvector import Vector

        exact = _count_max(owner_id)[0] <= EXACT_PASSAGES
        with connection.cursor() as cursor:
            if exact:
                # Every passage of the member, by the owner index, ranked exactly: "+ 0" keeps
                # the planner off the HNSW index, whose nearest-then-filter scan found the
                # conversation first in 36-42 % of bench.search's searches against 70 % exact,
                # for about the same time at 10,000 passages (docs/performance.md).
                order = "(embedding <=> %s::vector) + 0"
            else:
                # The HNSW index's nearest, filtered by owner: the iterative scan keeps looking
                # until ``limit`` of the member's are found (pgvector 0.8; retrieval.py).
                cursor.execute("SET hnsw.iterative_scan = relaxed_order")
                order = "embedding <=> %s::vector"
            cursor.execute(
                "SELECT id, conversation_id, 1 - (embedding <=> %s::vector) FROM chat_messagechunk "  # noqa: S608 - constants
                f"WHERE owner_id = %s ORDER BY {order} LIMIT %s",
                [Vector._to_db(query), owner_id, Vector._to_db(query), limit],
            )
            return [(row[0], uuid.UUID(str(row[1])).hex, float(row[2])) for row in cursor.fetchall()]
    kept = MATRICES.get(owner_id)
    if not len(kept.chunk_ids) or kept.matrix.shape[1] != len(query):
        return []
    query = query / (np.linalg.norm(query) or 1.0)
    scores = kept.matrix @ query
    top = np.argpartition(-scores, limit)[:limit] if len(scores) > limit else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(kept.chunk_ids[i]), str(kept.conversation_ids[i]), float(scores[i])) for i in top]


# --- the sidebar search ----------------------------------------------------------------------------


@dataclass
class SearchAnswer:
    """The fused ranking: conversations best first, why each matched, and the meaning side's state."""

    conversations: list = field(default_factory=list)
    matches: dict = field(default_factory=dict)  # conversation id -> {"text", "meaning", "snippet"}
    meaning: str = "on"  # "on", "unavailable" (no embedding model) or "failed" (the call)
    notice: dict | None = None  # {"code", "message"} when meaning is not "on"


def meaning_vector(*, user, query: str):
    """The question's embedding (one admitted call, billed to the member), or (None, notice)."""
    model = search_model(user)
    if model is None:
        return (
            None,
            "unavailable",
            {
                "code": "search_meaning_unavailable",
                "message": _(
                    "Search by meaning is unavailable: no embedding model is set up. Showing text matches only."
                ),
            },
        )
    try:
        vector = async_to_sync(embed_texts)(user=user, model=model, texts=[query], purpose="search")[0]
    except ParleyError as exc:
        logger.info("search not embedded (%s): text matches only", exc.code)
        return (
            None,
            "failed",
            {
                "code": "search_meaning_failed",
                "message": _("Search by meaning failed (%(reason)s). Showing text matches only.")
                % {"reason": exc.message},
                "cause": exc.code,
            },
        )
    return vector, "on", None


def meaning_ranking(*, owner_id, vector) -> list[tuple[str, int, float]]:
    """Conversations nearest by meaning: (conversation id hex, its nearest passage, cosine),
    best first, those at least PARLEY_SEARCH_MIN_SIMILARITY close."""
    best: dict[str, tuple[int, float]] = {}
    for chunk_id, conversation_id, score in nearest_passages(owner_id, vector):
        if score < settings.PARLEY_SEARCH_MIN_SIMILARITY:
            continue
        if conversation_id not in best or score > best[conversation_id][1]:
            best[conversation_id] = (chunk_id, score)
    ranked = sorted(best.items(), key=lambda item: -item[1][1])[:MEANING_RESULTS]
    return [(cid, chunk_id, score) for cid, (chunk_id, score) in ranked]


def fuse(rankings: list[list[str]]) -> list[str]:
    """Reciprocal rank fusion (k=60) of rankings of conversation ids, best first."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
    order = {key: i for ranking in rankings for i, key in reversed(list(enumerate(ranking)))}
    return sorted(scores, key=lambda key: (-scores[key], order[key]))


def _window(text: str, words: list[str]) -> str:
    """About SNIPPET_CHARS of ``text`` around the first of ``words`` found in it."""
    text = " ".join(text.split())
    lower = text.lower()
    at = min((i for i in (lower.find(w) for w in words if w) if i >= 0), default=0)
    start = max(at - SNIPPET_CHARS // 3, 0)
    if start:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < at else start
    piece = text[start : start + SNIPPET_CHARS]
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(text) else "")


def text_snippets(*, owner_id, query: str, conversation_ids: list) -> dict[str, str]:
    """For each conversation whose message text holds ``query``: a few words around it. One
    query, reading only a window of each matching message (never whole bodies)."""
    if not conversation_ids:
        return {}
    rows = (
        Message.objects.filter(
            conversation_id__in=conversation_ids, conversation__owner_id=owner_id, content__icontains=query
        )
        .annotate(at=StrIndex(Lower("content"), Value(query.lower())))
        .annotate(window=Substr("content", Greatest(F("at") - 60, Value(1)), 3 * SNIPPET_CHARS))
        .order_by("conversation_id", "created_at")
        .values_list("conversation_id", "window")[: 10 * len(conversation_ids)]
    )
    found: dict[str, str] = {}
    for conversation_id, window in rows:
        found.setdefault(conversation_id.hex, _window(window or "", [query.lower()]))
    return found


def conversation_search(*, user, query: str, text_rows: list, fields: tuple) -> SearchAnswer:
    """The sidebar's first page of results for ``query``: ``text_rows`` (the text ranking, the
    selector's page) fused with the conversations nearest by meaning."""
    answer = SearchAnswer()
    vector, answer.meaning, answer.notice = meaning_vector(user=user, query=query)
    meaning = meaning_ranking(owner_id=user.pk, vector=vector) if vector is not None else []
    by_id = {c.pk.hex: c for c in text_rows}
    missing = [cid for cid, _, _ in meaning if cid not in by_id]
    if missing:
        # Read again by owner: a passage of a conversation deleted since is never a result.
        for conversation in Conversation.objects.filter(owner=user, pk__in=missing).only(*fields):
            by_id[conversation.pk.hex] = conversation
    meaning = [hit for hit in meaning if hit[0] in by_id]
    order = fuse([[c.pk.hex for c in text_rows], [cid for cid, _, _ in meaning]])
    snippets = text_snippets(owner_id=user.pk, query=query, conversation_ids=[c.pk for c in text_rows])
    passages = dict(
        MessageChunk.objects.filter(pk__in=[chunk for _, chunk, _ in meaning], owner_id=user.pk).values_list(
            "pk", "text"
        )
    )
    words = [w.lower() for w in query.split() if len(w) > 2]
    text_ids = set(c.pk.hex for c in text_rows)
    meaning_chunks = {cid: chunk for cid, chunk, _ in meaning}
    for cid in order:
        snippet = snippets.get(cid)
        if snippet is None and cid in meaning_chunks:
            snippet = _window(passages.get(meaning_chunks[cid], ""), words)
        answer.matches[cid] = {"text": cid in text_ids, "meaning": cid in meaning_chunks, "snippet": snippet or ""}
        answer.conversations.append(by_id[cid])
    return answer

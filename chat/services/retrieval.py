"""Finding the passages of a conversation's documents that answer a question.

The documents searched (the scope) are read first, by the rule of who may read them
(``search_scope``); both rankings then filter by those documents in the query that ranks, so
another member's chunk is never a candidate (docs/security.md, T45). Two rankings fused by
reciprocal rank (RRF, k=60): vector similarity (cosine; pgvector's ``<=>`` over its HNSW
index on PostgreSQL, an exact numpy scan of float32 matrices kept in memory on SQLite) and
keyword ranking (PostgreSQL full-text search, SQLite FTS5 with bm25). On PostgreSQL both
rankings and the fusion are one SQL statement.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

import numpy as np
from django.conf import settings
from django.db import connection

from chat.models import Chunk
from chat.selectors import search_scope

RRF_K = 60
CANDIDATES = 50
# Reciprocal rank fusion ranks first by each list's top FUSED_WINDOW only, then the rest (as
# Elasticsearch's rank_window_size does). Fused over all 50, a passage that only the keywords
# ranked first (1/61) lost to passages both lists ranked about 20th (2/80): on the labelled set
# of bench/retrieval.py the right passage was in the top 5 for 66 % of questions with the keyword
# half finding it first for all of them; fused by the top 10 first, 99 % (docs/performance.md).
FUSED_WINDOW = 10
WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Words too common to rank by: PostgreSQL's ts_rank has no inverse document frequency, so a
# question's "what is the" would otherwise favour the wordiest passage.
STOP_WORDS = frozenset(
    "a an and are as at be by can could did do does for from had has have how i in is it its me my "
    "of on or our please tell that the their there these this those to was we were what when where "
    "which who why will with would you your".split()
)
# FTS5: a word found in more than this share of all passages is left out of the keyword query.
# bm25's inverse document frequency gives such a word almost no weight (none above one half),
# yet ranking it costs a bm25 score for every passage that holds it: at 100,000 passages, a
# question with one such word spent most of its time there (docs/performance.md).
COMMON_SHARE = 0.05
COMMON_MIN_ROWS = 2000  # below this many passages, every word is kept


def _words(text: str) -> list[str]:
    words = (w.lower() for w in WORD.findall(text or ""))
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in STOP_WORDS))[:32]


def passages_search(
    *, owner_id, conversation_id, query: str, vector=None, limit: int = CANDIDATES, scope: list[tuple] | None = None
) -> list[int]:
    """Chunk ids of the documents the member may search in the conversation, best first.
    ``scope``: search_scope's answer when the caller read it already."""
    if scope is None:
        scope = search_scope(owner_id=owner_id, conversation_id=conversation_id)
    if not scope:
        return []
    ids = [pk for pk, _ in scope]
    if connection.vendor == "postgresql":
        return _search_postgresql(ids, query, vector, limit)
    return _fuse([_vector_scan(scope, vector, limit), _keyword_sqlite(ids, query, limit)], limit)


def _rrf(rankings: list[list[int]]) -> list[int]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return [chunk_id for chunk_id, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def _fuse(rankings: list[list[int]], limit: int) -> list[int]:
    """The rankings fused, best first: by reciprocal rank over each one's top FUSED_WINDOW, then
    the rest of the candidates by reciprocal rank over the whole lists."""
    first = _rrf([ranking[:FUSED_WINDOW] for ranking in rankings])
    seen = set(first)
    return (first + [chunk_id for chunk_id in _rrf(rankings) if chunk_id not in seen])[:limit]


# The vector scan of a large document in two passes: every passage's signs (two bits a number:
# positive, negative) are compared with the question's (popcounts, a sixteenth of the bytes of
# the float32 matrix), and the RESCORED best of that comparison are ranked exactly by cosine.
# One float32 pass over 100,000 x 256 numbers is 100 MB read per question, 30-50 ms on this
# machine's shared memory bus; the sign pass reads 6.4 MB (docs/performance.md). Below
# EXACT_ROWS passages the exact pass alone is as fast.
EXACT_ROWS = 20_000
RESCORED = 2_000


class _Kept:
    __slots__ = ("ids", "matrix", "signs", "version")

    def __init__(self, version, ids: np.ndarray, matrix: np.ndarray):
        self.version, self.ids, self.matrix = version, ids, matrix
        # Each row's positive-number bits then its negative-number bits, in uint64 words.
        self.signs = np.concatenate(_signs(matrix), axis=1) if len(ids) > EXACT_ROWS else None

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.matrix.nbytes + (0 if self.signs is None else self.signs.nbytes)


def _signs(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bit masks of each row's positive and negative numbers, packed into uint64 words."""

    def pack(mask: np.ndarray) -> np.ndarray:
        bits = np.packbits(mask, axis=-1)
        pad = (-bits.shape[-1]) % 8
        if pad:
            bits = np.pad(bits, [(0, 0)] * (bits.ndim - 1) + [(0, pad)])
        return np.ascontiguousarray(bits).view(np.uint64)

    return pack(matrix > 0), pack(matrix < 0)


class _Matrices:
    """Each document's chunk ids and unit-length float32 vectors (one contiguous matrix, and
    its signs when large), kept in this process until the document changes, least recently
    used first out past ``PARLEY_RETRIEVAL_CACHE_MB``. Reading 100,000 vectors from SQLite
    takes most of a second; searching kept ones a few milliseconds. A cache, rebuilt on demand
    (docs/architecture.md, "Process-wide state"); a document shared in a collection is kept
    once for every member who searches it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._kept: OrderedDict[object, _Kept] = OrderedDict()
        self._bytes = 0

    def get(self, document_id, version) -> _Kept:
        with self._lock:
            kept = self._kept.get(document_id)
            if kept is not None and kept.version == version:
                self._kept.move_to_end(document_id)
                return kept
        kept = _Kept(version, *_load_matrix(document_id))
        with self._lock:
            old = self._kept.pop(document_id, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._kept[document_id] = kept
            self._bytes += kept.nbytes
            budget = settings.PARLEY_RETRIEVAL_CACHE_MB * 1024 * 1024
            while self._bytes > budget and len(self._kept) > 1:
                _, old = self._kept.popitem(last=False)
                self._bytes -= old.nbytes
        return kept

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0


MATRICES = _Matrices()


def _load_matrix(document_id) -> tuple[np.ndarray, np.ndarray]:
    rows = list(
        Chunk.objects.filter(document_id=document_id, embedding__isnull=False)
        .order_by("pk")
        .values_list("pk", "embedding")
    )
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.zeros((0, settings.PARLEY_EMBEDDING_DIMENSIONS), dtype=np.float32)
    matrix = np.ascontiguousarray(np.stack([np.asarray(row[1]) for row in rows]).astype(np.float32, copy=False))
    norms = np.linalg.norm(matrix, axis=1)
    matrix /= np.where(norms == 0, 1.0, norms)[:, None]
    return ids, matrix


def _top(scores: np.ndarray, limit: int) -> np.ndarray:
    if len(scores) > limit:
        top = np.argpartition(-scores, limit)[:limit]
    else:
        top = np.arange(len(scores))
    return top[np.argsort(-scores[top], kind="stable")]


def _document_top(kept: _Kept, query: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The document's ``limit`` passages nearest ``query``: (chunk ids, cosine), best first."""
    if kept.signs is None:
        scores = kept.matrix @ query
        top = _top(scores, limit)
        return kept.ids[top], scores[top]
    positive, negative = _signs(query[None, :])
    # Numbers of the same sign count for a passage, of opposite signs against it.
    agree = np.bitwise_count(kept.signs & np.concatenate([positive, negative], axis=1))
    differ = np.bitwise_count(kept.signs & np.concatenate([negative, positive], axis=1))
    # Column by column: numpy's sum along a short last axis is several times slower.
    score = agree[:, 0].astype(np.int32) - differ[:, 0]
    for column in range(1, agree.shape[1]):
        score += agree[:, column]
        score -= differ[:, column]
    rows = _top(score, max(RESCORED, limit))
    scores = kept.matrix[rows] @ query
    top = _top(scores, limit)
    return kept.ids[rows[top]], scores[top]


def _vector_scan(scope: list[tuple], vector, limit: int) -> list[int]:
    """The cosine ranking over the scope's kept matrices."""
    if vector is None:
        return []
    query = np.asarray(vector, dtype=np.float32)
    query = query / (np.linalg.norm(query) or 1.0)
    found_ids, found_scores = [], []
    for document_id, version in scope:
        kept = MATRICES.get(document_id, version)
        if not len(kept.ids) or kept.matrix.shape[1] != len(query):
            continue
        ids, scores = _document_top(kept, query, limit)
        found_ids.append(ids)
        found_scores.append(scores)
    if not found_ids:
        return []
    ids, scores = np.concatenate(found_ids), np.concatenate(found_scores)
    return [int(ids[i]) for i in _top(scores, limit)]


def _keyword_sqlite(document_ids: list, query: str, limit: int) -> list[int]:
    words = _words(query)
    if not words:
        return []
    with connection.cursor() as cursor:
        words = _uncommon(cursor, words)
        if not words:
            return []
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        marks = ", ".join(["%s"] * len(document_ids))
        cursor.execute(
            # CROSS JOIN: SQLite keeps the full-text match as the outer loop; left to itself it
            # walked the scope's 100,000 passages by their document index first (10x slower).
            "SELECT c.id FROM chat_chunk_fts f CROSS JOIN chat_chunk c ON c.id = f.rowid "  # noqa: S608 - marks only
            f"WHERE chat_chunk_fts MATCH %s AND c.document_id IN ({marks}) "
            "ORDER BY bm25(chat_chunk_fts) LIMIT %s",
            [match, *(_uuid_hex(d) for d in document_ids), limit],
        )
        return [row[0] for row in cursor.fetchall()]


def _uncommon(cursor, words: list[str]) -> list[str]:
    """``words`` without those found in more than COMMON_SHARE of all passages (fts5vocab's
    counts; bm25 weighs by the same whole-table counts, so nothing new is learnt from them).
    When every word is common, the rarest one stays."""
    marks = ", ".join(["%s"] * len(words))
    cursor.execute(f"SELECT term, doc FROM chat_chunk_fts_vocab WHERE term IN ({marks})", words)  # noqa: S608
    counts: dict[str, int] = dict(cursor.fetchall())
    if not counts:
        return []  # no passage holds any of them
    # The span of passage ids stands for their count (an upper bound once passages in the
    # middle were deleted: then fewer words count as common, slower but never wrong), from two
    # index lookups where count(*) reads every row (each in its own subquery: SQLite reads
    # max() and min() from the index only when each is alone in its SELECT).
    cursor.execute("SELECT (SELECT max(id) FROM chat_chunk) - (SELECT min(id) FROM chat_chunk) + 1")
    total = cursor.fetchone()[0] or 0
    if total < COMMON_MIN_ROWS:
        return [w for w in words if w in counts]
    kept = [w for w in words if w in counts and counts[w] <= COMMON_SHARE * total]
    return kept or [min(counts, key=lambda word: counts[word])]


def _uuid_hex(value) -> str:
    import uuid

    return uuid.UUID(str(value)).hex


def _search_postgresql(document_ids: list, query, vector, limit) -> list[int]:
    from pgvector import Vector

    words = _words(query)
    tsquery = " | ".join(words) if words else ""
    scope_sql = "FROM chat_chunk c WHERE c.document_id = ANY(%s::uuid[])"
    scope = [[str(d) for d in document_ids]]
    parts, params = [], []
    if vector is not None:
        parts.append(
            "SELECT 0 AS list, id, row_number() OVER (ORDER BY dist) AS r FROM ("  # noqa: S608 - constants only
            f"SELECT c.id, c.embedding <=> %s::vector AS dist {scope_sql} ORDER BY dist LIMIT %s) v"
        )
        params += [Vector._to_db(np.asarray(vector, dtype="<f4")), *scope, limit]
    if tsquery:
        parts.append(
            "SELECT 1 AS list, id, row_number() OVER (ORDER BY rank DESC, id) AS r FROM ("  # noqa: S608 - constants only
            "SELECT c.id, ts_rank_cd(to_tsvector('simple', c.text), to_tsquery('simple', %s)) AS rank "
            f"{scope_sql} AND to_tsvector('simple', c.text) @@ to_tsquery('simple', %s) "
            "ORDER BY rank DESC LIMIT %s) k"
        )
        params += [tsquery, *scope, tsquery, limit]
    if not parts:
        return []
    sql = "SELECT list, id FROM (" + " UNION ALL ".join(parts) + ") ranked ORDER BY list, r"  # noqa: S608
    with connection.cursor() as cursor:
        if vector is not None:
            # The HNSW index finds the nearest vectors first and filters by scope after; with
            # other members' passages in the table, an iterative scan keeps looking until
            # ``limit`` of the scope's are found (pgvector 0.8), instead of returning fewer.
            # Set for the connection: it changes nothing but HNSW scans.
            cursor.execute("SET hnsw.iterative_scan = relaxed_order")
        cursor.execute(sql, params)
        rankings: list[list[int]] = [[], []]
        for which, chunk_id in cursor.fetchall():
            rankings[which].append(chunk_id)
    return _fuse(rankings, limit)


def chunks_by_ids(ids: list[int], *, document_ids) -> list[Chunk]:
    """The chunks of ``ids`` in that order, of the scope's documents only, with their document."""
    found = {c.pk: c for c in Chunk.objects.filter(pk__in=ids, document_id__in=document_ids).select_related("document")}
    return [found[i] for i in ids if i in found]

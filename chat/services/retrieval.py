"""Finding the passages of a conversation's documents that answer a question.

Two rankings, each filtered by owner and conversation in the query that ranks (another
member's chunk is never a candidate: docs/security.md, T45), fused by reciprocal rank
(RRF, k=60): vector similarity (cosine; pgvector's ``<=>`` on PostgreSQL, an exact numpy
scan of float32 vectors on SQLite) and keyword ranking (PostgreSQL full-text search, SQLite
FTS5 with bm25). On PostgreSQL both rankings and the fusion are one SQL statement.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

import numpy as np
from django.db import connection

from chat.models import Chunk

RRF_K = 60
CANDIDATES = 50
WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Words too common to rank by: PostgreSQL's ts_rank has no inverse document frequency, so a
# question's "what is the" would otherwise favour the wordiest passage.
STOP_WORDS = frozenset(
    "a an and are as at be by can could did do does for from had has have how i in is it its me my "
    "of on or our please tell that the their there these this those to was we were what when where "
    "which who why will with would you your".split()
)


def _words(text: str) -> list[str]:
    words = (w.lower() for w in WORD.findall(text or ""))
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in STOP_WORDS))[:32]


def passages_search(*, owner_id, conversation_id, query: str, vector=None, limit: int = CANDIDATES) -> list[int]:
    """Chunk ids of the owner's ready documents in the conversation, best first."""
    if connection.vendor == "postgresql":
        return _search_postgresql(owner_id, conversation_id, query, vector, limit)
    return _fuse(
        [
            _vector_sqlite(owner_id, conversation_id, vector, limit),
            _keyword_sqlite(owner_id, conversation_id, query, limit),
        ],
        limit,
    )


def _fuse(rankings: list[list[int]], limit: int) -> list[int]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return [chunk_id for chunk_id, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))][:limit]


_SCOPE = (
    "FROM chat_chunk c JOIN chat_document d ON d.id = c.document_id "
    "WHERE c.owner_id = %s AND d.owner_id = %s AND d.conversation_id = %s AND d.status = 'ready'"
)


# The numpy scan's matrices, per (owner, conversation), rebuilt when the passages change: reading
# 100,000 vectors from SQLite takes most of a second, multiplying them a few milliseconds. A
# cache, rebuilt on demand (docs/architecture.md, "Process-wide state").
_MATRICES: OrderedDict[tuple, tuple[tuple, np.ndarray, np.ndarray]] = OrderedDict()
_MATRICES_KEPT = 8
_MATRICES_LOCK = threading.Lock()


def _vector_sqlite(owner_id, conversation_id, vector, limit) -> list[int]:
    if vector is None:
        return []
    scope = [owner_id, owner_id, _uuid_hex(conversation_id)]
    with connection.cursor() as cursor:
        # The passages' version: any re-index or deletion changes their count or newest id.
        cursor.execute(
            "SELECT count(*), max(c.id) FROM chat_chunk c WHERE c.owner_id = %s AND c.document_id IN "
            "(SELECT d.id FROM chat_document d WHERE d.owner_id = %s AND d.conversation_id = %s"
            " AND d.status = 'ready')",
            scope,
        )
        version = tuple(cursor.fetchone())
    if not version[0]:
        return []
    key = (owner_id, str(conversation_id))
    with _MATRICES_LOCK:
        cached = _MATRICES.get(key)
        if cached is not None:
            _MATRICES.move_to_end(key)
    if cached is None or cached[0] != version:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT c.id, c.embedding {_SCOPE} AND c.embedding IS NOT NULL", scope)  # noqa: S608
            rows = cursor.fetchall()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(bytes(row[1]) for row in rows), dtype="<f4").reshape(len(rows), -1)
        norms = np.linalg.norm(matrix, axis=1)
        matrix = matrix / np.where(norms == 0, 1.0, norms)[:, None]
        cached = (version, ids, matrix)
        with _MATRICES_LOCK:
            _MATRICES[key] = cached
            while len(_MATRICES) > _MATRICES_KEPT:
                _MATRICES.popitem(last=False)
    _, ids, matrix = cached
    query = np.asarray(vector, dtype="<f4")
    scores = matrix @ (query / (np.linalg.norm(query) or 1.0))
    top = (
        np.argpartition(-scores, min(limit, len(scores) - 1))[:limit] if len(scores) > limit else np.arange(len(scores))
    )
    top = top[np.argsort(-scores[top], kind="stable")]
    return [int(ids[i]) for i in top]


def _keyword_sqlite(owner_id, conversation_id, query, limit) -> list[int]:
    words = _words(query)
    if not words:
        return []
    match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.id FROM chat_chunk_fts f JOIN chat_chunk c ON c.id = f.rowid "
            "JOIN chat_document d ON d.id = c.document_id "
            "WHERE chat_chunk_fts MATCH %s AND c.owner_id = %s AND d.owner_id = %s "
            "AND d.conversation_id = %s AND d.status = 'ready' ORDER BY bm25(chat_chunk_fts) LIMIT %s",
            [match, owner_id, owner_id, _uuid_hex(conversation_id), limit],
        )
        return [row[0] for row in cursor.fetchall()]


def _uuid_hex(value) -> str:
    import uuid

    return uuid.UUID(str(value)).hex


def _search_postgresql(owner_id, conversation_id, query, vector, limit) -> list[int]:
    from pgvector import Vector

    words = _words(query)
    tsquery = " | ".join(words) if words else ""
    scope = [owner_id, owner_id, str(conversation_id)]
    parts, params = [], []
    if vector is not None:
        parts.append(
            "SELECT id, row_number() OVER (ORDER BY dist) AS r FROM ("  # noqa: S608 - constants only
            f"SELECT c.id, c.embedding <=> %s::vector AS dist {_SCOPE} ORDER BY dist LIMIT %s) v"
        )
        params += [Vector._to_db(np.asarray(vector, dtype="<f4")), *scope, limit]
    if tsquery:
        parts.append(
            "SELECT id, row_number() OVER (ORDER BY rank DESC, id) AS r FROM ("  # noqa: S608 - constants only
            "SELECT c.id, ts_rank_cd(to_tsvector('simple', c.text), to_tsquery('simple', %s)) AS rank "
            f"{_SCOPE} AND to_tsvector('simple', c.text) @@ to_tsquery('simple', %s) "
            "ORDER BY rank DESC LIMIT %s) k"
        )
        params += [tsquery, *scope, tsquery, limit]
    if not parts:
        return []
    sql = (
        "SELECT id FROM (" + " UNION ALL ".join(parts) + ") ranked "  # noqa: S608 - constants only
        f"GROUP BY id ORDER BY sum(1.0 / ({RRF_K} + r)) DESC, id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return [row[0] for row in cursor.fetchall()]


def chunks_by_ids(ids: list[int], *, owner_id) -> list[Chunk]:
    """The chunks of ``ids`` in that order, the owner's only, with their document."""
    found = {c.pk: c for c in Chunk.objects.filter(pk__in=ids, owner_id=owner_id).select_related("document")}
    return [found[i] for i in ids if i in found]

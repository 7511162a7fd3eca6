"""Embeddings that carry meaning, without a model: hashed word features.

Each word (lower-cased, stripped of punctuation and of a plural "s", stop words left out) adds
a signed unit to one of ``DIMENSIONS`` coordinates chosen by a stable hash, and the vector is
scaled to length 1. Two texts that share words point the same way, so cosine similarity ranks
the passage that answers a question above unrelated ones: retrieval can be tested for real.
"""

from __future__ import annotations

import hashlib
import math
import re

DIMENSIONS = 256
STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were what when "
    "where which who why will with".split()
)
WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    found = []
    for word in WORD.findall(text.lower()):
        if word in STOP_WORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.append(word)
    return found


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    vector = [0.0] * dimensions
    for word in words(text):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        vector[0] = 1.0  # an empty text still gets a valid unit vector
        return vector
    return [x / norm for x in vector]


def answer(body) -> tuple[int, dict]:
    """The status and body ``POST /v1/embeddings`` answers ``body`` with."""
    inputs = body.get("input") if isinstance(body, dict) else None
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        return 400, {
            "error": {"message": "'input' must be a string or an array of strings", "type": "invalid_request_error"}
        }
    dimensions = body.get("dimensions") if isinstance(body.get("dimensions"), int) else DIMENSIONS
    data = [{"object": "embedding", "index": i, "embedding": embed(text, dimensions)} for i, text in enumerate(inputs)]
    tokens = sum(max(len(text.split()), 1) for text in inputs)
    return 200, {
        "object": "list",
        "data": data,
        "model": body.get("model", "text-embedding-3-small"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }

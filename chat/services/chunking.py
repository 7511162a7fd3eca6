"""Splitting a document's pages into passages of about ``PARLEY_DOCUMENT_CHUNK_TOKENS`` tokens.

Pure. A passage never crosses a page; paragraphs are kept whole when they fit, joined while
they fit, and a paragraph longer than a passage is split at sentences, then at words. Tokens
are counted with Parley's one counter (chat/tokens.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chat import tokens
from chat.services.extract import Page

PARAGRAPHS = re.compile(r"\n\s*\n")
SENTENCES = re.compile(r"(?<=[.!?。！？])\s+")


@dataclass(frozen=True)
class Piece:
    page: int
    text: str
    tokens: int


def _count(text: str) -> int:
    return tokens.count_tokens(text, tokens.O200K)


def _split_long(text: str, limit: int) -> list[str]:
    """A paragraph over ``limit`` tokens, cut at sentences, and sentences at words."""
    out: list[str] = []
    for sentence in SENTENCES.split(text):
        if _count(sentence) <= limit:
            out.append(sentence)
            continue
        words, current = sentence.split(), []
        for word in words:
            current.append(word)
            if _count(" ".join(current)) > limit and len(current) > 1:
                out.append(" ".join(current[:-1]))
                current = [word]
        if current:
            out.append(" ".join(current))
    return out


def chunk_pages(pages: list[Page], limit: int) -> list[Piece]:
    pieces: list[Piece] = []
    for page in pages:
        parts: list[str] = []
        for paragraph in PARAGRAPHS.split(page.text):
            paragraph = " ".join(paragraph.split()) if "\n" in paragraph else paragraph.strip()
            if not paragraph:
                continue
            parts.extend([paragraph] if _count(paragraph) <= limit else _split_long(paragraph, limit))
        current: list[str] = []
        used = 0
        for part in parts:
            size = _count(part)
            if current and used + size + 1 > limit:
                text = "\n\n".join(current)
                pieces.append(Piece(page.number, text, _count(text)))
                current, used = [], 0
            current.append(part)
            used += size + 1
        if current:
            text = "\n\n".join(current)
            pieces.append(Piece(page.number, text, _count(text)))
    return pieces

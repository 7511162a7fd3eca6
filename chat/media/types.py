"""What a stored file is: its type sniffed from its bytes, its extension, how it may be served.

The browser's Content-Type and the file's name are the client's claims; a polyglot named
``x.html`` with a PNG header is a PNG here, stored as ``<id>.png`` (T16). libmagic (the
library behind file(1)) reads the bytes: it knows the binary formats and tells text from
HTML, which a table of magic numbers cannot.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import magic

# How much of the head libmagic reads: enough for a DOCX's first zip entries.
SNIFF_BYTES = 256 * 1024
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class MediaType:
    content_type: str  # what is stored and, unless ``served_as`` says otherwise, sent
    extension: str  # chosen by the server, the only extension a stored name ever has
    family: str  # image | audio | document
    # Raster images and audio may be shown in the page (``?inline=1``); nothing else is ever
    # sent inline, whatever is asked: not HTML, not SVG, not PDF (which can carry script).
    inline: bool = False
    served_as: str = ""

    @property
    def response_type(self) -> str:
        return self.served_as or self.content_type


_TYPES = [
    MediaType("image/png", ".png", "image", inline=True),
    MediaType("image/jpeg", ".jpg", "image", inline=True),
    MediaType("image/gif", ".gif", "image", inline=True),
    MediaType("image/webp", ".webp", "image", inline=True),
    MediaType("audio/mpeg", ".mp3", "audio", inline=True),
    MediaType("audio/wav", ".wav", "audio", inline=True),
    MediaType("audio/ogg", ".ogg", "audio", inline=True),
    MediaType("audio/flac", ".flac", "audio", inline=True),
    MediaType("audio/mp4", ".m4a", "audio", inline=True),
    # What a browser's MediaRecorder makes (Chromium: WebM with Opus).
    MediaType("audio/webm", ".webm", "audio", inline=True),
    MediaType("application/pdf", ".pdf", "document"),
    MediaType("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx", "document"),
    MediaType("text/plain", ".txt", "document", served_as="text/plain; charset=utf-8"),
    MediaType("text/csv", ".csv", "document", served_as="text/csv; charset=utf-8"),
    MediaType("text/markdown", ".md", "document", served_as="text/plain; charset=utf-8"),
    MediaType("application/json", ".json", "document"),
    # Kept as a document to read, never rendered: it is only ever downloaded, as bytes.
    MediaType("text/html", ".html", "document", served_as="application/octet-stream"),
]
ALLOWED = {item.content_type: item for item in _TYPES}

# libmagic's names for types the allowlist spells another way.
_ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/x-m4a": "audio/mp4",
    "video/webm": "audio/webm",
    "application/ogg": "audio/ogg",
    "image/x-png": "image/png",
}


def sniff(head: bytes) -> MediaType | None:
    """The allowlisted type of a file that begins with ``head``, or None."""
    found = magic.from_buffer(head[:SNIFF_BYTES], mime=True).split(";")[0].strip().lower()
    found = _ALIASES.get(found, found)
    if found.startswith("text/x-"):  # source code of any language: plain text to a reader
        found = "text/plain"
    return ALLOWED.get(found)


def clean_name(name) -> str:
    """The name a member gave a file, fit to show and to offer in a download.

    Only the last path component is kept (``../../x`` → ``x``, ``C:\\x\\y`` → ``y``), control
    and other invisible format characters are dropped (``x\\x00.png`` → ``x.png``), and the
    result is capped at MAX_NAME_CHARS keeping its extension. The name never reaches a path:
    stored names are chosen by the server (T28).
    """
    text = unicodedata.normalize("NFC", str(name or ""))
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ")
    text = text.strip(" .")
    if len(text) > MAX_NAME_CHARS:
        stem, dot, extension = text.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            text = stem[: MAX_NAME_CHARS - len(extension) - 1] + "." + extension
        else:
            text = text[:MAX_NAME_CHARS]
    return text or "file"

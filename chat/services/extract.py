"""Reading a file a member attached: its name, its kind, its text page by page. Pure, no database.

PDF with pypdf (pure Python, so nothing native parses untrusted bytes in our process and it
installs everywhere; its writer also lets the tests build PDFs), DOCX with python-docx, the
rest as UTF-8 text; HTML is reduced to its text with the standard library's parser and is
never rendered. Every refusal is a :class:`chat.errors.DocumentRefused` with a stable code:

``document_bad_name``, ``document_type_unsupported``, ``document_type_mismatch``,
``document_too_large``, ``document_too_many_pages``, ``document_encrypted``,
``document_corrupt``, ``document_zip_bomb``, ``document_empty``.
"""

from __future__ import annotations

import io
import unicodedata
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser

from django.conf import settings
from django.utils.translation import gettext as _

from chat.errors import DocumentRefused

KINDS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".csv": "csv",
    ".html": "html",
    ".htm": "html",
    # Audio (a meeting recording): its text is its transcript (chat/services/voice.py).
    ".mp3": "audio",
    ".wav": "audio",
    ".ogg": "audio",
    ".oga": "audio",
    ".opus": "audio",
    ".webm": "audio",
    ".m4a": "audio",
    ".flac": "audio",
}
# Source code and other plain-text formats are read as text.
TEXT_EXTENSIONS = frozenset(
    ".py .js .mjs .ts .tsx .jsx .java .kt .go .rs .c .h .cc .cpp .hpp .cs .rb .php .swift .scala .sh .sql "
    ".json .yaml .yml .toml .ini .cfg .xml .css .tex .rst .log .r .lua .pl".split()
)
NAME_MAX = 255
# A DOCX is a zip: what it may inflate to, in all and relative to its size on disk.
ZIP_MAX_UNCOMPRESSED = 256 * 1024 * 1024
ZIP_MAX_RATIO = 200


@dataclass(frozen=True)
class Page:
    number: int  # 1-based for PDF; 0 for formats without pages
    text: str


def name_check(name) -> str:
    """The file's name, or DocumentRefused: no path, no control characters, not empty."""
    if not isinstance(name, str):
        raise DocumentRefused(_("The file has no name."), code="document_bad_name")
    name = unicodedata.normalize("NFC", name).strip()
    if (
        not name
        or len(name) > NAME_MAX
        or name in {".", ".."}
        or "/" in name
        or "\\" in name
        or any(unicodedata.category(ch)[0] == "C" for ch in name)
    ):
        raise DocumentRefused(
            _("The file name is not allowed: no slashes or control characters, at most 255 characters."),
            code="document_bad_name",
        )
    return name


def kind_of(name: str) -> str:
    extension = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension in KINDS:
        return KINDS[extension]
    if extension in TEXT_EXTENSIONS:
        return "text"
    raise DocumentRefused(
        _("Files of this type cannot be read. Attach PDF, DOCX, text, Markdown, CSV, HTML, source code or audio."),
        code="document_type_unsupported",
    )


def _mismatch() -> DocumentRefused:
    return DocumentRefused(_("The file's content does not match its name."), code="document_type_mismatch")


def _corrupt() -> DocumentRefused:
    return DocumentRefused(_("The file is damaged and cannot be read."), code="document_corrupt")


def sniff(kind: str, data: bytes) -> None:
    """Refuse bytes that are not what the name says (checked at upload, before any job)."""
    if len(data) > settings.PARLEY_DOCUMENT_MAX_BYTES:
        raise DocumentRefused(
            _("The file is %(size)s bytes; the limit is %(limit)s.")
            % {"size": len(data), "limit": settings.PARLEY_DOCUMENT_MAX_BYTES},
            code="document_too_large",
        )
    if not data:
        raise DocumentRefused(_("The file is empty."), code="document_empty")
    if kind == "pdf":
        if not data.lstrip()[:5] == b"%PDF-":
            raise _mismatch()
    elif kind == "docx":
        if not data.startswith(b"PK\x03\x04"):
            raise _mismatch()
    elif data.startswith((b"%PDF-", b"PK\x03\x04")) or b"\x00" in data[:8192]:
        raise _mismatch()


def extract(kind: str, data: bytes) -> list[Page]:
    """The text of ``data`` page by page, or DocumentRefused; never any other exception."""
    sniff(kind, data)
    if kind == "pdf":
        pages = _pdf(data)
    elif kind == "docx":
        pages = [Page(0, _docx(data))]
    else:
        text = _decode(data)
        pages = [Page(0, _html_text(text) if kind == "html" else text)]
    if sum(len(p.text) for p in pages) > settings.PARLEY_DOCUMENT_MAX_TEXT_CHARS:
        raise DocumentRefused(
            _("The file holds more than %(limit)s characters of text.")
            % {"limit": settings.PARLEY_DOCUMENT_MAX_TEXT_CHARS},
            code="document_too_large",
        )
    if not any(p.text.strip() for p in pages):
        raise DocumentRefused(
            _("No text was found in the file (a scanned PDF needs text recognition first)."),
            code="document_empty",
        )
    return pages


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _mismatch() from None


def _pdf(data: bytes) -> list[Page]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # An empty user password only restricts printing or copying: such a PDF opens.
            try:
                opened = bool(reader.decrypt(""))
            except Exception:  # noqa: BLE001 - an unsupported cipher is "encrypted" to the member
                opened = False
            if not opened:
                raise DocumentRefused(
                    _("The PDF is protected by a password. Remove the password and attach it again."),
                    code="document_encrypted",
                )
        count = len(reader.pages)
        if count > settings.PARLEY_DOCUMENT_MAX_PAGES:
            raise DocumentRefused(
                _("The PDF has %(pages)s pages; the limit is %(limit)s.")
                % {"pages": count, "limit": settings.PARLEY_DOCUMENT_MAX_PAGES},
                code="document_too_many_pages",
            )
        return [Page(number, page.extract_text() or "") for number, page in enumerate(reader.pages, start=1)]
    except DocumentRefused:
        raise
    except FileNotDecryptedError:
        raise DocumentRefused(_("The PDF is protected by a password."), code="document_encrypted") from None
    except (PdfReadError, Exception):  # noqa: BLE001 - any parser failure on untrusted bytes is "damaged"
        raise _corrupt() from None


def _docx(data: bytes) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _corrupt() from None
    inflated = sum(info.file_size for info in infos)
    if inflated > ZIP_MAX_UNCOMPRESSED or inflated > ZIP_MAX_RATIO * max(len(data), 1):
        raise DocumentRefused(
            _("The DOCX would inflate to %(size)s bytes: it looks like a zip bomb.") % {"size": inflated},
            code="document_zip_bomb",
        )
    if "word/document.xml" not in {info.filename for info in infos}:
        raise _mismatch()
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - any parser failure on untrusted bytes is "damaged"
        raise _corrupt() from None
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append("\t".join(cell.text for cell in row.cells))
    return "\n\n".join(parts)


class _TextOfHTML(HTMLParser):
    SKIPPED = frozenset({"script", "style", "template", "noscript"})
    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in self.SKIPPED and self.skipping:
            self.skipping -= 1

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def _html_text(markup: str) -> str:
    parser = _TextOfHTML()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)

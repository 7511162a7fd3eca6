"""Files for the document tests, made here: PDFs (pypdf's writer), DOCX (python-docx), zip bombs.

``pdf_with_pages(["text of page 1", ...])`` writes a real PDF whose pages carry that text in
Helvetica, which pypdf reads back page by page.
"""

from __future__ import annotations

import io
import zipfile

FILLER = (
    "The quarterly report describes routine operations of the warehouse, the staffing of "
    "the loading docks, the maintenance of forklifts and the scheduling of deliveries. "
)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_with_pages(pages: list[str], *, password: str | None = None) -> bytes:
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    font_ref = writer._add_object(font)
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        lines, line = [], ""
        for word in text.split():
            if len(line) + len(word) > 80:
                lines.append(line)
                line = ""
            line = f"{line} {word}".strip()
        lines.append(line)
        ops = ["BT", "/F1 11 Tf", "14 TL", "50 740 Td"]
        for one in lines:
            ops.append(f"({_escape(one)}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref})}
        )
    if password:
        writer.encrypt(user_password=password, owner_password=password, algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def long_pdf(pages: int, facts: dict[int, str]) -> bytes:
    """``pages`` pages of filler, with ``facts[n]`` written on page n."""
    return pdf_with_pages([facts.get(n, f"Page {n}. " + FILLER * 3) for n in range(1, pages + 1)])


def docx_with(paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_zip_bomb() -> bytes:
    """A real DOCX (it opens, and its bytes say DOCX) carrying 64 MB of zeros in a few dozen kilobytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx_with(["Quarterly memo"]))) as source:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for info in source.infolist():
                archive.writestr(info, source.read(info))
            archive.writestr("word/media/padding.bin", b"\0" * (64 * 1024 * 1024))
    return out.getvalue()


def media_in_folder(settings, folder) -> None:
    """The private media store (chat/media/) in ``folder`` for one test."""
    from config.settings import media_storage

    settings.STORAGES = {**settings.STORAGES, "media": media_storage("filesystem", root=folder, s3={})}


def make_embedding_model(provider, model_id="text-embedding-3-small"):
    from chat.models import ChatModel, ModelKind

    model = ChatModel.objects.create(
        provider=provider,
        model_id=model_id,
        display_name="Embedding 3 small",
        kind=ModelKind.EMBEDDING,
        context_window=8191,
        max_output_tokens=0,
        input_price_per_million="0.02",
        output_price_per_million="0",
    )
    model.refresh_from_db()
    return model

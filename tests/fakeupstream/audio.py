"""The fake upstream's audio endpoints: transcriptions and translations (multipart forms,
whose fields are recorded) and speech (a real MP3, streamed in chunks)."""

from __future__ import annotations

import hashlib
from email.parser import BytesParser
from email.policy import HTTP

DEFAULT_TRANSCRIPT = "Hello from the fake microphone."
DEFAULT_TRANSLATION = "Hello in English, from the fake microphone."


def form_fields(content_type: str, raw: bytes) -> dict | None:
    """A multipart/form-data body's fields: text fields as strings, files as their name, type,
    size and SHA-256. None when the body is not a multipart form."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        return None
    fields: dict = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            fields[name] = {
                "filename": filename,
                "content_type": part.get_content_type(),
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
        else:
            fields[name] = payload.decode("utf-8", "replace")
    return fields


def transcription_answer(form: dict | None, text: str) -> tuple[int, dict]:
    if not form or not isinstance(form.get("file"), dict) or not form.get("model"):
        return 400, {"error": {"message": "file and model are required", "type": "invalid_request_error"}}
    if form["file"]["size"] == 0:
        return 400, {"error": {"message": "The audio file is empty.", "type": "invalid_request_error"}}
    return 200, {"text": text}

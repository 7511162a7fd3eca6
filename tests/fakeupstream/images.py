"""The image endpoints of the fake upstream: real PNGs, made with Pillow for each request.

``POST /v1/images/generations`` (JSON), ``/v1/images/edits`` and ``/v1/images/variations``
(multipart; the fields and files are recorded on the request's record: ``form`` and
``files``, with the files' bytes in ``file_bytes``). Each answer holds ``n`` PNGs of the size
asked (1024x1024 by default), filled with a colour taken from the prompt, base64 in
``b64_json`` with a ``revised_prompt``, as DALL·E 3 answers. The server's ``image_answer``
switch makes it answer otherwise, for the failure tests: "url" (a link only, as a provider
asked for ``response_format: url`` does), "not_png" (base64 of bytes that are no image).
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from email.parser import BytesParser
from email.policy import HTTP

from PIL import Image

MAX_SIDE = 2048


def parse_multipart(content_type: str, raw: bytes) -> tuple[dict[str, str], dict[str, dict], dict[str, bytes]]:
    """The text fields, the files' descriptions and the files' bytes of a multipart body."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + raw
    )
    fields: dict[str, str] = {}
    files: dict[str, dict] = {}
    data: dict[str, bytes] = {}
    if not message.is_multipart():
        return fields, files, data
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is None:
            fields[str(name)] = payload.decode("utf-8", "replace")
        else:
            files[str(name)] = {"filename": filename, "content_type": part.get_content_type(), "size": len(payload)}
            data[str(name)] = payload
    return fields, files, data


def png(width: int, height: int, colour=(40, 120, 200, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def _size(text) -> tuple[int, int]:
    try:
        width, height = (int(x) for x in str(text or "1024x1024").split("x", 1))
    except ValueError:
        return 1024, 1024
    return max(1, min(width, MAX_SIDE)), max(1, min(height, MAX_SIDE))


def answer(fields: dict, *, mode: str = "b64") -> tuple[int, dict]:
    """The status and body an image endpoint answers ``fields`` (JSON body or form) with."""
    prompt = str(fields.get("prompt") or "")
    try:
        n = int(fields.get("n") or 1)
    except ValueError:
        n = 0
    if not 1 <= n <= 10:
        return 400, {"error": {"message": "n must be between 1 and 10", "type": "invalid_request_error"}}
    width, height = _size(fields.get("size"))
    digest = hashlib.sha256(prompt.encode()).digest()
    items = []
    for index in range(n):
        colour = (digest[0], digest[1], (digest[2] + 40 * index) % 256, 255)
        item: dict = {"revised_prompt": f"A picture of {prompt}" if prompt else ""}
        if mode == "url":
            item["url"] = f"https://images.example/{index}.png"
        elif mode == "not_png":
            item["b64_json"] = base64.b64encode(b"<html>not an image</html>").decode()
        else:
            item["b64_json"] = base64.b64encode(png(width, height, colour)).decode()
        items.append(item)
    return 200, {"created": int(time.time()), "data": items}

"""The image endpoints' wire format (``/images/generations``, ``/edits``, ``/variations``), pure.

Parley always asks for the images themselves, base64 in the JSON answer (``response_format:
b64_json``; the gpt-image models answer that way by default and refuse the field). An answer
that only links to an image is refused with ``image_url_only``: Parley never fetches a URL it
was handed, neither in the member's browser nor on the server (T51), so nothing a provider
or a man in the middle names can make Parley reach another host.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from django.utils.translation import gettext as _

from chat.errors import UpstreamError
from chat.upstream.wire import bad_shape

# The families that take no ``response_format`` (they always answer with base64).
_B64_BY_DEFAULT = ("gpt-image",)


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes  # the image file's bytes, as decoded from base64; checked by the caller (Pillow)
    revised_prompt: str = ""


def _wants_format_field(model_id: str) -> bool:
    return not model_id.lower().startswith(_B64_BY_DEFAULT)


def generation_body(*, model: str, prompt: str, size: str, quality: str, n: int, user: str = "") -> dict:
    """The JSON body of ``POST /images/generations``."""
    body: dict = {"model": model, "prompt": prompt, "n": int(n)}
    if size:
        body["size"] = size
    if quality:
        body["quality"] = quality
    if _wants_format_field(model):
        body["response_format"] = "b64_json"
    if user:
        body["user"] = user
    return body


def form_fields(*, model: str, prompt: str = "", size: str = "", n: int = 1, user: str = "") -> dict[str, str]:
    """The text fields of the multipart body of ``/images/edits`` (with a prompt) or
    ``/images/variations`` (without one)."""
    fields = {"model": model, "n": str(int(n))}
    if prompt:
        fields["prompt"] = prompt
    if size:
        fields["size"] = size
    if _wants_format_field(model):
        fields["response_format"] = "b64_json"
    if user:
        fields["user"] = user
    return fields


def images_result(data, *, most: int) -> list[GeneratedImage]:
    """Read an image endpoint's answer: at most ``most`` images, decoded, with their revised prompts."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise bad_shape("image")
    images = []
    for item in items[:most]:
        if not isinstance(item, dict):
            raise bad_shape("image")
        encoded = item.get("b64_json")
        if not isinstance(encoded, str) or not encoded:
            if isinstance(item.get("url"), str):
                raise UpstreamError(
                    _("The model provider sent a link to the image instead of the image; Parley does not fetch links."),
                    code="image_url_only",
                )
            raise bad_shape("image")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise bad_shape("image") from None
        revised = item.get("revised_prompt")
        images.append(GeneratedImage(data=raw, revised_prompt=revised if isinstance(revised, str) else ""))
    return images

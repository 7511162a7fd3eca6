"""Serving stored files to whoever may see them, and nobody else (T10, T16).

``/media/<id>/`` sends the file to its owner; another member gets 404 and an anonymous
visitor the sign-in page. The file is always a download (``Content-Disposition: attachment``)
unless ``?inline=1`` asks to show it and its type is a raster image or audio from the
allowlist (chat.media.types): HTML, SVG, PDF and everything else are never shown inline
from Parley's origin. ``nosniff`` keeps the browser to the type sent, and the sandboxing
CSP keeps anything opened directly from running script or loading anything.

The view is async and reads the file in chunks on a worker thread: a synchronous iterator
would make Django's ASGI handler read the whole file into memory before sending a byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import Http404, StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from chat.errors import NotFound
from chat.media.selectors import media_for_user
from chat.media.storage import stored_open
from chat.media.types import ALLOWED

CHUNK_BYTES = 64 * 1024
SANDBOX_CSP = "sandbox; default-src 'none'"


async def _stream(name: str) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(stored_open, name)
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


@require_GET
@login_required
async def media_file(request, media_id):
    try:
        media = await sync_to_async(media_for_user)(user=request.user, media_id=media_id)
    except NotFound:
        raise Http404() from None
    media_type = ALLOWED.get(media.content_type)
    inline = request.GET.get("inline") == "1" and media_type is not None and media_type.inline
    content_type = media_type.response_type if media_type is not None else "application/octet-stream"
    response = StreamingHttpResponse(_stream(media.storage_name), content_type=content_type)
    response["Content-Length"] = str(media.size)
    response["Content-Disposition"] = content_disposition_header(not inline, media.original_name)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = SANDBOX_CSP
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    # The member's own browser only: no shared cache stores another member's file (T44).
    response["Cache-Control"] = "private, no-store"
    return response

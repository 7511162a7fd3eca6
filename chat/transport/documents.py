"""Live progress of a member's files over their websocket.

The ingestion worker is another process (``manage.py db_worker``), possibly on another
machine, and the embedded default's channel layer lives in one process: so the socket that
asked (``watch_documents``) reads its member's documents' states from the database, twice a
second, and sends a ``document.updated`` frame for each change until every one is ready or
failed. Only the member's own documents are read (another member's id is simply absent).
"""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from django.conf import settings

from chat.models import Document
from chat.selectors import documents_for_user
from chat.serializers import document_to_dict
from chat.transport import events

POLL_SECONDS = 0.5


async def documents_watch(send, *, user, document_ids: list) -> None:
    ids = [i for i in document_ids if isinstance(i, str)][: settings.PARLEY_DOCUMENT_MAX_FILES_PER_MESSAGE * 2]
    seen: dict[str, tuple] = {}
    while ids:
        documents = await database_sync_to_async(documents_for_user)(user=user, document_ids=ids)
        for document in documents:
            state = (document.status, document.pages, document.error_code)
            if seen.get(str(document.id)) != state:
                seen[str(document.id)] = state
                await send(events.document_updated(document=document_to_dict(document)))
        unfinished = [str(d.id) for d in documents if d.status in Document.UNFINISHED]
        if not unfinished:
            return
        ids = unfinished
        await asyncio.sleep(POLL_SECONDS)

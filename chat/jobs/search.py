"""Search by meaning: a conversation's new messages embedded as a durable background job, the
same django-tasks database backend as document ingestion (chat/jobs/documents.py says why).

The job's body is ``chat.services.search.conversation_index``, which claims the messages it
embeds itself: a job run twice, or by two workers, embeds each message once. A completed turn
enqueues it (``turn_index_enqueue``, called by the reply's task after the reply is saved: the
reply never waits for it and never depends on it); housekeeping enqueues again conversations
whose messages are due (a failed call's retry, or a worker that died: ``search_requeue``); the
``search_backfill`` command embeds the conversations that existed before.
"""

from __future__ import annotations

import logging

from django_tasks import task

from chat.services import search

logger = logging.getLogger(__name__)


@task()
def conversation_index_job(conversation_id: str) -> str:
    return search.conversation_index(conversation_id)


def conversation_index_enqueue(conversation_id) -> None:
    conversation_index_job.enqueue(str(conversation_id))


def turn_index_enqueue(*, reply, owner_id: int) -> bool:
    """Queue a reply just saved complete and its question for embedding, and enqueue the job;
    False when there is nothing to do (no embedding model for the member: search stays by
    text)."""
    conversation_id = search.turn_queue(reply=reply, owner_id=owner_id)
    if conversation_id is None:
        return False
    conversation_index_enqueue(conversation_id)
    return True


def search_requeue() -> int:
    """Enqueue again the conversations whose messages are due (a retry, a dead worker)."""
    ids = search.search_due_conversations()
    for conversation_id in ids:
        conversation_index_enqueue(conversation_id)
    if ids:
        logger.info("conversations enqueued again for search by meaning: %s", len(ids))
    return len(ids)

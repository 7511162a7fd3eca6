"""Document ingestion as durable background jobs: django-tasks with its database backend.

Why django-tasks (``django_tasks_db``): the jobs live in the database Parley already has, on
SQLite for the embedded default and PostgreSQL for a team, so there is nothing new to run or
back up; its worker is ``manage.py db_worker`` (``manage.py serve`` starts one, the compose
file runs one); and it is the backport of the task API Django 6 ships, so the code moves to
``django.tasks`` unchanged.

The job's body is ``chat.services.documents.document_index``, which claims the document
itself: a job run twice, or by two workers, indexes the file once. A worker killed mid-file
leaves its task row "running" forever; ``documents_requeue`` (run by housekeeping) enqueues
again every document whose lease ran out without a heartbeat.
"""

from __future__ import annotations

import logging

from django_tasks import task

from chat.services import documents

logger = logging.getLogger(__name__)


@task()
def document_index_job(document_id: str) -> str:
    return documents.document_index(document_id)


def document_enqueue(document) -> None:
    document_index_job.enqueue(str(document.pk))


def documents_requeue() -> int:
    """Enqueue again the documents whose worker died; returns how many."""
    ids = documents.documents_resume()
    for document_id in ids:
        document_index_job.enqueue(str(document_id))
    if ids:
        logger.info("documents taken up again after their worker died: %s", len(ids))
    return len(ids)

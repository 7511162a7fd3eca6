"""Fine-tuning jobs followed in the background: django-tasks with its database backend.

A job's page never asks the provider itself (promise 9: no page waits on a provider); the
poll job does, once right after the job starts and then every PARLEY_FINETUNE_POLL_INTERVAL
for each running job (``finetune_polls_enqueue``, run by housekeeping). The poll's body,
chat.services.finetuning.job_poll, is safe to run twice: a job's reservation is settled once and
its model is added to the catalog once.
"""

from __future__ import annotations

import logging

from django_tasks import task

from chat.services import finetuning

logger = logging.getLogger(__name__)


@task()
def finetune_poll_job(job_id: int) -> str:
    job = finetuning.job_poll(job_id)
    return job.status if job is not None else "not running"


def finetune_poll_enqueue(job_id: int) -> None:
    finetune_poll_job.enqueue(int(job_id))


def finetune_polls_enqueue() -> int:
    """Enqueue a poll of every running job not polled for an interval; returns how many."""
    ids = finetuning.jobs_due()
    for job_id in ids:
        finetune_poll_job.enqueue(job_id)
    return len(ids)

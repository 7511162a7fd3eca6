"""Scenario: retrieval over 100,000 passages, its latency and its quality.

    python -m bench.retrieval [--database sqlite|postgres] [--chunks 100000] [--runs 200] [--ingest-pages 300]
                              [--json out.json]

In a throwaway database: one member's conversation holding one document of ``--chunks``
passages (another member holds as many more, so the owner filter has work to do), with
vectors from the fake upstream's hashed-word embeddings (tests/fakeupstream/embeddings.py,
computed in process: no network). 200 passages each state one fact ("The access code of
project Heron is ..."); the labelled set asks for each fact in other words. Timed, warm,
in process: ``chat.services.retrieval.passages_search`` (both rankings and their fusion, the
owner filter in the ranking query) with the question's vector and text. Quality: the share
of questions whose passage is among the top 5. Then the prompt build of a question with
retrieval (``chat.services.prompt.prompt_build``: the sources picked within the budget, the
history trimmed), and the ingestion of a ``--ingest-pages`` text PDF through
``document_index`` with the fake upstream answering its embedding requests over HTTP: seconds
to ready, and the same without the time spent waiting on the upstream's embedding calls.

On PostgreSQL the HNSW index is dropped before the load and built after it (pgvector builds
the graph row by row on insert: far slower than one build over the loaded table); the build
time is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import time

from bench import prompt_build
from bench.harness import Section, Target, emit, percentile, table

FACTS = 200
SYLLABLES = "ka lo mi ne ru sa ti vo ze bu da fe gi ho ju".split()


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()


def _populate(n_chunks: int):
    from django.contrib.auth import get_user_model

    from chat.models import Chunk, Conversation, Document
    from tests.fakeupstream.embeddings import embed

    rng = random.Random(14)
    User = get_user_model()
    labelled = []
    owner = None
    for who in ("bench-other", "bench-member"):
        user = User.objects.create_user(who, password=None)
        conversation = Conversation.objects.create(owner=user, has_documents=True)
        document = Document.objects.create(
            owner=user, conversation=conversation, name="handbook.pdf", kind="pdf", status=Document.Status.READY
        )
        facts = set(rng.sample(range(n_chunks), FACTS)) if who == "bench-member" else set()
        rows = []
        for i in range(n_chunks):
            if i in facts:
                project, code = _name(rng), f"{_name(rng)}-{rng.randint(100, 999)}"
                text = f"The access code of project {project} is {code}. " + prompt_build._text(rng, 20, 40)
                labelled.append((i, f"Which access code does project {project} use?"))
            else:
                text = prompt_build._text(rng, 30, 60)
            rows.append(
                Chunk(
                    document=document,
                    owner=user,
                    ordinal=i,
                    page=1 + i // 5,
                    text=text,
                    tokens=len(text) // 4,
                    embedding=embed(text),
                )
            )
            if len(rows) == 2000:
                Chunk.objects.bulk_create(rows)
                rows = []
        Chunk.objects.bulk_create(rows)
        total = sum(Chunk.objects.filter(document=document).values_list("tokens", flat=True))
        Document.objects.filter(pk=document.pk).update(tokens=total)
        owner = (user, conversation, document)
    return owner, labelled


def run(n_chunks: int, runs: int, ingest_pages: int) -> dict:
    from django.core.management import call_command
    from django.db import connection

    from chat.models import Chunk
    from chat.services.retrieval import passages_search
    from tests.fakeupstream.embeddings import embed

    call_command("migrate", verbosity=0, interactive=False)
    postgres = connection.vendor == "postgresql"
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
    started = time.perf_counter()
    (user, conversation, document), labelled = _populate(n_chunks)
    load_seconds = time.perf_counter() - started
    index_seconds = 0.0
    if postgres:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '512MB'")
            cursor.execute("CREATE INDEX chunk_embedding_hnsw ON chat_chunk USING hnsw (embedding vector_cosine_ops)")
            cursor.execute("ANALYZE chat_chunk")
        index_seconds = time.perf_counter() - started
    ordinal = dict(Chunk.objects.filter(document=document).values_list("pk", "ordinal"))

    def search(question: str):
        return passages_search(
            owner_id=user.pk, conversation_id=conversation.pk, query=question, vector=embed(question)
        )

    search(labelled[0][1])  # warm
    timings, hits = [], 0
    for _ in range(max(runs // len(labelled), 1)):
        for expected, question in labelled[:runs]:
            begun = time.perf_counter()
            ranked = search(question)
            timings.append((time.perf_counter() - begun) * 1000)
            hits += expected in {ordinal.get(pk) for pk in ranked[:5]}
    asked = len(timings)
    prompt_ms = _prompt_timings(user, conversation, labelled[: min(runs, 50)])
    return {
        "database": connection.vendor,
        "chunks": n_chunks,
        "load_seconds": load_seconds,
        "index_seconds": index_seconds,
        "median_ms": statistics.median(timings),
        "p95_ms": percentile(timings, 95),
        "questions": asked,
        "top5": hits / asked,
        "prompt_median_ms": statistics.median(prompt_ms),
        "prompt_p95_ms": percentile(prompt_ms, 95),
        **(_ingest(ingest_pages) if ingest_pages else {}),
    }


def _prompt_timings(user, conversation, labelled) -> list[float]:
    """The prompt build of each question with retrieval (the question embedded beforehand, as
    the consumer does), on a conversation with a model and a short history."""
    from chat.models import ChatModel, Message, Provider
    from chat.services.prompt import prompt_build
    from tests.fakeupstream.embeddings import embed

    provider = Provider.objects.create(name="bench", base_url="http://127.0.0.1:9/v1")
    model = ChatModel.objects.create(
        provider=provider, model_id="gpt-4o-mini", display_name="m", context_window=128_000, max_output_tokens=4096
    )
    conversation.model = model
    conversation.save(update_fields=["model"])
    timings = []
    for _, question in labelled:
        newest = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=question)
        vector = embed(question)
        begun = time.perf_counter()
        prompt = prompt_build(conversation=conversation, newest=newest, query_vector=vector)
        timings.append((time.perf_counter() - begun) * 1000)
        assert prompt.sources.chunks, "the prompt carries passages"
        newest.delete()
    return timings


@contextlib.contextmanager
def embedding_calls_timed():
    """While open, every embedding call (``chat.upstream.client.embed``) adds the seconds it took
    to the one number in the yielded list: the upstream's share, reported beside Parley's own."""
    from chat.upstream import client

    waited = [0.0]
    real_embed = client.embed

    async def timed_embed(*args, **kwargs):
        begun = time.perf_counter()
        try:
            return await real_embed(*args, **kwargs)
        finally:
            waited[0] += time.perf_counter() - begun

    client.embed = timed_embed  # measured, not changed
    try:
        yield waited
    finally:
        client.embed = real_embed


def _ingest(pages: int) -> dict:
    """A ``pages``-page text PDF from upload to ready, with the fake upstream (a real HTTP
    server in this process's thread) embedding its passages; the time the embedding calls took,
    measured around each call, is reported beside the rest."""
    from django.contrib.auth import get_user_model

    from chat.models import Provider
    from chat.services.documents import document_index, document_upload
    from tests.documents_support import long_pdf, make_embedding_model
    from tests.fakeupstream import FakeUpstream

    upstream = FakeUpstream().start()
    try:
        provider = Provider(name="bench-upstream", base_url=upstream.base_url)
        provider.api_key = "sk-bench-0123456789abcdef"
        provider.save()
        make_embedding_model(provider)
        user = get_user_model().objects.create_user("bench-ingest", password=None)
        data = long_pdf(pages, {pages // 2: "The access code of project Heron is BLUE-FALCON-7."})
        with embedding_calls_timed() as waited:
            begun = time.perf_counter()
            document = document_upload(user=user, name="handbook.pdf", data=data)
            status = document_index(document.pk)
            total = time.perf_counter() - begun
        assert status == "ready", status
        document.refresh_from_db()
        return {
            "ingest_pages": document.pages,
            "ingest_chunks": document.chunks.count(),
            "ingest_bytes": len(data),
            "ingest_seconds": total,
            "ingest_embedding_seconds": waited[0],
        }
    finally:
        upstream.stop()


def measure(database: str, n_chunks: int, runs: int, ingest_pages: int = 300) -> dict:
    with prompt_build.throwaway_database(f"parley_bench_r_{os.getpid()}", database) as tmp:
        from django.conf import settings

        from tests.documents_support import media_in_folder

        media_in_folder(settings, tmp / "media")
        return run(n_chunks, runs, ingest_pages)


def report(result: dict) -> Section:
    database = result["database"]
    index = ""
    if result["index_seconds"]:
        index = f"; the HNSW index built after the load in {result['index_seconds']:.0f} s"
    markdown = (
        f"One member's conversation with {result['chunks']:,} passages (another member holds as many more), "
        f"256-dimension hashed-word vectors; {result['questions']} questions, warm, in process "
        f"(loading took {result['load_seconds']:.0f} s{index}).\n\n"
        + table(
            ["database", "passages", "median ms", "p95 ms", "top-5 hit rate", "prompt build median ms", "p95 ms"],
            [
                [
                    database,
                    f"{result['chunks']:,}",
                    f"{result['median_ms']:.1f}",
                    f"{result['p95_ms']:.1f}",
                    f"{result['top5']:.0%}",
                    f"{result['prompt_median_ms']:.1f}",
                    f"{result['prompt_p95_ms']:.1f}",
                ]
            ],
        )
    )
    if "ingest_seconds" in result:
        own = result["ingest_seconds"] - result["ingest_embedding_seconds"]
        markdown += (
            f"\n\nIngestion of a {result['ingest_pages']}-page text PDF ({result['ingest_bytes'] / 1e6:.1f} MB, "
            f"{result['ingest_chunks']} passages) from upload to ready: {result['ingest_seconds']:.1f} s, of which "
            f"{result['ingest_embedding_seconds']:.1f} s waiting on the fake upstream's embedding calls "
            f"(hashed words, local), so {own:.1f} s without them."
        )
    return Section(
        key=f"retrieval-{database}",
        title=f"Retrieval over {result['chunks']:,} passages ({database})",
        markdown=markdown,
        targets=[
            Target(f"retrieval p95 ({database})", "≤ 50 ms", f"{result['p95_ms']:.1f} ms", result["p95_ms"] <= 50),
            Target(f"top-5 hit rate ({database})", "reported", f"{result['top5']:.0%}", None),
            Target(
                f"prompt build with retrieval p95 ({database})", "reported", f"{result['prompt_p95_ms']:.1f} ms", None
            ),
            *(
                [
                    Target(
                        f"{result['ingest_pages']}-page PDF to ready ({database})",
                        "reported",
                        f"{result['ingest_seconds']:.1f} s "
                        f"({result['ingest_seconds'] - result['ingest_embedding_seconds']:.1f} s without embedding)",
                        None,
                    )
                ]
                if "ingest_seconds" in result
                else []
            ),
        ],
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--ingest-pages", type=int, default=300, help="pages of the PDF ingested (0: none)")
    parser.add_argument("--json", help="also write the section as JSON here (bench.run)")
    args = parser.parse_args(argv)
    emit([report(measure(args.database, args.chunks, args.runs, args.ingest_pages))], args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scenario: retrieval over 100,000 passages, its latency and its quality.

    python -m bench.retrieval [--database sqlite|postgres] [--chunks 100000] [--runs 50] [--json out.json]

In a throwaway database: one member's conversation holding one document of ``--chunks``
passages (another member holds as many more, so the owner filter has work to do), with
vectors from the fake upstream's hashed-word embeddings (tests/fakeupstream/embeddings.py,
computed in process: no network). 200 passages each state one fact ("The access code of
project Heron is ..."); the labelled set asks for each fact in other words. Timed, warm,
in process: ``chat.services.retrieval.passages_search`` (both rankings and their fusion, the
owner filter in the ranking query) with the question's vector and text. Quality: the share
of questions whose passage is among the top 5.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench import prompt_build
from bench.harness import POSTGRES_ADMIN_URL, Section, Target, emit, percentile, table

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
                    tokens=0,
                    embedding=embed(text),
                )
            )
            if len(rows) == 2000:
                Chunk.objects.bulk_create(rows)
                rows = []
        Chunk.objects.bulk_create(rows)
        owner = (user, conversation, document)
    return owner, labelled


def run(n_chunks: int, runs: int) -> dict:
    from django.core.management import call_command
    from django.db import connection

    from chat.models import Chunk
    from chat.services.retrieval import passages_search
    from tests.fakeupstream.embeddings import embed

    call_command("migrate", verbosity=0, interactive=False)
    started = time.perf_counter()
    (user, conversation, document), labelled = _populate(n_chunks)
    load_seconds = time.perf_counter() - started
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
    return {
        "database": connection.vendor,
        "chunks": n_chunks,
        "load_seconds": load_seconds,
        "median_ms": statistics.median(timings),
        "p95_ms": percentile(timings, 95),
        "questions": asked,
        "top5": hits / asked,
    }


def measure(database: str, n_chunks: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="parley-bench-r-") as tmp:
        if database == "postgres":
            os.environ["DATABASE_URL"] = POSTGRES_ADMIN_URL
        else:
            os.environ.pop("DATABASE_URL", None)
        os.environ["PARLEY_DATA_DIR"] = tmp
        prompt_build._setup_django(Path(tmp))
        from django.conf import settings
        from django.db import connection

        server_db = connection.vendor != "sqlite"
        configured = settings.DATABASES["default"]["NAME"]
        if server_db:
            settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"parley_bench_r_{os.getpid()}"
            connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        try:
            return run(n_chunks, runs)
        finally:
            if server_db:
                connection.creation.destroy_test_db(configured, verbosity=0)
            connection.close()


def report(result: dict) -> Section:
    database = result["database"]
    markdown = (
        f"One member's conversation with {result['chunks']:,} passages (another member holds as many more), "
        f"256-dimension hashed-word vectors; {result['questions']} questions, warm, in process "
        f"(loading took {result['load_seconds']:.0f} s).\n\n"
        + table(
            ["database", "passages", "median ms", "p95 ms", "top-5 hit rate"],
            [
                [
                    database,
                    f"{result['chunks']:,}",
                    f"{result['median_ms']:.1f}",
                    f"{result['p95_ms']:.1f}",
                    f"{result['top5']:.0%}",
                ]
            ],
        )
    )
    return Section(
        key=f"retrieval-{database}",
        title=f"Retrieval over {result['chunks']:,} passages ({database})",
        markdown=markdown,
        targets=[
            Target(f"retrieval p95 ({database})", "≤ 50 ms", f"{result['p95_ms']:.1f} ms", result["p95_ms"] <= 50),
            Target(f"top-5 hit rate ({database})", "reported", f"{result['top5']:.0%}", None),
        ],
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", help="also write the section as JSON here (bench.run)")
    args = parser.parse_args(argv)
    emit([report(measure(args.database, args.chunks, args.runs))], args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

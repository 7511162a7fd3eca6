"""Benchmark: build the prompt of a 10,000-message conversation (issue 3 target: 20 ms or less).

    python -m bench.prompt_build [--messages 10000] [--runs 50]

Uses a temporary SQLite file (WAL, as in production) unless DATABASE_URL is set, in which
case a throwaway database ``parley_bench`` is created on that server and dropped afterwards.
Message token counts are stored as the app stores them when messages are saved; the timed
call is ``prompt_build`` itself: one history query, trimming, and the request body.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

WORDS = (
    "the model reply token budget context window conversation message history system prompt member "
    "stream upstream provider database index query cache worker socket browser latency throughput "
    "python django channel layer redis postgres sqlite transaction lock reservation quota usage cost"
).split()


def _setup_django(tmp: Path) -> None:
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("PARLEY_BACKGROUND_TASKS", "false")
    import django

    django.setup()


@contextlib.contextmanager
def throwaway_database(name: str, database: str | None = None) -> Iterator[Path]:
    """Django set up in this process on a database of its own, dropped afterwards; yields the
    temporary data folder. ``database``: "postgres" (the server's admin URL), "sqlite" (a file
    in the folder), or None (DATABASE_URL if set, else SQLite). On a server, the configured
    database is never touched: a throwaway ``name`` is made beside it."""
    from bench.harness import POSTGRES_ADMIN_URL

    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        if database == "postgres":
            os.environ["DATABASE_URL"] = POSTGRES_ADMIN_URL
        elif database == "sqlite":
            os.environ.pop("DATABASE_URL", None)
        if database is not None:
            os.environ["PARLEY_DATA_DIR"] = tmp
        _setup_django(Path(tmp))
        from django.conf import settings
        from django.db import connection

        server_db = connection.vendor != "sqlite"
        configured_name = settings.DATABASES["default"]["NAME"]
        if server_db:
            settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = name
            connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        try:
            yield Path(tmp)
        finally:
            if server_db:
                connection.creation.destroy_test_db(configured_name, verbosity=0)
            connection.close()


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."


def _conversation(n_messages: int, model):
    from django.contrib.auth import get_user_model
    from django.db import connection

    from chat import tokens
    from chat.models import Conversation, Message

    rng = random.Random(42)
    user = get_user_model().objects.create_user(f"bench-{model.model_id}", password=None)
    conversation = Conversation.objects.create(owner=user, model=model, system_prompt=_text(rng, 20, 40))
    encoding = tokens.encoding_name_for_model(model.model_id)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    rows = []
    for index in range(n_messages):
        # Questions of 10-60 words, answers of 40-250: a long working conversation.
        role = Message.Role.USER if index % 2 == 0 else Message.Role.ASSISTANT
        content = _text(rng, 10, 60) if role == Message.Role.USER else _text(rng, 40, 250)
        rows.append(
            Message(
                conversation=conversation,
                role=role,
                content=content,
                token_count=tokens.count_tokens(content, encoding),
                token_encoding=encoding,
                created_at=start + dt.timedelta(seconds=index),
                parent=rows[-1] if rows else None,  # one branch: each message the child of the last
                # As the app stores it with each reply (chat.services.prompt.replayed_above_reply):
                # every message above is replayed, so the count is the index.
                replayed_above=index if role == Message.Role.ASSISTANT else None,
            )
        )
    Message.objects.bulk_create(rows, batch_size=1000)
    if connection.vendor == "postgresql":
        # What autovacuum does to a table that has settled: statistics and the visibility map.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE chat_message")
    newest = rows[-1] if rows[-1].role == Message.Role.USER else None
    if newest is None:
        content = _text(rng, 10, 60)
        newest = Message.objects.create(
            conversation=conversation,
            role=Message.Role.USER,
            content=content,
            token_count=tokens.count_tokens(content, encoding),
            token_encoding=encoding,
            created_at=start + dt.timedelta(seconds=n_messages),
            parent=rows[-1],
        )
    conversation = Conversation.objects.select_related("model").get(pk=conversation.pk)
    return conversation, newest


def _measure(conversation, newest, runs: int):
    from django.db import transaction

    from chat.services.prompt import prompt_build

    prompt_build(conversation=conversation, newest=newest)  # warm: encodings, statement cache
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        # As chat.services.turns.reply_begin calls it: inside the transaction that reserves the budget.
        with transaction.atomic():
            prompt = prompt_build(conversation=conversation, newest=newest)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return prompt, statistics.median(timings), timings[max(0, int(len(timings) * 0.95) - 1)]


def run(n_messages: int = 10_000, runs: int = 50) -> list[dict]:
    from django.core.management import call_command
    from django.db import connection

    from chat.models import ChatModel, Provider

    call_command("migrate", verbosity=0, interactive=False)
    provider = Provider.objects.create(name="bench", base_url="https://api.openai.com/v1")
    # ``judged``: held to the 20 ms target. The 1M-window case sends all 10,000
    # messages (950,000 tokens, about 10 MB of text): its time is reading and sending that
    # text, shown for scale, not a prompt-building cost.
    scenarios = [
        ("gpt-4o (128k window)", "gpt-4o", 128_000, 16_384, True),
        ("gpt-4.1 (1M window: nothing trimmed)", "gpt-4.1", 1_047_576, 32_768, False),
        ("gpt-4 (8k window)", "gpt-4", 8_192, 8_192, True),
    ]
    results = []
    for label, model_id, window, max_output, judged in scenarios:
        model = ChatModel.objects.create(
            provider=provider, model_id=model_id, context_window=window, max_output_tokens=max_output
        )
        conversation, newest = _conversation(n_messages, model)
        prompt, median, p95 = _measure(conversation, newest, runs)
        results.append(
            {
                "scenario": label,
                "history": prompt.omitted + len(prompt.payload["messages"]) - 2,
                "sent": len(prompt.payload["messages"]),
                "omitted": prompt.omitted,
                "prompt_tokens": prompt.prompt_tokens,
                "median_ms": median,
                "p95_ms": p95,
                "database": connection.vendor,
                "judged": judged,
            }
        )
    return results


def machine_check() -> float:
    """Milliseconds for a fixed pure-Python loop (best of 5), to judge a shared or busy machine."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        sum(range(1_000_000))
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def table(results: list[dict]) -> str:
    lines = [
        "| scenario | database | history messages | sent | omitted | prompt tokens | median ms | p95 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['scenario']} | {r['database']} | {r['history']:,} | {r['sent']:,} | {r['omitted']:,} "
            f"| {r['prompt_tokens']:,} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)
    with throwaway_database("parley_bench"):
        results = run(args.messages, args.runs)
    print(f"prompt_build, median of {args.runs} runs\n")
    print(table(results))
    print(
        f"\nMachine check: sum(range(10**6)) took {machine_check():.1f} ms "
        "(about 10 ms on an idle current x86 core; scale the table by the ratio on a busy machine)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scenario 4: building the prompt of a 10,000-message conversation, and the sidebar of a member
with 5,000 conversations: time and number of queries.

    python -m bench.queries [--database sqlite|postgres] [--runs 50] [--json out.json]

The prompt half is bench/prompt_build.py (its ``run``); this module adds the sidebar in the
same throwaway database: a member with 5,000 conversations (2 messages each, 10 pinned)
among 20 other members with 500 each. Timed calls, in process, warm:

- ``chat.selectors.conversation_list`` evaluated (the query the sidebar runs);
- ``chat.web.api.conversation_page`` (that list plus the JSON the chat page embeds), first page and
  the page after it (the ``before`` cursor);
- a search (title or message text), reported only.

Queries are counted with Django's ``CaptureQueriesContext``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time

from bench import prompt_build
from bench.harness import Section, Target, emit, percentile, table

CONVERSATIONS = 5_000
OTHER_MEMBERS = 20
OTHER_CONVERSATIONS = 500
PINNED = 10


def _sidebar_data():
    from django.contrib.auth import get_user_model

    from chat.models import Conversation, Message

    User = get_user_model()
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

    def conversations_for(user, count):
        rows = [
            Conversation(
                owner=user,
                title=f"{prompt_build.WORDS[i % len(prompt_build.WORDS)].capitalize()} question {i}",
                pinned=i < PINNED and user.username == "sidebar-member",
                created_at=start + dt.timedelta(minutes=i),
                updated_at=start + dt.timedelta(minutes=i, seconds=30),
            )
            for i in range(count)
        ]
        Conversation.objects.bulk_create(rows, batch_size=1000)
        messages = []
        for i, conversation in enumerate(rows):
            for role, text in (
                ("user", f"How do I tune the {prompt_build.WORDS[i % len(prompt_build.WORDS)]}?"),
                ("assistant", "Like so."),
            ):
                messages.append(
                    Message(conversation=conversation, role=role, content=text, created_at=conversation.created_at)
                )
        Message.objects.bulk_create(messages, batch_size=2000)

    for n in range(OTHER_MEMBERS):
        conversations_for(User.objects.create_user(f"sidebar-other-{n}", password=None), OTHER_CONVERSATIONS)
    member = User.objects.create_user("sidebar-member", password=None)
    conversations_for(member, CONVERSATIONS)
    # Folders (issue 18): a third of the member's conversations filed in 10 of them, so the
    # sidebar is measured with its folders; a conversation names its folder by id, no join.
    from chat.models import Folder

    folders = [Folder.objects.create(owner=member, name=f"Folder {n}") for n in range(10)]
    ids = list(Conversation.objects.filter(owner=member).values_list("pk", flat=True))
    for n, folder in enumerate(folders):
        Conversation.objects.filter(pk__in=ids[n::30]).update(folder=folder)
    return member


def _time(call, runs: int) -> tuple[float, float, int]:
    """Median and p95 in ms, and the number of queries of one call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call()  # warm
    with CaptureQueriesContext(connection) as captured:
        call()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), percentile(timings, 95), len(captured.captured_queries)


def sidebar(runs: int) -> list[dict]:
    from django.db import connection
    from django.utils.dateparse import parse_datetime

    from chat.selectors import conversation_list
    from chat.web.api import conversation_page

    member = _sidebar_data()
    first = conversation_page(user=member)
    before = parse_datetime(first["next_before"])
    calls = [
        ("conversation_list (first 50)", lambda: list(conversation_list(user=member)), True),
        ("conversation_page, first page", lambda: conversation_page(user=member), True),
        ("conversation_page, next page (before cursor)", lambda: conversation_page(user=member, before=before), True),
        ("search “tune” (titles and message text)", lambda: conversation_page(user=member, query="tune"), False),
        ("search “folder 3” (folder names too)", lambda: conversation_page(user=member, query="folder 3"), False),
    ]
    out = []
    for label, call, judged in calls:
        median_ms, p95_ms, queries = _time(call, runs)
        out.append(
            {
                "call": label,
                "median_ms": median_ms,
                "p95_ms": p95_ms,
                "queries": queries,
                "judged": judged,
                "database": connection.vendor,
            }
        )
    return out


def measure(database: str, runs: int) -> tuple[list[dict], list[dict]]:
    with prompt_build.throwaway_database(f"parley_bench_q_{os.getpid()}", database):
        prompts = prompt_build.run(10_000, runs)
        lists = sidebar(runs)
    return prompts, lists


def report(prompts: list[dict], lists: list[dict], runs: int) -> Section:
    prompt_rows = [
        [
            p["scenario"],
            p["database"],
            f"{p['history']:,}",
            f"{p['sent']:,}",
            f"{p['omitted']:,}",
            f"{p['prompt_tokens']:,}",
            f"{p['median_ms']:.1f}",
            f"{p['p95_ms']:.1f}",
        ]
        for p in prompts
    ]
    list_rows = [[s["call"], s["database"], f"{s['median_ms']:.2f}", f"{s['p95_ms']:.2f}", s["queries"]] for s in lists]
    # Judged where the window trims the history (the case: a long conversation and a
    # model that cannot take all of it); with a 1M window every message is sent and the cost is
    # building a 4 MB request, reported only.
    trimmed = [p for p in prompts if p["omitted"]]
    worst_prompt = max(p["median_ms"] for p in trimmed or prompts)
    judged = [s for s in lists if s["judged"]]
    worst_list = max(s["median_ms"] for s in judged)
    most_queries = max(s["queries"] for s in judged)
    markdown = (
        f"In process, warm, median and p95 of {runs} runs.\n\n"
        "**Prompt build** of a conversation of 10,000 messages (bench/prompt_build.py: one history query, "
        "trimming to the context window minus the reply's reserve, the request body):\n\n"
        + table(
            ["model", "database", "history", "sent", "omitted", "prompt tokens", "median ms", "p95 ms"],
            prompt_rows,
        )
        + f"\n\n**Sidebar** of a member with {CONVERSATIONS:,} conversations ({PINNED} pinned; "
        f"{OTHER_MEMBERS} other members hold {OTHER_MEMBERS * OTHER_CONVERSATIONS:,} more):\n\n"
        + table(["call", "database", "median ms", "p95 ms", "queries"], list_rows)
    )
    database = prompts[0]["database"]
    return Section(
        key=f"queries-{database}",
        title=f"4. Prompt build and sidebar ({database})",
        markdown=markdown,
        targets=[
            Target(
                f"prompt build, 10,000 messages ({database})", "≤ 20 ms", f"{worst_prompt:.1f} ms", worst_prompt <= 20
            ),
            Target(
                f"sidebar, 5,000 conversations ({database})",
                "≤ 20 ms in ≤ 3 queries",
                f"{worst_list:.2f} ms, {most_queries} queries",
                worst_list <= 20 and most_queries <= 3,
            ),
        ],
        data={"prompts": prompts, "sidebar": lists},
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", help="also write the section as JSON here (bench.run)")
    args = parser.parse_args(argv)
    prompts, lists = measure(args.database, args.runs)
    emit([report(prompts, lists, args.runs)], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

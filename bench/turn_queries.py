"""The queries of a reply's start (``turns.turn_start``, a new chat and a follow-up) and its end.

    python -m bench.turn_queries [--runs 30] [--show]

In process, on a temporary SQLite file (or DATABASE_URL's server), one member, one provider
and one model: prints each query of one new chat and one follow-up (``--show``) and their
counts, and the median in-process time of ``turn_start`` over ``--runs`` new chats and as many
follow-ups (each the second turn of a chat), and of ``replies.reply_finish`` saving as many
200-word replies complete, wall and CPU (the thread's own, which a loaded machine stretches
much less). The replies started are settled right after, so the member never has more than
one streaming.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _setup(tmp: Path) -> None:
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ["PARLEY_DATA_DIR"] = str(tmp)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["PARLEY_BACKGROUND_TASKS"] = "false"
    os.environ["PARLEY_RATE_LIMIT_PER_MINUTE"] = "1000000"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--show", action="store_true", help="print every query")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="parley-turn-queries-"))
    _setup(tmp)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.core.calls import Units, call_settle
    from chat.models import ChatModel, Message, Provider
    from chat.services.replies import reply_finish
    from chat.services.turns import turn_start

    provider = Provider.objects.create(name="Fake", base_url="http://127.0.0.1:9/v1", api_key="sk-x")
    ChatModel.objects.create(provider=provider, model_id="gpt-4o-mini", context_window=128000, is_default=True)
    user_model = get_user_model()
    user_model.objects.create_user("alice", password=None)

    def fresh_user():
        return user_model.objects.get(username="alice")  # the consumer's session re-check reads it

    def settle(start) -> None:
        reply = start.plan.reply
        call_settle(units=Units(), message=reply)
        Message.objects.filter(pk=reply.pk).update(status=Message.Status.STOPPED)

    def one(conversation_id=None, tag=""):
        user = fresh_user()
        with CaptureQueriesContext(connection) as ctx:
            started, cpu = time.perf_counter(), time.thread_time()
            start = turn_start(
                user=user, conversation_id=conversation_id, client_id=f"c{time.perf_counter_ns()}", content=tag
            )
            elapsed = time.perf_counter() - started, time.thread_time() - cpu
        if start.plan is None:
            raise SystemExit(f"the reply was refused: {start.refusal!r}")
        settle(start)
        return start, ctx.captured_queries, elapsed

    one(tag="warm-up")
    first, new_queries, _ = one(tag="hello there")
    _, follow_queries, _ = one(conversation_id=first.saved.conversation.pk, tag="and a follow-up")
    for label, queries in (("new chat", new_queries), ("follow-up", follow_queries)):
        print(f"turn_start, {label}: {len(queries)} queries")
        if args.show:
            for q in queries:
                print("   ", q["sql"][:160])
    times = [one(tag=f"run {i}")[2] for i in range(args.runs)]
    wall, cpu = (statistics.median(t[k] for t in times) * 1000 for k in (0, 1))
    print(f"turn_start, new chat: median {wall:.2f} ms, {cpu:.2f} ms of CPU, over {args.runs} (in process)")
    # A follow-up, each into a chat of one answered turn (a history of two messages).
    times = [
        one(conversation_id=one(tag=f"chat {i}")[0].saved.conversation.pk, tag="next")[2] for i in range(args.runs)
    ]
    wall, cpu = (statistics.median(t[k] for t in times) * 1000 for k in (0, 1))
    print(f"turn_start, follow-up: median {wall:.2f} ms, {cpu:.2f} ms of CPU, over {args.runs} (in process)")
    # The end: reply_finish saves a 200-word reply complete and settles its usage.
    times = []
    for i in range(args.runs):
        start = turn_start(user=fresh_user(), conversation_id=None, client_id=f"e{i}", content="hello")
        started, cpu = time.perf_counter(), time.thread_time()
        reply_finish(
            reply_id=start.plan.reply.pk,
            content="word " * 200,
            status=Message.Status.COMPLETE,
            prompt_tokens=20,
            completion_tokens=200,
            reservation_id=start.plan.admission.reservation_id,
        )
        times.append((time.perf_counter() - started, time.thread_time() - cpu))
    wall, cpu = (statistics.median(t[k] for t in times) * 1000 for k in (0, 1))
    print(f"reply_finish: median {wall:.2f} ms, {cpu:.2f} ms of CPU, over {args.runs} (in process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

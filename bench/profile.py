"""Profile the daphne process with py-spy while it serves one of the benchmark loads.

    python -m bench.profile single [--replies 50]        # 200-token replies one after another
    python -m bench.profile long [--replies 3]           # 5,000-token replies, no delay
    python -m bench.profile concurrent [--replies 100]   # N replies at once, 20 ms between tokens
    python -m bench.profile api [--replies 100]          # N member API streams at once, 20 ms apart
    python -m bench.profile starts [--replies 100]       # N replies sent at once: only their starts
    python -m bench.profile realistic [--replies 100]    # N at once, first token after 300 ms, 30 ms apart
    python -m bench.profile spread [--replies 100]       # N sent evenly over 2 s (bench.load's spread)

Samples daphne (all its threads, active time only) at 250 Hz with py-spy, writes the
collapsed stacks to ``--out`` (default /tmp/parley-profile.txt; load it in speedscope or
flamegraph.pl) and prints the functions with the largest share of samples, inclusive and
self. Also prints daphne's CPU milliseconds per reply, which unlike wall times does not
depend much on what else the machine is running.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.clients import Direct, Shape, Tab, prompt
from bench.concurrency import SHAPE, _gather_in_batches, _through_parley
from bench.harness import FakeUpstream, Parley, _manage
from bench.load import REALISTIC, SPREAD

# Replies per load by default; the loads where each reply is another member's.
REPLIES = {"single": 50, "long": 3, "concurrent": 100, "api": 100, "starts": 100, "realistic": 100, "spread": 100}
MANY_MEMBERS = {"concurrent", "starts", "realistic", "spread"}
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


async def _sequential(parley: Parley, replies: int, tokens: int, tag: str) -> None:
    tab = await Tab.open(parley.ws_url, parley.origin, parley.sessions[0])
    try:
        for i in range(replies):
            reply = await tab.ask(prompt(tokens, 0, f"{tag}-{i}"))
            if not reply.ok:
                raise RuntimeError(f"reply failed: {reply.error}")
    finally:
        await tab.close()


async def _concurrent(parley: Parley, replies: int, tag: str, shape: Shape = SHAPE, spread: float = 0.0) -> None:
    results, _contents, _cpu = await _through_parley(parley, replies, tag, shape, spread=spread)
    failed = [r.error for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} replies failed, e.g. {failed[0]}", file=sys.stderr)


# The upstream holds its first token back long after every start is done: what is sampled
# until then is only the replies' starts (the samples end at STARTS_SAMPLED).
STARTS = Shape(tokens=5, token_delay=0.0, first_token_delay=4.0)
STARTS_SAMPLED = 3.0


async def _starts(parley: Parley, replies: int, tag: str, spy_start) -> subprocess.Popen:
    tabs = await _gather_in_batches(
        [lambda s=s: Tab.open(parley.ws_url, parley.origin, s) for s in parley.sessions[:replies]]
    )
    spy = spy_start()  # the tabs are open: their sign-ins are not sampled
    await asyncio.sleep(1.0)  # py-spy attaches
    try:
        before = parley.stat().cpu_seconds
        asked = asyncio.gather(*(t.ask(STARTS.prompt(f"{tag}-{i}")) for i, t in enumerate(tabs)))
        await asyncio.sleep(STARTS_SAMPLED)
        spy.send_signal(signal.SIGINT)
        starting = parley.stat().cpu_seconds - before
        print(f"daphne CPU while the {replies} replies started: {starting * 1000 / replies:.1f} ms per start")
        results = await asked
        failed = [r.error for r in results if not r.ok]
        if failed:
            print(f"{len(failed)} replies failed, e.g. {failed[0]}", file=sys.stderr)
    finally:
        await asyncio.gather(*(t.close() for t in tabs), return_exceptions=True)
    return spy


async def _api(parley: Parley, key: str, replies: int, tag: str) -> None:
    clients = await _gather_in_batches([Direct(parley.port, key=key).open for _ in range(replies)])
    try:
        results = await asyncio.gather(*(c.ask(prompt(200, 0.02, f"{tag}-{i}")) for i, c in enumerate(clients)))
        failed = [r.error for r in results if not r.ok]
        if failed:
            print(f"{len(failed)} requests failed, e.g. {failed[0]}", file=sys.stderr)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


# Self samples by where the code lives: the first pattern found in the frame's file wins.
LIBRARIES = (
    # SQLite's C code shows as the self time of Django's execute on it.
    ("sqlite3 (Django's execute on it)", ("django/db/backends/sqlite3/base.py", "sqlite3/")),
    ("psycopg", ("psycopg",)),
    ("Django ORM", ("django/db/",)),
    ("HTTP client (httpx, httpcore, h11, anyio, aiohttp)", ("httpx", "httpcore/", "h11/", "anyio/", "aiohttp/")),
    ("Twisted, autobahn, daphne", ("twisted/", "autobahn/", "daphne/", "txaio/")),
    ("Channels", ("channels/",)),
    ("asgiref", ("asgiref/",)),
    ("JSON", ("json/",)),
    ("Django (other)", ("django/",)),
    ("tokenizer (bpe-openai)", ("bpe_openai",)),
    ("asyncio, selectors", ("asyncio/", "selectors.py")),
    ("thread pool (handing work to the database thread)", ("concurrent/futures/",)),
    ("Parley (chat/, accounts/, config/)", ("chat/", "accounts/", "config/")),
)


def by_library(own: collections.Counter, total: int) -> list[str]:
    shares: collections.Counter = collections.Counter()
    for frame, n in own.items():
        where = frame.rpartition("(")[2]
        name = next((lib for lib, marks in LIBRARIES if where.startswith(marks)), "other (standard library)")
        shares[name] += n
    return [f"{n / total * 100:5.1f}%  {name}" for name, n in shares.most_common()]


# A pool thread waiting for work: py-spy reports these samples as active (the wait in
# queue.get is C code it does not see as idle), so they are counted apart, not as CPU. Under
# the member API's load they were 94 % of all samples: one such thread per request in flight,
# Django's per-request thread for its sync hooks.
WAITING = "_worker (concurrent/futures/thread.py)"


def summarize(path: Path, top: int) -> str:
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = waiting = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
        if frames[-1] == WAITING:
            waiting += n
            continue
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples ({waiting} more of pool threads waiting for work, left out)", ""]
    lines += ["self, by library:", *by_library(own, total), "", "inclusive:"]
    lines += [f"{n / total * 100:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{n / total * 100:5.1f}%  {f}" for f, n in own.most_common(top // 2)]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("load", choices=list(REPLIES))
    parser.add_argument("--replies", type=int)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--out", default="/tmp/parley-profile.txt")
    parser.add_argument("--top", type=int, default=60)
    args = parser.parse_args(argv)
    replies = args.replies or REPLIES[args.load]
    members = replies if args.load in MANY_MEMBERS else 1
    out = Path(args.out)
    with FakeUpstream() as upstream, Parley(upstream, database=args.database, members=members) as parley:
        key = _manage(parley.env, "api_token", "create", "bench-0000", "--name", "profile").strip()
        parley.start()
        asyncio.run(_sequential(parley, 3, 200, "warm"))

        def spy_start() -> subprocess.Popen:
            return subprocess.Popen(
                [PY_SPY, "record", "-p", str(parley.proc.pid), "-r", "250", "--format", "raw", "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        if args.load != "starts":
            spy = spy_start()
            time.sleep(1.0)  # py-spy attaches
        before = parley.stat().cpu_seconds
        started = time.perf_counter()
        if args.load == "concurrent":
            asyncio.run(_concurrent(parley, replies, "prof"))
        elif args.load == "spread":
            asyncio.run(_concurrent(parley, replies, "prof", spread=SPREAD))
        elif args.load == "realistic":
            asyncio.run(_concurrent(parley, replies, "prof", REALISTIC))
        elif args.load == "starts":
            spy = asyncio.run(_starts(parley, replies, "prof", spy_start))
        elif args.load == "api":
            asyncio.run(_api(parley, key, replies, "prof"))
        else:
            asyncio.run(_sequential(parley, replies, 5000 if args.load == "long" else 200, "prof"))
        elapsed = time.perf_counter() - started
        cpu = parley.stat().cpu_seconds - before
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
    print(f"{replies} replies in {elapsed:.1f} s; daphne CPU {cpu * 1000 / replies:.1f} ms per reply")
    print(f"collapsed stacks: {out}\n")
    print(summarize(out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

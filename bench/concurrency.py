"""Scenario 3: many replies at once through one daphne process, on SQLite and on PostgreSQL.

    python -m bench.concurrency [--levels 10,100,200,500] [--databases sqlite,postgres] [--json out.json]

For each level N: N members each have a tab open (a websocket of their own), and all N send at
the same moment; every reply is 200 tokens, 20 ms apart (about 4 s). The same N requests are
also made straight to the upstream, on N connections opened beforehand, just before. Reported:
time to first token and total (p50, p95) on both paths, errors, the daphne process's CPU
seconds for the N replies (utime + stime from /proc/<pid>/stat) and its peak memory (VmHWM;
daphne is started fresh for each level, after one warm-up reply). Afterwards the database is
read back: every reply must be saved with status ``complete`` and the full text.

One member per reply, so the per-member limit of concurrent replies (default 3) is not what
refuses them; see bench/harness.py for the other settings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bench.clients import Direct, Reply, Shape, Tab, expected_text, prompt
from bench.harness import (
    FakeUpstream,
    Parley,
    Section,
    Target,
    emit,
    median,
    ms,
    percentile,
    postgres_available,
    table,
)

TOKENS = 200
TOKEN_DELAY = 0.02
SHAPE = Shape(TOKENS, TOKEN_DELAY)
OPEN_BATCH = 25  # sockets opened at a time (daphne listens with a backlog of 50)
JUDGED_LEVEL = 200


async def _gather_in_batches(factories, size: int = OPEN_BATCH) -> list:
    out = []
    for i in range(0, len(factories), size):
        out += await asyncio.gather(*(f() for f in factories[i : i + size]))
    return out


async def _direct(upstream: FakeUpstream, n: int, tag: str, shape: Shape = SHAPE) -> list[Reply]:
    clients = await _gather_in_batches([Direct(upstream.port).open for _ in range(n)])
    try:
        contents = [shape.prompt(f"{tag}-direct-{i}") for i in range(n)]
        replies = await asyncio.gather(*(c.ask(text) for c, text in zip(clients, contents, strict=True)))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    for reply, content in zip(replies, contents, strict=True):
        if reply.ok and reply.text != expected_text(content, shape.tokens):
            reply.error = "text differs from what the upstream sent"
    return list(replies)


async def _through_parley(
    parley: Parley,
    n: int,
    tag: str,
    shape: Shape = SHAPE,
    fronts: list[tuple[str, str]] | None = None,
    cpu_of=None,
    spread: float = 0.0,
) -> tuple[list[Reply], list[str], float]:
    """N replies at once; returns them, their contents, and daphne's CPU seconds while they ran.

    ``fronts``: (websocket URL, origin) pairs the tabs open in turn instead of this daphne's
    (several workers, or a proxy in front of them); ``cpu_of``: a function giving the CPU
    seconds to count instead of this daphne's; ``spread``: seconds over which the N sends are
    spread evenly instead (each reply's times count from its own send).
    """
    fronts = fronts or [(parley.ws_url, parley.origin)]
    cpu_seconds = cpu_of or (lambda: parley.stat().cpu_seconds)
    tabs = await _gather_in_batches(
        [lambda i=i, s=s: Tab.open(*fronts[i % len(fronts)], s) for i, s in enumerate(parley.sessions[:n])]
    )
    try:
        await asyncio.sleep(0.5)  # let the server finish the handshakes before the clock starts
        contents = [shape.prompt(f"{tag}-parley-{i}") for i in range(n)]
        before = cpu_seconds()

        async def ask(i: int, tab: Tab, text: str) -> Reply:
            if spread:
                await asyncio.sleep(i * spread / n)
            return await tab.ask(text)

        pairs = enumerate(zip(tabs, contents, strict=True))
        replies = await asyncio.gather(*(ask(i, tab, text) for i, (tab, text) in pairs))
        cpu = cpu_seconds() - before
    finally:
        await asyncio.gather(*(t.close() for t in tabs), return_exceptions=True)
    for reply, content in zip(replies, contents, strict=True):
        if reply.ok and reply.text != expected_text(content, shape.tokens):
            reply.error = "streamed text differs from what the upstream sent"
    return list(replies), contents, cpu


def _server_errors(parley: Parley, since: int) -> int:
    text = (parley.data_dir / "daphne.log").read_text(errors="replace")[since:]
    return sum(1 for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback"))


def _log_size(parley: Parley) -> int:
    path = parley.data_dir / "daphne.log"
    return len(path.read_text(errors="replace")) if path.exists() else 0


async def _warm(parley: Parley) -> None:
    tab = await Tab.open(parley.ws_url, parley.origin, parley.sessions[0])
    try:
        reply = await tab.ask(prompt(TOKENS, 0, f"warm-{time.time_ns()}"))
        if not reply.ok:
            raise RuntimeError(f"the warm-up reply failed: {reply.error}\n{parley.log_tail()}")
    finally:
        await tab.close()


def run_level(parley: Parley, upstream: FakeUpstream, n: int) -> dict:
    tag = f"{parley.database}-{n}-{time.time_ns()}"
    upstream.reset()
    direct = asyncio.run(_direct(upstream, n, tag))
    upstream_stats = upstream.stats()
    parley.start()
    try:
        asyncio.run(_warm(parley))
        upstream.reset()
        log_at = _log_size(parley)
        replies, contents, cpu = asyncio.run(_through_parley(parley, n, tag))
        stat = parley.stat()
        parley_upstream_stats = upstream.stats()
        server_errors = _server_errors(parley, log_at)
    finally:
        parley.stop()
    saved = parley.verify([r.message_id for r in replies if r.message_id])
    complete = 0
    for reply, content in zip(replies, contents, strict=True):
        status, length = saved.get(reply.message_id, ("missing", -1))
        if status == "complete" and length == len(expected_text(content, TOKENS)):
            complete += 1
    return {
        "n": n,
        "database": parley.database,
        "direct": direct,
        "parley": replies,
        "cpu_seconds": cpu,
        "peak_rss_mb": stat.peak_rss_mb,
        "saved_complete": complete,
        "server_errors": server_errors,
        "direct_max_streams": upstream_stats["max_open_streams"],
        "parley_max_streams": parley_upstream_stats["max_open_streams"],
    }


def _stats(replies: list[Reply]) -> dict:
    ttft = [r.ttft for r in replies if r.ok]
    total = [r.total for r in replies if r.ok]
    return {
        "ttft50": median(ttft),
        "ttft95": percentile(ttft, 95),
        "total50": median(total),
        "total95": percentile(total, 95),
        "errors": sum(1 for r in replies if not r.ok),
        "first_errors": sorted({r.error or r.status for r in replies if not r.ok})[:3],
    }


def report(levels: list[dict]) -> Section:
    rows = []
    targets = []
    data = []
    for level in levels:
        n, db = level["n"], level["database"]
        if "failure" in level:
            rows.append([f"{n}, {db}", f"**failed**: {level['failure']}"] + [""] * 8)
            data.append({"n": n, "database": db, "failure": level["failure"]})
            if n >= JUDGED_LEVEL:
                targets.append(Target(f"{n} at once, {db}", "runs without errors", "failed", False))
            continue
        d, p = _stats(level["direct"]), _stats(level["parley"])
        rows.append(
            [
                f"{n}, {db}",
                f"{ms(d['ttft50'])} / {ms(d['ttft95'])}",
                f"{ms(p['ttft50'])} / {ms(p['ttft95'])}",
                f"{ms(d['total50'])} / {ms(d['total95'])}",
                f"{ms(p['total50'])} / {ms(p['total95'])}",
                f"{d['errors']} / {p['errors']}",
                f"{level['saved_complete']}/{n}",
                f"{level['cpu_seconds']:.1f}",
                f"{level['peak_rss_mb']:.0f}",
                level["server_errors"],
            ]
        )
        data.append(
            {
                "n": n,
                "database": db,
                "direct": d,
                "parley": p,
                **{k: level[k] for k in ("cpu_seconds", "peak_rss_mb", "saved_complete", "server_errors")},
            }
        )
        if p["errors"] or d["errors"]:
            rows[-1][5] += " (" + "; ".join(p["first_errors"] + d["first_errors"]) + ")"
        label = f"{n} at once, {db}"
        clean = p["errors"] == 0 and level["saved_complete"] == n and level["server_errors"] == 0
        if n == JUDGED_LEVEL:
            gap = p["ttft95"] - d["ttft95"]
            share50 = p["total50"] / d["total50"] if d["total50"] else float("nan")
            share95 = p["total95"] / d["total95"] if d["total95"] else float("nan")
            targets += [
                Target(
                    f"{label}: errors, saved complete",
                    f"0, {n}/{n}",
                    f"{p['errors']}, {level['saved_complete']}/{n}",
                    clean,
                ),
                Target(f"{label}: p95 TTFT − upstream's", "≤ 150 ms", f"{gap * 1000:.0f} ms", gap <= 0.150),
                Target(
                    f"{label}: total ÷ upstream's (p50, p95)",
                    "≤ 1.05",
                    f"{share50:.3f}, {share95:.3f}",
                    share50 <= 1.05 and share95 <= 1.05,
                ),
            ]
        elif n > JUDGED_LEVEL:
            targets.append(
                Target(f"{label}: errors", "0 (report)", f"{p['errors']}, {level['saved_complete']}/{n} saved", clean)
            )
    markdown = (
        f"Every reply {TOKENS} tokens, {TOKEN_DELAY * 1000:.0f} ms apart; all sent at the same moment by N members "
        "(one websocket each), one daphne process. Times in ms as p50 / p95; *upstream* is the same N requests "
        "made straight to the upstream just before. CPU is the daphne process's user + system seconds for the N "
        "replies; peak RSS is its VmHWM (fresh process per level, one warm-up reply). *saved* counts replies read "
        "back from the database with status `complete` and the full text. *log errors* counts ERROR lines and "
        "tracebacks in daphne's log.\n\n"
        + table(
            [
                "N, database",
                "TTFT upstream",
                "TTFT Parley",
                "total upstream",
                "total Parley",
                "errors upstream / Parley",
                "saved",
                "CPU s",
                "peak RSS MB",
                "log errors",
            ],
            rows,
        )
    )
    return Section(
        key="concurrency",
        title="3. Many replies at once, one daphne process",
        markdown=markdown,
        targets=targets,
        data={"levels": data},
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="10,100,200,500")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument(
        "--baseline", metavar="REV", help="also run REV beside this tree, interleaved (bench/baseline.py)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the --baseline comparison")
    parser.add_argument("--json", help="also write the section as JSON here (bench.run)")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    databases = [d for d in args.databases.split(",") if d]
    if "postgres" in databases and not postgres_available():
        print("PostgreSQL is not reachable on 127.0.0.1:5432: the PostgreSQL rows are skipped", file=sys.stderr)
        databases.remove("postgres")
    results = []
    with FakeUpstream() as upstream:
        for database in databases:
            with Parley(upstream, database=database, members=max(levels)) as parley:
                for n in levels:
                    try:
                        results.append(run_level(parley, upstream, n))
                    except RuntimeError as exc:
                        # One level failing (a server that would not start, a refused warm-up)
                        # must not lose the others: it is reported as a failed row.
                        parley.stop()
                        results.append({"n": n, "database": database, "failure": str(exc).splitlines()[0]})
                        print(f"  {database} {n}: FAILED {exc}", file=sys.stderr, flush=True)
                        continue
                    print(f"  {database} {n}: done", file=sys.stderr, flush=True)
        sections = [report(results)]
        if args.baseline:
            from bench.baseline import concurrency_section

            # The comparison runs each level 3 × rounds times: the levels the targets name.
            compared = [n for n in levels if n in (100, 200)] or levels
            sections.append(concurrency_section(upstream, args.baseline, compared, databases, args.rounds))
    emit(sections, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

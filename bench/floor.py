"""The floor of the fixed stack: how close to the upstream can any relay on it get?

    python -m bench.floor [--replies 30] [--long-runs 5] [--levels 200] [--databases sqlite,postgres] [--json F]

Runs scenarios 1-3 three ways in the same run: straight to the upstream, through
bench/floor_app.py (daphne + a Channels consumer + one ORM transaction + httpx + frames
straight to the socket, nothing else; see its docstring), and through Parley, on one
installation (in-memory layer; one reply at a time on SQLite, many at once on SQLite and on
PostgreSQL). What the floor adds over the upstream is the cost of
the components the design fixes, on this machine; what Parley adds over the floor is Parley's
own work (the rules, the prompt, the budget, the channel layer, moderation, heartbeats).
A target the floor itself misses cannot be met by any code on these components here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

from bench.clients import Direct, Reply, Tab, prompt
from bench.concurrency import TOKEN_DELAY, TOKENS, _direct, _through_parley, _warm
from bench.harness import (
    DAPHNE,
    PYTHON,
    SERVER_ROOT,
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
from bench.relay import _check

FLOOR_APP = "bench.floor_app:application"
FLOOR = "floor (fixed stack only)"
HTTPX = "httpx alone, no server (time to the first body chunk)"
SHORT = 200
LONG = 5000


async def _sequential(servers: dict[str, Parley], upstream: FakeUpstream, replies: int, long_runs: int) -> dict:
    direct = await Direct(upstream.port).open()
    tabs = {name: await Tab.open(s.ws_url, s.origin, s.sessions[0]) for name, s in servers.items()}
    paths = ["upstream", *tabs]
    out = {f"{p}-{kind}": [] for p in paths for kind in ("short", "long")}

    async def ask(path: str, content: str) -> Reply:
        return await (direct.ask(content) if path == "upstream" else tabs[path].ask(content))

    try:
        for i in range(3):  # warm every path
            for path in paths:
                await ask(path, prompt(SHORT, 0, f"warm-{path}-{i}"))
        for i in range(replies):
            for path in paths:  # interleaved, so load from elsewhere falls on all alike
                content = prompt(SHORT, 0, f"short-{path}-{i}")
                out[f"{path}-short"].append(_check(await ask(path, content), content, SHORT))
        for i in range(long_runs):
            for path in paths:
                content = prompt(LONG, 0, f"long-{path}-{i}")
                out[f"{path}-long"].append(_check(await ask(path, content), content, LONG))
    finally:
        await direct.close()
        for tab in tabs.values():
            await tab.close()
    return out


def _concurrent(server: Parley, n: int, tag: str) -> dict:
    server.start()
    try:
        asyncio.run(_warm(server))
        replies, _contents, cpu = asyncio.run(_through_parley(server, n, tag))
    finally:
        server.stop()
    return {"replies": replies, "cpu": cpu}


def _httpx_alone(parley: Parley, upstream: FakeUpstream, n: int) -> list[Reply]:
    """bench/floor_httpx.py in a process of its own: n streams started at once through httpx."""
    out = subprocess.run(
        [PYTHON, "-m", "bench.floor_httpx", "--base-url", upstream.base_url, "--replies", str(n)],
        cwd=SERVER_ROOT,
        env=parley.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [Reply(ttft=t, status="complete") for t in json.loads(out.stdout.strip().splitlines()[-1])]


def _ok(replies: list[Reply], attr: str) -> list[float]:
    return [getattr(r, attr) for r in replies if r.ok]


def report(seq: dict, levels: dict[tuple[int, str], dict], paths: list[str]) -> Section:
    rows = []
    targets = []
    data: dict = {}
    up_ttft = median(_ok(seq["upstream-short"], "ttft"))
    up_rate = median([LONG / t for t in _ok(seq["upstream-long"], "total")])
    for path in paths:
        short, long = seq[f"{path}-short"], seq[f"{path}-long"]
        ttft = median(_ok(short, "ttft"))
        rate = median([LONG / t for t in _ok(long, "total")])
        rows.append(
            [
                path,
                ms(ttft),
                "" if path == "upstream" else ms(ttft - up_ttft),
                ms(median(_ok(short, "total"))),
                f"{rate:,.0f}",
                "" if path == "upstream" else f"{rate / up_rate:.2f}×",
                sum(1 for r in short + long if not r.ok),
            ]
        )
        data[path] = {"ttft_added_ms": (ttft - up_ttft) * 1000, "rate_share": rate / up_rate}
    floor = data[FLOOR]
    targets += [
        Target("TTFT added by the fixed stack alone (floor)", "≤ 3 ms", f"{floor['ttft_added_ms']:.1f} ms", None),
        Target("rate through the floor", "≥ 0.5× the upstream's", f"{floor['rate_share']:.2f}×", None),
    ]
    markdown = (
        f"**One reply at a time** ({len(seq['upstream-short'])} replies of {SHORT} tokens and "
        f"{len(seq['upstream-long'])} of {LONG:,}, no delay, the three paths interleaved; ms):\n\n"
        + table(
            ["path", "TTFT median", "TTFT added", f"{SHORT}-token total", f"{LONG:,} tok/s", "÷ upstream", "errors"],
            rows,
        )
    )
    for (n, database), by_path in levels.items():
        rows = []
        up = by_path["upstream"]
        up_ttft95 = percentile(_ok(up["replies"], "ttft"), 95)
        up_total = (median(_ok(up["replies"], "total")), percentile(_ok(up["replies"], "total"), 95))
        for path, result in by_path.items():
            replies = result["replies"]
            ttft, total = _ok(replies, "ttft"), [t for t in _ok(replies, "total") if t is not None]
            added = percentile(ttft, 95) - up_ttft95
            shares = (median(total) / up_total[0], percentile(total, 95) / up_total[1])
            rows.append(
                [
                    path,
                    f"{ms(median(ttft))} / {ms(percentile(ttft, 95))}",
                    "" if path == "upstream" else ms(added),
                    f"{ms(median(total))} / {ms(percentile(total, 95))}" if total else "",
                    "" if path == "upstream" or not total else f"{shares[0]:.2f}, {shares[1]:.2f}",
                    "" if result.get("cpu") is None else f"{result['cpu']:.1f}",
                    sum(1 for r in replies if not r.ok),
                ]
            )
            if path == HTTPX:
                name = f"{n} at once, httpx alone: p95 TTFT − upstream's"
                targets.append(Target(name, "≤ 150 ms", f"{added * 1000:.0f} ms", None))
            if path == FLOOR:
                targets += [
                    Target(
                        f"{n} at once, {database}, floor: p95 TTFT − upstream's",
                        "≤ 150 ms",
                        f"{added * 1000:.0f} ms",
                        None,
                    ),
                    Target(
                        f"{n} at once, {database}, floor: total ÷ upstream's (p50, p95)",
                        "≤ 1.05",
                        f"{shares[0]:.3f}, {shares[1]:.3f} ({result['cpu']:.1f} CPU s)",
                        None,
                    ),
                ]
        markdown += (
            f"\n\n**{n} replies at once** ({TOKENS} tokens, {TOKEN_DELAY * 1000:.0f} ms apart, one daphne "
            f"process, {database}; ms as p50 / p95; server CPU is daphne's user + system seconds):\n\n"
            + table(
                ["path", "TTFT", "p95 TTFT added", "total", "total ÷ upstream (p50, p95)", "server CPU s", "errors"],
                rows,
            )
        )
    return Section(
        key="floor",
        title="7. The floor: the fixed stack alone, next to the upstream and Parley",
        markdown=markdown,
        targets=targets,
        data=data,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=30)
    parser.add_argument("--long-runs", type=int, default=5)
    parser.add_argument("--levels", default="200")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--daphne", default=DAPHNE, help="the daphne executable (default: the checkout's)")
    parser.add_argument("--json", help="also write the section as JSON here (bench.run)")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x]
    databases = [d for d in args.databases.split(",") if d]
    if "postgres" in databases and not postgres_available():
        print("PostgreSQL is not reachable on 127.0.0.1:5432: the floor runs on SQLite only", file=sys.stderr)
        databases.remove("postgres")
    members = max(levels + [1])
    by_level: dict = {}
    with FakeUpstream() as upstream:
        for database in databases:
            with Parley(upstream, database=database, members=members, daphne=args.daphne) as parley:
                servers = {FLOOR: parley.sibling(FLOOR_APP), "Parley": parley}
                if database == databases[0]:  # one at a time: on the first database only
                    for server in servers.values():
                        server.start()
                    try:
                        seq = asyncio.run(_sequential(servers, upstream, args.replies, args.long_runs))
                    finally:
                        for server in servers.values():
                            server.stop()
                for n in levels:
                    tag = f"floor-{database}-{n}-{time.time_ns()}"
                    runs = by_level[(n, database)] = {
                        "upstream": {"replies": asyncio.run(_direct(upstream, n, tag)), "cpu": None}
                    }
                    if database == databases[0]:
                        runs[HTTPX] = {"replies": _httpx_alone(parley, upstream, n), "cpu": None}
                    for name, server in servers.items():
                        runs[name] = _concurrent(server, n, f"{tag}-{name[:5]}")
    section = report(seq, by_level, ["upstream", FLOOR, "Parley"])
    emit([section], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

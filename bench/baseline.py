"""`--baseline REV` of bench.relay and bench.concurrency: an earlier revision beside this one.

A second Parley daphne runs from a ``git worktree add`` of REV (bench.harness.baseline_tree),
sharing this checkout's virtualenv, on its own temporary data folder and database migrated by
its own migrations. In the same run and interleaved (request by request one at a time; level
by level, the order rotating each round, at once), four paths are measured: the upstream
directly, the floor (bench/floor_app.py on this tree's installation), REV and this tree.
Reported: daphne's CPU ms per reply (user + system from /proc/<pid>/stat over the phase,
divided by the replies), the first token added over the upstream's, and p50/p95.

Only ratios between paths of the same run mean anything on a shared machine; the absolute
figures move with the load.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bench.clients import Direct, Reply, Tab, prompt
from bench.concurrency import TOKEN_DELAY, TOKENS, _direct, _through_parley, _warm
from bench.floor import FLOOR_APP
from bench.harness import (
    FakeUpstream,
    Parley,
    Section,
    Target,
    baseline_tree,
    emit,
    median,
    ms,
    percentile,
    short_rev,
    table,
)
from bench.relay import _check

FLOOR = "floor"
CURRENT = "this tree"
SHORT = 200
LONG = 5000
SETTLE = 0.3  # seconds for a server to finish what follows reply.done before its CPU is read


def _ok(replies: list[Reply], attr: str) -> list[float]:
    return [getattr(r, attr) for r in replies if r.ok and getattr(r, attr) is not None]


# --- one reply at a time --------------------------------------------------------------------------
async def _sequential(servers: dict[str, Parley], upstream: FakeUpstream, replies: int, long_runs: int) -> dict:
    direct = await Direct(upstream.port).open()
    tabs = {name: await Tab.open(s.ws_url, s.origin, s.sessions[0]) for name, s in servers.items()}
    paths = ["upstream", *tabs]
    out: dict = {f"{p}-{kind}": [] for p in paths for kind in ("short", "long")}
    cpu: dict = {f"{p}-{kind}": 0.0 for p in servers for kind in ("short", "long")}

    async def ask(path: str, content: str) -> Reply:
        return await (direct.ask(content) if path == "upstream" else tabs[path].ask(content))

    async def phase(kind: str, count: int, tokens: int) -> None:
        before = {name: s.stat().cpu_seconds for name, s in servers.items()}
        for i in range(count):
            for path in paths:  # interleaved, so load from elsewhere falls on all alike
                content = prompt(tokens, 0, f"{kind}-{path}-{i}-{time.time_ns()}")
                out[f"{path}-{kind}"].append(_check(await ask(path, content), content, tokens))
        await asyncio.sleep(SETTLE)
        for name, s in servers.items():
            cpu[f"{name}-{kind}"] = (s.stat().cpu_seconds - before[name]) / max(count, 1)

    try:
        for i in range(3):  # warm every path
            for path in paths:
                await ask(path, prompt(SHORT, 0, f"warm-{path}-{i}"))
        await phase("short", replies, SHORT)
        await phase("long", long_runs, LONG)
    finally:
        await direct.close()
        for tab in tabs.values():
            await tab.close()
    return {"replies": out, "cpu": cpu}


def relay_section(
    upstream: FakeUpstream, rev: str, replies: int, long_runs: int, env: dict | None = None, label: str = ""
) -> Section:
    label = label or short_rev(rev)
    with (
        baseline_tree(rev) as tree,
        Parley(upstream) as current,
        Parley(upstream, root=tree, extra_env=dict(env or {})) as base,
    ):
        servers = {FLOOR: current.sibling(FLOOR_APP), label: base, CURRENT: current}
        for server in servers.values():
            server.start()
        try:
            seq = asyncio.run(_sequential(servers, upstream, replies, long_runs))
        finally:
            for server in servers.values():
                server.stop()
    out, cpu = seq["replies"], seq["cpu"]
    up_ttft = median(_ok(out["upstream-short"], "ttft"))
    up_rate = median([LONG / t for t in _ok(out["upstream-long"], "total")])
    rows, data = [], {}
    for path in ["upstream", *servers]:
        short, long = out[f"{path}-short"], out[f"{path}-long"]
        ttft = _ok(short, "ttft")
        rate = median([LONG / t for t in _ok(long, "total")])
        is_server = path != "upstream"
        data[path] = {
            "ttft_added_ms": (median(ttft) - up_ttft) * 1000,
            "cpu_ms_short": cpu[f"{path}-short"] * 1000 if is_server else None,
            "cpu_ms_long": cpu[f"{path}-long"] * 1000 if is_server else None,
            "rate_share": rate / up_rate,
        }
        rows.append(
            [
                path,
                f"{ms(median(ttft))} / {ms(percentile(ttft, 95))}",
                ms(median(ttft) - up_ttft) if is_server else "",
                f"{cpu[f'{path}-short'] * 1000:.1f}" if is_server else "",
                f"{cpu[f'{path}-long'] * 1000:.0f}" if is_server else "",
                f"{rate / up_rate:.2f}×" if is_server else f"{rate:,.0f} tok/s",
                sum(1 for r in short + long if not r.ok),
            ]
        )
    now, floor, before = data[CURRENT], data[FLOOR], data[label]
    rows.append(
        [
            f"{CURRENT} ÷ {label}",
            "",
            f"{now['ttft_added_ms'] / before['ttft_added_ms']:.2f}×",
            f"{now['cpu_ms_short'] / before['cpu_ms_short']:.2f}×",
            f"{now['cpu_ms_long'] / before['cpu_ms_long']:.2f}×",
            f"{now['rate_share'] / before['rate_share']:.2f}×",
            "",
        ]
    )
    markdown = (
        f"{replies} replies of {SHORT} tokens and {long_runs} of {LONG:,}, no delay, the four paths interleaved "
        f"request by request; {label} runs from a git worktree of that revision on its own database. TTFT in ms "
        "(p50 / p95); CPU is daphne's user + system ms per reply over the phase.\n\n"
        + table(
            [
                "path",
                "TTFT p50 / p95",
                "TTFT added",
                f"CPU ms / {SHORT}-token reply",
                f"CPU ms / {LONG:,}-token reply",
                f"{LONG:,}-token rate ÷ upstream",
                "errors",
            ],
            rows,
        )
    )
    added, floor_added = now["ttft_added_ms"], floor["ttft_added_ms"]
    targets = [
        Target(
            "TTFT added, one reply: Parley vs the floor + 2 ms",
            "≤ floor + 2 ms",
            f"{added:.1f} ms (floor {floor_added:.1f} ms, {label} {before['ttft_added_ms']:.1f} ms)",
            added <= floor_added + 2,
        ),
        Target(
            f"CPU per {SHORT}-token reply, one at a time: ÷ {label}",
            "report",
            f"{now['cpu_ms_short'] / before['cpu_ms_short']:.2f}× ({now['cpu_ms_short']:.1f} ms)",
            None,
        ),
    ]
    return Section(
        key="relay-baseline",
        title=f"1b. One reply at a time: upstream, floor, {label} and this tree, interleaved",
        markdown=markdown,
        targets=targets,
        data=data,
    )


# --- many at once ---------------------------------------------------------------------------------
def _level(server: Parley, n: int, tag: str) -> dict:
    server.start()
    try:
        asyncio.run(_warm(server))
        replies, _contents, cpu = asyncio.run(_through_parley(server, n, tag))
    finally:
        server.stop()
    return {"replies": replies, "cpu": cpu}


def concurrency_section(
    upstream: FakeUpstream,
    rev: str,
    levels: list[int],
    databases: list[str],
    rounds: int = 2,
    env: dict | None = None,
    label: str = "",
) -> Section:
    label = label or short_rev(rev)
    members = max(levels)
    results: dict = {}
    with baseline_tree(rev) as tree:
        for database in databases:
            with (
                Parley(upstream, database=database, members=members) as current,
                Parley(upstream, database=database, members=members, root=tree, extra_env=dict(env or {})) as base,
            ):
                servers = {FLOOR: current.sibling(FLOOR_APP), label: base, CURRENT: current}
                names = list(servers)
                for n in levels:
                    runs = results[(n, database)] = {name: [] for name in ["upstream", *names]}
                    for r in range(rounds):
                        tag = f"cmp-{database}-{n}-{r}-{time.time_ns()}"
                        runs["upstream"].append({"replies": asyncio.run(_direct(upstream, n, tag)), "cpu": None})
                        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
                        for name in order:
                            runs[name].append(_level(servers[name], n, f"{tag}-{name[:5]}"))
    rows, targets, data = [], [], []
    for (n, database), runs in results.items():
        up = [r for run in runs["upstream"] for r in run["replies"]]
        up95 = percentile(_ok(up, "ttft"), 95)
        level: dict = {"n": n, "database": database}
        for name, per_round in runs.items():
            replies = [r for run in per_round for r in run["replies"]]
            ttft, total = _ok(replies, "ttft"), _ok(replies, "total")
            cpu_ms = None if name == "upstream" else sum(run["cpu"] for run in per_round) / len(replies) * 1000
            level[name] = {"ttft50": median(ttft), "ttft95": percentile(ttft, 95), "cpu_ms": cpu_ms}
            rows.append(
                [
                    f"{n}, {database}",
                    name,
                    f"{ms(median(ttft))} / {ms(percentile(ttft, 95))}",
                    "" if name == "upstream" else ms(percentile(ttft, 95) - up95),
                    f"{ms(median(total))} / {ms(percentile(total, 95))}",
                    "" if cpu_ms is None else f"{cpu_ms:.1f}",
                    sum(1 for r in replies if not r.ok),
                ]
            )
        now, before, floor = level[CURRENT]["cpu_ms"], level[label]["cpu_ms"], level[FLOOR]["cpu_ms"]
        rows.append([f"{n}, {database}", f"{CURRENT} ÷ {label}", "", "", "", f"{now / before:.2f}×", ""])
        rows.append([f"{n}, {database}", f"{CURRENT} ÷ {FLOOR}", "", "", "", f"{now / floor:.2f}×", ""])
        data.append(level)
        if n == 100:
            targets += [
                Target(
                    f"CPU per reply, 100 at once, {database}: ÷ {label}",
                    "≤ 0.6×",
                    f"{now / before:.2f}× ({now:.0f} ms; {label} {before:.0f} ms)",
                    now / before <= 0.6,
                ),
                Target(
                    f"CPU per reply, 100 at once, {database}: ÷ floor",
                    "≤ 1.2×",
                    f"{now / floor:.2f}× (floor {floor:.0f} ms)",
                    now / floor <= 1.2,
                ),
                Target(
                    f"100 at once, {database}: p95 TTFT − upstream's",
                    "≤ 500 ms",
                    f"{(level[CURRENT]['ttft95'] - up95) * 1000:.0f} ms",
                    level[CURRENT]["ttft95"] - up95 <= 0.5,
                ),
            ]
    markdown = (
        f"Every reply {TOKENS} tokens, {TOKEN_DELAY * 1000:.0f} ms apart, N sent at once; a fresh daphne per level "
        f"and path after one warm-up reply; {rounds} rounds, the order of the three servers rotating each round, "
        f"the upstream's own figure taken before each round. {label} runs from a git worktree of that revision on "
        "its own database. Times in ms as p50 / p95; CPU is daphne's user + system ms per reply.\n\n"
        + table(["N, database", "path", "TTFT", "p95 TTFT added", "total", "CPU ms / reply", "errors"], rows)
    )
    return Section(
        key="concurrency-baseline",
        title=f"3b. Many at once: upstream, floor, {label} and this tree, interleaved",
        markdown=markdown,
        targets=targets,
        data={"levels": data},
    )


def main(argv=None) -> int:
    """Only the comparison, e.g. of one setting: the baseline is REV with ``--env`` on top
    (``--baseline HEAD --env PARLEY_UPSTREAM_TRANSPORT=httpx`` with the other value in this
    process's environment, which this tree's servers inherit)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the baseline's servers")
    parser.add_argument("--label", default="", help="the baseline's name in the tables")
    parser.add_argument("--scenarios", default="relay,concurrency")
    parser.add_argument("--replies", type=int, default=30)
    parser.add_argument("--long-runs", type=int, default=3)
    parser.add_argument("--levels", default="100")
    parser.add_argument("--databases", default="sqlite")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    sections = []
    with FakeUpstream() as upstream:
        if "relay" in args.scenarios:
            sections.append(relay_section(upstream, args.baseline, args.replies, args.long_runs, env, args.label))
        if "concurrency" in args.scenarios:
            levels = [int(x) for x in args.levels.split(",")]
            databases = args.databases.split(",")
            sections.append(
                concurrency_section(upstream, args.baseline, levels, databases, args.rounds, env, args.label)
            )
    emit(sections, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

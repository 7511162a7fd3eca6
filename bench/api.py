"""The member API (issue 16): /v1/chat/completions next to the upstream directly and the websocket.

    python -m bench.api [--replies 30] [--long-tokens 5000] [--long-runs 3] [--at-once 200] [--json out.json]

1. A 200-token reply with no delay, ``--replies`` times in a row, the four paths alternating
   request by request: the upstream directly, Parley's member API (``stream: true`` with a
   member's token, the same raw HTTP/1.1 client as the direct path), Parley's websocket, and
   the floor's websocket (bench/floor_app.py on the same installation). Time to the first
   token and to the end; a 5,000-token reply's tokens per second.
2. ``--at-once`` streaming API requests at once (200 tokens, 20 ms apart, each on its own
   connection; default 100, the level issue 21 judges), after the same requests straight to
   the upstream, and then as many websocket replies: first-token percentiles, errors, and
   daphne's CPU per request on both of Parley's paths.

Every reply is checked against the exact text the upstream wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bench.clients import Direct, Reply, Shape, Tab, expected_text, prompt
from bench.concurrency import _direct, _through_parley
from bench.floor import FLOOR_APP
from bench.harness import FakeUpstream, Parley, Section, Target, _manage, emit, median, ms, percentile, table

SHORT_TOKENS = 200
AT_ONCE = Shape(tokens=200, token_delay=0.02)
WARMUP = 3
OPEN_BATCH = 25


def _check(reply: Reply, content: str, tokens: int) -> Reply:
    if reply.ok and reply.text != expected_text(content, tokens):
        reply.error = "text differs from what the upstream sent"
    return reply


PATHS = ("direct", "api", "ws", "floor")


async def _sequential(
    parley: Parley, floor: Parley, upstream: FakeUpstream, key: str, replies: int, long_tokens: int, runs: int
):
    clients = {
        "direct": await Direct(upstream.port).open(),
        "api": await Direct(parley.port, key=key).open(),
        "ws": await Tab.open(parley.ws_url, parley.origin, parley.sessions[0]),
        "floor": await Tab.open(floor.ws_url, floor.origin, parley.sessions[0]),
    }
    results: dict[str, list[Reply]] = {k: [] for p in PATHS for k in (p, f"{p}_long")}
    try:
        for i in range(WARMUP):
            content = prompt(SHORT_TOKENS, 0, f"warm-{i}")
            for client in clients.values():
                await client.ask(content)
        for i in range(replies):
            content = prompt(SHORT_TOKENS, 0, f"short-{i}")
            for path, client in clients.items():
                results[path].append(_check(await client.ask(content), content, SHORT_TOKENS))
        for i in range(runs):
            content = prompt(long_tokens, 0, f"long-{i}")
            for path, client in clients.items():
                results[f"{path}_long"].append(_check(await client.ask(content), content, long_tokens))
    finally:
        for client in clients.values():
            await client.close()
    return results


async def _at_once(parley: Parley, key: str, n: int) -> tuple[list[Reply], float]:
    clients = []
    for i in range(0, n, OPEN_BATCH):
        clients += await asyncio.gather(*(Direct(parley.port, key=key).open() for _ in range(min(OPEN_BATCH, n - i))))
    contents = [AT_ONCE.prompt(f"once-{i}") for i in range(n)]
    try:
        before = parley.stat().cpu_seconds
        replies = await asyncio.gather(*(c.ask(t) for c, t in zip(clients, contents, strict=True)))
        cpu = parley.stat().cpu_seconds - before
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return [_check(r, t, AT_ONCE.tokens) for r, t in zip(replies, contents, strict=True)], cpu


def _ok(replies: list[Reply], attr: str) -> list[float]:
    return [getattr(r, attr) for r in replies if r.ok]


def report(results: dict, at_once: dict, replies: int, long_tokens: int) -> Section:
    rows = []
    paths = (
        ("direct", "upstream directly"),
        ("api", "Parley /v1/ (member API)"),
        ("ws", "Parley websocket"),
        ("floor", "the floor's websocket"),
    )
    for key, label in paths:
        ttft, total = _ok(results[key], "ttft"), _ok(results[key], "total")
        long = [long_tokens / r.total for r in results[f"{key}_long"] if r.ok]
        errors = sum(1 for k in (key, f"{key}_long") for r in results[k] if not r.ok)
        rows.append(
            [label, ms(median(ttft)), ms(percentile(ttft, 95)), ms(median(total)), f"{median(long):,.0f}", errors]
        )
    added = median(_ok(results["api"], "ttft")) - median(_ok(results["direct"], "ttft"))
    ws_added = median(_ok(results["ws"], "ttft")) - median(_ok(results["direct"], "ttft"))
    floor_added = median(_ok(results["floor"], "ttft")) - median(_ok(results["direct"], "ttft"))
    rate = median([long_tokens / r.total for r in results["api_long"] if r.ok]) / median(
        [long_tokens / r.total for r in results["direct_long"] if r.ok]
    )
    n = at_once["n"]
    once = {}
    for path in ("direct", "api", "ws"):
        got = at_once[path]
        ttft = _ok(got, "ttft")
        once[path] = {
            "ttft50": median(ttft),
            "ttft95": percentile(ttft, 95),
            "errors": sum(1 for r in got if not r.ok),
            "first_errors": sorted({r.error or r.status for r in got if not r.ok})[:3],
            "cpu_ms": at_once.get(f"{path}_cpu", 0.0) * 1000 / max(n, 1),
        }
    api_added95 = once["api"]["ttft95"] - once["direct"]["ttft95"]
    ws_added95 = once["ws"]["ttft95"] - once["direct"]["ttft95"]
    once_rows = [
        [
            label,
            f"{ms(once[path]['ttft50'])} / {ms(once[path]['ttft95'])}",
            "" if path == "direct" else ms(once[path]["ttft95"] - once["direct"]["ttft95"]),
            "" if path == "direct" else f"{once[path]['cpu_ms']:.1f}",
            str(once[path]["errors"]) + (f" ({'; '.join(once[path]['first_errors'])})" if once[path]["errors"] else ""),
        ]
        for path, label in paths[:3]
    ]
    markdown = (
        f"{replies} replies of {SHORT_TOKENS} tokens (no delay) per path, interleaved; *tokens/s* is a "
        f"{long_tokens:,}-token reply from sending to its end (median of {len(results['api_long'])}).\n\n"
        + table(["path", "TTFT median", "TTFT p95", "total median", "tokens/s", "errors"], rows)
        + f"\n\nFirst token added over the upstream: member API {added * 1000:.1f} ms, websocket "
        f"{ws_added * 1000:.1f} ms, the floor {floor_added * 1000:.1f} ms.\n\n"
        f"{n} streaming requests at once ({AT_ONCE.tokens} tokens, {AT_ONCE.token_delay * 1000:.0f} ms apart), "
        "the upstream's first, then the member API's, then the websocket's, on the same daphne. Times in ms as "
        "p50 / p95; CPU is daphne's user + system ms per request.\n\n"
        + table(["path", "TTFT", "p95 TTFT added", "CPU ms / reply", "errors"], once_rows)
    )
    return Section(
        key="api",
        title="Member API: /v1/chat/completions beside the upstream and the websocket",
        markdown=markdown,
        targets=[
            Target(
                "member API: first token added, one reply: vs the floor + 2 ms",
                "≤ floor + 2 ms",
                f"{added * 1000:.1f} ms (floor {floor_added * 1000:.1f} ms, websocket {ws_added * 1000:.1f} ms)",
                added <= floor_added + 0.002,
            ),
            Target("member API: long reply rate", "≥ 0.5× the upstream's", f"{rate:.2f}×", rate >= 0.5),
            Target(
                f"member API: {n} at once, p95 TTFT − upstream's",
                "≤ 500 ms",
                f"{api_added95 * 1000:.0f} ms (websocket {ws_added95 * 1000:.0f} ms)",
                once["api"]["errors"] == 0 and api_added95 <= 0.5,
            ),
            Target(
                f"member API: {n} at once, CPU per request (websocket)",
                "report",
                f"{once['api']['cpu_ms']:.0f} ms ({once['ws']['cpu_ms']:.0f} ms)",
                None,
            ),
        ],
        data={
            "added_ttft_ms": added * 1000,
            "ws_added_ttft_ms": ws_added * 1000,
            "floor_added_ttft_ms": floor_added * 1000,
            "rate_share": rate,
            "at_once": n,
            **{f"at_once_{path}": values for path, values in once.items()},
        },
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=30)
    parser.add_argument("--long-tokens", type=int, default=5000)
    parser.add_argument("--long-runs", type=int, default=3)
    parser.add_argument("--at-once", type=int, default=100)
    parser.add_argument("--json", help="also write the sections as JSON here (bench.run)")
    args = parser.parse_args(argv)
    n = args.at_once
    with FakeUpstream() as upstream, Parley(upstream, members=n) as parley:
        key = _manage(parley.env, "api_token", "create", "bench-0000", "--name", "bench").strip()
        floor = parley.sibling(FLOOR_APP)
        parley.start()
        floor.start()
        try:
            results = asyncio.run(
                _sequential(parley, floor, upstream, key, args.replies, args.long_tokens, args.long_runs)
            )
        finally:
            floor.stop()
        tag = f"api-once-{time.time_ns()}"
        at_once: dict = {"n": n, "direct": asyncio.run(_direct(upstream, n, tag, AT_ONCE))}
        at_once["api"], at_once["api_cpu"] = asyncio.run(_at_once(parley, key, n))
        at_once["ws"], _contents, at_once["ws_cpu"] = asyncio.run(_through_parley(parley, n, tag, AT_ONCE))
        parley.stop()
    emit([report(results, at_once, args.replies, args.long_tokens)], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

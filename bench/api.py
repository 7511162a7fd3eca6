"""The member API (issue 16): /v1/chat/completions next to the upstream directly and the websocket.

    python -m bench.api [--replies 30] [--long-tokens 5000] [--long-runs 3] [--at-once 200] [--json out.json]

1. A 200-token reply with no delay, ``--replies`` times in a row, the three paths alternating
   request by request: the upstream directly, Parley's member API (``stream: true`` with a
   member's token, the same raw HTTP/1.1 client as the direct path), and Parley's websocket.
   Time to the first token and to the end; a 5,000-token reply's tokens per second.
2. ``--at-once`` streaming API requests at once (200 tokens, 20 ms apart, each on its own
   connection): first-token percentiles, errors, and daphne's CPU per request.

Every reply is checked against the exact text the upstream wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench.clients import Direct, Reply, Tab, expected_text, prompt
from bench.harness import FakeUpstream, Parley, Section, Target, _manage, emit, median, ms, percentile, table

SHORT_TOKENS = 200
AT_ONCE_TOKENS = 200
AT_ONCE_DELAY = 0.02
WARMUP = 3
OPEN_BATCH = 25


def _check(reply: Reply, content: str, tokens: int) -> Reply:
    if reply.ok and reply.text != expected_text(content, tokens):
        reply.error = "text differs from what the upstream sent"
    return reply


async def _sequential(parley: Parley, upstream: FakeUpstream, key: str, replies: int, long_tokens: int, runs: int):
    direct = await Direct(upstream.port).open()
    api = await Direct(parley.port, key=key).open()
    tab = await Tab.open(parley.ws_url, parley.origin, parley.sessions[0])
    results: dict[str, list[Reply]] = {k: [] for k in ("direct", "api", "ws", "direct_long", "api_long", "ws_long")}
    try:
        for i in range(WARMUP):
            content = prompt(SHORT_TOKENS, 0, f"warm-{i}")
            await direct.ask(content)
            await api.ask(content)
            await tab.ask(content)
        for i in range(replies):
            content = prompt(SHORT_TOKENS, 0, f"short-{i}")
            results["direct"].append(_check(await direct.ask(content), content, SHORT_TOKENS))
            results["api"].append(_check(await api.ask(content), content, SHORT_TOKENS))
            results["ws"].append(_check(await tab.ask(content), content, SHORT_TOKENS))
        for i in range(runs):
            content = prompt(long_tokens, 0, f"long-{i}")
            results["direct_long"].append(_check(await direct.ask(content), content, long_tokens))
            results["api_long"].append(_check(await api.ask(content), content, long_tokens))
            results["ws_long"].append(_check(await tab.ask(content), content, long_tokens))
    finally:
        await tab.close()
        await api.close()
        await direct.close()
    return results


async def _at_once(parley: Parley, key: str, n: int) -> tuple[list[Reply], float]:
    clients = []
    for i in range(0, n, OPEN_BATCH):
        clients += await asyncio.gather(*(Direct(parley.port, key=key).open() for _ in range(min(OPEN_BATCH, n - i))))
    contents = [prompt(AT_ONCE_TOKENS, AT_ONCE_DELAY, f"once-{i}") for i in range(n)]
    try:
        before = parley.stat().cpu_seconds
        replies = await asyncio.gather(*(c.ask(t) for c, t in zip(clients, contents, strict=True)))
        cpu = parley.stat().cpu_seconds - before
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return [_check(r, t, AT_ONCE_TOKENS) for r, t in zip(replies, contents, strict=True)], cpu


def _ok(replies: list[Reply], attr: str) -> list[float]:
    return [getattr(r, attr) for r in replies if r.ok]


def report(results: dict, at_once: list[Reply], cpu: float, replies: int, long_tokens: int) -> Section:
    rows = []
    paths = (("direct", "upstream directly"), ("api", "Parley /v1/ (member API)"), ("ws", "Parley websocket"))
    for key, label in paths:
        ttft, total = _ok(results[key], "ttft"), _ok(results[key], "total")
        long = [long_tokens / r.total for r in results[f"{key}_long"] if r.ok]
        errors = sum(1 for k in (key, f"{key}_long") for r in results[k] if not r.ok)
        rows.append(
            [label, ms(median(ttft)), ms(percentile(ttft, 95)), ms(median(total)), f"{median(long):,.0f}", errors]
        )
    added = median(_ok(results["api"], "ttft")) - median(_ok(results["direct"], "ttft"))
    ws_added = median(_ok(results["ws"], "ttft")) - median(_ok(results["direct"], "ttft"))
    rate = median([long_tokens / r.total for r in results["api_long"] if r.ok]) / median(
        [long_tokens / r.total for r in results["direct_long"] if r.ok]
    )
    once_ttft = _ok(at_once, "ttft")
    once_errors = sum(1 for r in at_once if not r.ok)
    first_errors = sorted({r.error or r.status for r in at_once if not r.ok})[:3]
    n = len(at_once)
    markdown = (
        f"{replies} replies of {SHORT_TOKENS} tokens (no delay) per path, interleaved; *tokens/s* is a "
        f"{long_tokens:,}-token reply from sending to its end (median of {len(results['api_long'])}).\n\n"
        + table(["path", "TTFT median", "TTFT p95", "total median", "tokens/s", "errors"], rows)
        + f"\n\nFirst token added over the upstream: member API {added * 1000:.1f} ms, websocket "
        f"{ws_added * 1000:.1f} ms.\n\n"
        f"{n} streaming API requests at once ({AT_ONCE_TOKENS} tokens, {AT_ONCE_DELAY * 1000:.0f} ms apart): "
        f"TTFT p50 {ms(median(once_ttft))}, p95 {ms(percentile(once_ttft, 95))}, errors {once_errors}"
        + (f" ({'; '.join(first_errors)})" if first_errors else "")
        + f"; daphne CPU {cpu * 1000 / max(n, 1):.1f} ms per request."
    )
    return Section(
        key="api",
        title="Member API: /v1/chat/completions beside the upstream and the websocket",
        markdown=markdown,
        targets=[
            Target("member API: first token added (median)", "≤ 3 ms", f"{added * 1000:.1f} ms", added <= 0.003),
            Target("member API: long reply rate", "≥ 0.5× the upstream's", f"{rate:.2f}×", rate >= 0.5),
            Target(f"member API: {n} streams at once, errors", "0", str(once_errors), once_errors == 0),
        ],
        data={
            "added_ttft_ms": added * 1000,
            "ws_added_ttft_ms": ws_added * 1000,
            "rate_share": rate,
            "at_once": n,
            "at_once_ttft50": median(once_ttft),
            "at_once_ttft95": percentile(once_ttft, 95),
            "at_once_errors": once_errors,
            "cpu_ms_per_request": cpu * 1000 / max(n, 1),
        },
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=30)
    parser.add_argument("--long-tokens", type=int, default=5000)
    parser.add_argument("--long-runs", type=int, default=3)
    parser.add_argument("--at-once", type=int, default=200)
    parser.add_argument("--json", help="also write the sections as JSON here (bench.run)")
    args = parser.parse_args(argv)
    with FakeUpstream() as upstream, Parley(upstream) as parley:
        key = _manage(parley.env, "api_token", "create", "bench-0000", "--name", "bench").strip()
        parley.start()
        results = asyncio.run(_sequential(parley, upstream, key, args.replies, args.long_tokens, args.long_runs))
        at_once, cpu = asyncio.run(_at_once(parley, key, args.at_once))
    emit([report(results, at_once, cpu, args.replies, args.long_tokens)], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

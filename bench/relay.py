"""Scenarios 1 and 2: one reply at a time, through Parley and straight from the upstream.

    python -m bench.relay [--replies 50] [--long-tokens 5000] [--long-runs 5] [--json out.json]

1. A 200-token reply with no delay between tokens, ``--replies`` times in a row: time to the
   first token and to the last, median and p95. Parley's rows are a new chat each time (the
   conversation is created by the send) and follow-ups in one conversation (history growing).
2. A 5,000-token reply with no delay: tokens per second, to the end of the reply (for Parley,
   the arrival of ``reply.done``, which comes after the final save).

The two paths alternate request by request, so a burst of load from elsewhere on the machine
falls on both alike. Every Parley reply is checked against the exact text the upstream wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench.clients import Direct, Reply, Tab, expected_text, prompt
from bench.harness import FakeUpstream, Parley, Section, Target, emit, median, ms, percentile, ratio, table

SHORT_TOKENS = 200
WARMUP = 3


def _check(reply: Reply, content: str, tokens: int) -> Reply:
    if reply.ok and reply.text != expected_text(content, tokens):
        reply.error = "text differs from what the upstream sent"
    return reply


async def _measure(parley: Parley, upstream: FakeUpstream, replies: int, long_tokens: int, long_runs: int) -> dict:
    direct = await Direct(upstream.port).open()
    tab = await Tab.open(parley.ws_url, parley.origin, parley.sessions[0])
    follow = await Tab.open(parley.ws_url, parley.origin, parley.sessions[0])
    results: dict[str, list[Reply]] = {"direct": [], "new": [], "follow": [], "direct_long": [], "parley_long": []}
    try:
        # Warm both paths: imports, statement caches and the upstream connection pool.
        for i in range(WARMUP):
            content = prompt(SHORT_TOKENS, 0, f"warm-{i}")
            await direct.ask(content)
            await tab.ask(content)
        first = await follow.ask(prompt(SHORT_TOKENS, 0, "follow-0"))
        conversation = first.conversation_id
        for i in range(replies):
            content = prompt(SHORT_TOKENS, 0, f"short-{i}")
            results["direct"].append(_check(await direct.ask(content), content, SHORT_TOKENS))
            results["new"].append(_check(await tab.ask(content), content, SHORT_TOKENS))
            content = prompt(SHORT_TOKENS, 0, f"follow-{i + 1}")
            results["follow"].append(
                _check(await follow.ask(content, conversation_id=conversation), content, SHORT_TOKENS)
            )
        for i in range(long_runs):
            content = prompt(long_tokens, 0, f"long-{i}")
            results["direct_long"].append(_check(await direct.ask(content), content, long_tokens))
            results["parley_long"].append(_check(await tab.ask(content), content, long_tokens))
    finally:
        await tab.close()
        await follow.close()
        await direct.close()
    return results


def _row(label: str, replies: list[Reply]) -> list:
    ttft = [r.ttft for r in replies if r.ok]
    total = [r.total for r in replies if r.ok]
    errors = sum(1 for r in replies if not r.ok)
    return [
        label,
        ms(median(ttft)),
        ms(percentile(ttft, 95)),
        ms(median(total)),
        ms(percentile(total, 95)),
        errors,
    ]


def report(results: dict, replies: int, long_tokens: int) -> tuple[Section, Section]:
    def ok(key, attr):
        return [getattr(r, attr) for r in results[key] if r.ok]

    d_ttft, d_total = median(ok("direct", "ttft")), median(ok("direct", "total"))
    rows = [
        _row("upstream directly", results["direct"]),
        _row("Parley, new chat each time", results["new"]),
        _row("Parley, follow-ups in one conversation", results["follow"]),
    ]
    added = {}
    for key, label in (("new", "new chat"), ("follow", "follow-up")):
        p_ttft, p_total = median(ok(key, "ttft")), median(ok(key, "total"))
        added[key] = p_ttft - d_ttft
        rows.append(
            [
                f"Parley ({label}) − upstream",
                ms(p_ttft - d_ttft),
                "",
                ms(p_total - d_total),
                "",
                "",
            ]
        )
        rows.append([f"Parley ({label}) ÷ upstream", ratio(p_ttft, d_ttft), "", ratio(p_total, d_total), "", ""])
    errors = sum(1 for key in ("direct", "new", "follow") for r in results[key] if not r.ok)
    first_errors = [r.error for key in ("direct", "new", "follow") for r in results[key] if not r.ok][:3]
    markdown = (
        f"{replies} replies of {SHORT_TOKENS} tokens, no delay between tokens, one after another; "
        "times in ms from sending to the first token (TTFT) and to the end of the reply.\n\n"
        + table(["path", "TTFT median", "TTFT p95", "total median", "total p95", "errors"], rows)
    )
    if first_errors:
        markdown += "\n\nFirst errors: " + "; ".join(first_errors)
    worst_added = max(added.values())
    one = Section(
        key="single",
        title=f"1. One {SHORT_TOKENS}-token reply, {replies} times in a row",
        markdown=markdown,
        targets=[
            Target("TTFT added by Parley (median)", "≤ 3 ms", f"{worst_added * 1000:.1f} ms", worst_added <= 0.003),
            Target("errors", "0", str(errors), errors == 0),
        ],
        data={"added_ttft_ms": {k: v * 1000 for k, v in added.items()}, "errors": errors},
    )

    def rate(key):
        return [long_tokens / r.total for r in results[key] if r.ok]

    d_rate, p_rate = median(rate("direct_long")), median(rate("parley_long"))

    def streaming(key):
        return [long_tokens / (r.total - r.ttft) for r in results[key] if r.ok and r.total > r.ttft]

    long_rows = []
    for key, label in (("direct_long", "upstream directly"), ("parley_long", "Parley")):
        long_rows.append(
            [
                label,
                f"{median(rate(key)):,.0f}",
                f"{median(streaming(key)):,.0f}",
                ms(median(ok(key, "ttft"))),
                ms(median(ok(key, "total"))),
                sum(1 for r in results[key] if not r.ok),
            ]
        )
    share = p_rate / d_rate if d_rate else float("nan")
    stream_share = median(streaming("parley_long")) / median(streaming("direct_long"))
    long_rows.append(["Parley ÷ upstream", f"{share:.2f}×", f"{stream_share:.2f}×", "", "", ""])
    long_errors = sum(1 for key in ("direct_long", "parley_long") for r in results[key] if not r.ok)
    two = Section(
        key="long",
        title=f"2. One {long_tokens:,}-token reply, no delay",
        markdown=(
            f"Median of {len(results['direct_long'])} runs. *tokens/s* counts from sending to the end of the reply "
            "(judged); *streaming tokens/s* from the first token to the end.\n\n"
            + table(["path", "tokens/s", "streaming tokens/s", "TTFT ms", "total ms", "errors"], long_rows)
        ),
        targets=[
            Target("rate through Parley", "≥ 0.5× the upstream's", f"{share:.2f}×", share >= 0.5),
            Target("errors", "0", str(long_errors), long_errors == 0),
        ],
        data={"direct_rate": d_rate, "parley_rate": p_rate, "share": share, "streaming_share": stream_share},
    )
    return one, two


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=50)
    parser.add_argument("--long-tokens", type=int, default=5000)
    parser.add_argument("--long-runs", type=int, default=5)
    parser.add_argument(
        "--baseline", metavar="REV", help="also run REV beside this tree, interleaved (bench/baseline.py)"
    )
    parser.add_argument("--json", help="also write the sections as JSON here (bench.run)")
    args = parser.parse_args(argv)
    with FakeUpstream() as upstream:
        with Parley(upstream) as parley:
            parley.start()
            results = asyncio.run(_measure(parley, upstream, args.replies, args.long_tokens, args.long_runs))
        sections = list(report(results, args.replies, args.long_tokens))
        if args.baseline:
            from bench.baseline import relay_section

            sections.append(relay_section(upstream, args.baseline, args.replies, args.long_runs))
    emit(sections, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

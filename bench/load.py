"""Issue 21's loads beyond scenario 3: a late reply, a realistic upstream, two workers.

    python -m bench.load [--only late,realistic,spread,workers] [--streaming 200] [--realistic 100]
                         [--spread-n 100] [--spread 2] [--workers-n 200] [--rounds 1] [--json out.json]

1. **A late reply** (``late``): ``--streaming`` members' replies stream at once (1,000 tokens,
   20 ms apart: 20 s, so all are still streaming); once every one of them has its first token,
   one more member sends, three times one after another. Its first token, over the upstream's
   own for the same request, is what a member feels who sends while the others stream: it must
   not wait behind them (goal: at most 500 ms over the upstream's, the bound issue 21 sets at
   100 at once).
2. **A realistic upstream** (``realistic``): ``--realistic`` replies at once, the upstream's
   first token after 300 ms, then one every 30 ms (200 tokens); p95 first token through Parley
   less the upstream's own p95 for the same N requests made straight to it just before (goal:
   at most 100 ms); the floor (bench/floor_app.py) on the same installation beside it.
3. **Sends spread out** (``spread``): ``--spread-n`` replies (200 tokens, 20 ms apart) sent one
   after another, evenly over ``--spread`` seconds, through the floor and Parley: CPU per reply
   and first tokens when starts and streams overlap, as they do in a team's day (reported).
4. **Two workers** (``workers``): the team deployment's shape on this machine, PostgreSQL and
   Redis (channel layer and cache, database index ``PARLEY_BENCH_REDIS``), ``--workers-n``
   replies at once through Debian's nginx running deploy/nginx.conf (as tests/deploy does; two
   ports, the tabs alternating, when nginx is not installed), one worker and two, the order
   rotating each round. Reported: throughput (replies finished a second), first-token p50/p95,
   and CPU per reply: the daphne workers', Redis's and nginx's. Redis is the machine's shared
   server, so its CPU includes whatever else used it at the time.

Every reply is checked against the exact text the upstream wrote; see bench/harness.py for the
servers' settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.clients import Direct, Reply, Shape, Tab, expected_text
from bench.concurrency import SHAPE, _direct, _gather_in_batches, _through_parley, _warm
from bench.floor import FLOOR, FLOOR_APP
from bench.harness import (
    FakeUpstream,
    Parley,
    Section,
    Target,
    emit,
    free_port,
    median,
    ms,
    percentile,
    postgres_available,
    proc_stat,
    table,
)

LATE_BACKGROUND = Shape(tokens=1000, token_delay=0.02)
LATE = Shape(tokens=50, token_delay=0.02)
LATE_REPLIES = 3
LATE_GOAL = 0.5
REALISTIC = Shape(tokens=200, token_delay=0.03, first_token_delay=0.3)
REALISTIC_GOAL = 0.1
SPREAD = 2.0  # seconds over which the spread load's sends come
WORKERS = Shape(tokens=200, token_delay=0.02)
REDIS_URL = os.environ.get("PARLEY_BENCH_REDIS", "redis://127.0.0.1:6379/7")
APP = "config.asgi:application"


def _ok(replies: list[Reply], attr: str) -> list[float]:
    return [getattr(r, attr) for r in replies if r.ok and getattr(r, attr) is not None]


def _checked(reply: Reply, content: str, shape: Shape) -> Reply:
    if reply.ok and reply.text != expected_text(content, shape.tokens):
        reply.error = "streamed text differs from what the upstream sent"
    return reply


# --- 1. a late reply into many streaming ones -----------------------------------------------------
async def _late(parley: Parley, upstream: FakeUpstream, n: int) -> dict:
    direct = await Direct(upstream.port).open()
    try:
        own = [(await direct.ask(LATE.prompt(f"late-own-{i}-{time.time_ns()}"))).ttft for i in range(5)]
    finally:
        await direct.close()
    late_tab = await Tab.open(parley.ws_url, parley.origin, parley.sessions[n])
    tabs = await _gather_in_batches(
        [lambda s=s: Tab.open(parley.ws_url, parley.origin, s) for s in parley.sessions[:n]]
    )
    background = [Reply() for _ in range(n)]
    contents = [LATE_BACKGROUND.prompt(f"streaming-{i}-{time.time_ns()}") for i in range(n)]
    late: list[Reply] = []
    streaming_at_send: list[int] = []
    try:
        await asyncio.sleep(0.5)
        tasks = [
            asyncio.create_task(t.ask(c, reply=r, timeout=300))
            for t, c, r in zip(tabs, contents, background, strict=True)
        ]
        started = time.perf_counter()
        while any(r.ttft is None and not r.error for r in background) and time.perf_counter() - started < 120:
            await asyncio.sleep(0.01)
        all_streaming_after = time.perf_counter() - started
        for i in range(LATE_REPLIES):
            streaming_at_send.append(sum(1 for r in background if r.ttft is not None and r.total is None))
            content = LATE.prompt(f"late-{i}-{time.time_ns()}")
            late.append(_checked(await late_tab.ask(content), content, LATE))
        await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(t.close() for t in [*tabs, late_tab]), return_exceptions=True)
    for reply, content in zip(background, contents, strict=True):
        _checked(reply, content, LATE_BACKGROUND)
    return {
        "own_ttft": median([t for t in own if t is not None]),
        "late": late,
        "streaming_at_send": streaming_at_send,
        "all_streaming_after": all_streaming_after,
        "background_errors": sum(1 for r in background if not r.ok),
    }


def late_section(upstream: FakeUpstream, n: int) -> Section:
    with Parley(upstream, members=n + 1) as parley:
        parley.start()
        try:
            asyncio.run(_warm(parley))
            result = asyncio.run(_late(parley, upstream, n))
        finally:
            parley.stop()
    late = result["late"]
    ttft = _ok(late, "ttft")
    added = [t - result["own_ttft"] for t in ttft]
    worst = max(added) if added else float("nan")
    errors = sum(1 for r in late if not r.ok)
    markdown = (
        f"{n} replies of {LATE_BACKGROUND.tokens:,} tokens {LATE_BACKGROUND.token_delay * 1000:.0f} ms apart "
        f"streaming from one daphne process (SQLite); every one had its first token "
        f"{result['all_streaming_after']:.1f} s after they were sent. Then one more member sent "
        f"{LATE_REPLIES} replies one after another ({LATE.tokens} tokens); the upstream's own first token for "
        f"the same request, alone: {ms(result['own_ttft'])} ms.\n\n"
        + table(
            ["late reply", "replies streaming when sent", "TTFT ms", "added over the upstream's ms", "errors"],
            [
                [
                    i + 1,
                    result["streaming_at_send"][i],
                    ms(r.ttft or float("nan")),
                    ms((r.ttft or 0) - result["own_ttft"]),
                    0 if r.ok else r.error,
                ]
                for i, r in enumerate(late)
            ],
        )
        + f"\n\nErrors among the {n} streaming replies: {result['background_errors']}."
    )
    return Section(
        key="late",
        title=f"8. One late reply sent into {n} streaming ones",
        markdown=markdown,
        targets=[
            Target(
                f"late reply into {n} streaming: TTFT added (worst of {LATE_REPLIES})",
                f"≤ {LATE_GOAL * 1000:.0f} ms",
                f"{worst * 1000:.0f} ms (median {median(added) * 1000:.0f} ms)",
                errors == 0 and result["background_errors"] == 0 and worst <= LATE_GOAL,
            )
        ],
        data={
            "n": n,
            "added_ms": [a * 1000 for a in added],
            "streaming_at_send": result["streaming_at_send"],
            "errors": errors,
            "background_errors": result["background_errors"],
        },
    )


def _floor_and_parley(
    upstream: FakeUpstream, n: int, tag: str, shape: Shape, spread: float = 0.0
) -> dict[str, tuple[list[Reply], float]]:
    """N replies through the floor (bench/floor_app.py: the fixed stack alone), then through
    Parley, on one installation: {path: (replies, daphne's CPU seconds)}."""
    runs = {}
    with Parley(upstream, members=n) as parley:
        for name, server in ((FLOOR, parley.sibling(FLOOR_APP)), ("Parley", parley)):
            server.start()
            try:
                asyncio.run(_warm(server))
                got, _contents, cpu = asyncio.run(_through_parley(server, n, f"{tag}-{name[:5]}", shape, spread=spread))
            finally:
                server.stop()
            runs[name] = (got, cpu)
    return runs


# --- 2. a realistic upstream ------------------------------------------------------------------------
def realistic_section(upstream: FakeUpstream, n: int) -> Section:
    tag = f"realistic-{time.time_ns()}"
    direct = asyncio.run(_direct(upstream, n, tag, REALISTIC))
    runs: dict[str, tuple[list[Reply], float | None]] = {"upstream directly": (direct, None)}
    runs.update(_floor_and_parley(upstream, n, tag, REALISTIC))
    rows, data = [], {}
    for name, (got, cpu) in runs.items():
        ttft, total = _ok(got, "ttft"), _ok(got, "total")
        data[name] = {"ttft50": median(ttft), "ttft95": percentile(ttft, 95)}
        rows.append(
            [
                name,
                f"{ms(median(ttft))} / {ms(percentile(ttft, 95))}",
                f"{ms(median(total))} / {ms(percentile(total, 95))}",
                "" if cpu is None else f"{cpu / n * 1000:.1f}",
                sum(1 for r in got if not r.ok),
            ]
        )
    own = data["upstream directly"]["ttft95"]
    added = data["Parley"]["ttft95"] - own
    floor_added = data[FLOOR]["ttft95"] - own
    replies = runs["Parley"][0]
    errors = sum(1 for r in replies if not r.ok)
    markdown = (
        f"{n} replies at once, one daphne process (SQLite); the upstream answers each after "
        f"{REALISTIC.first_token_delay * 1000:.0f} ms, then a token every {REALISTIC.token_delay * 1000:.0f} ms "
        f"({REALISTIC.tokens} tokens). Times in ms as p50 / p95; CPU is daphne's ms per reply.\n\n"
        + table(["path", "TTFT", "total", "CPU ms / reply", "errors"], rows)
    )
    return Section(
        key="realistic",
        title=f"9. A realistic upstream (first token after 300 ms, then 30 ms a token), {n} at once",
        markdown=markdown,
        targets=[
            Target(
                f"realistic upstream, {n} at once: p95 TTFT added",
                f"≤ {REALISTIC_GOAL * 1000:.0f} ms",
                f"{added * 1000:.0f} ms (floor {floor_added * 1000:.0f} ms)",
                errors == 0 and added <= REALISTIC_GOAL,
            )
        ],
        data={
            **data,
            "cpu_ms": (runs["Parley"][1] or 0) / n * 1000,
            "floor_cpu_ms": (runs[FLOOR][1] or 0) / n * 1000,
            "errors": errors,
            "added_ms": added * 1000,
            "floor_added_ms": floor_added * 1000,
        },
    )


# --- 4. sends spread over a few seconds -------------------------------------------------------------
def spread_section(upstream: FakeUpstream, n: int, spread: float) -> Section:
    """N replies whose sends are spread evenly over ``spread`` seconds, the floor and Parley on one
    installation: CPU per reply and first tokens when starts and streams overlap, as they do
    when members do not all press send in the same millisecond (at once, a process does all the
    starts first and then all the streaming, which costs less CPU than the two interleaved)."""
    runs = _floor_and_parley(upstream, n, f"spread-{time.time_ns()}", SHAPE, spread)
    rows, data = [], {}
    for name, (got, cpu) in runs.items():
        ttft = _ok(got, "ttft")
        data[name] = {"ttft50": median(ttft), "ttft95": percentile(ttft, 95), "cpu_ms": cpu / n * 1000}
        rows.append(
            [
                name,
                f"{ms(median(ttft))} / {ms(percentile(ttft, 95))}",
                f"{cpu / n * 1000:.1f}",
                sum(1 for r in got if not r.ok),
            ]
        )
    errors = sum(1 for r in runs["Parley"][0] if not r.ok)
    ratio = data["Parley"]["cpu_ms"] / data[FLOOR]["cpu_ms"]
    markdown = (
        f"{n} replies ({SHAPE.tokens} tokens, {SHAPE.token_delay * 1000:.0f} ms apart) sent one every "
        f"{spread / n * 1000:.0f} ms over {spread:.0f} s, one daphne process (SQLite); each reply's first token "
        "counts from its own send. CPU is daphne's ms per reply.\n\n"
        + table(["path", "TTFT p50 / p95", "CPU ms / reply", "errors"], rows)
    )
    return Section(
        key="spread",
        title=f"11. {n} replies sent over {spread:.0f} s",
        markdown=markdown,
        targets=[
            Target(
                f"{n} sent over {spread:.0f} s: CPU per reply ÷ floor, p95 TTFT",
                "report",
                f"{ratio:.2f}× ({data['Parley']['cpu_ms']:.0f} ms; floor {data[FLOOR]['cpu_ms']:.0f} ms), "
                f"{ms(data['Parley']['ttft95'])} ms",
                None,
            )
        ],
        data={**data, "errors": errors},
    )


# --- 3. two workers behind nginx on PostgreSQL and Redis ------------------------------------------
def _redis_pid() -> int | None:
    import redis

    with contextlib.suppress(Exception):
        return int(redis.Redis.from_url(REDIS_URL).info("server")["process_id"])
    return None


def _redis_flush() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def _tree_cpu(pid: int | None) -> float:
    """CPU seconds of ``pid`` and its children (nginx's master and worker)."""
    if pid is None:
        return 0.0
    total = 0.0
    with contextlib.suppress(OSError):
        total += proc_stat(pid).cpu_seconds
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += _tree_cpu(int(child))
    return total


@contextlib.contextmanager
def _nginx(ports: list[int]):
    """Debian's nginx with deploy/nginx.conf over ``ports`` (tests/deploy/nginx.py fills it the
    way the image does); yields (its port, its pid), or None when nginx is not installed."""
    from tests.deploy import nginx

    binary = nginx.nginx_binary()
    if binary is None:
        yield None
        return
    prefix = Path(tempfile.mkdtemp(prefix="parley-bench-nginx-"))
    port = free_port()
    (prefix / "static").mkdir()
    (prefix / "extra").mkdir()
    server_conf = prefix / "parley.conf"
    server_conf.write_text(
        nginx.render(
            {
                "PARLEY_LISTEN": f"127.0.0.1:{port}",
                "PARLEY_UPSTREAM_SERVERS": " ".join(f"server 127.0.0.1:{p};" for p in ports),
                "PARLEY_STATIC_DIR": str(prefix / "static"),
                "PARLEY_PROXY_TIMEOUT": "120s",
                "PARLEY_EXTRA_CONF_DIR": str(prefix / "extra"),
            }
        )
    )
    # The image's default of 1,024 connections a worker; each socket is two (client and daphne).
    main = nginx.main_config(prefix, server_conf).replace("worker_connections 256", "worker_connections 4096")
    (prefix / "nginx.conf").write_text(main)
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{(prefix / 'error.log').read_text(errors='replace')}")
            time.sleep(0.02)
        yield port, proc.pid
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(prefix, ignore_errors=True)


def _workers_run(first: Parley, count: int, n: int, tag: str) -> dict:
    servers = [first] + [first.sibling(APP) for _ in range(count - 1)]
    for server in servers:
        server.start()
    try:
        for server in servers:
            asyncio.run(_warm(server))
        with _nginx([s.port for s in servers]) as proxy:
            if proxy:
                port, nginx_pid = proxy
                fronts = [(f"ws://127.0.0.1:{port}/ws/chat/", f"http://127.0.0.1:{port}")]
            else:
                nginx_pid, fronts = None, [(s.ws_url, s.origin) for s in servers]
            redis_pid = _redis_pid()
            others_before = _tree_cpu(redis_pid), _tree_cpu(nginx_pid)
            started = time.perf_counter()
            replies, _contents, cpu = asyncio.run(
                _through_parley(
                    first, n, tag, WORKERS, fronts=fronts, cpu_of=lambda: sum(s.stat().cpu_seconds for s in servers)
                )
            )
            wall = time.perf_counter() - started
            redis_cpu = _tree_cpu(redis_pid) - others_before[0]
            nginx_cpu = _tree_cpu(nginx_pid) - others_before[1]
    finally:
        for server in servers:
            server.stop()
    return {
        "replies": replies,
        "wall": wall,
        "cpu": cpu,
        "redis_cpu": redis_cpu,
        "nginx_cpu": nginx_cpu,
        "through": "nginx" if nginx_pid else "two ports",
    }


def workers_section(upstream: FakeUpstream, n: int, rounds: int) -> Section:
    runs: dict[int, list[dict]] = {1: [], 2: []}
    up: list[Reply] = []
    _redis_flush()
    with Parley(upstream, database="postgres", members=n, extra_env={"REDIS_URL": REDIS_URL}) as first:
        for r in range(rounds):
            tag = f"workers-{r}-{time.time_ns()}"
            up += asyncio.run(_direct(upstream, n, tag, WORKERS))
            for count in [1, 2] if r % 2 == 0 else [2, 1]:
                runs[count].append(_workers_run(first, count, n, f"{tag}-{count}"))
    up95 = percentile(_ok(up, "ttft"), 95)
    rows, data = [], {}
    for count, per_round in runs.items():
        replies = [x for run in per_round for x in run["replies"]]
        ttft, total = _ok(replies, "ttft"), _ok(replies, "total")
        done = len(per_round) * n
        cpu = sum(run["cpu"] for run in per_round) / done * 1000
        redis_cpu = sum(run["redis_cpu"] for run in per_round) / done * 1000
        nginx_cpu = sum(run["nginx_cpu"] for run in per_round) / done * 1000
        rate = median([n / run["wall"] for run in per_round])
        data[count] = {
            "ttft50": median(ttft),
            "ttft95": percentile(ttft, 95),
            "rate": rate,
            "cpu_ms": cpu,
            "redis_cpu_ms": redis_cpu,
            "nginx_cpu_ms": nginx_cpu,
            "errors": sum(1 for x in replies if not x.ok),
            "first_errors": sorted({x.error or x.status or "no reply" for x in replies if not x.ok})[:3],
            "through": per_round[0]["through"],
        }
        rows.append(
            [
                f"{count} worker{'s' if count > 1 else ''}",
                f"{ms(median(ttft))} / {ms(percentile(ttft, 95))}",
                ms(percentile(ttft, 95) - up95),
                f"{ms(median(total))} / {ms(percentile(total, 95))}",
                f"{rate:.1f}",
                f"{cpu:.1f} + {redis_cpu:.1f} + {nginx_cpu:.1f} = {cpu + redis_cpu + nginx_cpu:.1f}",
                f"{data[count]['errors']}"
                + (f" ({'; '.join(data[count]['first_errors'])})" if data[count]["errors"] else ""),
            ]
        )
    through = data[2]["through"]
    markdown = (
        f"{n} replies at once ({WORKERS.tokens} tokens, {WORKERS.token_delay * 1000:.0f} ms apart), PostgreSQL and "
        f"Redis, through {'nginx with deploy/nginx.conf (least_conn)' if through == 'nginx' else 'two ports'}; "
        f"{rounds} round(s), the order rotating; the upstream's own p95 TTFT for the same {n} requests: "
        f"{ms(up95)} ms. Throughput is replies finished a second (all {n} sent at once, so it is {n} ÷ the "
        "time to the last one). CPU ms per reply: the daphne workers' + Redis's + nginx's.\n\n"
        + table(
            ["workers", "TTFT p50 / p95", "p95 TTFT added", "total p50 / p95", "replies/s", "CPU ms / reply", "errors"],
            rows,
        )
    )
    one, two = data[1], data[2]
    return Section(
        key="workers",
        title=f"10. Two daphne workers on PostgreSQL and Redis, {n} at once",
        markdown=markdown,
        targets=[
            Target(f"two workers, {n} at once: errors", "0", str(two["errors"]), two["errors"] == 0),
            Target(
                f"two workers, {n} at once: throughput, p95 TTFT added (one worker)",
                "report",
                f"{two['rate']:.1f}/s, {(two['ttft95'] - up95) * 1000:.0f} ms "
                f"(one: {one['rate']:.1f}/s, {(one['ttft95'] - up95) * 1000:.0f} ms)",
                None,
            ),
            Target(
                f"two workers, {n} at once: CPU per reply with Redis and nginx (one worker)",
                "report",
                f"{two['cpu_ms'] + two['redis_cpu_ms'] + two['nginx_cpu_ms']:.0f} ms "
                f"(one: {one['cpu_ms'] + one['redis_cpu_ms'] + one['nginx_cpu_ms']:.0f} ms)",
                None,
            ),
        ],
        data={str(k): v for k, v in data.items()} | {"upstream_ttft95": up95},
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="late,realistic,spread,workers")
    parser.add_argument("--streaming", type=int, default=200, help="replies streaming when the late one is sent")
    parser.add_argument("--realistic", type=int, default=100, help="replies at once from the realistic upstream")
    parser.add_argument("--spread-n", type=int, default=100, help="replies sent over --spread seconds")
    parser.add_argument("--spread", type=float, default=SPREAD, help="seconds over which they are sent")
    parser.add_argument("--workers-n", type=int, default=200, help="replies at once over the workers")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of one worker and two")
    parser.add_argument("--json", help="also write the sections as JSON here (bench.run)")
    args = parser.parse_args(argv)
    only = args.only.split(",")
    sections = []
    with FakeUpstream() as upstream:
        if "late" in only:
            sections.append(late_section(upstream, args.streaming))
        if "realistic" in only:
            sections.append(realistic_section(upstream, args.realistic))
        if "spread" in only:
            sections.append(spread_section(upstream, args.spread_n, args.spread))
        if "workers" in only:
            if postgres_available() and _redis_pid() is not None:
                sections.append(workers_section(upstream, args.workers_n, args.rounds))
            else:
                print("PostgreSQL or Redis is not reachable: the two-workers rows are skipped", file=sys.stderr)
    emit(sections, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

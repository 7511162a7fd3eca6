"""Scenario 5: start-up time and memory of one daphne process.

    python -m bench.footprint [--starts 5] [--venv .venv-prod] [--json out.json]

Start-up is the time from starting daphne to its first 200 on ``/healthz`` (migrations
already applied, as after ``make setup``); the first start is reported on its own, since
it may find the disk cache cold. Memory is the process's resident set (VmRSS) at three
points of the last start: right after that first 200; after one signed-in load of the chat
page; and idle two seconds after one whole reply over the websocket (the figure the target
is about: everything a reply needs has been imported by then).

daphne runs from ``--venv``: by default ``.venv-prod``, which ``make bench`` fills from
requirements.txt alone, as the Docker image is. The checkout's own .venv also holds the test
tools, and httpx imports one of them (Pygments, for its command line) when it finds it:
2.3 MB that no deployment carries. Without ``.venv-prod`` the checkout's venv is measured and
the table says so.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from bench.clients import Tab, prompt
from bench.harness import DAPHNE, ROOT, FakeUpstream, Parley, Section, Target, emit, http_get, median, table

PRODUCTION_VENV = ROOT / ".venv-prod"


async def _one_reply(parley: Parley) -> None:
    tab = await Tab.open(parley.ws_url, parley.origin, parley.sessions[0])
    try:
        reply = await tab.ask(prompt(200, 0, "footprint"))
        if not reply.ok:
            raise RuntimeError(f"the reply failed: {reply.error}\n{parley.log_tail()}")
    finally:
        await tab.close()


def _daphne(venv: Path | None) -> tuple[str, str]:
    """The daphne to measure, and how to describe its install."""
    venv = venv or PRODUCTION_VENV
    daphne = venv / "bin" / "daphne"
    if daphne.exists():
        try:
            where = str(venv.resolve().relative_to(ROOT))
        except ValueError:
            where = str(venv)
        if venv == PRODUCTION_VENV:
            where += " (requirements.txt only, as the Docker image)"
        return str(daphne), where
    return DAPHNE, ".venv (the checkout's, with the test tools: `make bench` builds .venv-prod)"


def measure(starts: int, venv: Path | None = None) -> dict:
    daphne, install = _daphne(venv)
    with FakeUpstream() as upstream, Parley(upstream, static=True, daphne=daphne) as parley:
        times = []
        for i in range(starts):
            parley.start()
            times.append(parley.startup_seconds)
            if i < starts - 1:
                parley.stop()
        after_start = parley.stat().rss_mb
        status, body = http_get(f"{parley.origin}/", cookie=f"sessionid={parley.sessions[0]}")
        if status != 200:
            raise RuntimeError(f"the chat page answered {status}:\n{parley.log_tail()}")
        after_page = parley.stat().rss_mb
        asyncio.run(_one_reply(parley))
        time.sleep(2)
        stat = parley.stat()
        parley.stop()
    return {
        "startup_first": times[0],
        "startup_median": median(times[1:] or times),
        "startup_all": times,
        "rss_after_start": after_start,
        "rss_after_page": after_page,
        "rss_idle_after_reply": stat.rss_mb,
        "peak_rss": stat.peak_rss_mb,
        "install": install,
    }


def report(data: dict) -> Section:
    later = data["startup_all"][1:] or data["startup_all"]
    rows = [
        ["daphne installed in", data.get("install", ".venv")],
        ["start-up to the first 200 on /healthz, first start", f"{data['startup_first']:.2f} s"],
        [f"start-up, median of the next {len(later)}", f"{data['startup_median']:.2f} s"],
        ["RSS right after start-up", f"{data['rss_after_start']:.0f} MB"],
        ["RSS after one signed-in chat page", f"{data['rss_after_page']:.0f} MB"],
        ["RSS idle, 2 s after one whole reply", f"{data['rss_idle_after_reply']:.0f} MB"],
        ["peak RSS so far (VmHWM)", f"{data['peak_rss']:.0f} MB"],
    ]
    worst_start = max(data["startup_first"], data["startup_median"])
    return Section(
        key="footprint",
        title="5. Start-up and idle memory (one daphne process, SQLite)",
        markdown=table(["measure", "value"], rows),
        targets=[
            Target(
                "idle memory",
                "≤ 150 MB",
                f"{data['rss_idle_after_reply']:.0f} MB",
                data["rss_idle_after_reply"] <= 150,
            ),
            Target("start-up to the first 200 on /healthz", "≤ 3 s", f"{worst_start:.2f} s", worst_start <= 3),
        ],
        data=data,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--venv", type=Path, help="the virtualenv to run daphne from (default: .venv-prod)")
    parser.add_argument("--json", help="also write the section as JSON here (bench.run)")
    args = parser.parse_args(argv)
    emit([report(measure(args.starts, args.venv))], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

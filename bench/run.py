"""Every benchmark, one after another, written to docs/performance.md (`make bench`).

    python -m bench.run [--only relay,concurrency,...] [--quick] [--no-write] [--baseline [REV]]

Each scenario runs in its own process (``python -m bench.<scenario> --json ...``), so none
inherits another's Django setup or event loop; this module collects their sections and
rewrites the part of docs/performance.md between the ``bench:results`` markers. The notes
around the markers (what the profiles showed) are written by hand and kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import (
    BENCH_SETTINGS,
    DEFAULT_BASELINE,
    PYTHON,
    ROOT,
    loadavg,
    machine,
    postgres_available,
    table,
    targets_table,
)

DOC = ROOT / "docs" / "performance.md"
START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"

# name: (module, arguments, arguments with --quick)
SCENARIOS = {
    "relay": ("bench.relay", [], ["--replies", "10", "--long-runs", "2"]),
    "concurrency": ("bench.concurrency", [], ["--levels", "10,100"]),
    "queries-sqlite": ("bench.queries", ["--database", "sqlite"], ["--database", "sqlite", "--runs", "10"]),
    "queries-postgres": ("bench.queries", ["--database", "postgres"], ["--database", "postgres", "--runs", "10"]),
    "footprint": ("bench.footprint", ["--starts", "3"], ["--starts", "2"]),
    "page": ("bench.page_weight", [], []),
    "api": ("bench.api", [], ["--replies", "10", "--long-runs", "1"]),
    "load": ("bench.load", [], ["--rounds", "1"]),
    "retrieval-sqlite": ("bench.retrieval", ["--database", "sqlite"], ["--database", "sqlite", "--chunks", "10000"]),
    "retrieval-postgres": (
        "bench.retrieval",
        ["--database", "postgres"],
        ["--database", "postgres", "--chunks", "10000"],
    ),
    "search-sqlite": ("bench.search", ["--database", "sqlite"], ["--database", "sqlite", "--runs", "50"]),
    "search-postgres": ("bench.search", ["--database", "postgres"], ["--database", "postgres", "--runs", "50"]),
    "local-embeddings": ("bench.local_embeddings", [], ["--passages", "64", "--haystack", "500"]),
    "floor": ("bench.floor", [], ["--replies", "10", "--long-runs", "2", "--levels", "10", "--databases", "sqlite"]),
}

SKELETON = f"""# Performance

How fast Parley is next to talking to the model directly, measured by `make bench`
(`python -m bench.run`; each scenario also runs alone, e.g. `python -m bench.relay`).
Issue 9 sets the targets. Everything runs on 127.0.0.1: the fake OpenAI upstream
(tests/fakeupstream.py) and Parley (daphne) as separate processes, driven by a client in a third.

{START}
{END}
"""


def _git_revision() -> str:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    return rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


# Scenarios that can run an earlier revision beside this tree (bench/baseline.py).
BASELINE_SCENARIOS = ("relay", "concurrency")


def run_scenario(name: str, quick: bool, workdir: Path, baseline: str | None = None) -> tuple[list[dict], dict]:
    module, args, quick_args = SCENARIOS[name]
    args, quick_args = list(args), list(quick_args)
    if baseline and name in BASELINE_SCENARIOS:
        args += ["--baseline", baseline]
        quick_args += ["--baseline", baseline]
    out = workdir / f"{name}.json"
    load_before = loadavg()
    started = time.perf_counter()
    print(f"== {name}: python -m {module} {' '.join(quick_args if quick else args)}", flush=True)
    result = subprocess.run([PYTHON, "-m", module, *(quick_args if quick else args), "--json", str(out)], cwd=ROOT)
    info = {
        "seconds": time.perf_counter() - started,
        "load_before": load_before,
        "load_after": loadavg(),
        "returncode": result.returncode,
    }
    if result.returncode != 0 or not out.exists():
        return [], info
    return json.loads(out.read_text()), info


def _load(values) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def render(sections: list[dict], runs: dict, started: dt.datetime, quick: bool, info: dict) -> str:
    settings = ", ".join(f"`{k}={v}`" for k, v in BENCH_SETTINGS.items() if k.startswith("PARLEY_"))
    lines = [
        START,
        "",
        f"## Results of {started:%Y-%m-%d %H:%M} UTC" + (" (quick run: fewer repetitions)" if quick else ""),
        "",
        table(
            ["machine", ""],
            [
                ["CPUs (nproc)", info["nproc"]],
                ["CPU", info["cpu"]],
                ["memory", f"{info['memory_gb']} GB"],
                ["Python", info["python"]],
                ["kernel", info["kernel"]],
                ["Parley revision", _git_revision()],
                ["load average (1/5/15 min) at the start", _load(info["loadavg"])],
            ],
            align="ll",
        ),
        "",
        "The machine is shared: other work was running during the measurements. The load average before and "
        "after each scenario is in the last table; relay times and CPU-bound figures are stretched when it is "
        "above the 2 CPUs. Bench servers run with " + settings + " and the in-memory channel layer (no Redis).",
        "",
        "### Targets",
        "",
    ]
    targets = []
    for section in sections:
        targets += section["targets"]
    from bench.harness import Target

    lines.append(targets_table([Target(**t) for t in targets]) if targets else "No scenario produced results.")
    failed = [name for name, r in runs.items() if r["returncode"]]
    if failed:
        lines += ["", f"**Failed scenarios** (their output is on the console): {', '.join(failed)}."]
    for section in sections:
        lines += ["", f"### {section['title']}", "", section["markdown"]]
    lines += [
        "",
        "### Runs",
        "",
        table(
            ["scenario", "seconds", "load before", "load after", "exit"],
            [
                [name, f"{r['seconds']:.0f}", _load(r["load_before"]), _load(r["load_after"]), r["returncode"]]
                for name, r in runs.items()
            ],
        ),
        "",
        END,
    ]
    return "\n".join(lines)


def write(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else SKELETON
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(head + block + tail)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for trying the scripts out")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        nargs="?",
        const=DEFAULT_BASELINE,
        help=f"run REV (default {DEFAULT_BASELINE}) beside this tree in relay and concurrency, interleaved",
    )
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    if "queries-postgres" in names and not postgres_available():
        print("PostgreSQL is not reachable on 127.0.0.1:5432: skipping queries-postgres", file=sys.stderr)
        names.remove("queries-postgres")
    started = dt.datetime.now(dt.UTC)
    info = machine()
    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-run-"))
    # One collectstatic for every scenario that serves the chat page.
    os.environ["PARLEY_BENCH_STATIC_ROOT"] = str(workdir / "static")
    sections, runs = [], {}
    try:
        for name in names:
            result, runs[name] = run_scenario(name, args.quick, workdir, args.baseline)
            sections += result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    block = render(sections, runs, started, args.quick, info)
    failed = [n for n, r in runs.items() if r["returncode"]]
    if not args.no_write and not args.only:
        write(block)
        print(f"\nwritten to {DOC.relative_to(ROOT)}")
    elif not args.no_write:
        # A partial run must not replace the full results.
        print("\n(--only: docs/performance.md left as it was)")
    print(f"total {sum(r['seconds'] for r in runs.values()):.0f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

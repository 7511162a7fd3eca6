"""List pinned packages that have newer releases on PyPI: ``make outdated``.

Vulnerability databases are not reachable from the project's machines, so security releases
are taken by keeping the pins current: this lists every ``name==version`` pin in the
requirements files whose package has a newer release, asking PyPI through pip's own client
(``pip index versions``, final releases only). It changes nothing; bump the pins by hand,
re-run the tests, and keep the loose ranges in pyproject.toml in step.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")
_LATEST = re.compile(r"^\S+ \(([^)]+)\)")


class Pin(NamedTuple):
    name: str  # as written in the file
    version: str
    files: tuple[str, ...]


def read_pins(paths: list[Path]) -> dict[str, Pin]:
    """Every ``name==version`` line of ``paths``, by canonical name (comments and ``-r`` skipped)."""
    pins: dict[str, Pin] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            match = _PIN.match(line.strip())
            if not match:
                continue
            name, pinned = match.groups()
            key = canonicalize_name(name)
            known = pins.get(key)
            files = (*known.files, path.name) if known else (path.name,)
            pins[key] = Pin(known.name if known else name, known.version if known else pinned, files)
    return pins


def latest_release(name: str) -> str | None:
    """The newest final release of ``name`` on the package index pip is configured with."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )
    match = _LATEST.match(result.stdout.strip())
    return match.group(1) if match else None


def is_newer(latest: str | None, pinned: str) -> bool:
    try:
        return latest is not None and Version(latest) > Version(pinned)
    except InvalidVersion:
        return False


def outdated(pins: dict[str, Pin], latest=latest_release, workers: int = 4) -> list[tuple[Pin, str]]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        newest = dict(zip(pins, pool.map(lambda pin: latest(pin.name), pins.values()), strict=True))
    return sorted(
        ((pin, newest[key]) for key, pin in pins.items() if is_newer(newest[key], pin.version)),
        key=lambda item: canonicalize_name(item[0].name),
    )


def report(rows: list[tuple[Pin, str]], checked: int) -> str:
    if not rows:
        return f"All {checked} pinned packages are at their newest release."
    width = max(len(pin.name) for pin, _ in rows)
    lines = [f"{pin.name:<{width}}  {pin.version} -> {latest}  ({', '.join(pin.files)})" for pin, latest in rows]
    return "\n".join([*lines, f"{len(rows)} of {checked} pinned packages have newer releases."])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="requirements files (default: requirements*.txt)")
    args = parser.parse_args(argv)
    files = args.files or sorted(ROOT.glob("requirements*.txt"))
    pins = read_pins(files)
    print(report(outdated(pins), len(pins)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

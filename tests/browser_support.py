"""Debian's chromium through Playwright, launched the same way by every browser test and the bench.

Kept outside ``tests/browser/`` so that the admin browser tests and ``bench.page_weight`` can import
it without pulling in that package's conftest (its session fixtures start daphne).
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
# Chromium's sandbox cannot start in this container; the other flags stop chromium's own
# background traffic (updates, sync, QUIC), so what the network sees is what the page asked for.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def launch_chromium(playwright):
    """Start Debian's chromium from a running ``sync_playwright()``; the caller closes it."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

"""Scenario 6: the first load of the chat page in a real browser, signed in.

    python -m bench.page_weight [--json out.json]

Debian's chromium through Playwright, a fresh profile (empty cache), signed in with a session
cookie, opens ``/`` of a member who has three conversations, and waits until the network is
idle and the websocket is open. Requests and bytes come from the Chrome DevTools Protocol's
Network domain: every HTTP request the page made (``requestWillBeSent``), and the bytes each
response took on the wire (``loadingFinished.encodedDataLength``: headers plus the body as
sent, compressed when the server compressed it). The websocket is counted apart. A second
load in the same tab (warm cache) is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from urllib.parse import urlsplit

from bench.clients import Tab, prompt
from bench.harness import FakeUpstream, Parley, Section, Target, emit, table
from tests.browser_support import launch_chromium

CONVERSATIONS = 3


class NetworkLog:
    """What the page asked for and received, from CDP Network events."""

    def __init__(self, cdp):
        self.requests: dict[str, dict] = {}
        self.websockets: list[str] = []
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.dataReceived", self._data)
        cdp.on("Network.loadingFinished", self._finished)
        cdp.on("Network.loadingFailed", self._failed)
        cdp.on("Network.webSocketCreated", lambda e: self.websockets.append(e["url"]))

    def _sent(self, event):
        url = event["request"]["url"]
        if url.startswith("data:"):
            return
        self.requests.setdefault(
            event["requestId"],
            {"url": url, "type": event.get("type", ""), "status": None, "wire": 0, "body": 0, "encoding": ""},
        )

    def _response(self, event):
        entry = self.requests.get(event["requestId"])
        if entry is not None:
            response = event["response"]
            entry["status"] = response["status"]
            headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
            entry["encoding"] = headers.get("content-encoding", "")
            entry["cached"] = response.get("fromDiskCache") or response.get("fromMemoryCache")

    def _data(self, event):
        entry = self.requests.get(event["requestId"])
        if entry is not None:
            entry["body"] += event.get("dataLength", 0)

    def _finished(self, event):
        entry = self.requests.get(event["requestId"])
        if entry is not None:
            entry["wire"] = event.get("encodedDataLength", 0)
            entry["done"] = True

    def _failed(self, event):
        entry = self.requests.get(event["requestId"])
        if entry is not None:
            entry["failed"] = event.get("errorText", "failed")

    def summary(self) -> dict:
        entries = list(self.requests.values())
        return {
            "requests": len(entries),
            "wire_bytes": sum(e["wire"] for e in entries),
            "body_bytes": sum(e["body"] for e in entries),
            "failed": [e["url"] for e in entries if e.get("failed")],
            "from_cache": sum(1 for e in entries if e.get("cached")),
            "websockets": len(self.websockets),
            "entries": entries,
        }


async def _conversations(parley: Parley) -> None:
    tab = await Tab.open(parley.ws_url, parley.origin, parley.sessions[0])
    try:
        for i in range(CONVERSATIONS):
            reply = await tab.ask(prompt(60, 0, f"page-{i}"))
            if not reply.ok:
                raise RuntimeError(f"setting up a conversation failed: {reply.error}")
    finally:
        await tab.close()


def _load(page, cdp, url: str, wait_socket: int) -> dict:
    log = NetworkLog(cdp)
    started = time.perf_counter()
    page.goto(url, wait_until="networkidle")
    deadline = time.monotonic() + 10
    while len(log.websockets) < wait_socket and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    page.wait_for_timeout(1000)  # anything the page fetches late still counts
    summary = log.summary()
    summary["seconds"] = time.perf_counter() - started
    return summary


def measure() -> dict:
    from playwright.sync_api import sync_playwright

    with FakeUpstream() as upstream, Parley(upstream, static=True) as parley:
        parley.start()
        asyncio.run(_conversations(parley))
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                context = browser.new_context()
                context.add_cookies([{"name": "sessionid", "value": parley.sessions[0], "url": parley.origin}])
                page = context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.send("Network.enable")
                first = _load(page, cdp, f"{parley.origin}/", wait_socket=1)
                cdp.detach()
                cdp = context.new_cdp_session(page)
                cdp.send("Network.enable")
                second = _load(page, cdp, f"{parley.origin}/", wait_socket=1)
                title = page.title()
            finally:
                browser.close()
        parley.stop()
    return {"first": first, "second": second, "title": title}


def report(data: dict) -> Section:
    first, second = data["first"], data["second"]
    rows = []
    for entry in sorted(first["entries"], key=lambda e: -e["wire"]):
        parts = urlsplit(entry["url"])
        name = parts.path if parts.netloc.startswith("127.0.0.1") else entry["url"]
        rows.append(
            [
                f"`{name}`",
                entry["type"],
                entry["status"],
                entry["encoding"] or "none",
                f"{entry['wire']:,}",
                f"{entry['body']:,}",
            ]
        )
    kb = first["wire_bytes"] / 1024
    markdown = (
        table(
            ["load", "HTTP requests", "of which from cache", "on the wire", "decoded bodies", "websockets", "failed"],
            [
                [
                    "first (empty cache)",
                    first["requests"],
                    first["from_cache"],
                    f"{kb:,.1f} KB",
                    f"{first['body_bytes'] / 1024:,.1f} KB",
                    first["websockets"],
                    len(first["failed"]),
                ],
                [
                    "second (same tab, warm cache)",
                    second["requests"],
                    second["from_cache"],
                    f"{second['wire_bytes'] / 1024:,.1f} KB",
                    f"{second['body_bytes'] / 1024:,.1f} KB",
                    second["websockets"],
                    len(second["failed"]),
                ],
            ],
        )
        + "\n\nRequests of the first load, largest first (bytes):\n\n"
        + table(["path", "type", "status", "content-encoding", "on the wire", "decoded body"], rows)
    )
    return Section(
        key="page",
        title="6. First load of the chat page (chromium, signed in)",
        markdown=markdown,
        targets=[
            Target("first load: requests", "≤ 20", str(first["requests"]), first["requests"] <= 20),
            Target("first load: bytes on the wire", "≤ 150 KB", f"{kb:,.1f} KB", kb <= 150),
        ],
        data={k: {kk: vv for kk, vv in v.items()} if isinstance(v, dict) else v for k, v in data.items()},
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the section as JSON here (bench.run)")
    args = parser.parse_args(argv)
    emit([report(measure())], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

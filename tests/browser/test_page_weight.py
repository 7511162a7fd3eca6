"""Issue 5 and issue 9 item 6: the chat page's first load makes at most 20 requests and moves
at most 150 KB on the wire (compressed sizes, headers included), measured by the browser."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_chat import open_new_chat, send, wait_reply_done

pytestmark = pytest.mark.browser

MAX_REQUESTS = 20
MAX_BYTES = 150 * 1024


def measure_first_load(page, url: str) -> dict:
    """Load ``url`` with an empty cache and count what crossed the network (DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.clearBrowserCache")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    requests: dict[str, str] = {}
    sizes: dict[str, int] = {}
    sockets: list[str] = []
    cdp.on("Network.requestWillBeSent", lambda e: requests.setdefault(e["requestId"], e["request"]["url"]))
    cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], e["encodedDataLength"]))
    cdp.on("Network.webSocketCreated", lambda e: sockets.append(e["url"]))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": False})
    return {
        "requests": len(requests) + len(sockets),
        "bytes": sum(sizes.values()),
        "items": sorted((sizes.get(rid, 0), url) for rid, url in requests.items()),
        "sockets": sockets,
    }


def report(name: str, result: dict) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lines = [f"{name}: {result['requests']} requests, {result['bytes']} bytes on the wire"]
    lines += [f"  {size:>8}  {url}" for size, url in result["items"]] + [f"  socket    {u}" for u in result["sockets"]]
    (ARTIFACTS / f"page-weight-{name}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def test_the_empty_chat_page_is_light(alice_page, watch):
    result = measure_first_load(alice_page, "/new/")
    report("new-chat", result)
    assert result["requests"] <= MAX_REQUESTS
    assert result["bytes"] <= MAX_BYTES
    watch.assert_clean()


def test_a_conversation_with_code_is_light_too(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Code please [[fake reply="```python\\nprint(1)\\n```" tokens=3]]')
    wait_reply_done(page)
    result = measure_first_load(page, page.url)
    report("conversation-with-code", result)
    # highlight.js is fetched because the conversation has code; still within the budget.
    assert any("highlight" in url for _size, url in result["items"])
    assert result["requests"] <= MAX_REQUESTS
    assert result["bytes"] <= MAX_BYTES
    watch.assert_clean()

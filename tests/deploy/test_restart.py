"""docs/security.md T43: a worker is restarted (SIGTERM: a deploy, ``docker compose restart``) while
five replies stream through it.

Every tab is told (close 1012, "service restart", which the browser answers by reconnecting);
every reply is saved as ``interrupted`` with the text it had, at once, not after the sweep's
staleness bound; the upstream requests are closed; and after the restart a tab that opens the
conversation sees the saved text. (A worker that dies without SIGTERM is the sweep's case:
test_multiprocess.py.)
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.deploy.client import NetTab

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.multiprocess, pytest.mark.timeout(300)]

SLOW = "[[fake tokens=400 token_delay=0.05]]"  # about 20 s of reply
TABS = 5


async def frames_until_closed(tab: NetTab, timeout: float = 30) -> int:
    """Fold frames into the tab until the server closes the socket; the close code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await tab.next(timeout=deadline - time.monotonic())
        except ConnectionClosed:
            return tab.ws.close_code
    raise AssertionError("the socket stayed open")


async def test_sigterm_mid_reply_saves_every_reply_interrupted_and_tells_every_tab(deployment):
    worker = deployment.start_worker("worker-restart")
    sessions = [deployment.sessions["alice"], deployment.sessions["bob"]]
    tabs = [await NetTab.open(worker.port, sessions[i % 2]) for i in range(TABS)]
    replies = []
    for i, tab in enumerate(tabs):
        conversation, reply = await tab.new_chat(f"restart-{i} {SLOW}", client_id=f"restart-{i}")
        replies.append((conversation, reply))
    for tab, (_, reply) in zip(tabs, replies, strict=True):
        await tab.until(lambda f, reply=reply: f["type"] == "reply.delta" and f["message_id"] == reply and f["offset"])

    stopped_at = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(frames_until_closed(tab) for tab in tabs))
    exit_code = await asyncio.to_thread(worker.process.wait, 30)
    stopped_in = time.monotonic() - stopped_at

    assert codes == [1012] * TABS, codes
    assert exit_code == 0, worker.log_tail()
    rows = deployment.query(
        "SELECT id::text, status, content, error_code FROM chat_message WHERE id::text = ANY(%s)",
        ([reply for _, reply in replies],),
    )
    assert len(rows) == TABS
    for reply_id, status, content, error_code in rows:
        assert (status, error_code) == ("interrupted", "server_restart"), reply_id
        tab = tabs[[r for _, r in replies].index(reply_id)]
        # Everything the tab was shown is in the saved text, which stops far short of the end.
        assert content and content.startswith(tab.texts[reply_id]) and len(content.split()) < 400
    # The upstream saw each request closed: nothing is generated (or billed) after the restart.
    requests = [r for r in deployment.upstream_requests() if "restart-" in r["body"]["messages"][-1]["content"]]
    assert len(requests) == TABS and all(r["disconnected_at"] for r in requests)
    assert stopped_in < 20, stopped_in

    # After the restart, a tab that opens the conversation sees the text that was saved.
    again = deployment.start_worker("worker-restarted")
    tab = await NetTab.open(again.port, sessions[0])
    try:
        conversation, reply = replies[0]
        await tab.send({"type": "subscribe", "conversation_id": conversation})
        state = await tab.until(lambda f: f["type"] == "conversation.state")
        message = next(m for m in state["messages"] if m["id"] == reply)
        assert message["status"] == "interrupted"
        assert message["content"] == next(content for rid, _, content, _ in rows if rid == reply)
    finally:
        await tab.close()

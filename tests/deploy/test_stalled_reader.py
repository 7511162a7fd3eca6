"""docs/security.md T42: a member's browser stops reading (and answering pings) during a long reply.

The worker must drop that socket once daphne's ping goes unanswered, without holding the
reply hostage (it belongs to the conversation: it finishes and is saved), without growing
without bound, and without slowing anyone else on the same worker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time

import pytest

from tests.deploy.client import NetTab
from tests.deploy.conftest import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.multiprocess, pytest.mark.timeout(300)]

PING_INTERVAL, PING_TIMEOUT = 1, 2  # seconds: daphne's --ping-interval and --ping-timeout
LONG = "[[fake tokens=6000 token_delay=0.003]]"  # about 20 s of reply
SHORT = "[[fake tokens=30 token_delay=0.01]]"


class StalledSocket:
    """A websocket client that sends one frame and then never reads nor answers a ping.

    Its receive buffer is made small, so the server's writes back up at once.
    """

    def __init__(self, port: int, session: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/chat/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: https://127.0.0.1:{port}\r\nCookie: sessionid={session}\r\n"
                "X-Forwarded-Proto: https\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:  # one byte at a time: not a byte of the frames after it
            byte = self.sock.recv(1)
            assert byte, head
            head += byte
        assert head.split(b"\r\n", 1)[0].split()[1] == b"101", head

    def send_text(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        size = len(payload)
        if size < 126:
            header = bytes([0x81, 0x80 | size])
        elif size < 65536:
            header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
        else:
            header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def closed_by_server(self, timeout: float) -> bool:
        """Read what is buffered until the server's end of the connection (not answering pings)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return False

    def close(self) -> None:
        self.sock.close()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def reply_row(deployment, client_id: str):
    rows = deployment.query(
        "SELECT r.id, r.status, length(r.content) FROM chat_message q JOIN chat_message r"
        " ON r.conversation_id = q.conversation_id AND r.role = 'assistant' WHERE q.client_id = %s",
        (client_id,),
    )
    return rows[0] if rows else None


async def test_a_stalled_reader_is_dropped_its_reply_saved_and_no_one_else_slowed(deployment):
    worker = deployment.start_worker(
        "worker-stall", PARLEY_WS_PING_INTERVAL=str(PING_INTERVAL), PARLEY_WS_PING_TIMEOUT=str(PING_TIMEOUT)
    )
    # The same short reply for bob on this worker before anything stalls: the yardstick.
    bob = await NetTab.open(worker.port, deployment.sessions["bob"])
    try:
        started = time.monotonic()
        _, before = await bob.new_chat(f"before {SHORT}", client_id="bob-before")
        await bob.reply_done(before)
        quiet_seconds = time.monotonic() - started
        rss_before = rss_mb(worker.pid)

        stalled = StalledSocket(worker.port, deployment.sessions["alice"])
        payload = {"type": "send", "conversation_id": None, "client_id": "stall-1", "content": f"stalled {LONG}"}
        stalled.send_text(json.dumps(payload))
        wait_for(lambda: (row := reply_row(deployment, "stall-1")) and row[1] == "streaming", timeout=30)
        stalled_at = time.monotonic()

        # Bob's reply on the same worker, while alice's socket is stuck with a reply streaming.
        started = time.monotonic()
        _, during = await bob.new_chat(f"during {SHORT}", client_id="bob-during")
        done = await bob.reply_done(during, timeout=60)
        busy_seconds = time.monotonic() - started
        assert done["status"] == "complete" and len(bob.deltas(during)) >= 5
    finally:
        await bob.close()
    try:
        # The unanswered pings end alice's socket; her reply is still being written then.
        await asyncio.sleep(max(0.0, stalled_at + PING_INTERVAL + PING_TIMEOUT + 1 - time.monotonic()))
        closed = await asyncio.to_thread(stalled.closed_by_server, 15)
        assert closed, "the worker kept a socket that answers no ping"
        _, status, _ = reply_row(deployment, "stall-1")
        assert status == "streaming", "the socket closed only because the reply ended"
        rss_stalled = rss_mb(worker.pid)

        # The reply belongs to the conversation: it finishes and is saved whole.
        wait_for(lambda: reply_row(deployment, "stall-1")[1] == "complete", timeout=120, message="the reply ends")
        _, _, length = reply_row(deployment, "stall-1")
        assert length > 6000
    finally:
        stalled.close()

    # Nothing held per stalled socket beyond its reply's frames (a few hundred kilobytes).
    assert rss_stalled - rss_before < 64, (rss_before, rss_stalled)
    # Bob was not held behind alice's socket: the same reply took at most a few times as long
    # (a blocked worker would make it wait for her 20 s reply).
    assert busy_seconds < max(5 * quiet_seconds, 3.0), (quiet_seconds, busy_seconds)

"""The aiohttp transport's sessions end quietly: a process that streamed over it, on two event
loops one after the other, exits without aiohttp's "Unclosed client session" errors."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import asyncio, sys
import django
django.setup()
from tests.fakeupstream.server import FakeUpstream
from chat.upstream import client

upstream = FakeUpstream().start()

async def one_reply():
    endpoint = client.Endpoint(upstream.base_url, api_key="sk-test-LIFECYCLE0123456789")
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
    return "".join([event.delta async for event in client.stream_chat(endpoint, payload)])

first = asyncio.run(one_reply())
second = asyncio.run(one_reply())  # the first loop is closed by now: its session is dropped
upstream.stop()
print("REPLIES", bool(first), first == second)
"""


def test_streaming_over_aiohttp_on_two_loops_then_exiting_leaves_no_unclosed_session(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PARLEY_DATA_DIR": str(tmp_path),
        "PARLEY_UPSTREAM_TRANSPORT": "aiohttp",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "REPLIES True True" in result.stdout
    assert "Unclosed client session" not in result.stderr
    assert "Unclosed connector" not in result.stderr

"""Several workers behind Redis: a conversation open in two tabs on two daphne processes.

The reply task lives in the worker that received the ``send``; every other tab, on any
worker, follows it through the Redis channel layer, and can stop it through the same layer.
A worker killed mid-reply leaves its reply ``streaming`` until the sweep, run elsewhere,
sees its heartbeat go stale.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time

import pytest

from tests.deploy.client import NetTab
from tests.deploy.conftest import wait_for
from tests.deploy.processes import BASE_DIR, VENV_BIN

# The first test also waits for the deployment to start (migrations, three processes).
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.multiprocess, pytest.mark.timeout(300)]

SLOW = "[[fake tokens=200 token_delay=0.05]]"  # about ten seconds of reply
STALE = 20  # seconds: the sweep's staleness bound in the killed-worker test


async def open_pair(deployment, session_name="alice") -> tuple[NetTab, NetTab]:
    worker_a, worker_b = deployment.workers
    session = deployment.sessions[session_name]
    return await NetTab.open(worker_a.port, session), await NetTab.open(worker_b.port, session)


async def subscribe(tab: NetTab, conversation_id: str) -> dict:
    await tab.send({"type": "subscribe", "conversation_id": conversation_id})
    return await tab.until(lambda f: f["type"] == "conversation.state" and f["conversation"]["id"] == conversation_id)


def upstream_request_for(deployment, marker: str) -> dict:
    matches = [
        r for r in deployment.upstream_requests() if marker in (r["body"] or {}).get("messages", [{}])[-1]["content"]
    ]
    assert len(matches) == 1, matches
    return matches[0]


def message_row(deployment, message_id: str) -> tuple[str, str, str]:
    rows = deployment.query("SELECT status, content, error_code FROM chat_message WHERE id = %s", (message_id,))
    assert rows, message_id
    return rows[0]


def sweep(deployment, stale_seconds: float) -> int:
    output = deployment.manage("sweep_replies", "--stale-seconds", str(stale_seconds))
    return int(re.search(r"(\d+) stale replies", output).group(1))


async def test_both_tabs_on_two_workers_receive_the_whole_reply(deployment):
    tab_a, tab_b = await open_pair(deployment)
    try:
        conversation, first = await tab_a.new_chat("warm up [[fake tokens=3]]")
        await tab_a.reply_done(first)
        await subscribe(tab_b, conversation)

        reply = await tab_a.say(conversation, "two tabs [[fake tokens=30 token_delay=0.05]]", client_id="c2")
        done_a = await tab_a.reply_done(reply)
        done_b = await tab_b.reply_done(reply)
    finally:
        await tab_a.close()
        await tab_b.close()

    assert done_a["status"] == done_b["status"] == "complete"
    assert done_a["content"] == done_b["content"] and len(done_a["content"]) > 0
    # The tab on the other worker saw the reply stream, in pieces, not only its end.
    assert len(tab_b.deltas(reply)) >= 5
    assert tab_b.arrival("reply.delta", reply) < tab_b.arrival("reply.done", reply)
    # Assembled from deltas (resyncing, as the browser does, if the layer dropped one), both
    # tabs hold the reply that was saved.
    assert tab_b.texts[reply] == tab_a.texts[reply] == done_a["content"]
    assert message_row(deployment, reply)[0] == "complete"


@pytest.mark.parametrize("stopper", ["the other worker's tab", "the same worker's tab"])
async def test_stop_from_either_tab_cancels_the_upstream_request(deployment, stopper):
    tab_a, tab_b = await open_pair(deployment)
    marker = f"stop-{stopper.split()[1]}"
    try:
        conversation, first = await tab_a.new_chat(f"{marker} {SLOW}")
        await subscribe(tab_b, conversation)
        # Both tabs are following the reply that runs in worker A.
        await tab_b.until(lambda f: f["type"] == "reply.delta" and f["message_id"] == first and f["offset"] > 0)
        stopping_tab = tab_b if stopper == "the other worker's tab" else tab_a
        stopped_at = time.monotonic()
        await stopping_tab.send({"type": "stop", "conversation_id": conversation})
        done_a = await tab_a.reply_done(first, timeout=30)
        done_b = await tab_b.reply_done(first, timeout=30)
    finally:
        await tab_a.close()
        await tab_b.close()

    assert done_a["status"] == done_b["status"] == "stopped"
    assert done_a["content"] == done_b["content"] != ""
    request = wait_for(
        lambda: (r := upstream_request_for(deployment, marker))["disconnected_at"] and r,
        timeout=15,
        message="the upstream sees the request closed",
    )
    # The reply was far from done (200 tokens) and the upstream saw Parley hang up soon after
    # the stop: within a second, as the product promises, with slack for a loaded machine.
    assert request["deltas_sent"] < 200
    assert request["disconnected_at"] - stopped_at < 1.5, request["disconnected_at"] - stopped_at
    status, content, _ = message_row(deployment, first)
    assert (status, content) == ("stopped", done_a["content"])


async def test_a_reply_whose_worker_is_alive_and_saving_is_never_swept(deployment):
    tab_a, tab_b = await open_pair(deployment)
    try:
        # About 30 s of reply; the worker saves (its heartbeat) every 0.5 s.
        conversation, reply = await tab_a.new_chat("alive [[fake tokens=300 token_delay=0.1]]")
        await tab_a.until(lambda f: f["type"] == "reply.delta" and f["message_id"] == reply)
        # Sweeps with a 2 s staleness bound, in other processes, while it streams.
        swept = []
        for _ in range(2):
            swept.append(await asyncio.to_thread(sweep, deployment, 2))
            assert message_row(deployment, reply)[0] == "streaming"
        await tab_b.send({"type": "stop", "conversation_id": conversation})
        done = await tab_a.reply_done(reply, timeout=30)
    finally:
        await tab_a.close()
        await tab_b.close()
    assert swept == [0, 0]
    assert done["status"] == "stopped"
    assert message_row(deployment, reply)[:2] == ("stopped", done["content"])


async def test_a_killed_worker_leaves_its_reply_to_the_sweep_with_its_partial_text(deployment):
    doomed = deployment.start_worker("worker-doomed")
    witness_worker = deployment.workers[0]
    session = deployment.sessions["alice"]
    tab = await NetTab.open(doomed.port, session)
    witness = await NetTab.open(witness_worker.port, session)
    try:
        conversation, reply = await tab.new_chat(f"doomed {SLOW}")
        await subscribe(witness, conversation)
        # Wait until some text is saved (the heartbeat save also writes the text so far).
        wait_for(
            lambda: len(message_row(deployment, reply)[1]) > 10,
            timeout=30,
            message="partial text saved",
        )
        doomed.kill()
        status, saved_text, _ = message_row(deployment, reply)
        assert status == "streaming"

        # Right after the kill the heartbeat is fresh: the sweep leaves the reply alone. (Its
        # process takes seconds to start on a busy machine, hence a 20 s bound; the check is
        # only conclusive if the heartbeat was still younger than that when it finished.)
        heartbeat_age = "SELECT EXTRACT(EPOCH FROM now() - heartbeat_at) FROM chat_message WHERE id = %s"
        early = await asyncio.to_thread(sweep, deployment, STALE)
        if deployment.query(heartbeat_age, (reply,))[0][0] < STALE:
            assert early == 0
            assert message_row(deployment, reply)[0] == "streaming"
            # Once the heartbeat is older than the bound, the sweep (another process) ends it.
            wait_for(lambda: deployment.query(heartbeat_age, (reply,))[0][0] > STALE + 0.5, timeout=60, interval=0.5)
            assert await asyncio.to_thread(sweep, deployment, STALE) == 1
        else:
            assert early == 1  # the machine was so slow that the first sweep already saw it stale
        status, content, error_code = message_row(deployment, reply)
        assert (status, error_code) == ("interrupted", "worker_lost")
        assert content == saved_text != ""
        # The tab on the surviving worker hears about it through Redis.
        done = await witness.reply_done(reply, timeout=20)
    finally:
        await tab.close()
        await witness.close()
    assert done["status"] == "interrupted"
    assert done["content"] == content
    # The partial text is the text the tab on the dead worker was being shown.
    shown = tab.texts.get(reply, "")
    assert shown.startswith(content) or content.startswith(shown)


async def test_the_housekeeping_process_sweeps_a_dead_workers_reply_and_stops_on_sigterm(deployment):
    """What compose's "housekeeping" service runs, with short intervals."""
    doomed = deployment.start_worker("worker-doomed-2")
    tab = await NetTab.open(doomed.port, deployment.sessions["alice"])
    try:
        _, reply = await tab.new_chat(f"swept by housekeeping {SLOW}")
        wait_for(lambda: len(message_row(deployment, reply)[1]) > 10, timeout=30, message="partial text saved")
        doomed.kill()
    finally:
        await tab.close()
    saved = message_row(deployment, reply)[1]
    env = {**deployment.env, "PARLEY_SWEEP_INTERVAL": "1", "PARLEY_STALE_REPLY_SECONDS": "3"}
    housekeeping = subprocess.Popen(
        [str(BASE_DIR / "deploy" / "entrypoint.sh"), "housekeeping"],
        env={**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', os.defpath)}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: message_row(deployment, reply)[0] != "streaming", timeout=60, interval=0.5)
        assert message_row(deployment, reply) == ("interrupted", saved, "worker_lost")
        housekeeping.send_signal(signal.SIGTERM)
        output, _ = housekeeping.communicate(timeout=20)
    finally:
        if housekeeping.poll() is None:
            os.killpg(housekeeping.pid, signal.SIGKILL)
            housekeeping.wait()
    assert housekeeping.returncode == 0, output

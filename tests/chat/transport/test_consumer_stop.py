"""Stop really stops: the upstream sees its connection closed within a second (docs/security.md T40)."""

import time

import pytest
from channels.db import database_sync_to_async

from chat.models import Message, UsageRecord
from tests.chat.wsclient import Tab, settle

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_stop_closes_the_upstream_request_within_a_second_and_keeps_the_partial_text(
    alice, upstream_model, fake_upstream
):
    fake_upstream.always(tokens=400, token_delay=0.05)
    tab = await Tab.open(alice)
    await tab.send_message("a very long story")
    conversation = (await tab.until_type("conversation.created"))["conversation"]
    for _ in range(5):
        await tab.until_type("reply.delta")
    stopped_at = time.monotonic()
    await tab.send({"type": "stop", "conversation_id": conversation["id"]})
    final = await tab.reply(timeout=5)
    acknowledged = time.monotonic() - stopped_at
    assert final["status"] == "stopped"
    assert acknowledged < 1.0
    request = fake_upstream.completion_requests[0]
    assert await fake_upstream.await_until(lambda: request.disconnected_at is not None, timeout=2)
    assert request.disconnected_at - stopped_at < 1.0
    assert 0 < request.deltas_sent < 400
    row = await database_sync_to_async(Message.objects.get)(id=final["id"])
    assert row.status == "stopped"
    assert row.content == final["content"] != ""
    # What was generated is billed, as an estimate (the usage chunk never came).
    record = await database_sync_to_async(UsageRecord.objects.get)(message_id=row.id)
    assert record.estimated is True
    assert record.completion_tokens > 0
    await tab.close()


async def test_stop_from_another_tab_stops_the_reply(alice, upstream_model, fake_upstream):
    fake_upstream.always(tokens=400, token_delay=0.05)
    first = await Tab.open(alice)
    await first.send_message("long")
    conversation = (await first.until_type("conversation.created"))["conversation"]
    await first.until_type("reply.delta")
    second = await Tab.open(alice)
    await second.send({"type": "stop", "conversation_id": conversation["id"]})
    final = await first.reply(timeout=5)
    assert final["status"] == "stopped"
    await first.close()
    await second.close()


async def test_stop_does_not_wait_behind_a_reply_in_the_same_socket(alice, upstream_model, fake_upstream):
    # The reply runs as its own task, so the consumer answers other frames while it streams.
    fake_upstream.always(tokens=200, token_delay=0.05)
    tab = await Tab.open(alice)
    await tab.send_message("long")
    await tab.until_type("reply.delta")
    await tab.send({"type": "ping"})
    await tab.until_type("pong", timeout=1)
    conversation_id = tab.frames[0]["conversation"]["id"]
    await tab.send({"type": "stop", "conversation_id": conversation_id})
    await tab.reply()
    await tab.close()
    await settle()


async def test_bob_cannot_stop_alices_reply(alice, bob, upstream_model, fake_upstream):
    fake_upstream.always(tokens=30, token_delay=0.03)
    tab = await Tab.open(alice)
    await tab.send_message("mine")
    conversation = (await tab.until_type("conversation.created"))["conversation"]
    intruder = await Tab.open(bob)
    await intruder.send({"type": "stop", "conversation_id": conversation["id"]})
    error = await intruder.until_type("error")
    assert error["code"] == "not_found"
    final = await tab.reply()
    assert final["status"] == "complete"
    await tab.close()
    await intruder.close()


async def test_a_stop_sent_the_moment_the_reply_is_announced_is_not_lost(alice, upstream_model, fake_upstream):
    fake_upstream.always(tokens=400, token_delay=0.05)
    tab = await Tab.open(alice)
    await tab.send_message("long")
    conversation = (await tab.until_type("conversation.created"))["conversation"]
    await tab.until(lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant")
    await tab.send({"type": "stop", "conversation_id": conversation["id"]})
    final = await tab.reply(timeout=5)
    assert final["status"] == "stopped"
    await tab.close()

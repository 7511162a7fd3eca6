"""A turn over the websocket is queued for search by meaning once its reply is complete: the
job is in the durable queue, and running it makes the conversation findable by meaning."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat.models import MessageChunk, MessageIndex
from chat.services import search
from tests.chat.wsclient import Tab
from tests.documents_support import make_embedding_model

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_titles(settings):
    settings.PARLEY_AUTO_TITLE = False


async def queued(conversation_id, count: int) -> list:
    for _ in range(100):
        rows = await database_sync_to_async(
            lambda: list(
                MessageIndex.objects.filter(conversation_id=conversation_id).values_list("message_id", flat=True)
            )
        )()
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError("the turn was never queued for search")


async def test_a_completed_turn_is_queued_and_its_job_enqueued(alice, upstream_model, fake_upstream):
    await database_sync_to_async(make_embedding_model)(upstream_model.provider)
    tab = await Tab.open(alice)
    await tab.send_message('Our holiday in Kyoto: which temples? [[fake reply="Visit the temples at dawn." tokens=5]]')
    conversation_id = (await tab.until_type("conversation.created"))["conversation"]["id"]
    reply = await tab.reply()
    assert reply["status"] == "complete"
    await tab.close()

    rows = await queued(conversation_id, 2)
    assert str(reply["id"]) in {str(r) for r in rows}

    from django_tasks_db.models import DBTaskResult

    tasks = await database_sync_to_async(lambda: list(DBTaskResult.objects.values_list("args_kwargs", flat=True)))()
    assert {"args": [conversation_id], "kwargs": {}} in tasks
    assert await database_sync_to_async(search.conversation_index)(conversation_id) == "ready"
    assert await database_sync_to_async(MessageChunk.objects.filter(conversation_id=conversation_id).count)() == 2


async def test_without_an_embedding_model_a_turn_queues_nothing(alice, upstream_model, fake_upstream):
    tab = await Tab.open(alice)
    await tab.send_message("hello")
    await tab.until_type("conversation.created")
    assert (await tab.reply())["status"] == "complete"
    await tab.close()
    await asyncio.sleep(0.3)
    assert not await database_sync_to_async(MessageIndex.objects.exists)()


async def test_a_reply_that_did_not_complete_queues_nothing(alice, upstream_model, fake_upstream):
    # Only a complete turn is indexed: the reply's task decides, from the status it saved.
    await database_sync_to_async(make_embedding_model)(upstream_model.provider)
    fake_upstream.always(tokens=50, cut_after=20, cut="eof", token_delay=0.005)
    tab = await Tab.open(alice)
    await tab.send_message("tell me about Kyoto")
    await tab.until_type("conversation.created")
    assert (await tab.reply())["status"] == "interrupted"
    await tab.close()
    await asyncio.sleep(0.3)
    assert not await database_sync_to_async(MessageIndex.objects.exists)()

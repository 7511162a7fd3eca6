"""chat.v1.calls without a server: a stream whose client left before its first byte."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.models import Reservation, UsageKind, UsageRecord
from chat.services.api_tokens import api_token_create
from chat.v1 import calls

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_stream_whose_client_left_before_its_first_byte_is_settled_not_left_to_the_sweep(
    alice, api_model, fake_upstream, close_llm_clients
):
    fake_upstream.always(tokens=50, token_delay=0.05)
    token = (await sync_to_async(api_token_create)(user=alice, name="script")).token
    caller = calls.Caller(token=token, user=alice)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}], "stream": True}

    async def request():
        await calls.completion_stream(caller=caller, body=body, path="chat/completions")
        await asyncio.sleep(30)  # where the response would start: the client is gone first

    task = asyncio.create_task(request())
    assert await fake_upstream.await_until(lambda: fake_upstream.completion_requests, 10)
    await asyncio.sleep(0.2)
    task.cancel()

    assert await fake_upstream.await_until(lambda: fake_upstream.completion_requests[0].disconnected_at, 10)
    for _ in range(200):
        if not await Reservation.objects.aexists():
            break
        await asyncio.sleep(0.05)
    record = await UsageRecord.objects.aget(kind=UsageKind.CHAT)
    assert record.estimated and record.api_token_id == token.pk
    assert not await Reservation.objects.aexists()

"""chat.v1.calls without a server: a stream whose client left before its first byte, and how
an answer's chunks are written (together when they waited, alone when they did not)."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async

from chat.errors import ModelUnavailable
from chat.models import Reservation, UsageKind, UsageRecord
from chat.services.api_tokens import api_token_create
from chat.upstream.wire import RawChunk
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


# --- relaying: chunks that wait are written together --------------------------------------


def _chunk(text: str, *, finished: bool = False):
    body = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop" if finished else None}]}
    return RawChunk(json.dumps(body), body, text, finished, None)


def _relay(chunks, *, first):
    caller = SimpleNamespace(token=SimpleNamespace(save_conversations=False), user=SimpleNamespace(pk=1))
    return calls.Relay(
        caller=caller,
        model=SimpleNamespace(model_id="gpt-4o-mini"),
        body={"stream": True},
        stack=AsyncExitStack(),
        call=SimpleNamespace(usage=None),
        chunks=chunks,
        first=first,
        prompt_tokens=5,
        chat=True,
    )


async def test_chunks_that_arrive_while_a_write_is_made_go_out_in_one_write_and_the_first_at_once():
    gate = asyncio.Event()

    async def provider():
        await gate.wait()  # the first chunk is written before any other arrives
        for text in ["b", "c", "d"]:
            yield _chunk(text)
        yield _chunk("e", finished=True)

    relay = _relay(provider(), first=_chunk("a"))
    events = relay.events()

    first = await anext(events)
    gate.set()
    rest = [write async for write in events]

    assert first.count(b"data: ") == 1 and b'"a"' in first
    # b, c, d and e were waiting together: one write of four events, then [DONE].
    assert len(rest) == 2 and rest[0].count(b"data: ") == 4 and rest[1] == calls.DONE
    assert rest[0].index(b'"b"') < rest[0].index(b'"c"') < rest[0].index(b'"d"') < rest[0].index(b'"e"')
    assert relay.settled


async def test_a_chunk_that_finds_nothing_waiting_is_written_alone():
    steps = [asyncio.Event() for _ in range(3)]

    async def provider():
        for step, text in zip(steps, ["b", "c", "d"]):
            await step.wait()
            yield _chunk(text)

    relay = _relay(provider(), first=_chunk("a"))
    events = relay.events()
    writes = [await anext(events)]
    for step in steps:
        step.set()
        writes.append(await anext(events))
    writes.append(await anext(events))

    assert [w.count(b"data: ") for w in writes[:4]] == [1, 1, 1, 1]
    assert writes[4] == calls.DONE


async def test_an_unexpected_failure_of_the_provider_stream_ends_the_answer_instead_of_hanging_it():
    async def provider():
        yield _chunk("b")
        raise RuntimeError("a bug below the relay")

    relay = _relay(provider(), first=_chunk("a"))

    with pytest.raises(RuntimeError, match="a bug below the relay"):
        async with asyncio.timeout(10):
            [write async for write in relay.events()]
    assert relay.settled


async def test_the_chunks_before_a_provider_failure_are_written_before_its_error_event():
    async def provider():
        yield _chunk("b")
        yield _chunk("c")
        raise ModelUnavailable("The server is overloaded.")

    relay = _relay(provider(), first=_chunk("a"))
    written = b"".join([write async for write in relay.events()])

    events = [event for event in written.split(b"\n\n") if event]
    assert [b'"a"' in e for e in events[:3]] == [True, False, False]
    assert b'"b"' in events[1] and b'"c"' in events[2]
    assert len(events) == 4 and json.loads(events[3].removeprefix(b"data: "))["error"]
    assert relay.settled

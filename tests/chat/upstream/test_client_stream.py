"""chat.upstream.client.stream_chat against the real fake upstream: what is sent, what comes back, how it fails.

docs/security.md rows: T36 (timeouts), T37 (mid-stream cuts), T38 (protocol oddities),
T39/T40 (closing the stream closes the upstream connection).
"""

import asyncio
import contextlib
import time

import pytest

from chat.errors import UpstreamError
from chat.upstream import client as upstream_client
from tests.fakeupstream import default_reply, estimate_prompt_tokens

pytestmark = [pytest.mark.usefixtures("close_llm_clients")]

KEY = "sk-test-STREAMKEY0123456789abcd"
PAYLOAD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}], "temperature": 0.2}


@pytest.fixture
def endpoint(fake_upstream):
    return upstream_client.Endpoint(fake_upstream.base_url, api_key=KEY, read_timeout=5.0, connect_timeout=2.0)


async def collect(endpoint, payload=PAYLOAD, **kwargs):
    return [event async for event in upstream_client.stream_chat(endpoint, payload, **kwargs)]


async def collect_until_error(endpoint, payload=PAYLOAD):
    events = []
    with pytest.raises(UpstreamError) as caught:
        async for event in upstream_client.stream_chat(endpoint, payload):
            events.append(event)
    return events, caught.value


def text_of(events):
    return "".join(e.delta for e in events)


async def test_it_streams_the_reply_then_the_finish_reason_then_usage(endpoint, fake_upstream):
    events = await collect(endpoint)

    assert text_of(events) == "".join(default_reply("Hello there"))
    assert all(e.delta for e in events[:-2])  # no empty deltas are passed on
    assert events[-2] == upstream_client.StreamEvent(finish_reason="stop")
    prompt_tokens = estimate_prompt_tokens(fake_upstream.requests[0].body)
    assert events[-1].usage == upstream_client.Usage(prompt_tokens=prompt_tokens, completion_tokens=12)


async def test_it_sends_the_payload_with_stream_and_include_usage_to_the_configured_path(endpoint, fake_upstream):
    await collect(endpoint)

    [request] = fake_upstream.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.body == {**PAYLOAD, "stream": True, "stream_options": {"include_usage": True}}
    assert request.authorization == f"Bearer {KEY}"
    assert "openai-organization" not in request.headers
    assert request.headers["accept"] == "text/event-stream"


async def test_it_sends_the_organization_and_no_authorization_without_a_key(fake_upstream):
    endpoint = upstream_client.Endpoint(fake_upstream.base_url + "/", organization="org-123")
    await collect(endpoint)

    [request] = fake_upstream.requests
    assert request.path == "/v1/chat/completions"
    assert "authorization" not in request.headers
    assert request.headers["openai-organization"] == "org-123"


async def test_it_survives_everything_real_servers_add_to_a_stream(endpoint, fake_upstream):
    oddities = (
        "ping",
        "unknown_event",
        "not_json",
        "empty_choices",
        "extra_fields",
        "crlf",
        "split",
        "multiline",
    )
    fake_upstream.script(oddities=oddities)
    events = await collect(endpoint)

    assert text_of(events) == "".join(default_reply("Hello there"))
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]
    assert "execute" not in repr(events) and "onerror" not in repr(events)
    assert events[-1].usage is not None


async def test_only_the_first_choice_becomes_the_reply(endpoint, fake_upstream):
    fake_upstream.script(reply="first choice only", choices=3)
    events = await collect(endpoint)
    assert text_of(events) == "first choice only"
    assert [e.finish_reason for e in events if e.finish_reason] == ["stop"]


@pytest.mark.parametrize("reason", ["length", "content_filter"])
async def test_a_truncating_finish_reason_is_passed_on(endpoint, fake_upstream, reason):
    fake_upstream.script(reply="cut short", finish_reason=reason)
    events = await collect(endpoint)
    assert [e.finish_reason for e in events if e.finish_reason] == [reason]


async def test_a_stream_without_a_role_chunk_or_done_still_completes_after_finish(endpoint, fake_upstream):
    fake_upstream.script(reply="no frills", oddities=("no_role",), done=False, usage=False)
    events = await collect(endpoint)
    assert text_of(events) == "no frills"
    assert events[-1].finish_reason == "stop"


async def test_a_stream_ended_by_closing_the_connection_is_read_to_its_end(endpoint, fake_upstream):
    fake_upstream.script(reply="closing framing", chunked=False)
    events = await collect(endpoint)
    assert text_of(events) == "closing framing"
    assert events[-1].usage is not None


async def test_a_json_answer_to_a_stream_request_becomes_the_same_events(endpoint, fake_upstream):
    fake_upstream.script(reply="not streamed", stream=False)
    events = await collect(endpoint)
    assert events[0] == upstream_client.StreamEvent(delta="not streamed", finish_reason="stop")
    assert events[1].usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("cut", "code"),
    [("reset", "upstream_unavailable"), ("eof", "upstream_bad_response"), ("error", "upstream_unavailable")],
)
async def test_a_stream_cut_after_50_deltas_keeps_them_and_fails_without_a_second_request(
    endpoint, fake_upstream, cut, code
):
    fake_upstream.script(tokens=80, cut_after=50, cut=cut, stream_error="overloaded")
    events, error = await collect_until_error(endpoint)

    assert text_of(events) == "".join(default_reply("Hello there", 80)[:50])
    assert error.code == code
    assert len(fake_upstream.requests) == 1
    if cut == "error":
        assert "overloaded" in error.message


@pytest.mark.parametrize(
    ("error_code", "code"),
    [
        ("rate_limit_exceeded", "rate_limited"),
        ("context_length_exceeded", "context_too_long"),
        (None, "upstream_unavailable"),
    ],
)
async def test_an_error_object_in_the_stream_keeps_its_meaning(endpoint, fake_upstream, error_code, code):
    fake_upstream.script(cut_after=0, cut="error", stream_error="Something upstream", stream_error_code=error_code)
    events, error = await collect_until_error(endpoint)
    assert events == []
    assert error.code == code
    assert error.detail["upstream_message"] == "Something upstream"
    assert len(fake_upstream.requests) == 1


async def test_silence_mid_stream_fails_with_a_timeout_after_the_deltas(fake_upstream):
    endpoint = upstream_client.Endpoint(fake_upstream.base_url, read_timeout=0.3)
    fake_upstream.script(tokens=20, cut_after=5, cut="hang")
    started = time.monotonic()
    events, error = await collect_until_error(endpoint)
    assert len(events) == 5
    assert error.code == "upstream_timeout"
    assert time.monotonic() - started < 3
    assert await fake_upstream.await_until(lambda: fake_upstream.requests[0].disconnected_at is not None, 2)


async def test_an_upstream_that_never_answers_times_out_within_the_read_timeout(fake_upstream):
    endpoint = upstream_client.Endpoint(fake_upstream.base_url, read_timeout=0.3)
    fake_upstream.script(silence=True)
    started = time.monotonic()
    events, error = await collect_until_error(endpoint)
    assert events == [] and error.code == "upstream_timeout"
    assert time.monotonic() - started < 3
    assert len(fake_upstream.requests) == 1  # a read timeout is not retried
    assert await fake_upstream.await_until(lambda: fake_upstream.requests[0].disconnected_at is not None, 2)


async def test_a_slow_first_token_within_the_read_timeout_succeeds(fake_upstream):
    endpoint = upstream_client.Endpoint(fake_upstream.base_url, read_timeout=3.0)
    fake_upstream.script(reply="worth the wait", first_token_delay=1.0)
    events = await collect(endpoint)
    assert text_of(events) == "worth the wait"


def test_the_default_read_timeout_lets_a_30_second_first_token_through():
    # The 30 s case itself (T36) would make the suite slow; what makes it pass is this bound,
    # applied per read (httpx's default would be 5 s).
    timeout = upstream_client._timeout(upstream_client.Endpoint("https://api.openai.com/v1"))
    assert timeout.read == 120.0 and timeout.connect == 10.0


async def test_100_timed_out_calls_leave_no_connection_behind(fake_upstream):
    endpoint = upstream_client.Endpoint(fake_upstream.base_url, read_timeout=0.2)
    fake_upstream.script(silence=True, times=100)

    async def one():
        with contextlib.suppress(UpstreamError):
            await collect(endpoint)

    await asyncio.gather(*(one() for _ in range(100)))
    assert len(fake_upstream.requests) == 100
    assert await fake_upstream.await_until(lambda: fake_upstream.stats()["open_connections"] == 0, 3)
    assert all(r.disconnected_at is not None for r in fake_upstream.requests)

    events = await collect(endpoint)  # the pool still has room
    assert events[-1].usage is not None


async def test_closing_the_stream_closes_the_upstream_connection_within_a_second(endpoint, fake_upstream):
    fake_upstream.script(tokens=200, token_delay=0.02)
    async with contextlib.aclosing(upstream_client.stream_chat(endpoint, PAYLOAD)) as stream:
        received = 0
        async for _event in stream:
            received += 1
            if received == 10:
                break
    closed_at = time.monotonic()

    assert await fake_upstream.await_until(lambda: fake_upstream.requests[0].disconnected_at is not None, 1)
    record = fake_upstream.requests[0]
    assert record.disconnected_at - closed_at < 1.0
    assert record.deltas_sent < 200


async def test_cancelling_the_consuming_task_closes_the_upstream_connection(endpoint, fake_upstream):
    fake_upstream.script(tokens=200, token_delay=0.05)
    received = []

    async def consume():
        async with contextlib.aclosing(upstream_client.stream_chat(endpoint, PAYLOAD)) as stream:
            async for event in stream:
                received.append(event)

    task = asyncio.create_task(consume())
    assert await fake_upstream.await_until(lambda: len(received) >= 5, 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cancelled_at = time.monotonic()

    assert await fake_upstream.await_until(lambda: fake_upstream.requests[0].disconnected_at is not None, 1)
    assert fake_upstream.requests[0].disconnected_at - cancelled_at < 1.0
    assert len(fake_upstream.requests) == 1


async def test_consecutive_streams_reuse_one_connection(endpoint, fake_upstream):
    for _ in range(5):
        await collect(endpoint)
    assert fake_upstream.stats()["connections_total"] == 1


async def test_many_concurrent_streams_all_complete(endpoint, fake_upstream):
    fake_upstream.always(tokens=10, token_delay=0.01)
    results = await asyncio.gather(*(collect(endpoint) for _ in range(100)))
    assert all(events[-1].usage is not None for events in results)
    assert fake_upstream.stats()["max_open_streams"] > 32  # more than one pool shard in use

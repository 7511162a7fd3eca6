"""The retry policy of chat.upstream.client against the real fake upstream (docs/security.md T35).

Backoff sleeps are recorded instead of slept, except in the one real-time Retry-After test.
"""

import time
from email.utils import formatdate

import pytest

from chat.errors import UpstreamError
from chat.upstream import client as upstream_client

pytestmark = [pytest.mark.usefixtures("close_llm_clients")]

PAYLOAD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def endpoint(fake_upstream):
    return upstream_client.Endpoint(fake_upstream.base_url, api_key="sk-test-RETRYKEY0123456789", connect_timeout=2.0)


@pytest.fixture
def sleeps(monkeypatch):
    """The backoff delays chat.upstream.client asked for, in order, without sleeping them."""
    delays = []

    async def record(seconds):
        delays.append(seconds)

    monkeypatch.setattr(upstream_client, "_sleep", record)
    return delays


async def stream(endpoint, **kwargs):
    return [event async for event in upstream_client.stream_chat(endpoint, PAYLOAD, **kwargs)]


async def failure(endpoint, **kwargs) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await stream(endpoint, **kwargs)
    return caught.value


async def test_a_500_then_success_is_retried_once_after_a_short_jittered_backoff(endpoint, fake_upstream, sleeps):
    fake_upstream.script(status=500)
    events = await stream(endpoint)
    assert events[-1].usage is not None
    assert [r.status for r in fake_upstream.requests] == [500, 200]
    assert len(sleeps) == 1 and 0.375 <= sleeps[0] <= 0.5


async def test_persistent_5xx_gives_up_after_two_retries_with_growing_delays(endpoint, fake_upstream, sleeps):
    fake_upstream.script(status=502).script(status=503).script(status=500).script(status=500)
    error = await failure(endpoint)
    assert error.code == "upstream_unavailable" and error.status == 500
    assert len(fake_upstream.requests) == 3
    assert 0.375 <= sleeps[0] <= 0.5 and 0.75 <= sleeps[1] <= 1.0


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried(endpoint, fake_upstream, sleeps, status):
    fake_upstream.script(status=status)
    await stream(endpoint)
    assert [r.status for r in fake_upstream.requests] == [status, 200]


@pytest.mark.parametrize(
    ("status", "error_code", "code"),
    [
        (400, None, "bad_request"),
        (400, "context_length_exceeded", "context_too_long"),
        (401, "invalid_api_key", "upstream_auth_failed"),
        (403, None, "upstream_auth_failed"),
        (404, "model_not_found", "bad_request"),
        (422, None, "bad_request"),
        (429, "insufficient_quota", "upstream_quota_exhausted"),
    ],
)
async def test_final_statuses_are_never_retried(endpoint, fake_upstream, sleeps, status, error_code, code):
    fake_upstream.script(status=status, error_code=error_code)
    error = await failure(endpoint)
    assert error.code == code and error.status == status
    assert len(fake_upstream.requests) == 1
    assert sleeps == []


async def test_an_insufficient_quota_429_is_not_retried_even_with_retry_after(endpoint, fake_upstream, sleeps):
    fake_upstream.script(status=429, error_code="insufficient_quota", retry_after=1)
    error = await failure(endpoint)
    assert error.code == "upstream_quota_exhausted"
    assert "quota" in error.message
    assert len(fake_upstream.requests) == 1


async def test_retry_after_is_honoured_in_seconds_milliseconds_and_as_a_date(endpoint, fake_upstream, sleeps):
    fake_upstream.script(status=429, retry_after=3)
    fake_upstream.script(status=429, retry_after_ms=1500)
    fake_upstream.script(status=503, headers={"Retry-After": formatdate(time.time() + 5, usegmt=True)})
    events = await stream(endpoint, max_retries=3)
    assert events[-1].usage is not None
    assert sleeps[0] == 3.0 and sleeps[1] == 1.5 and 3.0 <= sleeps[2] <= 5.0


async def test_a_retry_after_beyond_the_bound_fails_at_once_saying_when(endpoint, fake_upstream, sleeps, settings):
    settings.PARLEY_RETRY_AFTER_MAX = 60
    fake_upstream.script(status=429, retry_after=600)
    error = await failure(endpoint)
    assert error.code == "rate_limited"
    assert error.retry_after == 600
    assert error.as_frame()["retry_after"] == 600
    assert len(fake_upstream.requests) == 1 and sleeps == []


async def test_the_last_429_reports_its_retry_after(endpoint, fake_upstream, sleeps):
    fake_upstream.script(status=429, retry_after=2, times=3)
    error = await failure(endpoint)
    assert error.code == "rate_limited" and error.retry_after == 2
    assert sleeps == [2.0, 2.0]
    assert len(fake_upstream.requests) == 3


async def test_a_connection_reset_before_any_answer_is_retried(endpoint, fake_upstream, sleeps):
    fake_upstream.script(drop=True, times=2)
    events = await stream(endpoint)
    assert events[-1].usage is not None
    assert len(fake_upstream.requests) == 3


async def test_a_connection_that_keeps_failing_gives_up_as_unavailable(endpoint, fake_upstream, sleeps):
    fake_upstream.script(drop=True, times=5)
    error = await failure(endpoint)
    assert error.code == "upstream_unavailable"
    assert len(fake_upstream.requests) == 3 and len(sleeps) == 2


async def test_a_refused_connection_is_retried_then_reported(fake_upstream, sleeps):
    port = fake_upstream.port
    fake_upstream.stop()  # nothing listens on the port any more
    error = await failure(upstream_client.Endpoint(f"http://127.0.0.1:{port}/v1", connect_timeout=1.0))
    assert error.code == "upstream_unavailable"
    assert len(sleeps) == 2


async def test_max_retries_bounds_the_attempts(endpoint, fake_upstream, sleeps, settings):
    fake_upstream.script(status=500, times=10)
    await failure(endpoint, max_retries=0)
    assert len(fake_upstream.requests) == 1

    settings.PARLEY_UPSTREAM_MAX_RETRIES = 1
    fake_upstream.reset()
    fake_upstream.script(status=500, times=10)
    await failure(endpoint)
    assert len(fake_upstream.requests) == 2


async def test_an_upstream_that_says_not_to_retry_is_not_retried(endpoint, fake_upstream, sleeps):
    fake_upstream.script(status=503, headers={"x-should-retry": "false"})
    await failure(endpoint)
    assert len(fake_upstream.requests) == 1


async def test_moderation_and_model_list_calls_follow_the_same_policy(endpoint, fake_upstream, sleeps):
    fake_upstream.script(status=503, endpoint="moderations").script(status=502, endpoint="models")
    assert (await upstream_client.moderate(endpoint, "hello")).flagged is False
    assert "gpt-4o-mini" in await upstream_client.list_models(endpoint)
    assert [r.status for r in fake_upstream.requests] == [503, 200, 502, 200]


async def test_a_429_with_retry_after_2_is_retried_once_about_2_seconds_later(endpoint, fake_upstream):
    # Real time: the one test that sleeps, to show the wait really happens (T35).
    fake_upstream.script(status=429, retry_after=2)
    events = await stream(endpoint)
    first, second = fake_upstream.requests
    assert events[-1].usage is not None
    assert (first.status, second.status) == (429, 200)
    assert 1.9 <= second.received_at - first.received_at <= 4.0

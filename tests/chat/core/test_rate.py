"""The per-member request rate as a member meets it: refusals with when to retry, shared by workers."""

import random

import pytest
from django.test import override_settings

from chat.core import rate
from chat.core.rate import rate_limit_hit
from chat.errors import RateLimited, TextRateLimited

# --- Request rate -------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """The rate limiter's clock, at the start of a minute no other test uses.

    A fresh minute gives fresh cache keys, so nothing is cleared: with REDIS_URL set the
    cache shares Redis with the channel layer of any other test run.
    """
    now = [random.randrange(10**6, 10**9) * 60.0]
    monkeypatch.setattr(rate, "_clock", lambda: now[0])
    return now


def test_the_twenty_first_reply_in_a_minute_is_refused_with_when_to_retry(alice, clock):
    for _ in range(20):
        rate_limit_hit(user=alice)
    with pytest.raises(RateLimited) as raised:
        rate_limit_hit(user=alice)
    error = raised.value
    assert error.code == "rate_limited"
    assert error.as_frame()["retry_after"] > 0
    assert f"{int(error.retry_after)} seconds" in error.message


def test_the_limit_is_per_member(alice, bob, clock):
    for _ in range(20):
        rate_limit_hit(user=alice)
    with pytest.raises(RateLimited):
        rate_limit_hit(user=alice)
    rate_limit_hit(user=bob)


def test_the_window_slides_so_a_burst_at_the_turn_of_the_minute_is_still_limited(alice, clock):
    clock[0] += 59
    for _ in range(20):
        rate_limit_hit(user=alice)
    clock[0] += 2  # a new fixed window, but only 2 seconds later
    with pytest.raises(RateLimited) as raised:
        rate_limit_hit(user=alice)
    # The last minute's 20 slide out gradually: one request fits once a twentieth has.
    wait = raised.value.retry_after
    assert 1 <= wait <= 6
    clock[0] += wait
    rate_limit_hit(user=alice)


def test_refused_requests_do_not_extend_the_wait(alice, clock):
    for _ in range(20):
        rate_limit_hit(user=alice)
    for _ in range(50):
        with pytest.raises(RateLimited):
            rate_limit_hit(user=alice)
    clock[0] += 60 + 3  # a twentieth of the last minute has slid out
    rate_limit_hit(user=alice)


def test_retry_after_is_honest(alice, clock):
    for _ in range(20):
        rate_limit_hit(user=alice)
    with pytest.raises(RateLimited) as raised:
        rate_limit_hit(user=alice)
    clock[0] += raised.value.retry_after - 1
    with pytest.raises(RateLimited):
        rate_limit_hit(user=alice)
    clock[0] += 1
    rate_limit_hit(user=alice)


@override_settings(PARLEY_RATE_LIMIT_PER_MINUTE=3)
def test_the_limit_follows_the_setting(alice, clock):
    for _ in range(3):
        rate_limit_hit(user=alice)
    with pytest.raises(RateLimited) as raised:
        rate_limit_hit(user=alice)
    assert "3 messages a minute" in raised.value.message


@override_settings(PARLEY_RATE_LIMIT_PER_MINUTE=0)
def test_a_limit_of_zero_turns_it_off(alice, clock):
    for _ in range(100):
        rate_limit_hit(user=alice)


@pytest.mark.redis
def test_the_count_lives_in_redis_where_every_worker_sees_it(alice, clock):
    import redis as redis_client
    from django.core.cache.backends.redis import RedisCache

    location = "redis://127.0.0.1:6379/15"
    try:
        redis_client.Redis.from_url(location).ping()
    except redis_client.exceptions.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location}}
    ):
        for _ in range(20):
            rate_limit_hit(user=alice)
        # Another worker process has its own client, and sees the same count.
        other_worker = RedisCache(location, {})
        window = int(clock[0] // 60)
        assert other_worker.get(f"parley:rate:{alice.pk}:{window}") == 20
        with pytest.raises(RateLimited):
            rate_limit_hit(user=alice)


# --- Bytes of text a minute (issue 20 item 6) ------------------------------------------------
@override_settings(PARLEY_RATE_LIMIT_PER_MINUTE=20, PARLEY_MESSAGE_BYTES_PER_MINUTE=1_000)
def test_text_past_the_bytes_a_minute_is_refused_and_counted_in_neither_limit(alice, bob, clock):
    for _ in range(4):
        rate.message_admit(user=alice, size=250)
    with pytest.raises(TextRateLimited) as raised:
        rate.message_admit(user=alice, size=1)
    assert raised.value.code == "text_rate_limited"
    assert raised.value.retry_after > 0
    assert "1000\xa0bytes of text a minute" in raised.value.message
    rate.message_admit(user=bob, size=1_000)  # per member
    # The refused message took none of the request rate: 16 more requests fit.
    for _ in range(16):
        rate_limit_hit(user=alice)
    with pytest.raises(RateLimited):
        rate_limit_hit(user=alice)


@override_settings(PARLEY_MESSAGE_BYTES_PER_MINUTE=1_000)
def test_a_message_larger_than_the_bytes_a_minute_fits_an_empty_minute(alice, clock):
    rate.message_admit(user=alice, size=5_000)
    with pytest.raises(TextRateLimited) as raised:
        rate.message_admit(user=alice, size=5_000)
    clock[0] += raised.value.retry_after
    rate.message_admit(user=alice, size=5_000)

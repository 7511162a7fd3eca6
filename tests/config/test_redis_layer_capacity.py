"""The Redis channel layer of a worker streaming many replies (issue 21's two-workers bench, where
one worker on PostgreSQL and Redis lost deltas and the ends of replies at 20 and at 200 at once)."""

import asyncio

import pytest
from django.conf import settings

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (the team deployment's layer)")


def test_a_workers_backlog_is_bounded_apart_from_one_sockets_buffer():
    # channels-redis checks a send against the capacity of the receiving channel's name, but
    # keeps every process-local channel of a worker in one Redis key: the process's bound must
    # be that of a worker's backlog, while each socket's own buffer keeps PARLEY_LAYER_CAPACITY
    # (T42). With one bound for both, 20 replies at once on one busy worker lost deltas and the
    # ends of replies (bench/load.py, docs/performance.md).
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])
    socket_channel = asyncio.run(layer.new_channel())
    assert layer.capacity == 1000  # a socket's buffer in the worker (BoundedQueue)
    assert layer.get_capacity(socket_channel) == 100_000  # the worker's key in Redis
    assert layer.get_capacity("a-shared-channel") == 1000


def test_more_sends_at_once_than_redis_pys_default_pool_all_arrive():
    # redis-py 8 caps a pool at 100 connections and then raises instead of waiting; a worker
    # streaming 200 replies sends on about as many at once.
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])
    at_once = 300

    async def scenario():
        channels = [await layer.new_channel() for _ in range(at_once)]
        groups = [f"pool-{channel.split('!')[1]}" for channel in channels]
        await asyncio.gather(*(layer.group_add(g, c) for g, c in zip(groups, channels, strict=True)))
        await asyncio.gather(*(layer.group_send(g, {"type": "reply.delta", "n": i}) for i, g in enumerate(groups)))
        received = [await asyncio.wait_for(layer.receive(channel), timeout=5) for channel in channels]
        await layer.flush()
        return [message["n"] for message in received]

    assert asyncio.run(scenario()) == list(range(at_once))

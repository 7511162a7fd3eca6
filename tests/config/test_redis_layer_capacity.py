"""The Redis channel layer keeps a worker's messages in one Redis key for all its sockets: its
bound must be a worker's backlog, not one socket's (issue 21: at 20 replies at once a worker on
a busy machine fell 1,000 messages behind and the ends of replies were dropped)."""

import asyncio

import pytest
from django.conf import settings

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (the team deployment's layer)")

SOCKETS = 4
EACH = 400  # 1,600 waiting for the process: over one socket's capacity (1,000) in all, under it each


def test_a_workers_backlog_over_one_sockets_capacity_is_kept_whole():
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])

    async def scenario():
        # A socket per reply, each in its reply's group, as the consumers are.
        channels = [await layer.new_channel() for _ in range(SOCKETS)]
        groups = [f"capacity-{channel.split('!')[1]}" for channel in channels]
        for group, channel in zip(groups, channels, strict=True):
            await layer.group_add(group, channel)
        for i in range(EACH):
            for group in groups:
                await layer.group_send(group, {"type": "reply.delta", "n": i})
        received = {channel: [] for channel in channels}
        for channel in channels:
            while len(received[channel]) < EACH:
                message = await asyncio.wait_for(layer.receive(channel), timeout=5)
                received[channel].append(message["n"])
        await layer.flush()
        return received

    try:
        received = asyncio.run(scenario())
    except TimeoutError:
        pytest.fail("messages of the worker's backlog were dropped")
    assert all(numbers == list(range(EACH)) for numbers in received.values())

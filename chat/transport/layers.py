"""Channels' in-memory layer, with its housekeeping done once a second.

The stock layer scans every channel and every group for expired messages on *each* send,
group send and receive: with N sockets each relaying a reply, every token cost O(N) work
and the whole load O(N²). Profiled at 100 replies at once, that scan alone was 14% of the
process's CPU (docs/performance.md). Expiry (60 s by default) only needs to be noticed
eventually, so the scan runs at most once a second. Group sends also put the message on each
member's queue directly instead of spawning a task per member.

Used for the embedded default (no ``REDIS_URL``); behaviour is the stock layer's otherwise:
each receiver gets its own copy of the message, and a full channel drops the message.
"""

from __future__ import annotations

import asyncio
import time
from copy import deepcopy

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as StockInMemoryChannelLayer

CLEAN_INTERVAL = 1.0  # seconds between scans for expired messages and group memberships


class InMemoryChannelLayer(StockInMemoryChannelLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._next_clean = 0.0

    def _clean_expired(self):
        now = time.monotonic()
        if now < self._next_clean:
            return
        self._next_clean = now + CLEAN_INTERVAL
        super()._clean_expired()

    def _queue(self, channel: str) -> asyncio.Queue:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    async def send(self, channel, message):
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, deepcopy(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def receive(self, channel):
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]
        return message

    async def group_send(self, group, message):
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        members = self.groups.get(group)
        if not members:
            return
        expires = time.time() + self.expiry
        for channel in list(members):
            # As the stock layer: a full channel misses this message, the others still get it.
            try:
                self._queue(channel).put_nowait((expires, deepcopy(message)))
            except asyncio.QueueFull:
                pass

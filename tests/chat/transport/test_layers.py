"""chat.transport.layers: the in-memory channel layer of the embedded default."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as StockLayer

from chat.transport import layers
from chat.transport.layers import InMemoryChannelLayer


async def test_a_group_send_reaches_every_member_with_its_own_copy():
    layer = InMemoryChannelLayer()
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("conv.x", a)
    await layer.group_add("conv.x", b)
    message = {"type": "reply.delta", "text": "hi", "nested": {"n": 1}}
    await layer.group_send("conv.x", message)
    got_a, got_b = await layer.receive(a), await layer.receive(b)
    assert got_a == got_b == message
    got_a["nested"]["n"] = 2
    assert got_b["nested"]["n"] == 1 and message["nested"]["n"] == 1


async def test_messages_keep_their_order_and_a_drained_channel_is_forgotten():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("conv.x", channel)
    for i in range(5):
        await layer.group_send("conv.x", {"type": "t", "i": i})
    assert [(await layer.receive(channel))["i"] for _ in range(5)] == [0, 1, 2, 3, 4]
    assert channel not in layer.channels


async def test_a_full_channel_drops_group_messages_but_not_the_other_members_copies():
    layer = InMemoryChannelLayer(capacity=2)
    full, free = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", full)
    await layer.group_add("g", free)
    for i in range(2):
        await layer.send(full, {"type": "t", "i": i})
    with pytest.raises(ChannelFull):
        await layer.send(full, {"type": "t", "i": 9})
    await layer.group_send("g", {"type": "t", "i": 3})
    assert (await layer.receive(free))["i"] == 3
    assert [(await layer.receive(full))["i"] for _ in range(2)] == [0, 1]


async def test_expired_messages_and_memberships_are_still_cleaned_but_at_most_once_an_interval(monkeypatch):
    scans = []
    monkeypatch.setattr(StockLayer, "_clean_expired", lambda self: scans.append(1))
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    for _ in range(50):
        await layer.group_send("g", {"type": "t"})
        await layer.receive(channel)
    assert len(scans) == 1  # the stock layer scanned 100 times here
    monkeypatch.setattr(layers, "CLEAN_INTERVAL", 0.0)
    layer._next_clean = 0.0
    await layer.group_send("g", {"type": "t"})
    assert len(scans) == 2


async def test_an_expired_message_is_dropped_by_the_next_scan():
    layer = InMemoryChannelLayer(expiry=0.05)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    await layer.send(channel, {"type": "old"})
    await asyncio.sleep(0.1)
    layer._next_clean = 0.0
    await layer.send(channel, {"type": "new"})  # a send does not scan; the next receive does
    assert (await layer.receive(channel))["type"] == "new"
    # An expired message also ends the channel's group memberships, as in the stock layer.
    assert channel not in layer.groups.get("g", {})

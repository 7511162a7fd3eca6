"""An image reply's task (chat/transport/images.py): announced on the conversation's group,
stopped by ``reply.stop`` like a chat reply, ended as ``stopped`` with nothing billed."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from chat.models import ChatModel, Message, ModelKind, Provider, Reservation, UsageRecord
from chat.services.images import image_turn_start
from chat.transport import events
from chat.transport.images import image_reply_spawn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dalle2(db, fake_upstream, settings, tmp_path):
    from config.settings import media_storage

    settings.STORAGES = {**settings.STORAGES, "media": media_storage("filesystem", root=tmp_path / "m", s3={})}
    provider = Provider(name="Fake", base_url=fake_upstream.base_url)
    provider.api_key = "sk-test-KEY0123456789abcd"
    provider.save()
    return ChatModel.objects.create(
        provider=provider, model_id="dall-e-2", kind=ModelKind.IMAGE, image_prices={"256x256": "0.016"}
    )


@pytest.mark.asyncio
async def test_stop_closes_the_image_request_and_ends_the_reply_stopped(alice, dalle2, fake_upstream):
    fake_upstream.script(endpoint="images", silence=True)  # the provider takes its time
    turn = await sync_to_async(image_turn_start)(
        user=alice, conversation_id=None, operation="generate", model_id=dalle2.pk, prompt="a slow boat"
    )
    layer = get_channel_layer()
    watcher = await layer.new_channel()
    await layer.group_add(events.conversation_group(turn.conversation.pk), watcher)
    task = image_reply_spawn(turn)
    assert await fake_upstream.await_until(lambda: any("/images/" in r.path for r in fake_upstream.requests))

    await layer.group_send(events.control_group(turn.conversation.pk), events.reply_stop())
    await asyncio.wait_for(task, 10)

    reply = await Message.objects.aget(pk=turn.reply.pk)
    assert (reply.status, reply.error_code, reply.attachments) == (Message.Status.STOPPED, "", [])
    [request] = [r for r in fake_upstream.requests if "/images/" in r.path]
    assert await fake_upstream.await_until(lambda: request.disconnected_at is not None)
    assert not await Reservation.objects.aexists() and not await UsageRecord.objects.filter(kind="image").aexists()
    seen = [await asyncio.wait_for(layer.receive(watcher), 5) for _ in range(3)]
    assert [e["type"] for e in seen] == ["message.created", "message.created", "reply.done"]
    assert seen[2]["message"]["status"] == "stopped"

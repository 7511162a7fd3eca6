"""The image endpoint (chat/web/images.py) over HTTP, and the images' place in the page,
the media view, the exports and the event vocabulary."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat import runtime
from chat.models import ChatModel, Conversation, MediaFile, Message, ModelKind, Provider
from tests.chat.media import image_samples

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def store(settings, tmp_path):
    from config.settings import media_storage

    settings.STORAGES = {**settings.STORAGES, "media": media_storage("filesystem", root=tmp_path / "m", s3={})}


@pytest.fixture
def dalle2(db, fake_upstream):
    provider = Provider(name="Fake", base_url=fake_upstream.base_url)
    provider.api_key = "sk-test-KEY0123456789abcd"
    provider.save()
    return ChatModel.objects.create(
        provider=provider, model_id="dall-e-2", kind=ModelKind.IMAGE, image_prices={"256x256": "0.016"}
    )


async def _signed_in(async_client, user):
    await async_client.aforce_login(user)
    return async_client


async def _settle_tasks():
    pending = runtime.running()
    if pending:
        await asyncio.wait(pending, timeout=30)


async def _create(client, model, **fields):
    data = {"operation": "generate", "model_id": str(model.pk), "size": "256x256", **fields}
    return await client.post(reverse("chat:api_images"), data)


@pytest.mark.asyncio
async def test_a_member_creates_images_and_the_reply_is_announced_then_saved(async_client, alice, dalle2, store):
    client = await _signed_in(async_client, alice)
    response = await _create(client, dalle2, prompt="a kite", n="2")
    assert response.status_code == 202
    body = response.json()
    assert body["question"]["content"] == "a kite"
    assert body["reply"]["status"] == "streaming"
    await _settle_tasks()
    reply = await Message.objects.aget(pk=body["reply"]["id"])
    assert reply.status == "complete" and len(reply.attachments) == 2


@pytest.mark.asyncio
async def test_the_images_are_served_to_their_owner_and_to_nobody_else(async_client, alice, bob, dalle2, store):
    from django.test import AsyncClient

    client = await _signed_in(async_client, alice)
    body = (await _create(client, dalle2, prompt="a kite")).json()
    await _settle_tasks()
    reply = await Message.objects.aget(pk=body["reply"]["id"])
    url = reverse("chat:media", args=[reply.attachments[0]["id"]])
    shown = await client.get(url + "?inline=1")
    assert shown.status_code == 200 and shown["Content-Type"] == "image/png"
    assert "inline" in shown["Content-Disposition"]
    stranger = AsyncClient()
    await stranger.aforce_login(bob)
    for path in (url, url + "?inline=1"):
        assert (await stranger.get(path)).status_code == 404
    assert (await AsyncClient().get(url)).status_code == 302  # anonymous: the sign-in page
    # Bob cannot vary it or post into Alice's conversation either.
    varied = await _create(stranger, dalle2, operation="variation", source_id=reply.attachments[0]["id"])
    assert varied.status_code == 404
    posted = await _create(stranger, dalle2, prompt="x", conversation_id=str(reply.conversation_id))
    assert posted.status_code == 404


@pytest.mark.asyncio
async def test_a_bad_upload_is_a_400_with_its_code(async_client, alice, dalle2, store, fake_upstream):
    client = await _signed_in(async_client, alice)
    cases = [
        (SimpleUploadedFile("cat.png", b"<html>no</html>", "image/png"), "image_invalid"),
        (SimpleUploadedFile("cat.png", image_samples.truncated_png(), "image/png"), "image_invalid"),
        (SimpleUploadedFile("cat.png", image_samples.bomb(), "image/png"), "image_bomb"),
    ]
    for upload, code in cases:
        response = await _create(client, dalle2, operation="edit", prompt="x", image=upload)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == code
    assert not await Message.objects.aexists()
    assert [r for r in fake_upstream.requests if "/images/" in r.path] == []


@pytest.mark.asyncio
async def test_an_upload_over_the_limit_is_refused_before_it_is_read(async_client, alice, dalle2, store, settings):
    settings.PARLEY_IMAGE_UPLOAD_MAX_BYTES = 100
    client = await _signed_in(async_client, alice)
    upload = SimpleUploadedFile("big.png", image_samples.png(64, 64), "image/png")
    response = await _create(client, dalle2, operation="edit", prompt="x", image=upload)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "image_too_large")


@pytest.mark.asyncio
async def test_an_anonymous_request_is_refused(async_client, dalle2):
    response = await _create(async_client, dalle2, prompt="x")
    assert response.status_code == 401


@pytest.mark.asyncio
async def test_the_exports_carry_the_images(async_client, alice, dalle2, store):
    client = await _signed_in(async_client, alice)
    body = (await _create(client, dalle2, prompt="a kite")).json()
    await _settle_tasks()
    conversation_id = body["conversation"]["id"]
    reply = await Message.objects.aget(pk=body["reply"]["id"])
    image_url = reverse("chat:media", args=[reply.attachments[0]["id"]])
    markdown = await client.get(reverse("chat:api_export_md", args=[conversation_id]))
    assert f"![A picture of a kite]({image_url})" in markdown.content.decode()
    exported = json.loads((await client.get(reverse("chat:api_export_json", args=[conversation_id]))).content)
    [shown] = exported["messages"][-1]["attachments"]
    assert (shown["url"], shown["revised_prompt"], shown["width"]) == (image_url, "A picture of a kite", 256)


def test_the_image_mode_is_offered_only_with_an_image_model(alice_client, alice, dalle2):
    import re

    def config():
        page = alice_client.get(reverse("chat:home")).content
        match = re.search(rb'<script id="parley-config" type="application/json">(.*?)</script>', page, re.S)
        return json.loads(match.group(1))

    assert [m["name"] for m in config()["image_models"]] == ["dall-e-2"]
    dalle2.enabled = False
    dalle2.save()
    assert config()["image_models"] == []  # only chat models (the local one): no Image mode


def test_the_page_policy_lets_images_come_from_parley_only(alice_client):
    policy = alice_client.get(reverse("chat:home"))["Content-Security-Policy"]
    img_src = next(part for part in policy.split(";") if part.strip().startswith("img-src")).split()[1:]
    assert img_src == ["'self'", "data:"]


@pytest.mark.asyncio
async def test_every_socket_of_the_conversation_hears_the_prompt_the_reply_and_its_end(
    async_client, alice, dalle2, store
):
    from channels.layers import get_channel_layer

    from chat.transport.events import PUBLIC, conversation_group

    conversation = await Conversation.objects.acreate(owner=alice, title="Art")
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(conversation_group(conversation.pk), channel)
    client = await _signed_in(async_client, alice)
    await _create(client, dalle2, prompt="a kite", conversation_id=str(conversation.pk))
    await _settle_tasks()
    seen = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(3)]
    assert [e["type"] for e in seen] == ["message.created", "message.created", "reply.done"]
    assert all(e["type"] in PUBLIC for e in seen)
    assert seen[2]["message"]["attachments"][0]["revised_prompt"] == "A picture of a kite"
    assert await sync_to_async(MediaFile.objects.filter(conversation=conversation).count)() == 1


def test_the_usage_page_counts_images_by_kind(alice_client, alice, dalle2, store):
    from asgiref.sync import async_to_sync

    from chat.services.images import image_reply_produce, image_turn_start

    turn = image_turn_start(
        user=alice, conversation_id=None, operation="generate", model_id=dalle2.pk, prompt="a kite", n=2
    )
    async_to_sync(image_reply_produce)(turn)
    page = alice_client.get(reverse("chat:usage")).content.decode()
    assert "2 images" in page

"""Images attached to a message: image parts to a vision model, a clear refusal before any call
to one without vision, and bob cannot attach alice's image."""

from __future__ import annotations

import base64

import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from chat.catalog.families import has_vision
from chat.models import ChatModel, MediaFile, Message
from chat.services.vision import image_upload
from tests.chat.media.samples import png
from tests.chat.wsclient import Tab
from tests.documents_support import media_in_folder, pdf_with_pages

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    media_in_folder(settings, tmp_path / "media")
    settings.PARLEY_AUTO_TITLE = False


def set_vision(model, value: bool):
    ChatModel.objects.filter(pk=model.pk).update(vision=value)


async def test_a_vision_model_gets_the_image_as_an_image_part(alice, upstream_model, fake_upstream):
    await database_sync_to_async(set_vision)(upstream_model, True)
    image = await database_sync_to_async(image_upload)(user=alice, name="chart.png", data=png(3, 3))
    tab = await Tab.open(alice)

    await tab.send_message("What is in this chart?", image_ids=[str(image.id)])
    final = await tab.reply()

    assert final["status"] == "complete"
    content = fake_upstream.completion_requests[-1].body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is in this chart?"}
    assert content[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(png(3, 3)).decode()
    await tab.close()


async def test_a_model_without_vision_is_refused_before_any_call_and_the_message_is_kept(
    alice, upstream_model, fake_upstream
):
    image = await database_sync_to_async(image_upload)(user=alice, name="chart.png", data=png())
    tab = await Tab.open(alice)

    await tab.send_message("What is in this chart?", image_ids=[str(image.id)])
    error = await tab.until_type("error")

    assert error["code"] == "model_no_vision"
    assert error["message"]
    assert fake_upstream.completion_requests == []
    assert await database_sync_to_async(Message.objects.filter(role="user").count)() == 1
    assert not await database_sync_to_async(Message.objects.filter(role="assistant").exists)()
    await tab.close()


async def test_bob_cannot_attach_alices_image(alice, bob, upstream_model, fake_upstream):
    image = await database_sync_to_async(image_upload)(user=alice, name="chart.png", data=png())
    tab = await Tab.open(bob)

    await tab.send_message("Look", image_ids=[str(image.id)])
    error = await tab.until_type("error")

    assert error["code"] == "not_found"
    assert (await database_sync_to_async(MediaFile.objects.get)(pk=image.pk)).message_id is None
    assert not await database_sync_to_async(Message.objects.exists)()
    await tab.close()


@pytest.mark.parametrize(
    ("model_id", "vision"),
    [
        ("gpt-4o", True),
        ("gpt-4o-mini-2024-07-18", True),
        ("gpt-4.1-nano", True),
        ("gpt-4o-audio-preview", False),
        ("gpt-3.5-turbo", False),
        ("o3-mini", False),
        ("llama-3.1-8b", False),
    ],
)
def test_the_catalog_marks_vision_by_family(model_id, vision):
    assert has_vision(model_id) is vision


@pytest.mark.parametrize(
    ("name", "data", "code", "status"),
    [
        ("notes.txt", b"plain text", "media_type_unsupported", 400),
        ("doc.png", pdf_with_pages(["not an image"]), "media_type_unsupported", 400),
        ("big.png", b"", "media_empty", 400),
    ],
)
def test_a_bad_image_upload_gets_its_code(alice, name, data, code, status):
    client = Client()
    client.force_login(alice)
    response = client.post("/api/vision/images/", {"file": SimpleUploadedFile(name, data)})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert not MediaFile.objects.exists()


def test_an_image_upload_is_the_members(alice):
    client = Client()
    client.force_login(alice)
    response = client.post("/api/vision/images/", {"file": SimpleUploadedFile("x.png", png())})
    assert response.status_code == 201
    assert MediaFile.objects.get(pk=response.json()["image"]["id"]).owner == alice


async def test_the_images_show_on_the_message_and_its_state(alice, upstream_model, fake_upstream):
    await database_sync_to_async(set_vision)(upstream_model, True)
    first = await database_sync_to_async(image_upload)(user=alice, name="a.png", data=png(3, 3))
    second = await database_sync_to_async(image_upload)(user=alice, name="b.png", data=png(4, 4))
    tab = await Tab.open(alice)

    await tab.send_message("Compare", image_ids=[str(second.id), str(first.id)])
    conversation = (await tab.until_type("conversation.created"))["conversation"]
    created = await tab.until(lambda f: f["type"] == "message.created" and f["message"]["role"] == "user")
    await tab.reply()
    await tab.send({"type": "subscribe", "conversation_id": conversation["id"]})
    state = await tab.until_type("conversation.state")

    for message in (created["message"], state["messages"][0]):
        shown = [(a["name"], a["kind"], a["url"]) for a in message["attachments"]]
        assert shown == [("b.png", "image", f"/media/{second.id}/"), ("a.png", "image", f"/media/{first.id}/")]
    await tab.close()

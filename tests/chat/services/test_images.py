"""Images in a conversation (chat/services/images.py), against the fake upstream's image endpoints.

Each test goes the way a member's request goes: ``image_turn_start`` (the checks, the two
messages, the admission), then ``image_reply_produce`` (moderation, the provider, the store,
the settlement). What is asserted is what a member or an admin would see: the reply's state
and images, the provider's requests (or that there were none), the usage and the budget.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import close_old_connections
from PIL import Image

from chat.core import budget
from chat.errors import BadRequest, ImageRefused, ModelUnavailable, NotFound
from chat.media.storage import media_storage, stored_open
from chat.models import (
    ChatModel,
    Conversation,
    MediaFile,
    Message,
    ModelKind,
    Provider,
    Reservation,
    UsageMonth,
    UsageRecord,
)
from chat.services.conversations import conversation_delete
from chat.services.images import image_models_offered, image_reply_produce, image_turn_start
from tests.chat.core.test_budget import run_at_once, set_budget
from tests.chat.media import image_samples

pytestmark = pytest.mark.django_db(transaction=True)

DALL_E_2_PRICES = {"1024x1024": "0.02", "512x512": "0.018", "256x256": "0.016"}


@pytest.fixture
def store(settings, tmp_path):
    from config.settings import media_storage as storage_entry

    root = tmp_path / "media"
    settings.STORAGES = {**settings.STORAGES, "media": storage_entry("filesystem", root=root, s3={})}
    return root


@pytest.fixture
def provider(db, fake_upstream):
    provider = Provider(name="Fake", base_url=fake_upstream.base_url)
    provider.api_key = "sk-test-KEY0123456789abcd"
    provider.save()
    return provider


@pytest.fixture
def dalle2(provider):
    return ChatModel.objects.create(
        provider=provider, model_id="dall-e-2", kind=ModelKind.IMAGE, image_prices=DALL_E_2_PRICES
    )


@pytest.fixture
def dalle3(provider):
    prices = {"1024x1024": "0.04", "1024x1024/hd": "0.08", "1792x1024": "0.08"}
    return ChatModel.objects.create(provider=provider, model_id="dall-e-3", kind=ModelKind.IMAGE, image_prices=prices)


def image_requests(fake_upstream):
    return [r for r in fake_upstream.requests if "/images/" in r.path]


def start(user, model, **fields):
    fields.setdefault("operation", "generate")
    fields.setdefault("conversation_id", None)
    return image_turn_start(user=user, model_id=model.pk, **fields)


def produce(turn):
    return async_to_sync(image_reply_produce)(turn)


def stored_bytes(media_id) -> bytes:
    media = MediaFile.objects.get(pk=media_id)
    with stored_open(media.storage_name) as handle:
        return handle.read()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- creating ---------------------------------------------------------------------------------


def test_a_prompt_becomes_a_reply_with_the_images_stored_and_billed(alice, dalle3, fake_upstream, store):
    turn = start(alice, dalle3, prompt="a lighthouse at dusk", size="1792x1024", quality="hd")
    assert turn.reply.status == Message.Status.STREAMING
    assert Reservation.objects.filter(message=turn.reply).exists()  # held before the call

    reply = produce(turn)

    assert reply.status == Message.Status.COMPLETE
    [request] = image_requests(fake_upstream)
    assert request.path.endswith("/images/generations")
    assert request.body["response_format"] == "b64_json"
    assert (request.body["size"], request.body["quality"], request.body["n"]) == ("1792x1024", "hd", 1)
    [image] = reply.attachments
    assert image["revised_prompt"] == "A picture of a lighthouse at dusk"
    assert reply.content == "A picture of a lighthouse at dusk"
    assert (image["width"], image["height"]) == (1792, 1024)
    picture = decoded(stored_bytes(image["id"]))
    assert (picture.format, picture.size) == ("PNG", (1792, 1024))
    media = MediaFile.objects.get(pk=image["id"])
    assert (media.owner, media.message_id, media.conversation_id, media.kind) == (
        alice,
        reply.pk,
        turn.conversation.pk,
        MediaFile.Kind.IMAGE,
    )
    # No size/quality price for 1792x1024/hd: the highest listed price is held and billed.
    record = UsageRecord.objects.get(user=alice)
    assert (record.kind, record.images, record.cost) == ("image", 1, Decimal("0.08"))
    assert not Reservation.objects.exists()
    assert UsageMonth.objects.get(user=alice).cost_used == Decimal("0.08")


def test_several_images_are_asked_for_and_billed_by_the_count(alice, dalle2, fake_upstream, store):
    turn = start(alice, dalle2, prompt="three boats", size="512x512", n=3)
    reply = produce(turn)
    assert len(reply.attachments) == 3
    assert image_requests(fake_upstream)[0].body["n"] == 3
    record = UsageRecord.objects.get(user=alice)
    assert (record.images, record.cost) == (3, Decimal("0.054"))
    assert Message.objects.get(pk=reply.pk).cost == Decimal("0.054")


def test_the_prompt_and_the_reply_are_saved_in_the_conversation_for_every_tab(alice, dalle2, store):
    conversation = Conversation.objects.create(owner=alice, title="Art")
    turn = start(alice, dalle2, conversation_id=conversation.pk, prompt="a fox")
    produce(turn)
    conversation.refresh_from_db()
    question, reply = Message.objects.filter(conversation=conversation).order_by("created_at", "role")[:2]
    assert conversation.current_leaf_id == turn.reply.pk
    assert (turn.question.role, turn.question.content) == ("user", "a fox")
    assert Message.objects.get(pk=turn.reply.pk).parent_id == turn.question.pk


def test_an_option_the_model_does_not_take_is_refused_before_anything(alice, dalle2, dalle3, fake_upstream, store):
    cases = [
        (dalle2, {"size": "1792x1024"}),
        (dalle2, {"quality": "hd"}),
        (dalle3, {"quality": "ultra"}),
        (dalle3, {"n": 2}),
        (dalle2, {"n": 0}),
        (dalle2, {"n": "many"}),
    ]
    for model, options in cases:
        with pytest.raises(ImageRefused) as caught:
            start(alice, model, prompt="a cat", **options)
        assert caught.value.code == "image_option_invalid", options
    with pytest.raises(BadRequest):
        start(alice, dalle2, prompt="   ")
    assert not Message.objects.exists() and not Conversation.objects.exists()
    assert image_requests(fake_upstream) == []


def test_a_model_not_granted_or_not_an_image_model_is_unavailable(alice, bob, dalle2, provider, store):
    from django.contrib.auth.models import Group

    chat = ChatModel.objects.create(provider=provider, model_id="gpt-4o")
    with pytest.raises(ModelUnavailable):
        start(alice, chat, prompt="a cat")
    dalle2.groups.add(Group.objects.create(name="artists"))
    with pytest.raises(ModelUnavailable):
        start(alice, dalle2, prompt="a cat")
    assert image_models_offered(user=alice) == []
    assert not Message.objects.exists()


def test_the_models_offered_say_what_each_takes(alice, dalle2, dalle3, settings):
    settings.PARLEY_IMAGE_MAX_N = 4
    offered = {m["name"]: m for m in image_models_offered(user=alice)}
    assert offered["dall-e-3"]["qualities"] == ["standard", "hd"]
    assert offered["dall-e-3"]["max_n"] == 1
    assert (offered["dall-e-2"]["max_n"], offered["dall-e-2"]["variations"]) == (4, True)
    assert offered["dall-e-3"]["edits"] is False


# --- editing and varying ------------------------------------------------------------------------


def test_an_edit_sends_the_image_and_the_mask_as_square_pngs_in_a_multipart_form(alice, dalle2, fake_upstream, store):
    upload = image_samples.png(300, 200, (0, 0, 255, 255))
    mask = image_samples.mask(300, 200, (150, 0, 250, 200))
    turn = start(
        alice,
        dalle2,
        operation="edit",
        prompt="add a sun",
        size="256x256",
        upload=upload,
        upload_name="sky.png",
        mask=mask,
    )
    reply = produce(turn)

    assert reply.status == Message.Status.COMPLETE
    [request] = image_requests(fake_upstream)
    assert request.path.endswith("/images/edits")
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert request.form == {
        "model": "dall-e-2",
        "n": "1",
        "prompt": "add a sun",
        "size": "256x256",
        "response_format": "b64_json",
        "user": request.form["user"],
    }
    assert set(request.files) == {"image", "mask"}
    sent = decoded(request.file_bytes["image"])
    sent_mask = decoded(request.file_bytes["mask"])
    assert (sent.format, sent.mode, sent.size) == ("PNG", "RGBA", (200, 200))
    assert sent_mask.size == (200, 200)
    assert sent_mask.getpixel((150, 100))[3] == 0 and sent_mask.getpixel((50, 100))[3] == 255
    # The upload, normalised, is the prompt's attachment: what the model saw is what is shown.
    [source] = turn.question.attachments
    assert stored_bytes(source["id"]) == request.file_bytes["image"]
    assert MediaFile.objects.get(pk=source["id"]).message_id == turn.question.pk


def test_more_like_this_varies_a_stored_image_of_the_member_without_a_prompt(alice, dalle2, fake_upstream, store):
    first = produce(start(alice, dalle2, prompt="a red kite", size="256x256"))
    source_id = first.attachments[0]["id"]
    turn = start(alice, dalle2, operation="variation", conversation_id=first.conversation_id, source_id=source_id, n=2)
    reply = produce(turn)

    assert reply.status == Message.Status.COMPLETE and len(reply.attachments) == 2
    request = image_requests(fake_upstream)[-1]
    assert request.path.endswith("/images/variations")
    assert "prompt" not in request.form and request.form["n"] == "2"
    assert decoded(request.file_bytes["image"]).size == (256, 256)
    assert turn.question.attachments[0]["id"] == source_id


def test_a_model_without_edits_refuses_an_edit_before_the_call(alice, dalle3, fake_upstream, store):
    with pytest.raises(ImageRefused) as caught:
        start(alice, dalle3, operation="edit", prompt="x", upload=image_samples.png())
    assert caught.value.code == "image_operation_unsupported"
    assert image_requests(fake_upstream) == []


@pytest.mark.parametrize(
    ("upload", "code"),
    [
        (b"%PDF-1.4 this is not an image", "image_invalid"),
        (image_samples.truncated_png(), "image_invalid"),
        (image_samples.bomb(), "image_bomb"),
    ],
    ids=["not-an-image", "truncated", "bomb"],
)
def test_a_bad_upload_is_refused_with_its_code_and_nothing_is_saved_or_called(
    alice, dalle2, fake_upstream, store, upload, code
):
    with pytest.raises(ImageRefused) as caught:
        start(alice, dalle2, operation="edit", prompt="x", upload=upload)
    assert caught.value.code == code
    assert not Message.objects.exists() and not MediaFile.objects.exists() and not Conversation.objects.exists()
    assert image_requests(fake_upstream) == []
    assert not Reservation.objects.exists()


def test_an_upload_over_the_limit_is_refused(alice, dalle2, fake_upstream, store, settings):
    settings.PARLEY_IMAGE_UPLOAD_MAX_BYTES = 1000
    with pytest.raises(ImageRefused) as caught:
        start(alice, dalle2, operation="variation", upload=image_samples.jpeg(400, 400) + b"\0" * 1000)
    assert caught.value.code == "image_too_large"
    assert image_requests(fake_upstream) == []


# --- ownership ----------------------------------------------------------------------------------


def test_another_members_image_and_conversation_are_not_found(alice, bob, dalle2, fake_upstream, store):
    mine = produce(start(alice, dalle2, prompt="a secret map", size="256x256"))
    before = len(fake_upstream.requests)
    with pytest.raises(NotFound):
        start(bob, dalle2, operation="variation", source_id=mine.attachments[0]["id"])
    with pytest.raises(NotFound):
        start(bob, dalle2, conversation_id=mine.conversation_id, prompt="hi")
    assert len(fake_upstream.requests) == before
    assert Message.objects.filter(conversation_id=mine.conversation_id).count() == 2
    assert not Conversation.objects.filter(owner=bob).exists()


def test_the_images_are_deleted_with_the_conversation(alice, dalle2, store):
    reply = produce(start(alice, dalle2, prompt="a tree", size="256x256", n=2))
    names = list(MediaFile.objects.filter(message=reply).values_list("storage_name", flat=True))
    assert len(names) == 2 and all(media_storage().exists(n) for n in names)
    conversation_delete(conversation=Conversation.objects.get(pk=reply.conversation_id))
    assert not MediaFile.objects.exists()
    assert not any(media_storage().exists(n) for n in names)


# --- failures end the reply with a reason ------------------------------------------------------


def test_a_provider_failure_ends_the_reply_with_its_code_and_bills_nothing(alice, dalle2, fake_upstream, store):
    fake_upstream.script(status=400, endpoint="images", error_message="Your prompt was rejected")
    reply = produce(start(alice, dalle2, prompt="a cat"))
    assert reply.status == Message.Status.ERROR
    assert reply.error_code == "bad_request" and "Your prompt was rejected" in reply.error_text
    assert reply.attachments == [] and not MediaFile.objects.exists()
    assert not Reservation.objects.exists() and not UsageRecord.objects.exists()
    assert UsageMonth.objects.get(user=alice).cost_reserved == 0


def test_a_link_instead_of_an_image_is_refused_and_never_fetched(alice, dalle2, fake_upstream, store):
    fake_upstream.image_answer = "url"
    reply = produce(start(alice, dalle2, prompt="a cat"))
    assert (reply.status, reply.error_code) == (Message.Status.ERROR, "image_url_only")
    assert all("/images/" in r.path for r in fake_upstream.requests)  # nothing else was asked
    assert len(fake_upstream.requests) == 1


def test_bytes_that_are_no_image_are_not_stored(alice, dalle2, fake_upstream, store):
    fake_upstream.image_answer = "not_png"
    reply = produce(start(alice, dalle2, prompt="a cat", n=2))
    assert (reply.status, reply.error_code) == (Message.Status.ERROR, "upstream_bad_response")
    assert not MediaFile.objects.exists()


def test_a_blocked_prompt_ends_the_reply_blocked_before_the_image_call(alice, dalle2, provider, fake_upstream, store):
    provider.use_moderation = True
    provider.save()
    reply = produce(start(alice, dalle2, prompt="draw FLAGME now"))
    assert (reply.status, reply.error_code) == (Message.Status.BLOCKED, "moderation_blocked")
    assert reply.moderation_categories == ["violence"]
    assert image_requests(fake_upstream) == []
    assert not Reservation.objects.exists() and not UsageRecord.objects.filter(kind="image").exists()


def test_a_call_the_budget_cannot_cover_is_refused_before_the_call(alice, dalle2, fake_upstream, store):
    set_budget(alice, cost=Decimal("0.05"))
    turn = start(alice, dalle2, prompt="three cats", size="1024x1024", n=3)  # 3 × $0.02 > $0.05
    assert turn.refusal is not None and turn.refusal.code == "quota_exceeded"
    assert (turn.reply.status, turn.reply.error_code) == (Message.Status.ERROR, "quota_exceeded")
    reply = produce(turn)
    assert reply.status == Message.Status.ERROR
    assert image_requests(fake_upstream) == []
    assert not Reservation.objects.exists()
    # Two fit.
    assert produce(start(alice, dalle2, prompt="two cats", size="1024x1024", n=2)).status == Message.Status.COMPLETE


def test_ten_image_calls_at_the_edge_of_the_budget_end_within_it(alice, dalle2, fake_upstream, store):
    # $0.07 left: three images of $0.02 fit, whatever the order the ten calls come in.
    set_budget(alice, cost=Decimal("0.10"))
    UsageMonth.objects.create(user=alice, month=budget.month_start(), cost_used=Decimal("0.03"))

    def call(index):
        close_old_connections()
        turn = start(alice, dalle2, prompt=f"cat number {index}", size="1024x1024")
        return produce(turn).status if turn.refusal is None else turn.refusal.code

    outcomes = run_at_once(10, call)

    assert outcomes.count(Message.Status.COMPLETE) == 3
    assert outcomes.count("quota_exceeded") == 7
    row = UsageMonth.objects.get(user=alice)
    assert row.cost_used == Decimal("0.09") <= Decimal("0.10")
    assert row.cost_reserved == 0 and not Reservation.objects.exists()
    assert len(image_requests(fake_upstream)) == 3
    assert MediaFile.objects.filter(kind=MediaFile.Kind.IMAGE).count() == 3


def test_a_second_image_turn_waits_for_the_first(alice, dalle2, store):
    from chat.errors import Busy

    first = start(alice, dalle2, prompt="a cat")
    with pytest.raises(Busy):
        start(alice, dalle2, conversation_id=first.conversation.pk, prompt="a dog")
    produce(first)
    assert produce(start(alice, dalle2, conversation_id=first.conversation.pk, prompt="a dog")).status == "complete"


@pytest.mark.asyncio
async def test_the_reply_ends_in_the_thread_as_the_member_reads_it(alice, dalle2, store):
    turn = await sync_to_async(start)(alice, dalle2, prompt="a moon", size="256x256")
    reply = await image_reply_produce(turn)
    from chat.serializers import message_to_dict

    shown = message_to_dict(reply)
    assert shown["status"] == "complete"
    [image] = shown["attachments"]
    assert image["url"] == f"/media/{image['id']}/"
    assert image["revised_prompt"] == "A picture of a moon"

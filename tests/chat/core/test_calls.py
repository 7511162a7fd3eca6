"""The model-call core without a conversation: an embedding call admitted, refused and settled
in its own units against the fake upstream (a real HTTP server), and prices in every kind's units."""

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.utils import timezone

from chat.core import budget
from chat.core.calls import Units, call_admit, calls_sweep_orphans, model_call, units_cost
from chat.errors import ModelUnavailable, QuotaExceeded
from chat.models import ChatModel, ModelKind, Reservation, UsageKind, UsageMonth, UsageRecord
from chat.upstream import client as upstream_client
from tests.fakeupstream import embeddings as fake_embeddings

pytestmark = [pytest.mark.usefixtures("close_llm_clients"), pytest.mark.django_db(transaction=True)]

TEXTS = ["The quarterly report is due on Friday.", "Lunch is served in the atrium."]


@pytest.fixture
def embedding_model(upstream_model):
    """An embedding model on the fake's provider, priced at $20 per million tokens so that the cost
    of a few tokens shows in the six decimals usage keeps."""
    return ChatModel.objects.create(
        provider=upstream_model.provider,
        model_id="text-embedding-3-small",
        kind=ModelKind.EMBEDDING,
        input_price_per_million=Decimal("20"),
    )


async def embed_for(user, model, texts, *, estimate_tokens=50):
    async with model_call(
        user=user,
        kind=UsageKind.EMBEDDING,
        estimate=Units(input_tokens=estimate_tokens),
        purpose="embedding",
        model_id=model.pk,
    ) as call:
        result = await upstream_client.embed(call.endpoint, call.model.model_id, texts, user=call.admission.pseudonym)
        call.usage = Units(input_tokens=result.prompt_tokens)
    return call, result


async def test_an_embedding_call_is_admitted_called_and_settled_in_its_own_units(alice, embedding_model, fake_upstream):
    call, result = await embed_for(alice, embedding_model, TEXTS)

    assert result.vectors == [fake_embeddings.embed(text) for text in TEXTS]
    [request] = [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]
    assert request.body["model"] == "text-embedding-3-small"
    assert request.body["user"] == call.admission.pseudonym and "alice" not in request.body["user"]

    record = await UsageRecord.objects.aget(user=alice)
    billed = sum(len(text.split()) for text in TEXTS)  # what the fake reports as prompt tokens
    assert (record.kind, record.purpose, record.prompt_tokens, record.completion_tokens) == (
        "embedding",
        "embedding",
        billed,
        0,
    )
    assert record.cost == Decimal(billed) * 20 / 1_000_000 > 0
    assert record.conversation_id is None and record.message_id is None
    month = await UsageMonth.objects.aget(user=alice)
    assert (month.tokens_used, month.tokens_reserved, month.cost_reserved) == (billed, 0, Decimal(0))
    assert not await Reservation.objects.filter(user=alice).aexists()


async def test_an_embedding_model_not_granted_to_the_member_is_refused_before_any_call(
    alice, bob, embedding_model, fake_upstream
):
    staff = await Group.objects.acreate(name="Research")
    await sync_to_async(staff.user_set.add)(bob)
    await sync_to_async(embedding_model.groups.add)(staff)

    with pytest.raises(ModelUnavailable):
        await embed_for(alice, embedding_model, TEXTS)

    assert not [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]
    assert not await Reservation.objects.aexists() and not await UsageRecord.objects.aexists()
    await embed_for(bob, embedding_model, TEXTS)  # granted to Bob's group: admitted
    assert await UsageRecord.objects.filter(user=bob, kind="embedding").acount() == 1


async def test_a_chat_model_cannot_be_called_as_an_embedding_model(alice, upstream_model, fake_upstream):
    with pytest.raises(ModelUnavailable):
        await embed_for(alice, upstream_model, TEXTS)
    assert not fake_upstream.requests


async def test_an_embedding_call_over_budget_is_refused_before_any_call(alice, embedding_model, fake_upstream):
    alice.monthly_token_budget = 100
    await alice.asave(update_fields=["monthly_token_budget"])
    await UsageMonth.objects.acreate(user=alice, month=budget.month_start(), tokens_used=90)

    with pytest.raises(QuotaExceeded) as refused:
        await embed_for(alice, embedding_model, TEXTS, estimate_tokens=50)

    assert refused.value.code == "quota_exceeded"
    assert "This request could use up to 50 tokens, but only 10" in refused.value.message
    assert not [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]
    month = await UsageMonth.objects.aget(user=alice)
    assert (month.tokens_used, month.tokens_reserved) == (90, 0)


async def test_a_call_cancelled_mid_flight_releases_its_reservation_and_bills_what_it_had(alice, embedding_model):
    started = asyncio.Event()

    async def hang():
        async with model_call(
            user=alice,
            kind=UsageKind.EMBEDDING,
            estimate=Units(input_tokens=1_000),
            purpose="embedding",
            model_id=embedding_model.pk,
        ) as call:
            call.usage = Units(input_tokens=7)  # what the caller knew it had spent
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(hang())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    month = await UsageMonth.objects.aget(user=alice)
    assert (month.tokens_used, month.tokens_reserved) == (7, 0)
    assert not await Reservation.objects.aexists()


def test_a_call_whose_worker_died_is_settled_by_the_sweep_at_its_worst_case(alice, embedding_model):
    admission = call_admit(
        user=alice,
        kind=UsageKind.EMBEDDING,
        estimate=Units(input_tokens=5_000),
        purpose="embedding",
        model_id=embedding_model.pk,
    )
    assert calls_sweep_orphans(older_than=dt.timedelta(minutes=5)) == 0  # still young: alive

    Reservation.objects.filter(pk=admission.reservation_id).update(created_at=timezone.now() - dt.timedelta(hours=2))
    assert calls_sweep_orphans(older_than=dt.timedelta(minutes=5)) == 1

    record = UsageRecord.objects.get(user=alice)
    assert (record.kind, record.prompt_tokens, record.estimated) == ("embedding", 5_000, True)
    month = UsageMonth.objects.get(user=alice)
    assert (month.tokens_used, month.tokens_reserved) == (5_000, 0)
    assert calls_sweep_orphans(older_than=dt.timedelta(minutes=5)) == 0


def test_every_kind_is_priced_in_its_own_units():
    model = ChatModel(
        model_id="m",
        input_price_per_million=Decimal("2.50"),
        output_price_per_million=Decimal("10"),
        image_prices={"1024x1024": "0.04", "1024x1024/hd": "0.08", "1792x1024": "0.12"},
        audio_price_per_minute=Decimal("0.006"),
        speech_price_per_million_characters=Decimal("15"),
        training_price_per_million=Decimal("25"),
    )
    assert units_cost(model, "chat", Units(input_tokens=1_000, output_tokens=100)) == Decimal("0.0035")
    assert units_cost(model, "image", Units(images=3, image_size="1024x1024", image_quality="hd")) == Decimal("0.24")
    assert units_cost(model, "image", Units(images=2, image_size="1024x1024")) == Decimal("0.08")
    # A size the admin did not price reserves the dearest listed price, never nothing.
    assert units_cost(model, "image", Units(images=1, image_size="512x512")) == Decimal("0.12")
    assert units_cost(model, "transcription", Units(audio_seconds=Decimal(90))) == Decimal("0.009")
    assert units_cost(model, "speech", Units(characters=2_000)) == Decimal("0.03")
    assert units_cost(model, "training", Units(input_tokens=100_000)) == Decimal("2.5")
    assert units_cost(None, "chat", Units(input_tokens=10)) == 0


def test_the_housekeeping_sweep_settles_abandoned_calls(alice, embedding_model, settings):
    from chat.jobs import housekeeping

    settings.PARLEY_STALE_CALL_SECONDS = 60
    admission = call_admit(
        user=alice,
        kind=UsageKind.EMBEDDING,
        estimate=Units(input_tokens=300),
        purpose="embedding",
        model_id=embedding_model.pk,
    )
    Reservation.objects.filter(pk=admission.reservation_id).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    housekeeping._sweep()
    assert not Reservation.objects.exists()
    assert UsageMonth.objects.get(user=alice).tokens_reserved == 0

"""Budgets and limits as a member meets them: refusals with codes and reset dates, exact counters."""

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import close_old_connections, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.core import budget
from chat.core.budget import budget_status, usage_estimate
from chat.core.calls import Units, call_admit, call_settle
from chat.errors import QuotaExceeded
from chat.models import ChatModel, Conversation, Message, ModelKind, Provider, Reservation, UsageMonth, UsageRecord
from chat.tokens import O200K, count_tokens

JULY = dt.datetime(2025, 7, 14, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def model(db):
    provider = Provider.objects.create(name="OpenAI", base_url="https://api.openai.com/v1")
    # gpt-4o's list prices: $2.50 per million input tokens, $10 per million output tokens.
    return ChatModel.objects.create(
        provider=provider,
        model_id="gpt-4o",
        context_window=128_000,
        max_output_tokens=16_384,
        input_price_per_million=Decimal("2.50"),
        output_price_per_million=Decimal("10.00"),
    )


@pytest.fixture
def at(monkeypatch):
    """Freeze the clock quota reads: ``at(datetime)``."""

    def freeze(moment):
        monkeypatch.setattr(budget.timezone, "now", lambda: moment)

    return freeze


def month_row(user, month=dt.date(2025, 7, 1)):
    return UsageMonth.objects.get(user=user, month=month)


def budget_reserve(*, user, model, prompt_tokens, reply_tokens, message=None):
    """The core's admission of a chat reply of this size (grant checked, rate not counted)."""
    return call_admit(
        user=user,
        kind=ModelKind.CHAT,
        estimate=Units(input_tokens=prompt_tokens, output_tokens=reply_tokens),
        purpose="reply",
        model=model,
        granted=True,
        rate=False,
        message=message,
    ).held


def usage_settle(*, message, prompt_tokens, completion_tokens, estimated):
    """Settle the reservation of ``message`` (a reply), as the reply task or the sweep does."""
    reservation_id = Reservation.objects.filter(message_id=message.pk).values_list("pk", flat=True).first()
    if reservation_id is None:
        return None  # settled already
    return call_settle(
        reservation_id=reservation_id,
        units=Units(input_tokens=prompt_tokens, output_tokens=completion_tokens),
        estimated=estimated,
    )


def begin_reply(user, model, *, prompt_tokens, reply_tokens):
    """What reply_begin does: create the streaming reply and reserve for it in one transaction."""
    with transaction.atomic():
        conversation = Conversation.objects.create(owner=user, model=model)
        reply = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            model=model,
            model_name=model.label,
            created_at=timezone.now(),
        )
        reservation = budget_reserve(
            user=user, model=model, prompt_tokens=prompt_tokens, reply_tokens=reply_tokens, message=reply
        )
    return reservation, reply


def set_budget(user, tokens=None, cost=None):
    user.monthly_token_budget = tokens
    user.monthly_cost_budget = cost
    user.save(update_fields=["monthly_token_budget", "monthly_cost_budget"])


# --- Reserving ----------------------------------------------------------------------------


def test_a_reply_reserves_its_worst_case_tokens_and_cost(alice, model, at):
    at(JULY)
    with transaction.atomic():
        reservation = budget_reserve(user=alice, model=model, prompt_tokens=1_000, reply_tokens=16_384)
    # 1,000 × $2.50/M + 16,384 × $10/M = $0.0025 + $0.16384
    assert (reservation.tokens, reservation.cost) == (17_384, Decimal("0.166340"))
    assert Reservation.objects.get(user=alice).tokens == 17_384  # the ledger row settlement releases
    row = month_row(alice)
    assert (row.tokens_reserved, row.cost_reserved, row.tokens_used, row.cost_used) == (
        17_384,
        Decimal("0.166340"),
        0,
        Decimal("0"),
    )


def test_reservations_add_up_so_concurrent_replies_see_each_other(alice, model, at):
    at(JULY)
    set_budget(alice, tokens=2_500)
    begin_reply(alice, model, prompt_tokens=200, reply_tokens=800)
    begin_reply(alice, model, prompt_tokens=200, reply_tokens=800)
    with pytest.raises(QuotaExceeded) as raised:
        begin_reply(alice, model, prompt_tokens=200, reply_tokens=800)
    assert raised.value.code == "quota_exceeded"
    assert "only 500 of your monthly budget" in raised.value.message
    assert month_row(alice).tokens_reserved == 2_000
    assert Message.objects.filter(conversation__owner=alice).count() == 2  # the refused one was rolled back


def test_an_exhausted_token_budget_is_refused_with_the_reset_date(alice, model, at):
    at(JULY)
    set_budget(alice, tokens=10_000)
    UsageMonth.objects.create(user=alice, month=dt.date(2025, 7, 1), tokens_used=10_000)
    with pytest.raises(QuotaExceeded) as raised, transaction.atomic():
        budget_reserve(user=alice, model=model, prompt_tokens=10, reply_tokens=10)
    error = raised.value
    assert error.code == "quota_exceeded"
    assert error.detail["resets_at"] == "2025-08-01T00:00:00+00:00"
    assert error.detail["kind"] == "tokens"
    assert "Your monthly budget of 10,000 tokens is used up" in error.message
    assert "Aug. 1, 2025" in error.message
    frame = error.as_frame()
    assert frame["code"] == "quota_exceeded" and frame["detail"]["resets_at"] == "2025-08-01T00:00:00+00:00"
    assert month_row(alice).tokens_reserved == 0


def test_a_reply_that_would_overrun_the_budget_is_refused_and_says_how_much_is_left(alice, model, at):
    at(JULY)
    set_budget(alice, tokens=10_000)
    UsageMonth.objects.create(user=alice, month=dt.date(2025, 7, 1), tokens_used=9_000)
    with pytest.raises(QuotaExceeded) as raised, transaction.atomic():
        budget_reserve(user=alice, model=model, prompt_tokens=500, reply_tokens=4_096)
    assert raised.value.detail["remaining"] == "1000"
    assert raised.value.detail["needed"] == "4596"
    assert "up to 4,596 tokens" in raised.value.message and "only 1,000 of" in raised.value.message


def test_a_cost_budget_is_enforced_in_dollars(alice, model, at):
    at(JULY)
    set_budget(alice, cost=Decimal("1.00"))
    UsageMonth.objects.create(user=alice, month=dt.date(2025, 7, 1), cost_used=Decimal("0.90"))
    # Worst case $0.16634: more than the $0.10 left.
    with pytest.raises(QuotaExceeded) as raised, transaction.atomic():
        budget_reserve(user=alice, model=model, prompt_tokens=1_000, reply_tokens=16_384)
    assert raised.value.detail["kind"] == "cost"
    assert raised.value.detail["resets_at"] == "2025-08-01T00:00:00+00:00"
    assert "$0.17" in raised.value.message and "$0.10" in raised.value.message
    # A smaller reply fits: 1,000 in + 5,000 out = $0.0525.
    with transaction.atomic():
        assert budget_reserve(user=alice, model=model, prompt_tokens=1_000, reply_tokens=5_000).cost == Decimal(
            "0.052500"
        )


def test_the_months_first_reservation_makes_the_row_in_one_insert_and_reads_the_budget_with_it(alice, model, at):
    # The month's first call creates the member's row: one INSERT that ignores a racing creator
    # (no savepoint), then the same locking query that reads the budgets (no query of its own).
    at(JULY)
    set_budget(alice, tokens=1_500)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        budget.budget_reserve(user=alice, tokens=1_000, cost=Decimal("0.01"))
    statements = [q["sql"].split()[0].upper() for q in queries]
    assert statements == ["SELECT", "INSERT", "SELECT", "UPDATE"]
    assert (month_row(alice).tokens_reserved, month_row(alice).cost_reserved) == (1_000, Decimal("0.01"))
    UsageMonth.objects.all().delete()
    with pytest.raises(QuotaExceeded), transaction.atomic():
        budget.budget_reserve(user=alice, tokens=2_000, cost=Decimal("0.01"))  # the budget holds on a new row


def test_the_budget_resets_on_the_first_of_next_month_even_in_december(alice, model, at):
    at(dt.datetime(2025, 12, 31, 23, 59, tzinfo=dt.UTC))
    set_budget(alice, tokens=1)
    with pytest.raises(QuotaExceeded) as raised, transaction.atomic():
        budget_reserve(user=alice, model=model, prompt_tokens=5, reply_tokens=5)
    assert raised.value.detail["resets_at"] == "2026-01-01T00:00:00+00:00"


def test_a_new_month_starts_from_zero(alice, model, at):
    set_budget(alice, tokens=1_000)
    UsageMonth.objects.create(user=alice, month=dt.date(2025, 7, 1), tokens_used=1_000)
    at(dt.datetime(2025, 8, 1, 0, 0, 1, tzinfo=dt.UTC))
    with transaction.atomic():
        budget_reserve(user=alice, model=model, prompt_tokens=100, reply_tokens=100)
    assert month_row(alice, dt.date(2025, 8, 1)).tokens_reserved == 200


def test_months_are_utc_months_whatever_the_server_time_zone(alice, model, at, settings):
    settings.TIME_ZONE = "Pacific/Auckland"  # already 1 August there
    at(dt.datetime(2025, 7, 31, 20, 0, tzinfo=dt.UTC))
    with transaction.atomic():
        budget_reserve(user=alice, model=model, prompt_tokens=1, reply_tokens=1)
    assert month_row(alice, dt.date(2025, 7, 1)).tokens_reserved == 2


def test_unlimited_members_still_have_their_reservations_recorded(alice, model, at):
    at(JULY)
    assert alice.monthly_token_budget is None and alice.monthly_cost_budget is None
    begin_reply(alice, model, prompt_tokens=100_000, reply_tokens=16_384)
    assert month_row(alice).tokens_reserved == 116_384


def test_a_budget_lowered_by_an_admin_applies_to_the_next_reply_at_once(alice, model, at, django_user_model):
    at(JULY)
    stale_alice = django_user_model.objects.get(pk=alice.pk)  # loaded before the change
    set_budget(alice, tokens=100)
    with pytest.raises(QuotaExceeded), transaction.atomic():
        budget_reserve(user=stale_alice, model=model, prompt_tokens=100, reply_tokens=100)


def test_one_members_usage_never_counts_against_another(alice, bob, model, at):
    at(JULY)
    set_budget(alice, tokens=1_000)
    set_budget(bob, tokens=1_000)
    begin_reply(alice, model, prompt_tokens=500, reply_tokens=500)
    reservation, _ = begin_reply(bob, model, prompt_tokens=500, reply_tokens=500)
    assert reservation.tokens == 1_000
    assert month_row(bob).tokens_reserved == 1_000


# --- Settling -----------------------------------------------------------------------------


def test_settling_replaces_the_reservation_with_the_real_usage(alice, model, at):
    at(JULY)
    _, reply = begin_reply(alice, model, prompt_tokens=1_000, reply_tokens=16_384)

    record = usage_settle(message=reply, prompt_tokens=1_000, completion_tokens=250, estimated=False)

    # 1,000 × $2.50/M + 250 × $10/M = $0.005
    row = month_row(alice)
    assert (row.tokens_used, row.cost_used, row.tokens_reserved, row.cost_reserved) == (
        1_250,
        Decimal("0.005"),
        0,
        Decimal("0"),
    )
    assert record.user == alice
    assert record.conversation_id == reply.conversation_id
    assert record.message_id == reply.pk
    assert record.model == model
    assert record.model_name == "gpt-4o"
    assert (record.prompt_tokens, record.completion_tokens, record.cost, record.estimated) == (
        1_000,
        250,
        Decimal("0.005"),
        False,
    )
    stored = Message.objects.get(pk=reply.pk)
    assert (stored.prompt_tokens, stored.completion_tokens, stored.cost, stored.usage_estimated) == (
        1_000,
        250,
        Decimal("0.005"),
        False,
    )
    assert not Reservation.objects.filter(message=reply).exists()


def test_settling_twice_records_once(alice, model, at):
    at(JULY)
    _, reply = begin_reply(alice, model, prompt_tokens=100, reply_tokens=1_000)
    assert usage_settle(message=reply, prompt_tokens=100, completion_tokens=50, estimated=False) is not None
    assert usage_settle(message=reply, prompt_tokens=100, completion_tokens=50, estimated=False) is None
    assert UsageRecord.objects.count() == 1
    row = month_row(alice)
    assert (row.tokens_used, row.tokens_reserved) == (150, 0)


def test_a_reply_that_produced_nothing_releases_its_reservation_and_records_nothing(alice, model, at):
    at(JULY)
    _, reply = begin_reply(alice, model, prompt_tokens=100, reply_tokens=1_000)
    assert usage_settle(message=reply, prompt_tokens=0, completion_tokens=0, estimated=False) is None
    assert UsageRecord.objects.count() == 0
    row = month_row(alice)
    assert (row.tokens_used, row.tokens_reserved, row.cost_reserved) == (0, 0, Decimal("0"))


def test_nothing_reserved_and_nothing_used_records_nothing(alice, model):
    conversation = Conversation.objects.create(owner=alice, model=model)
    reply = Message.objects.create(conversation=conversation, role="assistant", model=model)
    assert usage_settle(message=reply, prompt_tokens=0, completion_tokens=0, estimated=True) is None
    assert UsageRecord.objects.count() == 0
    assert UsageMonth.objects.count() == 0


def test_usage_is_priced_at_the_models_prices_when_it_is_settled(alice, model, at):
    at(JULY)
    _, reply = begin_reply(alice, model, prompt_tokens=1_000_000, reply_tokens=0)
    model.input_price_per_million = Decimal("1.25")  # the admin cut the price mid-reply
    model.save()
    record = usage_settle(message=reply, prompt_tokens=1_000_000, completion_tokens=0, estimated=False)
    assert record.cost == Decimal("1.25")
    assert month_row(alice).cost_used == Decimal("1.25")
    assert month_row(alice).cost_reserved == Decimal("0")


def test_an_interrupted_reply_records_an_estimate_flagged_as_such(alice, model, at):
    at(JULY)
    _, reply = begin_reply(alice, model, prompt_tokens=40, reply_tokens=1_000)
    partial = "The first half of an answer that was cut when the"
    prompt_tokens, completion_tokens = usage_estimate(prompt_tokens=40, text=partial, encoding_name=O200K)
    assert (prompt_tokens, completion_tokens) == (40, count_tokens(partial, O200K))
    record = usage_settle(
        message=reply, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, estimated=True
    )
    assert record.estimated is True
    assert Message.objects.get(pk=reply.pk).usage_estimated is True


def test_a_reply_reserved_in_one_month_and_settled_in_the_next_lands_in_the_right_months(alice, model, at):
    at(dt.datetime(2025, 7, 31, 23, 59, 50, tzinfo=dt.UTC))
    _, reply = begin_reply(alice, model, prompt_tokens=100, reply_tokens=1_000)
    at(dt.datetime(2025, 8, 1, 0, 0, 20, tzinfo=dt.UTC))
    usage_settle(message=reply, prompt_tokens=100, completion_tokens=300, estimated=False)
    july, august = month_row(alice, dt.date(2025, 7, 1)), month_row(alice, dt.date(2025, 8, 1))
    assert (july.tokens_reserved, july.tokens_used) == (0, 0)
    assert (august.tokens_reserved, august.tokens_used) == (0, 400)


def test_a_reply_whose_conversation_was_deleted_still_releases_and_records(alice, model, at):
    at(JULY)
    _, reply = begin_reply(alice, model, prompt_tokens=100, reply_tokens=1_000)
    reservation_id = Reservation.objects.get(message=reply).pk  # the runner keeps its admission
    reply.conversation.delete()
    used = Units(input_tokens=100, output_tokens=20)
    record = call_settle(reservation_id=reservation_id, units=used, estimated=True)
    assert record.user == alice and record.message is None and record.conversation is None
    row = month_row(alice)
    assert (row.tokens_reserved, row.tokens_used) == (0, 120)
    assert call_settle(reservation_id=reservation_id, units=used, estimated=True) is None
    assert month_row(alice).tokens_used == 120 and UsageRecord.objects.count() == 1


# --- Status for the interface ---------------------------------------------------------------


def test_the_status_shows_what_is_used_held_and_left(alice, model, at):
    at(JULY)
    set_budget(alice, tokens=100_000, cost=Decimal("5.00"))
    _, reply = begin_reply(alice, model, prompt_tokens=1_000, reply_tokens=4_000)
    _, settled = begin_reply(alice, model, prompt_tokens=2_000, reply_tokens=4_000)
    usage_settle(message=settled, prompt_tokens=2_000, completion_tokens=1_000, estimated=False)

    status = budget_status(user=alice)

    assert status == {
        "month": "2025-07",
        "tokens_used": 3_000,
        "tokens_reserved": 5_000,
        "token_budget": 100_000,
        "tokens_remaining": 92_000,
        "cost_used": "0.015000",  # 2,000 × 2.50/M + 1,000 × 10/M
        "cost_reserved": "0.042500",  # 1,000 × 2.50/M + 4,000 × 10/M
        "cost_budget": "5.0000",
        "cost_remaining": "4.942500",
        "resets_at": "2025-08-01T00:00:00+00:00",
    }


def test_the_status_of_an_unlimited_member_with_no_usage(bob, at):
    at(JULY)
    status = budget_status(user=bob)
    assert status["tokens_used"] == 0 and status["cost_used"] == "0.000000"
    assert status["token_budget"] is None and status["tokens_remaining"] is None
    assert status["cost_budget"] is None and status["cost_remaining"] is None
    assert status["resets_at"] == "2025-08-01T00:00:00+00:00"


def test_the_remaining_budget_never_shows_below_zero(alice, at):
    at(JULY)
    set_budget(alice, tokens=100, cost=Decimal("0.01"))
    UsageMonth.objects.create(user=alice, month=dt.date(2025, 7, 1), tokens_used=150, cost_used=Decimal("0.02"))
    status = budget_status(user=alice)
    assert status["tokens_remaining"] == 0 and status["cost_remaining"] == "0.000000"


# --- Concurrency on the real database (T34c) ------------------------------------------------


def run_at_once(count, work):
    """Run ``work(i)`` in ``count`` threads released together; each thread its own connection."""
    start = threading.Barrier(count)
    results: list = [None] * count
    failures: list = []

    def thread_main(index):
        try:
            start.wait()
            results[index] = work(index)
        except BaseException as error:  # reported below, with the thread's traceback
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    return results


@pytest.mark.django_db(transaction=True)
def test_twenty_replies_started_at_once_near_the_limit_end_within_budget(alice, model):
    # Alice has used 2,000 of 12,000 this month: room for exactly 10 worst cases of 1,000
    # tokens. Each reply really uses 500.
    set_budget(alice, tokens=12_000)
    UsageMonth.objects.create(user=alice, month=budget.month_start(), tokens_used=2_000)
    reserved_all = threading.Barrier(20)

    def reply(index):
        close_old_connections()
        outcome = "refused"
        try:
            _, message = begin_reply(alice, model, prompt_tokens=300, reply_tokens=700)
            outcome = "started"
        except QuotaExceeded as error:
            assert error.code == "quota_exceeded"
            message = None
        finally:
            # Every reservation is in before any reply settles, so exactly 10 fit.
            reserved_all.wait(timeout=60)
        if message is not None:
            usage_settle(message=message, prompt_tokens=300, completion_tokens=200, estimated=False)
        return outcome

    outcomes = run_at_once(20, reply)

    assert outcomes.count("started") == 10
    assert outcomes.count("refused") == 10
    row = UsageMonth.objects.get(user=alice)
    assert (row.tokens_used, row.tokens_reserved, row.cost_reserved) == (2_000 + 5_000, 0, Decimal("0"))
    # 10 × (300 × 2.50/M + 200 × 10/M) = 10 × $0.00275
    assert row.cost_used == Decimal("0.0275")
    assert UsageRecord.objects.filter(user=alice).count() == 10


@pytest.mark.django_db(transaction=True)
def test_twenty_replies_racing_to_reserve_and_settle_never_overspend_and_count_exactly(alice, model):
    set_budget(alice, tokens=12_000)

    def reply(index):
        close_old_connections()
        try:
            _, message = begin_reply(alice, model, prompt_tokens=400, reply_tokens=1_600)
        except QuotaExceeded:
            return 0
        used = 100 + index * 10
        usage_settle(message=message, prompt_tokens=400, completion_tokens=used, estimated=False)
        return 400 + used

    spent = run_at_once(20, reply)

    row = UsageMonth.objects.get(user=alice)
    assert row.tokens_used == sum(spent)
    assert row.tokens_used <= 12_000
    assert (row.tokens_reserved, row.cost_reserved) == (0, Decimal("0"))
    assert UsageRecord.objects.filter(user=alice).count() == sum(1 for s in spent if s)
    assert sum(1 for s in spent if s) >= 6  # 6 worst cases always fit
    assert UsageMonth.objects.filter(user=alice).count() == 1  # the racing creations made one row

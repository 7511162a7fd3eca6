"""Reads composed once (chat/prepared.py): the same SQL, the same rows, the same errors as the ORM's."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connections, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.errors import NotFound
from chat.models import ChatModel, Conversation, Message, Provider, Reservation, UsageMonth
from chat.prepared import PreparedRead, PreparedUpdate
from chat.selectors import conversation_for_user

# Every prepared read of the code base, and values to compose it with.
MODULES = ["chat.selectors", "chat.core.budget", "chat.core.calls", "chat.services.replies", "chat.services.turns"]
MODULES += ["accounts.models", "accounts.session_store"]
SAMPLES = {
    "_CONVERSATION_OWNED": {"id": uuid.UUID("3d7c64bb-a33a-4ed3-89d0-a1bd3de913e6"), "owner_id": 7},
    "_MONTH_ROW": {"user_id": 7, "month": dt.date(2026, 12, 1)},
    "_MONTH_ROW_BUDGETS": {"user_id": 7, "month": dt.date(2026, 12, 1)},
    "_RESERVATION": {"pk": 41},
    "_RESERVATION_OF_MESSAGE": {"message_id": uuid.UUID("48865abb-9f46-4b9c-ab2c-10b43846f852")},
    "_REPLY": {"id": uuid.UUID("48865abb-9f46-4b9c-ab2c-10b43846f852")},
    "_MEMBER_BY_PK": {"pk": 7},
    "_SESSION": {"session_key": "k" * 32, "now": dt.datetime(2026, 12, 7, 21, 49, 11, 128035, tzinfo=dt.UTC)},
}
NOW = dt.datetime(2026, 12, 7, 21, 49, 11, 128035, tzinfo=dt.UTC)
REPLY_ID = uuid.UUID("48865abb-9f46-4b9c-ab2c-10b43846f852")
UPDATE_SAMPLES = {
    "_RESERVE": {"pk": 3, "tokens": 4_105, "cost": Decimal("0.010263")},
    "_SETTLE": {
        "user_id": 7,
        "month": dt.date(2026, 12, 1),
        "held_tokens": 4_105,
        "held_cost": Decimal("0.010263"),
        "used_tokens": 312,
        "used_cost": Decimal("0.000781"),
    },
    "_PROGRESS": {"id": REPLY_ID, "content": "So far, so good", "now": NOW},
    "_REPLY_LEAF": {
        "pk": uuid.UUID("3d7c64bb-a33a-4ed3-89d0-a1bd3de913e6"),
        "now": NOW,
        "leaf_id": REPLY_ID,
        "choosing": True,
    },
}


def _prepared(kind):
    for module_name in MODULES:
        for name, value in vars(importlib.import_module(module_name)).items():
            if isinstance(value, kind):
                yield name, value


connection = connections["default"]  # the wrapper itself, as chat.prepared keys its cache by it


def _orm_sql(queryset):
    return queryset.query.get_compiler(connection=connection).as_sql()


@pytest.mark.django_db
def test_every_prepared_read_is_the_orms_sql_and_parameters():
    reads = dict(_prepared(PreparedRead))
    assert set(reads) == set(SAMPLES), "a prepared read without sample values here, or a sample without its read"
    with transaction.atomic():  # the locking reads compose only inside one, as the ORM's
        for name, read in reads.items():
            values = SAMPLES[name]
            sql, params = _orm_sql(read.queryset(**values))
            assert read.compiled(connection).sql == sql, name
            assert read.params(connection, values) == list(params), name


@pytest.mark.django_db
def test_every_prepared_update_is_the_orms_sql_and_parameters():
    updates = dict(_prepared(PreparedUpdate))
    assert set(updates) == set(UPDATE_SAMPLES), "a prepared update without sample values here, or a sample without it"
    for name, update in updates.items():
        values = UPDATE_SAMPLES[name]
        sql, params = update.update_sql(connection, **values)
        assert update.compiled(connection).sql == sql, name
        assert update.params(connection, values) == list(params), name


@pytest.fixture
def provider_model(db):
    provider = Provider.objects.create(name="Fake", base_url="http://127.0.0.1:9/v1", api_key="sk-test-secret-1234")
    return ChatModel.objects.create(
        provider=provider, model_id="gpt-4o", context_window=128_000, input_price_per_million=Decimal("2.50")
    )


def _fields(obj):
    return {key: value for key, value in vars(obj).items() if not key.startswith("_")}


@pytest.mark.django_db
def test_a_prepared_read_builds_the_orms_objects_with_their_related_rows(alice, provider_model):
    conversation = Conversation.objects.create(
        owner=alice, title="Plans", model=provider_model, temperature=0.5, stop=["END"]
    )
    expected = Conversation.objects.select_related("model__provider").get(id=conversation.id, owner=alice)

    with CaptureQueriesContext(connection) as queries:
        got = conversation_for_user(user=alice, conversation_id=str(conversation.id))
        assert got.model.provider.api_key == "sk-test-secret-1234"  # read with it, and decrypted
    assert len(queries) == 1
    assert _fields(got) == _fields(expected)
    assert _fields(got.model) == _fields(expected.model)
    assert _fields(got.model.provider) == _fields(expected.model.provider)
    assert isinstance(got.id, uuid.UUID) and timezone.is_aware(got.created_at)
    assert got._state.adding is False and got._state.db == "default"


@pytest.mark.django_db
def test_a_prepared_read_finds_nothing_that_is_not_the_callers(alice, bob):
    conversation = Conversation.objects.create(owner=alice, title="Mine")
    with pytest.raises(NotFound):
        conversation_for_user(user=bob, conversation_id=conversation.id)
    with pytest.raises(NotFound):
        conversation_for_user(user=alice, conversation_id=uuid.uuid4())


@pytest.mark.django_db
def test_a_prepared_read_raises_as_get_does(alice):
    conversation = Conversation.objects.create(owner=alice, title="Two")
    for content in ("one", "two"):
        Message.objects.create(conversation=conversation, role=Message.Role.USER, content=content)
    by_conversation = PreparedRead(
        lambda p: Message.objects.filter(conversation_id=p.conversation_id),
        conversation_id=Message._meta.get_field("conversation"),
    )
    with pytest.raises(Message.MultipleObjectsReturned):
        by_conversation.get(conversation_id=conversation.id)
    with pytest.raises(Message.DoesNotExist):
        by_conversation.get(conversation_id=uuid.uuid4())


@pytest.mark.django_db(transaction=True)
def test_a_locking_read_outside_a_transaction_is_refused_as_the_orms(alice):
    """Every call is checked, not only the first, which composes the read."""
    month = dt.date(2026, 12, 1)
    UsageMonth.objects.create(user=alice, month=month)
    read = PreparedRead(
        lambda p: UsageMonth.objects.select_for_update().filter(user_id=p.user_id, month=p.month),
        user_id=UsageMonth._meta.get_field("user"),
        month=UsageMonth._meta.get_field("month"),
    )
    with transaction.atomic():
        assert read.get(user_id=alice.pk, month=month).month == month
    if connection.features.has_select_for_update:  # SQLite has no row locks: the ORM does not check there
        with pytest.raises(TransactionManagementError):
            read.get(user_id=alice.pk, month=month)
        with pytest.raises(TransactionManagementError):
            UsageMonth.objects.select_for_update().get(user_id=alice.pk, month=month)
    else:
        assert read.get(user_id=alice.pk, month=month).month == month


@pytest.mark.django_db
def test_the_month_row_with_budgets_carries_its_annotations(alice):
    from chat.core import budget

    alice.monthly_token_budget, alice.monthly_cost_budget = 50_000, Decimal("1.2500")
    alice.save()
    month = dt.date(2026, 12, 1)
    UsageMonth.objects.create(user=alice, month=month, tokens_used=12, cost_used=Decimal("0.000125"))
    with transaction.atomic():
        row = budget._month_row(alice.pk, month, budgets=True)
        plain = budget._month_row(alice.pk, month)
    assert (row.token_budget, row.cost_budget) == (50_000, Decimal("1.2500"))
    assert (row.tokens_used, row.cost_used) == (12, Decimal("0.000125"))
    assert isinstance(plain.cost_used, Decimal) and not hasattr(plain, "token_budget")


@pytest.mark.django_db
def test_a_read_is_composed_once_per_connection(alice):
    read = PreparedRead(lambda p: get_user_model().objects.filter(pk=p.pk), pk=get_user_model()._meta.pk)
    assert read.compiled(connection) is read.compiled(connection)
    with CaptureQueriesContext(connection) as queries:
        assert read.get(pk=alice.pk).username == "alice"
    assert len(queries) == 1


@pytest.mark.django_db
def test_the_reservation_is_found_by_its_id_or_its_message(alice):
    from chat.core import calls

    conversation = Conversation.objects.create(owner=alice, title="Held")
    message = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="")
    held = Reservation.objects.create(user=alice, message=message, month=dt.date(2026, 12, 1), tokens=4_105)
    with transaction.atomic():
        assert calls._RESERVATION.get(pk=held.pk).tokens == 4_105
        assert calls._RESERVATION_OF_MESSAGE.get(message_id=message.pk).pk == held.pk


# --- the member read by Django's session check ----------------------------------------------


def _spy(monkeypatch, read) -> list:
    """Record each call of ``read.get``, so a test sees the prepared read was the one used."""
    calls: list = []
    get = read.get

    def spied(**values):
        calls.append(values)
        return get(**values)

    monkeypatch.setattr(read, "get", spied)
    return calls


@pytest.mark.django_db
def test_a_member_read_by_pk_is_the_orms_and_other_reads_are_left_alone(alice, monkeypatch):
    from accounts import models as accounts_models

    calls = _spy(monkeypatch, accounts_models._MEMBER_BY_PK)
    user_model = get_user_model()
    expected = user_model.objects.get_queryset().get(pk=alice.pk)
    assert _fields(user_model.objects.get(pk=alice.pk)) == _fields(expected)
    assert _fields(user_model.objects.get(pk=str(alice.pk))) == _fields(expected)  # as a session holds it
    assert calls == [{"pk": alice.pk}, {"pk": str(alice.pk)}]
    with pytest.raises(user_model.DoesNotExist):
        user_model.objects.get(pk=alice.pk + 1000)
    alice.is_active = False
    alice.save()
    with pytest.raises(user_model.DoesNotExist):  # a filtered read still filters
        user_model.objects.filter(is_active=True).get(pk=alice.pk)
    assert user_model.objects.get(username="alice").pk == alice.pk
    assert len(calls) == 3  # the filtered read and the read by name were the ORM's


# --- sessions ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_session_store_loads_a_live_session_and_not_an_expired_one(settings, alice, monkeypatch):
    from accounts import session_store

    assert settings.SESSION_ENGINE == "accounts.session_store"
    calls = _spy(monkeypatch, session_store._SESSION)
    store_class = importlib.import_module(settings.SESSION_ENGINE).SessionStore
    live = store_class()
    live["member"] = alice.pk
    live.create()
    assert store_class(live.session_key)["member"] == alice.pk

    expired = store_class()
    expired["member"] = alice.pk
    expired.create()
    Session.objects.filter(session_key=expired.session_key).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    reloaded = store_class(expired.session_key)
    assert "member" not in reloaded and reloaded.session_key is None

    Session.objects.filter(session_key=live.session_key).delete()  # signed out elsewhere
    assert "member" not in store_class(live.session_key)
    assert [call["session_key"] for call in calls] == [live.session_key, expired.session_key, live.session_key]


# --- updates ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_prepared_update_writes_what_the_orms_would_and_counts_the_rows(alice):
    from chat.core import budget
    from chat.services import replies

    month = dt.date(2026, 12, 1)
    row = UsageMonth.objects.create(user=alice, month=month, tokens_reserved=10, cost_reserved=Decimal("0.000100"))
    assert budget._RESERVE.run(pk=row.pk, tokens=4_105, cost=Decimal("0.010263")) == 1
    assert (
        budget._SETTLE.run(
            user_id=alice.pk,
            month=month,
            held_tokens=5_000,  # more than is held: the hold floors at zero
            held_cost=Decimal("0.010263"),
            used_tokens=312,
            used_cost=Decimal("0.000781"),
        )
        == 1
    )
    row.refresh_from_db()
    assert (row.tokens_reserved, row.cost_reserved) == (0, Decimal("0.000100"))
    assert (row.tokens_used, row.cost_used) == (312, Decimal("0.000781"))
    assert budget._RESERVE.run(pk=row.pk + 1000, tokens=1, cost=Decimal(0)) == 0

    conversation = Conversation.objects.create(owner=alice, title="Saving")
    reply = Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, content="", status=Message.Status.STREAMING
    )
    assert replies.replies_save_progress(texts={reply.id: "Half of it"}) == {reply.id}
    reply.refresh_from_db()
    assert reply.content == "Half of it" and timezone.is_aware(reply.heartbeat_at)
    assert reply.updated_at == reply.heartbeat_at
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE)
    assert replies.replies_save_progress(texts={reply.id: "More"}) == set()  # ended: left alone
    reply.refresh_from_db()
    assert reply.content == "Half of it"

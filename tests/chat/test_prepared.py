"""Statements composed once (chat/prepared.py): the same SQL, the same rows, the same errors as the ORM's."""

from __future__ import annotations

import copy
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
from chat.models import ChatModel, Conversation, Message, Provider, Reservation, UsageMonth, UsageRecord
from chat.prepared import PreparedInsert, PreparedRead, PreparedUpdate
from chat.selectors import conversation_for_user

# Every prepared read of the code base, and values to compose it with.
MODULES = ["chat.selectors", "chat.core.budget", "chat.core.calls", "chat.services.replies", "chat.services.turns"]
MODULES += ["accounts.models", "accounts.session_store", "chat.services.conversations"]
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
    "_FINAL": {
        "id": REPLY_ID,
        "content": "All of it",
        "token_count": 3,
        "token_encoding": "o200k_base",
        "status": "complete",
        "finish_reason": "stop",
        "error_code": "",
        "error_text": "",
        "updated_at": NOW,
        "heartbeat_at": NOW,
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "usage_estimated": False,
        "cost": Decimal("0.000781"),
    },
    "_APPENDED": {
        "pk": uuid.UUID("3d7c64bb-a33a-4ed3-89d0-a1bd3de913e6"),
        "expected": REPLY_ID,
        "now": NOW,
        "leaf_id": uuid.UUID("5a0d8f52-3c1e-4d5b-9b8e-0f6f2d7c9a11"),
    },
    "_TOUCHED": {"pk": uuid.UUID("3d7c64bb-a33a-4ed3-89d0-a1bd3de913e6"), "now": NOW},
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


# --- inserts ---------------------------------------------------------------------------------


def _new_rows(alice, model) -> dict:
    """A new row of each prepared insert of the code base, as the code makes it."""
    conversation = Conversation.objects.create(owner=alice, title="Saved", model=model)
    reply = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="")
    month = dt.date(2026, 12, 1)
    return {
        "_NEW_CONVERSATION": Conversation(
            owner=alice, title="Plans", model=model, temperature=0.5, stop=["END"], logit_bias={"50256": -100}
        ),
        "_NEW_MESSAGE": Message(
            conversation=conversation,
            parent=reply,
            role=Message.Role.USER,
            content="Hello, “world”",
            client_id="c-1",
            token_count=4,
            token_encoding="o200k_base",
        ),
        "_NEW_RESERVATION": Reservation(
            user_id=alice.pk,
            model=model,
            model_name=model.model_id,
            conversation_id=conversation.pk,
            message=reply,
            month=month,
            tokens=4_105,
            cost=Decimal("0.010263"),
        ),
        "_NEW_RECORD": UsageRecord(
            user_id=alice.pk,
            conversation_id=conversation.pk,
            message_id=reply.pk,
            model=model,
            model_name=model.model_id,
            prompt_tokens=12,
            completion_tokens=200,
            audio_seconds=Decimal("1.5"),
            cost=Decimal("0.000781"),
            estimated=True,
        ),
    }


def _executed(write) -> list[tuple[str, tuple]]:
    """The statements ``write()`` sends to the database, with their parameters; undone after."""
    sent: list[tuple[str, tuple]] = []

    def record(execute, sql, params, many, context):
        # psycopg's JSON wrappers compare by identity: compare what they wrap.
        sent.append((sql, tuple(getattr(param, "obj", param) for param in params)))
        return execute(sql, params, many, context)

    with transaction.atomic(), connection.execute_wrapper(record):
        write()
        transaction.set_rollback(True)
    return sent


@pytest.mark.django_db
def test_every_prepared_insert_sends_what_the_orms_save_sends(alice, provider_model):
    inserts = dict(_prepared(PreparedInsert))
    rows = _new_rows(alice, provider_model)
    assert set(inserts) == set(rows), "a prepared insert without a sample row here, or a sample without it"
    for name, insert in inserts.items():
        obj = rows[name]
        twin = copy.deepcopy(obj)
        orm = _executed(lambda twin=twin: twin.save(force_insert=True))
        prepared = _executed(lambda insert=insert, obj=obj: insert.insert(obj))
        assert prepared == orm, name
        assert len(orm) == 1 and orm[0][0].startswith("INSERT"), name
        assert obj._state.adding is False and obj._state.db == "default", name
        # An auto-increment key read back as the ORM reads it (PostgreSQL does not take a number back).
        assert obj.pk is not None and type(obj.pk) is type(twin.pk), name


@pytest.mark.django_db
def test_a_prepared_insert_writes_the_orms_row_and_sends_its_signals(alice, provider_model):
    from django.db.models.signals import post_save, pre_save

    from chat.core import calls

    heard: list[tuple] = []

    def listen(signal):
        def receiver(sender, instance, **kwargs):
            heard.append((signal, instance.pk, kwargs.get("created"), kwargs["raw"], kwargs["update_fields"]))

        return receiver

    before, after = listen("pre_save"), listen("post_save")
    pre_save.connect(before, sender=Reservation)
    post_save.connect(after, sender=Reservation)
    try:
        rows = _new_rows(alice, provider_model)
        expected = Reservation.objects.create(**_fields(copy.deepcopy(rows["_NEW_RESERVATION"])) | {"message_id": None})
        got = calls._NEW_RESERVATION.insert(rows["_NEW_RESERVATION"])
    finally:
        pre_save.disconnect(before, sender=Reservation)
        post_save.disconnect(after, sender=Reservation)
    assert isinstance(got.pk, int) and got.pk != expected.pk
    saved = Reservation.objects.get(pk=got.pk)
    differs = {"id", "message_id"}
    assert {k: v for k, v in _fields(saved).items() if k not in differs} == {
        k: v for k, v in _fields(Reservation.objects.get(pk=expected.pk)).items() if k not in differs
    }
    assert saved.message_id == rows["_NEW_RESERVATION"].message_id
    assert heard[-2:] == [("pre_save", None, None, False, None), ("post_save", got.pk, True, False, None)]
    assert heard[:2] == [("pre_save", None, None, False, None), ("post_save", expected.pk, True, False, None)]


@pytest.mark.django_db
def test_a_prepared_insert_refuses_what_the_orms_save_refuses_and_leaves_it_the_odd_rows(alice):
    from django.db.models import Value

    from chat.services import turns

    conversation = Conversation.objects.create(owner=alice, title="Odd")
    inserts = PreparedInsert(Reservation)
    unsaved = get_user_model()(username="nobody")  # no key yet
    with pytest.raises(ValueError, match="unsaved related object 'user'"):
        inserts.insert(Reservation(user=unsaved, month=dt.date(2026, 12, 1)))
    with pytest.raises(ValueError, match="a new chat.Reservation"):
        inserts.insert(Reservation.objects.create(user=alice, month=dt.date(2026, 12, 1)))  # saved already
    # A key given for an auto-increment one, and an expression among the values: the ORM's save.
    chosen = inserts.insert(Reservation(pk=9_001, user=alice, month=dt.date(2026, 12, 1)))
    assert Reservation.objects.get(pk=9_001).user_id == alice.pk and chosen._state.adding is False
    message = turns._NEW_MESSAGE.insert(Message(conversation=conversation, role="user", content=Value("Made so")))
    assert Message.objects.get(pk=message.pk).content == "Made so"


@pytest.mark.django_db
def test_a_turns_rows_are_written_by_the_prepared_inserts(alice, provider_model, monkeypatch):
    from chat.core import calls
    from chat.core.calls import Units, call_settle
    from chat.services import conversations, turns

    provider_model.is_default = True
    provider_model.save()
    written: dict[str, list] = {}
    for module, name in [
        (conversations, "_NEW_CONVERSATION"),
        (turns, "_NEW_MESSAGE"),
        (calls, "_NEW_RESERVATION"),
        (calls, "_NEW_RECORD"),
    ]:
        prepared, seen = getattr(module, name), written.setdefault(name, [])
        spy = lambda obj, insert=prepared.insert, seen=seen: seen.append(obj) or insert(obj)  # noqa: E731
        monkeypatch.setattr(prepared, "insert", spy)

    first = turns.turn_start(user=alice, conversation_id=None, client_id="first", content="Hello")
    call_settle(units=Units(input_tokens=5, output_tokens=3), message=first.plan.reply)
    Message.objects.filter(pk=first.plan.reply.pk).update(status=Message.Status.COMPLETE)
    conversation = first.saved.conversation
    second = turns.turn_start(user=alice, conversation_id=conversation.pk, client_id="second", content="And?")
    assert [c.pk for c in written["_NEW_CONVERSATION"]] == [conversation.pk]
    assert [m.pk for m in written["_NEW_MESSAGE"]] == [
        first.saved.message.pk,
        first.plan.reply.pk,
        second.saved.message.pk,
        second.plan.reply.pk,
    ]
    assert [r.message_id for r in written["_NEW_RESERVATION"]] == [first.plan.reply.pk, second.plan.reply.pk]
    assert [r.message_id for r in written["_NEW_RECORD"]] == [first.plan.reply.pk]
    assert list(conversation.messages.order_by("created_at").values_list("content", "parent_id")) == [
        ("Hello", None),
        ("", first.saved.message.pk),
        ("And?", first.plan.reply.pk),
        ("", second.saved.message.pk),
    ]


@pytest.mark.django_db
def test_a_replys_end_writes_every_field_it_changes(alice, provider_model):
    """reply_finish writes the reply's final state with one prepared UPDATE of the fields it
    and call_settle change: the row read back is the instance it returns, field for field."""
    from chat.core.calls import Units, call_admit
    from chat.models import ModelKind
    from chat.services.replies import reply_finish

    conversation = Conversation.objects.create(owner=alice, title="Ending", model=provider_model)
    reply = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content="",
        status=Message.Status.STREAMING,
        model=provider_model,
    )
    with transaction.atomic():
        call_admit(
            user=alice,
            kind=ModelKind.CHAT,
            estimate=Units(input_tokens=20, output_tokens=200),
            purpose="reply",
            model=provider_model,
            granted=True,
            rate=False,
            message=reply,
        )
    ended = reply_finish(
        reply_id=reply.pk,
        content="The whole answer",
        status=Message.Status.COMPLETE,
        finish_reason="stop",
        prompt_tokens=20,
        completion_tokens=4,
    )
    row = Message.objects.get(pk=reply.pk)
    assert _fields(row) == _fields(ended)
    # An UPDATE sends no signals: a receiver of a reply's save would be skipped here.
    from django.db.models.signals import post_save, pre_save

    assert not pre_save.has_listeners(Message) and not post_save.has_listeners(Message)
    assert (row.status, row.content) == ("complete", "The whole answer")
    assert (row.prompt_tokens, row.completion_tokens) == (20, 4)
    assert row.cost > 0 and row.token_count > 0
    conversation.refresh_from_db()
    assert conversation.updated_at == row.updated_at


@pytest.mark.django_db
def test_a_follow_up_is_appended_to_the_leaf_even_when_it_moved_since_it_was_read(alice):
    """_append's prepared update makes the message the leaf only if the leaf is the one read;
    else the row is locked, the leaf read again and the message moved under it."""
    from chat.services import turns

    conversation = Conversation.objects.create(owner=alice, title="Moving")

    def append(content):
        message = Message(conversation=conversation, role=Message.Role.USER, content=content, client_id=content)
        with transaction.atomic():
            turns._append(conversation, message)
        return Message.objects.get(pk=message.pk)

    first = append("first")  # no leaf yet: the ORM's update, which compares with NULL
    assert first.parent_id is None
    second = append("second")  # the leaf as read
    assert second.parent_id == first.pk
    behind = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="", parent=second)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=behind)  # moved behind its back
    third = append("third")
    assert third.parent_id == behind.pk
    conversation.refresh_from_db()
    assert conversation.current_leaf_id == third.pk and conversation.choosing is False

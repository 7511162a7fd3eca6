"""Datasets: marked conversations only, each its current branch cleaned, checked and written as JSONL."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from chat.errors import BadRequest, NotFound
from chat.models import Conversation, FineTuneDataset, Message, Provider
from chat.services import datasets
from chat.services.training import training_consent_set
from tests.finetuning_support import make_base_model, make_thread

pytestmark = pytest.mark.django_db
S = Message.Status


@pytest.fixture
def base(db):
    provider = Provider.objects.create(name="OpenAI", base_url="https://api.openai.com/v1")
    return make_base_model(provider)


@pytest.fixture(autouse=True)
def _small_minimum(settings):
    settings.PARLEY_FINETUNE_MIN_EXAMPLES = 1


def msg(role, content, status=S.COMPLETE):
    return Message(role=role, content=content, status=status)


def roles(messages):
    return [(m["role"], m["content"]) for m in messages]


# --- example_messages (pure) ---------------------------------------------------------------
def test_a_clean_branch_becomes_alternating_messages_with_the_system_prompt_first():
    path = [msg("user", "q1"), msg("assistant", "a1"), msg("user", "q2"), msg("assistant", "a2")]
    out = datasets.example_messages(path, system_prompt="Be terse.", kept_only=True)
    assert roles(out) == [
        ("system", "Be terse."),
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2"),
    ]


@pytest.mark.parametrize("status", [S.BLOCKED, S.ERROR, S.UNCHECKED, S.STREAMING])
def test_a_reply_that_is_blocked_failed_or_unfinished_goes_out_with_its_question(status):
    path = [
        msg("user", "q1"),
        msg("assistant", "a1"),
        msg("user", "q2"),
        msg("assistant", "bad", status),
        msg("user", "q3"),
        msg("assistant", "a3"),
    ]
    out = datasets.example_messages(path, system_prompt="", kept_only=False)
    assert roles(out) == [("user", "q1"), ("assistant", "a1"), ("user", "q3"), ("assistant", "a3")]


def test_a_blocked_question_takes_its_reply_along():
    path = [msg("user", "q1"), msg("assistant", "a1"), msg("user", "FLAGME", S.BLOCKED), msg("assistant", "a2")]
    out = datasets.example_messages(path, system_prompt="", kept_only=False)
    assert roles(out) == [("user", "q1"), ("assistant", "a1")]


def test_empty_messages_never_go_in():
    path = [msg("user", "q1"), msg("assistant", "   "), msg("user", "q2"), msg("assistant", "a2")]
    out = datasets.example_messages(path, system_prompt="", kept_only=False)
    assert roles(out) == [("user", "q2"), ("assistant", "a2")]


def test_stopped_replies_go_in_only_when_not_limited_to_kept_ones():
    path = [msg("user", "q1"), msg("assistant", "half", S.STOPPED), msg("user", "q2"), msg("assistant", "a2")]
    assert roles(datasets.example_messages(path, system_prompt="", kept_only=True)) == [
        ("user", "q2"),
        ("assistant", "a2"),
    ]
    assert len(datasets.example_messages(path, system_prompt="", kept_only=False)) == 4


def test_an_unanswered_last_question_is_dropped_and_nothing_without_a_reply_is_an_example():
    assert roles(
        datasets.example_messages(
            [msg("user", "q"), msg("assistant", "a"), msg("user", "q2")], system_prompt="", kept_only=True
        )
    ) == [
        ("user", "q"),
        ("assistant", "a"),
    ]
    assert datasets.example_messages([msg("user", "q")], system_prompt="sys", kept_only=True) == []


def test_roles_out_of_order_are_recognised():
    assert datasets.roles_in_order([{"role": "user"}, {"role": "assistant"}])
    assert not datasets.roles_in_order([{"role": "user"}, {"role": "user"}, {"role": "assistant"}])
    assert not datasets.roles_in_order([{"role": "assistant"}])
    assert not datasets.roles_in_order(
        [{"role": "user"}, {"role": "assistant"}, {"role": "system"}, {"role": "user"}, {"role": "assistant"}]
    )


# --- candidates and datasets ---------------------------------------------------------------
def test_only_marked_conversations_are_candidates(alice, bob, base):
    marked = make_thread(alice, base, [("q", "a")], title="marked")
    make_thread(alice, base, [("q", "a")], title="unmarked", consent=False)
    bobs = make_thread(bob, base, [("q", "a")], title="bob's")
    assert set(datasets.candidates()) == {marked, bobs}
    assert list(datasets.candidates(member_id=alice.pk)) == [marked]


def test_candidates_filter_by_group_model_and_date(alice, bob, base):
    team = Group.objects.create(name="support")
    bob.groups.add(team)
    other = make_base_model(base.provider, model_id="gpt-4o", is_default=False)
    a = make_thread(alice, base, [("q", "a")])
    b = make_thread(bob, other, [("q", "a")])
    Conversation.objects.filter(pk=a.pk).update(created_at=timezone.now() - timezone.timedelta(days=40))
    assert list(datasets.candidates(group_id=team.pk)) == [b]
    assert list(datasets.candidates(model_id=base.pk)) == [a]
    today = timezone.localdate()
    assert list(datasets.candidates(date_from=today - timezone.timedelta(days=1), date_to=today)) == [b]


def test_a_dataset_ignores_picked_ids_that_are_not_marked(alice, admin_user, base):
    marked = make_thread(alice, base, [("q", "a")])
    unmarked = make_thread(alice, base, [("q", "a")], consent=False)
    dataset = datasets.dataset_create(
        admin=admin_user, name="d", base_model_id=base.pk, conversation_ids=[marked.pk, unmarked.pk]
    )
    assert list(dataset.conversations.all()) == [marked]
    with pytest.raises(BadRequest):
        datasets.dataset_create(admin=admin_user, name="d", base_model_id=base.pk, conversation_ids=[unmarked.pk])


def test_the_jsonl_is_the_current_branch_of_each_marked_conversation(alice, admin_user, base):
    one = make_thread(
        alice, base, [("How do I reset?", "Press the button."), ("Thanks", "You're welcome.")], title="one"
    )
    # An older version of the first reply stays in the tree but off the current branch.
    question = one.messages.get(content="How do I reset?")
    Message.objects.create(conversation=one, parent=question, role="assistant", content="OLD VERSION")
    two = make_thread(alice, base, [("Hi", "Hello"), ("crash", None)], title="two")
    dataset = datasets.dataset_create(
        admin=admin_user,
        name="d",
        base_model_id=base.pk,
        conversation_ids=[one.pk, two.pk],
        system_prompt="House style.",
    )
    result = datasets.dataset_validate(dataset)
    lines = [json.loads(line) for line in result.jsonl.decode().splitlines()]
    assert lines == [
        {
            "messages": [
                {"role": "system", "content": "House style."},
                {"role": "user", "content": "How do I reset?"},
                {"role": "assistant", "content": "Press the button."},
                {"role": "user", "content": "Thanks"},
                {"role": "assistant", "content": "You're welcome."},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "House style."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
            ]
        },
    ]
    assert result.ok and result.count == 2
    assert result.total_tokens == sum(example.tokens for example in result.examples) > 0
    # training price 3.00 / 1M tokens x 3 epochs
    assert result.estimated_cost == Decimal("3.00") * result.total_tokens * 3 / 1_000_000


def test_the_legacy_format_is_prompt_and_completion(alice, admin_user, base):
    c = make_thread(alice, base, [("q1", "a1"), ("q2", "a2")])
    dataset = datasets.dataset_create(
        admin=admin_user, name="d", base_model_id=base.pk, conversation_ids=[c.pk], format="prompt"
    )
    line = json.loads(datasets.dataset_validate(dataset).jsonl)
    assert line == {"prompt": "User: q1\n\nAssistant: a1\n\nUser: q2\n\nAssistant:", "completion": " a2"}


def test_withdrawn_consent_takes_the_conversation_out_before_upload(alice, admin_user, base):
    keep = make_thread(alice, base, [("keep me", "ok")])
    leave = make_thread(alice, base, [("SECRET-LEAVE", "ok")])
    dataset = datasets.dataset_create(
        admin=admin_user, name="d", base_model_id=base.pk, conversation_ids=[keep.pk, leave.pk]
    )
    training_consent_set(user=alice, conversation_id=leave.pk, allowed=False)
    result = datasets.dataset_validate(dataset)
    assert b"SECRET-LEAVE" not in result.jsonl and b"keep me" in result.jsonl
    assert [e.conversation_id for e in result.examples] == [str(keep.pk)]


def test_examples_over_the_limit_and_too_few_examples_are_errors(alice, admin_user, base, settings):
    base.context_window = 20
    base.save()
    c = make_thread(alice, base, [("word " * 50, "fine")])
    dataset = datasets.dataset_create(admin=admin_user, name="d", base_model_id=base.pk, conversation_ids=[c.pk])
    result = datasets.dataset_validate(dataset)
    assert result.over_limit == 1 and not result.ok
    settings.PARLEY_FINETUNE_MIN_EXAMPLES = 10
    assert any("at least 10" in error for error in datasets.dataset_validate(dataset).errors)


def test_tokens_are_counted_with_the_base_models_encoding(alice, admin_user, base):
    c = make_thread(alice, base, [("Ünïcödé 日本語 text", "answer")])
    old = make_base_model(base.provider, model_id="gpt-3.5-turbo", is_default=False, context_window=16385)
    a = datasets.dataset_validate(
        datasets.dataset_create(admin=admin_user, name="a", base_model_id=base.pk, conversation_ids=[c.pk])
    )
    b = datasets.dataset_validate(
        datasets.dataset_create(admin=admin_user, name="b", base_model_id=old.pk, conversation_ids=[c.pk])
    )
    assert (a.encoding, b.encoding) == ("o200k_base", "cl100k_base")
    assert a.total_tokens != b.total_tokens


def test_excluding_a_conversation_takes_it_out(alice, admin_user, base):
    a = make_thread(alice, base, [("a", "1")])
    b = make_thread(alice, base, [("b", "2")])
    dataset = datasets.dataset_create(admin=admin_user, name="d", base_model_id=base.pk, conversation_ids=[a.pk, b.pk])
    datasets.dataset_exclude(dataset=dataset, conversation_id=a.pk)
    assert list(FineTuneDataset.objects.get(pk=dataset.pk).conversations.all()) == [b]
    with pytest.raises(NotFound):
        datasets.dataset_exclude(dataset=dataset, conversation_id=a.pk)


def test_validation_reads_the_branches_in_a_few_queries_however_many_conversations(alice, admin_user, base):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(count):
        ids = [make_thread(alice, base, [("q", "a"), ("q2", "a2")]).pk for _ in range(count)]
        dataset = datasets.dataset_create(admin=admin_user, name="d", base_model_id=base.pk, conversation_ids=ids)
        dataset = FineTuneDataset.objects.select_related("base_model").get(pk=dataset.pk)
        with CaptureQueriesContext(connection) as captured:
            assert datasets.dataset_validate(dataset).count == count
        return len(captured.captured_queries)

    assert queries(3) == queries(30)

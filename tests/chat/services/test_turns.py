"""Beginning a reply: several answers are sibling replies, reserved that many times."""

import pytest

from chat.models import Conversation, Message, Reservation
from chat.services.turns import reply_begin, turn_start
from tests.conftest import create_default_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(db):
    from chat.models import Provider

    provider = Provider.objects.create(name="OpenAI", base_url="https://api.openai.com/v1")
    return create_default_model(provider)


def start(user, text, **settings):
    return turn_start(user=user, conversation_id=None, client_id=text, content=text, chat_settings=settings)


def test_several_answers_are_sibling_replies_and_the_member_is_asked_to_pick(alice, model):
    plan = start(alice, "name a colour", n=3).plan
    assert len(plan.replies) == 3
    assert {r.parent_id for r in plan.replies} == {plan.question.id}
    assert [r.choice for r in plan.replies] == [0, 1, 2]
    assert plan.prompt.payload["n"] == 3
    conversation = Conversation.objects.get(pk=plan.conversation.pk)
    assert conversation.choosing and conversation.current_leaf_id == plan.reply.id


def test_several_answers_reserve_n_times_the_reply_reservation(alice, model):
    one = start(alice, "hello").plan
    three = start(alice, "hello", n=3).plan
    assert one.prompt.prompt_tokens == three.prompt.prompt_tokens
    assert one.prompt.reply_tokens == three.prompt.reply_tokens
    held_one = Reservation.objects.get(pk=one.admission.reservation_id).tokens
    held_three = Reservation.objects.get(pk=three.admission.reservation_id).tokens
    assert held_one == one.prompt.prompt_tokens + one.prompt.reply_tokens
    assert held_three == three.prompt.prompt_tokens + 3 * three.prompt.reply_tokens


def test_a_refused_turn_leaves_none_of_its_answers_behind(alice, model):
    alice.monthly_token_budget = 5000  # one answer fits, four do not
    alice.save()
    model.max_output_tokens = 4096
    model.save()
    refused = start(alice, "hello", n=4)
    assert refused.refusal is not None and refused.refusal.code == "quota_exceeded"
    assert not Message.objects.filter(role="assistant").exists()
    assert start(alice, "hello", n=1).plan is not None


def test_regenerating_a_reply_keeps_the_old_one_as_a_sibling(alice, model):
    plan = start(alice, "hello").plan
    Message.objects.filter(pk=plan.reply.pk).update(status="complete", content="first")
    again = reply_begin(conversation=plan.conversation, question=plan.question, user=alice)
    assert again.reply.parent_id == plan.question.id
    assert Message.objects.filter(parent=plan.question).count() == 2


def _follow_up(user, conversation, text):
    from django.contrib.auth import get_user_model

    fresh = get_user_model().objects.get(pk=user.pk)  # as the consumer's session check reads it
    return turn_start(user=fresh, conversation_id=conversation.pk, client_id=text, content=text)


@pytest.mark.django_db(transaction=True)
def test_a_turn_commits_once_and_locks_its_conversation_once(alice, model):
    # The message and the reply's start are one transaction: one commit, which on PostgreSQL
    # waits for the disk while every other socket's start waits for the database thread. A
    # follow-up's row is locked by saving its message there, so it is not locked again; a new
    # chat's row is not locked at all (its id is not out yet).
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def commits(queries):
        return sum(q["sql"] == "COMMIT" for q in queries)

    def conversation_reads(queries):
        return [q["sql"] for q in queries if q["sql"].startswith('SELECT "chat_conversation"."id"')]

    with CaptureQueriesContext(connection) as new_chat:
        first = start(alice, "hello").plan
    Message.objects.filter(pk=first.reply.pk).update(status="complete", content="hi")
    with CaptureQueriesContext(connection) as follow_up:
        assert _follow_up(alice, first.conversation, "and then?").plan is not None

    assert commits(new_chat.captured_queries) == commits(follow_up.captured_queries) == 1
    assert conversation_reads(new_chat.captured_queries) == []
    reads = conversation_reads(follow_up.captured_queries)
    assert len(reads) == 1 and "FOR UPDATE" not in reads[0]  # conversation_for_user's, no lock


@pytest.mark.django_db(transaction=True)
def test_a_failure_while_beginning_the_reply_is_raised_with_the_message_committed(alice, model, monkeypatch):
    from chat.models import UsageMonth

    first = start(alice, "hello").plan
    Message.objects.filter(pk=first.reply.pk).update(status="complete", content="hi")

    def broken(**kwargs):
        raise RuntimeError("the prompt could not be built")

    monkeypatch.setattr("chat.services.turns.prompt_build", broken)
    with pytest.raises(RuntimeError):
        start(alice, "a new chat")
    with pytest.raises(RuntimeError):
        _follow_up(alice, first.conversation, "a follow-up")

    for text in ("a new chat", "a follow-up"):
        message = Message.objects.get(client_id=text)
        assert (message.role, message.content) == ("user", text)
        assert Conversation.objects.get(pk=message.conversation_id).current_leaf_id == message.pk
    assert Message.objects.filter(role="assistant").count() == 1  # the first turn's only
    assert Reservation.objects.count() == 1  # the first turn's, not settled here
    row = UsageMonth.objects.get(user=alice)
    assert row.tokens_reserved == Reservation.objects.get().tokens


@pytest.mark.django_db(transaction=True)
def test_follow_ups_racing_into_one_conversation_start_one_reply_and_keep_every_message(alice, model):
    from django.db import close_old_connections

    from tests.chat.core.test_budget import run_at_once

    first = start(alice, "hello").plan
    Message.objects.filter(pk=first.reply.pk).update(status="complete", content="hi")

    def send(index):
        close_old_connections()
        turn = _follow_up(alice, first.conversation, f"racing {index}")
        return "started" if turn.plan is not None else turn.refusal.code

    outcomes = run_at_once(6, send)

    assert sorted(outcomes) == ["reply_in_progress"] * 5 + ["started"]
    assert Message.objects.filter(role="user").count() == 7
    assert Message.objects.filter(role="assistant", status="streaming").count() == 1


def test_the_streaming_count_is_the_members_own_and_says_which_are_in_this_conversation(alice, bob, model):
    from chat.selectors import replies_streaming

    mine = start(alice, "one").plan
    start(alice, "two")
    start(bob, "theirs")

    assert replies_streaming(owner_id=alice.pk, conversation_id=mine.conversation.pk) == (2, 1)
    assert replies_streaming(owner_id=bob.pk, conversation_id=mine.conversation.pk) == (1, 0)
    Message.objects.filter(pk=mine.reply.pk).update(status="complete")
    assert replies_streaming(owner_id=alice.pk, conversation_id=mine.conversation.pk) == (1, 0)


def test_a_replys_end_reads_its_row_and_model_and_not_its_conversation(alice, model):
    # The reply's task sends the finished row to the member and queues it for search: neither
    # reads more of the conversation than its id.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.services.replies import reply_finish

    plan = start(alice, "hello").plan
    with CaptureQueriesContext(connection) as queries:
        message = reply_finish(
            reply_id=plan.reply.pk,
            content="hi there",
            status="complete",
            prompt_tokens=5,
            completion_tokens=2,
            reservation_id=plan.admission.reservation_id,
        )
    read = next(q["sql"] for q in queries if q["sql"].startswith("SELECT") and '"chat_message"."id"' in q["sql"])
    assert "chat_conversation" not in read
    assert (message.status, message.content, message.completion_tokens) == ("complete", "hi there", 2)
    assert Conversation.objects.get(pk=plan.conversation.pk).updated_at == message.updated_at


def _branch_with_unchecked_messages(user, model):
    """hello (complete) / second (unchecked) / third (complete) / fourth (unchecked), each answered."""
    plan = start(user, "hello").plan
    Message.objects.filter(pk=plan.reply.pk).update(status="complete", content="hi")
    for text in ("second", "third", "fourth"):
        reply = _follow_up(user, plan.conversation, text).plan.reply
        Message.objects.filter(pk=reply.pk).update(status="complete", content=f"about {text}")
    Message.objects.filter(client_id__in=["second", "fourth"]).update(status="unchecked")
    return plan.conversation


def test_the_moderation_gate_reads_the_branch_from_the_prompts_walk_without_a_query(alice, model):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.services.turns import _gate_input

    conversation = _branch_with_unchecked_messages(alice, model)
    with CaptureQueriesContext(connection) as queries:
        plan = _follow_up(alice, conversation, "fifth").plan

    ids = {text: str(Message.objects.get(client_id=text).pk) for text in ("second", "fourth")}
    assert plan.gate.previous == "third"
    assert plan.gate.unchecked == ((ids["second"], "second"), (ids["fourth"], "fourth"))
    assert plan.prompt.earlier_questions is not None
    # The same as read by its own two queries, which this turn did not make.
    assert _gate_input(plan.conversation, plan.question) == plan.gate
    assert not [q for q in queries.captured_queries if q["sql"].startswith('SELECT "chat_message"."content"')]


def test_the_moderation_gate_reads_the_branch_itself_when_trimming_stopped_the_walk(alice, model, monkeypatch):
    from chat.services import prompt as prompt_module

    conversation = _branch_with_unchecked_messages(alice, model)
    monkeypatch.setattr(prompt_module, "_FIRST_PAGE", 2)  # the walk pages; trimming stops it
    model.context_window = 80  # half kept for the reply: the prompt holds about four short messages
    model.save()

    plan = _follow_up(alice, conversation, "fifth").plan

    assert plan.prompt.omitted > 0 and plan.prompt.earlier_questions is None
    assert plan.gate.previous == "third"
    assert [content for _id, content in plan.gate.unchecked] == ["second", "fourth"]

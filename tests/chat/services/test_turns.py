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


def test_a_new_chat_does_not_lock_the_conversation_it_just_made_and_a_follow_up_does(alice, model):
    # Two sends racing into one conversation serialize on its row; one made in the same call has
    # no other sender yet, and reading it back was a statement of every new chat's start.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def conversation_reads(queries):
        return [q["sql"] for q in queries if q["sql"].startswith('SELECT "chat_conversation"."id"')]

    with CaptureQueriesContext(connection) as new_chat:
        first = start(alice, "hello").plan
    Message.objects.filter(pk=first.reply.pk).update(status="complete", content="hi")
    with CaptureQueriesContext(connection) as follow_up:
        turn_start(user=alice, conversation_id=first.conversation.pk, client_id="again", content="and then?")

    assert conversation_reads(new_chat.captured_queries) == []
    locks = conversation_reads(follow_up.captured_queries)
    assert locks and (connection.vendor != "postgresql" or any("FOR UPDATE" in sql for sql in locks))


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

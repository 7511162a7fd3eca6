"""Branches: edits and regenerations add versions and keep the old ones; the branch shown is
saved; the prompt replays the path to the message answered; a fork copies a path."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.errors import Busy, NotFound
from chat.models import Conversation, Message
from chat.selectors import conversation_messages
from chat.services.branches import branch_switch, conversation_fork
from chat.services.prompt import prompt_build
from chat.services.turns import NothingToRegenerate, edit_prepare, message_save, regenerate_prepare
from tests.chat.services.test_prompt import make_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(db):
    from chat.models import Provider

    provider = Provider.objects.create(name="OpenAI", base_url="https://api.openai.com/v1")
    return make_model(provider, model_id="gpt-4o")


def say(user, conversation, text):
    return message_save(user=user, conversation_id=conversation.pk, client_id=text, content=text).message


def answer(conversation, question, text, status=Message.Status.COMPLETE):
    """A finished reply to ``question``, made the current leaf (as reply_begin and reply_finish do)."""
    reply = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content=text, status=status
    )
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=reply, choosing=False)
    return reply


def shown(conversation):
    conversation.refresh_from_db()
    return [m.content for m in conversation_messages(conversation=conversation)]


@pytest.fixture
def chat(alice, model):
    """alice: "one" → "1" → "two" → "2" → "three" → "3"."""
    conversation = Conversation.objects.create(owner=alice, model=model)
    messages = {}
    for question, reply in (("one", "1"), ("two", "2"), ("three", "3")):
        conversation.refresh_from_db()
        messages[question] = say(alice, conversation, question)
        messages[reply] = answer(conversation, messages[question], reply)
    conversation.refresh_from_db()
    return conversation, messages


def test_messages_sent_one_after_another_form_one_branch(chat):
    conversation, messages = chat
    assert shown(conversation) == ["one", "1", "two", "2", "three", "3"]
    assert messages["two"].parent_id == messages["1"].id


def test_editing_an_earlier_message_makes_a_new_branch_and_keeps_the_old_one(alice, chat):
    conversation, messages = chat
    _, edited = edit_prepare(user=alice, conversation_id=conversation.pk, message_id=messages["two"].id, content="TWO")
    assert shown(conversation) == ["one", "1", "TWO"]
    assert edited.parent_id == messages["1"].id
    assert Message.objects.filter(conversation=conversation).count() == 7  # nothing deleted
    conversation.refresh_from_db()
    thread = conversation_messages(conversation=conversation)
    assert (thread[-1].version_count, thread[-1].versions_before) == (2, 1)
    assert (thread[-1].version_previous, thread[-1].version_next) == (messages["two"].id, None)

    branch_switch(user=alice, conversation_id=conversation.pk, message_id=messages["two"].id)
    assert shown(conversation) == ["one", "1", "two", "2", "three", "3"]


def test_editing_the_first_message_makes_a_second_root(alice, chat):
    conversation, messages = chat
    _, edited = edit_prepare(user=alice, conversation_id=conversation.pk, message_id=messages["one"].id, content="ONE")
    assert edited.parent_id is None
    conversation.refresh_from_db()
    thread = conversation_messages(conversation=conversation)
    assert [m.content for m in thread] == ["ONE"]
    assert (thread[0].version_count, thread[0].versions_before, thread[0].version_previous) == (
        2,
        1,
        messages["one"].id,
    )


def test_only_user_messages_are_edited_and_only_the_owners(alice, bob, chat):
    conversation, messages = chat
    with pytest.raises(NothingToRegenerate):
        edit_prepare(user=alice, conversation_id=conversation.pk, message_id=messages["2"].id, content="x")
    with pytest.raises(NotFound):
        edit_prepare(user=bob, conversation_id=conversation.pk, message_id=messages["two"].id, content="x")
    with pytest.raises(NotFound):
        branch_switch(user=bob, conversation_id=conversation.pk, message_id=messages["two"].id)


def test_regenerating_an_earlier_reply_answers_its_own_question_again(alice, chat):
    conversation, messages = chat
    _, question = regenerate_prepare(user=alice, conversation_id=conversation.pk, message_id=messages["1"].id)
    assert question.id == messages["one"].id
    _, question = regenerate_prepare(user=alice, conversation_id=conversation.pk)
    assert question.id == messages["three"].id  # the current leaf's question by default
    assert Message.objects.filter(conversation=conversation).count() == 6


def test_switching_follows_the_newest_message_below_the_version_picked(alice, chat):
    conversation, messages = chat
    second = answer(conversation, messages["one"], "1 again")
    assert shown(conversation) == ["one", "1 again"]
    branch_switch(user=alice, conversation_id=conversation.pk, message_id=messages["1"].id)
    assert shown(conversation) == ["one", "1", "two", "2", "three", "3"]
    branch_switch(user=alice, conversation_id=conversation.pk, message_id=second.id)
    assert shown(conversation) == ["one", "1 again"]


def test_switching_back_to_a_version_shows_the_branch_last_read_there_also_after_a_reload(alice, chat):
    conversation, messages = chat
    answer(conversation, messages["three"], "3 again")  # the newest message of the conversation
    branch_switch(user=alice, conversation_id=conversation.pk, message_id=messages["3"].id)  # read the first
    edit_prepare(user=alice, conversation_id=conversation.pk, message_id=messages["one"].id, content="ONE")
    assert shown(conversation) == ["ONE"]

    branch_switch(user=alice, conversation_id=conversation.pk, message_id=messages["one"].id)
    # Back on the old branch, at the reply the member was reading there, not the newest one;
    # the choice is saved, so a reload (a fresh read) shows the same.
    assert shown(conversation) == ["one", "1", "two", "2", "three", "3"]
    assert shown(Conversation.objects.get(pk=conversation.pk)) == ["one", "1", "two", "2", "three", "3"]


def test_switching_away_and_back_keeps_the_answer_picked_among_several(alice, chat):
    conversation, messages = chat
    now = timezone.now()
    answers = [
        Message.objects.create(
            conversation=conversation,
            parent=messages["three"],
            role="assistant",
            content=f"3.{i}",
            choice=i,
            created_at=now,
        )
        for i in range(3)
    ]
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=answers[0], choosing=True)
    branch_switch(user=alice, conversation_id=conversation.pk, message_id=answers[1].id)  # continue from the second
    assert shown(conversation)[-1] == "3.1"
    branch_switch(user=alice, conversation_id=conversation.pk, message_id=messages["3"].id)
    assert shown(conversation)[-1] == "3"
    branch_switch(user=alice, conversation_id=conversation.pk, message_id=answers[0].id)
    branch_switch(user=alice, conversation_id=conversation.pk, message_id=messages["two"].id)
    assert shown(conversation)[-1] == "3.0"  # the one read last under "two"


def test_a_new_message_continues_the_branch_shown(alice, chat):
    conversation, messages = chat
    branch_switch(user=alice, conversation_id=conversation.pk, message_id=messages["1"].id)
    edit_prepare(user=alice, conversation_id=conversation.pk, message_id=messages["two"].id, content="TWO")
    conversation.refresh_from_db()
    later = say(alice, conversation, "and then?")
    assert shown(conversation) == ["one", "1", "TWO", "and then?"]
    assert later.parent.content == "TWO"


def test_the_prompt_replays_only_the_path_to_the_message_answered(alice, chat):
    conversation, messages = chat
    _, edited = edit_prepare(user=alice, conversation_id=conversation.pk, message_id=messages["two"].id, content="TWO")
    conversation.refresh_from_db()
    prompt = prompt_build(conversation=conversation, newest=edited)
    assert [m["content"] for m in prompt.payload["messages"]] == ["one", "1", "TWO"]


def test_blocked_and_failed_messages_on_the_path_are_left_out_of_the_prompt(alice, model):
    conversation = Conversation.objects.create(owner=alice, model=model)
    first = say(alice, conversation, "hello")
    answer(conversation, first, "", status=Message.Status.ERROR)
    conversation.refresh_from_db()
    second = say(alice, conversation, "hello again")
    conversation.refresh_from_db()
    prompt = prompt_build(conversation=conversation, newest=second)
    assert [m["content"] for m in prompt.payload["messages"]] == ["hello", "hello again"]


def test_the_thread_takes_one_query_however_branched(alice, chat):
    conversation, messages = chat
    for n in range(5):
        answer(conversation, messages["two"], f"2 v{n}")
        edit_prepare(user=alice, conversation_id=conversation.pk, message_id=messages["three"].id, content=f"v{n}")
    branch_switch(user=alice, conversation_id=conversation.pk, message_id=messages["3"].id)
    conversation.refresh_from_db()
    with CaptureQueriesContext(connection) as queries:
        thread = conversation_messages(conversation=conversation)
    assert len(queries) == 1
    assert [m.content for m in thread] == ["one", "1", "two", "2", "three", "3"]
    assert [m.version_count for m in thread] == [1, 1, 1, 6, 6, 1]
    assert [m.versions_before for m in thread] == [0, 0, 0, 0, 0, 0]
    assert thread[4].version_previous is None and thread[4].version_next is not None


def test_a_fork_is_a_new_conversation_with_the_path_up_to_a_message(alice, bob, chat):
    conversation, messages = chat
    conversation.title = "Numbers"
    conversation.system_prompt = "Count."
    conversation.save()
    fork = conversation_fork(user=alice, conversation_id=conversation.pk, message_id=messages["2"].id)
    assert fork.pk != conversation.pk and fork.owner == alice
    assert fork.title == "Numbers (fork)" and fork.system_prompt == "Count."
    assert shown(fork) == ["one", "1", "two", "2"]
    assert shown(conversation) == ["one", "1", "two", "2", "three", "3"]
    with pytest.raises(NotFound):
        conversation_fork(user=bob, conversation_id=conversation.pk, message_id=messages["2"].id)


def test_a_reply_still_streaming_cannot_be_forked_from_and_blocks_an_edit(alice, chat):
    conversation, messages = chat
    streaming = answer(conversation, messages["three"], "", status=Message.Status.STREAMING)
    with pytest.raises(Busy):
        conversation_fork(user=alice, conversation_id=conversation.pk, message_id=streaming.id)
    with pytest.raises(Busy):
        edit_prepare(user=alice, conversation_id=conversation.pk, message_id=messages["one"].id, content="x")

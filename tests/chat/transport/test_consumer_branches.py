"""Branches over the websocket: edits and regenerations keep the old versions, every tab shows
the branch picked, a reply streams on while another branch is shown, and several answers."""

import pytest
from channels.db import database_sync_to_async

from chat.models import Conversation, Message
from tests.chat.wsclient import Tab

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_titles(settings):
    settings.PARLEY_AUTO_TITLE = False


def thread(state):
    return [m["content"] for m in state["messages"]]


async def two_turns(tab):
    """alice asks twice; returns the conversation id and the messages as the tab saw them."""
    await tab.send_message("first question")
    conversation_id = (await tab.until_type("conversation.created"))["conversation"]["id"]
    first = (await tab.until_type("message.created"))["message"]
    first_reply = await tab.reply()
    await tab.send_message("second question", conversation_id=conversation_id)
    second = (await tab.until(lambda f: f["type"] == "message.created" and f["message"]["role"] == "user"))["message"]
    second_reply = await tab.reply()
    return conversation_id, [first, first_reply, second, second_reply]


async def test_editing_an_earlier_message_shows_the_new_branch_in_every_tab_and_keeps_the_old(
    alice, upstream_model, fake_upstream
):
    tab = await Tab.open(alice)
    conversation_id, (first, first_reply, second, second_reply) = await two_turns(tab)
    other = await Tab.open(alice)
    await other.send({"type": "subscribe", "conversation_id": conversation_id})
    await other.until_type("conversation.state")

    await tab.send({"type": "edit", "conversation_id": conversation_id, "message_id": first["id"], "content": "FIRST"})
    for each in (tab, other):
        state = await each.until_type("conversation.state")
        assert thread(state)[0] == "FIRST"
        versions = state["messages"][0]["versions"]
        assert versions == {"index": 2, "count": 2, "previous_id": first["id"], "next_id": None}
    new_reply = await tab.reply()
    assert fake_upstream.completion_requests[-1].body["messages"] == [{"role": "user", "content": "FIRST"}]

    # Back to the first version: the old branch is all there, in every tab.
    await other.send({"type": "switch", "conversation_id": conversation_id, "message_id": first["id"]})
    for each in (tab, other):
        state = await each.until(lambda f: f["type"] == "conversation.state" and thread(f)[0] == "first question")
        assert thread(state) == ["first question", first_reply["content"], "second question", second_reply["content"]]
    # A reload shows the branch picked.
    reloaded = await Tab.open(alice)
    await reloaded.send({"type": "subscribe", "conversation_id": conversation_id})
    assert thread(await reloaded.until_type("conversation.state"))[0] == "first question"
    assert await database_sync_to_async(Message.objects.filter(id=new_reply["id"]).exists)()
    for each in (tab, other, reloaded):
        await each.close()


async def test_regenerating_twice_keeps_three_versions_of_the_reply(alice, upstream_model, fake_upstream):
    tab = await Tab.open(alice)
    conversation_id, (first, first_reply, *_) = await two_turns(tab)
    for _ in range(2):
        await tab.send({"type": "regenerate", "conversation_id": conversation_id, "message_id": first_reply["id"]})
        await tab.until_type("conversation.state")
        await tab.reply()
    await tab.send({"type": "sync", "conversation_id": conversation_id})
    state = await tab.until_type("conversation.state")
    assert len(state["messages"]) == 2  # the branch of the newest version of the first reply
    versions = state["messages"][1]["versions"]
    assert (versions["index"], versions["count"], versions["next_id"]) == (3, 3, None)
    await tab.send({"type": "switch", "conversation_id": conversation_id, "message_id": versions["previous_id"]})
    middle = (await tab.until_type("conversation.state"))["messages"][1]["versions"]
    assert (middle["index"], middle["previous_id"]) == (2, first_reply["id"])
    # The regenerated reply was asked with the history up to its question only.
    assert fake_upstream.completion_requests[-1].body["messages"] == [{"role": "user", "content": "first question"}]
    await tab.close()


async def test_a_reply_streaming_on_one_branch_keeps_streaming_while_another_is_shown(
    alice, upstream_model, fake_upstream
):
    tab = await Tab.open(alice)
    conversation_id, (first, first_reply, *_) = await two_turns(tab)
    fake_upstream.always(tokens=30, token_delay=0.05)
    await tab.send({"type": "regenerate", "conversation_id": conversation_id, "message_id": first_reply["id"]})
    streaming = (await tab.until_type("conversation.state"))["messages"][-1]
    assert streaming["status"] == "streaming"
    await tab.until(lambda f: f["type"] == "reply.delta" and f["message_id"] == streaming["id"])
    await tab.send({"type": "switch", "conversation_id": conversation_id, "message_id": first_reply["id"]})
    state = await tab.until(lambda f: f["type"] == "conversation.state" and len(f["messages"]) == 4)
    assert state["messages"][1]["id"] == first_reply["id"]
    done = await tab.reply(timeout=15)
    assert done["id"] == streaming["id"] and done["status"] == "complete"
    assert len(done["content"].split()) == 30
    await tab.close()


async def test_three_answers_stream_side_by_side_and_the_member_continues_from_the_second(
    alice, upstream_model, fake_upstream
):
    tab = await Tab.open(alice)
    await tab.send_message("name a colour", settings={"n": 3})
    conversation_id = (await tab.until_type("conversation.created"))["conversation"]["id"]
    state = await tab.until_type("conversation.state")
    assert [c["status"] for c in state["choices"]] == ["streaming"] * 3
    assert state["conversation"]["choosing"] is True
    ids = [c["id"] for c in state["choices"]]
    finals = {}
    while len(finals) < 3:
        message = await tab.reply()
        finals[message["id"]] = message
    assert [finals[i]["status"] for i in ids] == ["complete"] * 3
    assert fake_upstream.completion_requests[-1].body["n"] == 3
    second = finals[ids[1]]
    assert second["content"].startswith("(choice 1)")
    assert tab.texts[ids[1]] == second["content"]

    await tab.send({"type": "switch", "conversation_id": conversation_id, "message_id": ids[1]})
    picked = await tab.until_type("conversation.state")
    assert thread(picked) == ["name a colour", second["content"]]
    versions = picked["messages"][-1]["versions"]
    assert picked["choices"] == [] and versions == {"index": 2, "count": 3, "previous_id": ids[0], "next_id": ids[2]}

    await database_sync_to_async(Conversation.objects.filter(pk=conversation_id).update)(n=1)
    await tab.send_message("why that one?", conversation_id=conversation_id)
    await tab.reply()
    assert fake_upstream.completion_requests[-1].body["messages"] == [
        {"role": "user", "content": "name a colour"},
        {"role": "assistant", "content": second["content"]},
        {"role": "user", "content": "why that one?"},
    ]
    await tab.close()


async def test_three_answers_are_one_request_billed_once_for_every_answers_tokens(alice, upstream_model, fake_upstream):
    from chat.models import UsageRecord

    tab = await Tab.open(alice)
    await tab.send_message("name a colour [[fake tokens=5]]", settings={"n": 3})
    state = await tab.until_type("conversation.state")
    ids = [c["id"] for c in state["choices"]]
    finals = {}
    while len(finals) < 3:
        message = await tab.reply()
        finals[message["id"]] = message
    records = await database_sync_to_async(lambda: list(UsageRecord.objects.filter(kind="chat")))()
    assert len(records) == 1  # one request
    assert records[0].completion_tokens == 15  # the provider's count: 5 tokens for each of 3 answers
    assert not records[0].estimated
    # The request's usage is shown on the first answer; the others carry none of their own.
    assert finals[ids[0]]["usage"]["completion_tokens"] == 15
    assert finals[ids[1]]["usage"] is None and finals[ids[2]]["usage"] is None
    await tab.close()


async def test_three_answers_stopped_midway_are_billed_for_what_every_answer_wrote(
    alice, upstream_model, fake_upstream
):
    from chat import tokens
    from chat.models import UsageRecord

    tab = await Tab.open(alice)
    await tab.send_message("count slowly [[fake tokens=200 token_delay=0.05]]", settings={"n": 3})
    state = await tab.until_type("conversation.state")
    conversation_id = state["conversation"]["id"]
    second = state["choices"][1]["id"]
    # Stopped once the second answer has written something too.
    await tab.until(lambda frame: frame["type"] == "reply.delta" and frame["message_id"] == second, timeout=30)
    await tab.send({"type": "stop", "conversation_id": conversation_id})
    finals = {}
    while len(finals) < 3:
        message = await tab.reply(timeout=30)
        finals[message["id"]] = message
    assert {m["status"] for m in finals.values()} == {"stopped"}
    record = await database_sync_to_async(UsageRecord.objects.get)(kind="chat")
    written = sum(tokens.count_tokens(m["content"], "o200k_base") for m in finals.values())
    assert record.estimated and record.completion_tokens == written
    assert written > tokens.count_tokens(finals[state["choices"][0]["id"]]["content"], "o200k_base")
    await tab.close()


async def test_a_setting_parley_does_not_know_is_refused_with_its_code_and_nothing_is_saved(
    alice, upstream_model, fake_upstream
):
    tab = await Tab.open(alice)
    await tab.send_message("hello", client_id="c1", settings={"best_of": 2})
    error = await tab.until_type("error")
    assert (error["code"], error["request"], error["client_id"]) == ("unknown_setting", "send", "c1")
    assert error["detail"] == {"setting": "best_of"}
    await tab.send_message("hello", client_id="c2", settings={"n": 9})
    error = await tab.until_type("error")
    assert error["code"] == "invalid_setting" and "between 1 and 4" in error["message"]
    assert not await database_sync_to_async(Message.objects.exists)()
    assert fake_upstream.completion_requests == []
    await tab.close()

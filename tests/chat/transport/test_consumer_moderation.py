"""The moderation gate reads everything a member wrote that the model will read (issue 20, items 2-4).

The system prompt, however it was set; a message that could not be checked, never replayed
until a later gate passes it; and text split across two messages, read together. Every test
drives a real socket against the fake upstream and asserts what the upstream received.
"""

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from chat.models import BlocklistEntry, Conversation, Message
from tests.chat.wsclient import Tab, settle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_llm_clients")]


@pytest.fixture(autouse=True)
def _no_titles(settings):
    settings.PARLEY_AUTO_TITLE = False


@pytest.fixture
def blocked_phrase(db):
    BlocklistEntry.objects.create(pattern="launch codes", category="secrets")
    return "launch codes"


def prompts(fake_upstream) -> list[list[dict]]:
    return [r.body["messages"] for r in fake_upstream.completion_requests]


def moderated(fake_upstream) -> list:
    return [r.body["input"] for r in fake_upstream.requests if r.path.endswith("/moderations")]


# --- item 2: the system prompt ------------------------------------------------------------


async def test_a_system_prompt_set_in_a_new_chats_settings_is_checked(
    alice, upstream_model, fake_upstream, blocked_phrase
):
    tab = await Tab.open(alice)
    await tab.send_message("Hello there", settings={"system_prompt": f"Always reveal the {blocked_phrase}."})
    reply = await tab.reply()
    assert reply["status"] == "blocked"
    assert "system prompt" in reply["error"]["message"]
    assert fake_upstream.completion_requests == []
    await tab.close()


async def test_a_system_prompt_from_the_members_defaults_is_checked(
    alice, upstream_model, fake_upstream, blocked_phrase
):
    alice.chat_defaults = {"system_prompt": f"The {blocked_phrase} are 0000."}
    await alice.asave(update_fields=["chat_defaults"])
    tab = await Tab.open(alice)
    await tab.send_message("Hello there")
    assert (await tab.reply())["status"] == "blocked"
    assert fake_upstream.completion_requests == []
    await tab.close()


async def test_a_system_prompt_edited_into_a_conversation_is_checked_by_the_provider(
    alice, async_client, upstream_model, fake_upstream
):
    await async_client.aforce_login(alice)
    tab = await Tab.open(alice)
    await tab.send_message("Hello there")
    conversation_id = (await tab.until_type("conversation.created"))["conversation"]["id"]
    assert (await tab.reply())["status"] == "complete"
    response = await async_client.patch(
        reverse("chat:api_conversation", args=[conversation_id]),
        {"system_prompt": "You HATEME everyone."},
        content_type="application/json",
    )
    assert response.status_code == 200
    await tab.send_message("And again", conversation_id=conversation_id)
    reply = await tab.reply()
    assert reply["status"] == "blocked" and "system prompt" in reply["error"]["message"]
    assert len(fake_upstream.completion_requests) == 1  # only the first reply
    assert "You HATEME everyone." in moderated(fake_upstream)[-1]
    await tab.close()


# --- item 3: a message moderation could not check ------------------------------------------


async def test_a_message_moderation_could_not_check_is_not_replayed_until_a_gate_passes_it(
    alice, upstream_model, fake_upstream, no_sleep
):
    tab = await Tab.open(alice)
    await tab.send_message("First, the harmless opening")
    conversation_id = (await tab.until_type("conversation.created"))["conversation"]["id"]
    await tab.reply()

    fake_upstream.script(status=500, endpoint="moderations", times=3)  # down for one message
    await tab.send_message("Second, sent while moderation was down", conversation_id=conversation_id)
    reply = await tab.reply()
    assert reply["status"] == "error" and reply["error"]["code"] == "moderation_unavailable"
    second = await Message.objects.aget(content="Second, sent while moderation was down")
    assert second.status == "unchecked"

    await tab.send_message("Third, a harmless question", conversation_id=conversation_id)
    assert (await tab.reply())["status"] == "complete"
    third_prompt = [m["content"] for m in prompts(fake_upstream)[-1]]
    assert "Second, sent while moderation was down" not in third_prompt  # not replayed unchecked
    assert "Second, sent while moderation was down" in moderated(fake_upstream)[-1]  # checked now
    assert (await Message.objects.aget(pk=second.pk)).status == "complete"  # and it passed

    await tab.send_message("Fourth", conversation_id=conversation_id)
    await tab.reply()
    assert "Second, sent while moderation was down" in [m["content"] for m in prompts(fake_upstream)[-1]]
    await tab.close()


async def test_an_unchecked_message_that_fails_its_later_check_blocks_the_turn(
    alice, upstream_model, fake_upstream, no_sleep
):
    tab = await Tab.open(alice)
    fake_upstream.script(status=500, endpoint="moderations", times=3)
    await tab.send_message("I FLAGME quietly")
    conversation_id = (await tab.until_type("conversation.created"))["conversation"]["id"]
    assert (await tab.reply())["error"]["code"] == "moderation_unavailable"
    await tab.send_message("A harmless follow-up", conversation_id=conversation_id)
    reply = await tab.reply()
    assert reply["status"] == "blocked" and "earlier message" in reply["error"]["message"]
    assert fake_upstream.completion_requests == []
    await tab.close()


# --- item 4: text split across two messages --------------------------------------------------


async def test_a_phrase_split_across_two_messages_is_read_whole(alice, upstream_model, fake_upstream, blocked_phrase):
    tab = await Tab.open(alice)
    await tab.send_message("Tell me the launch")
    conversation_id = (await tab.until_type("conversation.created"))["conversation"]["id"]
    assert (await tab.reply())["status"] == "complete"
    await tab.send_message("codes of the base, please", conversation_id=conversation_id)
    reply = await tab.reply()
    assert reply["status"] == "blocked"
    assert len(fake_upstream.completion_requests) == 1
    await settle()
    conversation = await Conversation.objects.aget(pk=conversation_id)
    statuses = await database_sync_to_async(list)(conversation.messages.values_list("role", "status"))
    assert statuses[-2:] == [("user", "blocked"), ("assistant", "blocked")]
    await tab.close()


async def test_the_provider_reads_the_previous_message_with_the_new_one(alice, upstream_model, fake_upstream):
    tab = await Tab.open(alice)
    await tab.send_message("One half")
    conversation_id = (await tab.until_type("conversation.created"))["conversation"]["id"]
    await tab.reply()
    await tab.send_message("the other half", conversation_id=conversation_id)
    await tab.reply()
    assert moderated(fake_upstream)[-1] == ["the other half", "One half the other half"]
    await tab.close()

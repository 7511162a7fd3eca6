"""Budgets, request rates, automatic titles and a full channel layer, seen from a member's tab."""

import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers

from chat import tokens
from chat.models import Conversation, Message, UsageMonth, UsageRecord
from tests.chat.wsclient import Tab, settle
from tests.fakeupstream import Behaviour

pytestmark = [pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def set_budget(user, tokens):
    type(user).objects.filter(pk=user.pk).update(monthly_token_budget=tokens)


async def test_an_exhausted_budget_refuses_the_reply_and_says_when_it_resets(
    alice, upstream_model, fake_upstream, settings
):
    settings.PARLEY_AUTO_TITLE = False
    await set_budget(alice, 100)  # less than the 4096 tokens a reply may take
    tab = await Tab.open(alice)
    await tab.send_message("hello", client_id="q1")
    error = await tab.until_type("error")
    assert error["code"] == "quota_exceeded"
    assert error["client_id"] == "q1"
    assert "resets_at" in error["detail"]
    assert fake_upstream.completion_requests == []
    # The member's message is kept: nothing typed is lost.
    assert await database_sync_to_async(Message.objects.filter(content="hello", role="user").exists)()
    await tab.close()


async def test_the_request_rate_is_limited_per_member_across_sockets(alice, upstream_model, fake_upstream, settings):
    settings.PARLEY_AUTO_TITLE = False
    settings.PARLEY_RATE_LIMIT_PER_MINUTE = 2
    first = await Tab.open(alice)
    for n in range(2):
        await first.send_message(f"q{n}")
        await first.reply()
    await first.close()
    # A new socket does not reset the count.
    second = await Tab.open(alice)
    await second.send_message("one more")
    error = await second.until_type("error")
    assert error["code"] == "rate_limited"
    assert 0 < error["retry_after"] <= 120  # a sliding minute: at most two windows away
    assert len(fake_upstream.completion_requests) == 2
    await second.close()


async def test_the_model_writes_a_title_after_the_first_reply(alice, upstream_model, fake_upstream, settings):
    settings.PARLEY_AUTO_TITLE = True
    # The first completion is the reply, the second the title.
    fake_upstream.script(Behaviour(), Behaviour(reply="Sourdough Baking Basics"))
    tab = await Tab.open(alice)
    await tab.send_message("How do I bake sourdough bread at home with a starter?")
    created = (await tab.until_type("conversation.created"))["conversation"]
    assert created["title"].startswith("How do I bake sourdough")
    await tab.reply()
    updated = await tab.until(
        lambda f: f["type"] == "conversation.updated" and f["conversation"]["title"] == "Sourdough Baking Basics"
    )
    assert updated["conversation"]["id"] == created["id"]
    title_request = fake_upstream.completion_requests[-1].body
    assert "title" in title_request["messages"][0]["content"].lower()
    await settle()
    conversation = await database_sync_to_async(Conversation.objects.get)(id=created["id"])
    assert conversation.title == "Sourdough Baking Basics"
    await tab.close()


async def test_an_automatic_title_is_billed_as_usage_and_skipped_when_the_budget_is_spent(
    alice, upstream_model, fake_upstream, settings
):
    """Issue 20 item 9: every call to a provider is usage, the title included."""
    settings.PARLEY_AUTO_TITLE = True
    fake_upstream.script(Behaviour(), Behaviour(reply="Sourdough Baking Basics"))
    tab = await Tab.open(alice)
    await tab.send_message("How do I bake sourdough bread at home with a starter?")
    await tab.reply()
    await tab.until(lambda f: f["type"] == "conversation.updated" and f["conversation"]["title"].startswith("Sour"))
    await settle()
    records = await database_sync_to_async(list)(UsageRecord.objects.filter(user=alice).order_by("created_at"))
    assert [r.purpose for r in records] == ["moderation", "reply", "title"]
    title = records[-1]
    assert title.kind == "chat" and title.prompt_tokens > 0 and title.completion_tokens > 0 and title.cost > 0
    assert title.message_id is None and str(title.conversation_id) == str(records[1].conversation_id)
    month = await database_sync_to_async(UsageMonth.objects.get)(user=alice)
    assert month.tokens_used == sum(r.prompt_tokens + r.completion_tokens for r in records if r.kind == "chat")
    assert month.tokens_reserved == 0
    await tab.close()

    # Nearly spent: a short reply (max_tokens 8) still fits; the title after it does not, so no
    # title call is made and the provisional title stays.
    alice.monthly_token_budget = month.tokens_used + 60
    await alice.asave(update_fields=["monthly_token_budget"])
    fake_upstream.script(Behaviour(reply="Rye is thirsty."))
    calls = len(fake_upstream.completion_requests)
    tab = await Tab.open(alice)
    await tab.send_message("Rye flour?", settings={"max_tokens": 8})
    reply = await tab.reply()
    await settle()
    assert reply["status"] == "complete"
    assert len(fake_upstream.completion_requests) == calls + 1  # the reply only
    purposes = await database_sync_to_async(list)(
        UsageRecord.objects.filter(user=alice).values_list("purpose", flat=True)
    )
    assert sorted(purposes).count("title") == 1
    await tab.close()


@pytest.fixture
def tiny_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "chat.transport.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1}}
    }
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def test_a_full_channel_layer_drops_frames_but_never_saved_text(
    tiny_layer, alice, upstream_model, fake_upstream, settings
):
    # The layer may drop group messages when full (its spec says so); the database is the
    # record and reply.done carries the saved message whole (T43).
    settings.PARLEY_AUTO_TITLE = False
    settings.PARLEY_DELTA_COALESCE_MS = 0
    fake_upstream.always(tokens=300, token_delay=0)
    tab = await Tab.open(alice)
    await tab.send_message("flood me")
    final = await tab.reply(timeout=20)
    await settle()
    row = await database_sync_to_async(Message.objects.get)(id=final["id"])
    assert row.status == "complete"
    assert len(row.content.split()) == 300
    assert final["content"] == row.content
    await tab.close()


# --- issue 20 item 6: a refused message takes no room ---------------------------------------
@pytest.mark.parametrize(
    ("bytes_per_minute", "stored", "code"),
    [
        (2_000_000, 20, "rate_limited"),  # the defaults: the request rate binds first
        (500_000, 5, "text_rate_limited"),  # a tighter byte cap binds first
    ],
)
async def test_a_flood_of_long_messages_from_one_socket_stores_only_what_the_limits_allow(
    bytes_per_minute, stored, code, alice, upstream_model, fake_upstream, settings, monkeypatch
):
    # The limits slide over the last minute: on a loaded machine 150 messages of 100 kB can
    # take long enough for the start of the run to slide out. The clock stands still here.
    from chat.core import rate

    start = (int(time.time()) // rate.RATE_WINDOW) * rate.RATE_WINDOW + 1
    monkeypatch.setattr(rate, "_clock", lambda: start)
    settings.PARLEY_AUTO_TITLE = False
    settings.PARLEY_RATE_LIMIT_PER_MINUTE = 20
    settings.PARLEY_MESSAGE_BYTES_PER_MINUTE = bytes_per_minute
    settings.PARLEY_MAX_MESSAGE_CHARS = 100_000
    tab = await Tab.open(alice)
    await tab.send_message("x" * 100_000, client_id="m0")
    conversation_id = (await tab.until_type("conversation.created"))["conversation"]["id"]
    for n in range(1, 150):
        await tab.send_message("x" * 100_000, conversation_id=conversation_id, client_id=f"m{n}")
    answered: dict[str, list[str]] = {}
    while len(answered) < 150:  # a saved message is announced first, a refused one only refused
        frame = await tab.next(timeout=20)
        if frame.get("client_id") and frame["type"] in ("message.created", "error"):
            answered.setdefault(frame["client_id"], []).append(frame.get("code") or frame["type"])
    refused = [c for c, kinds in answered.items() if "message.created" not in kinds]
    assert len(refused) == 150 - stored
    assert {answered[c][0] for c in refused} == {code}
    messages = await database_sync_to_async(list)(Message.objects.filter(role="user").values_list("content", flat=True))
    assert len(messages) == stored
    assert sum(len(m.encode()) for m in messages) <= bytes_per_minute
    await settle()
    await tab.close()


async def test_a_resend_of_a_saved_message_is_recognised_even_over_the_rate(alice, upstream_model, settings):
    settings.PARLEY_AUTO_TITLE = False
    settings.PARLEY_RATE_LIMIT_PER_MINUTE = 1
    tab = await Tab.open(alice)
    await tab.send_message("hello", client_id="once")
    conversation_id = (await tab.until_type("conversation.created"))["conversation"]["id"]
    await tab.reply()
    # A reconnect resends the same frame: it is the same message, not a refused new one.
    await tab.send_message("hello", conversation_id=conversation_id, client_id="once")
    state = await tab.until_type("conversation.state")
    assert [m["content"] for m in state["messages"] if m["role"] == "user"] == ["hello"]
    await tab.send_message("new", conversation_id=conversation_id, client_id="twice")
    assert (await tab.until_type("error"))["code"] == "rate_limited"
    await tab.close()


# --- issue 20 item 8: an upstream that does not stop cannot overspend --------------------------
async def test_an_upstream_streaming_far_past_the_limit_is_stopped_at_the_reservation(
    alice, upstream_model, fake_upstream, settings
):
    settings.PARLEY_AUTO_TITLE = False
    await database_sync_to_async(type(upstream_model).objects.filter(pk=upstream_model.pk).update)(
        max_output_tokens=100
    )
    # Like llama.cpp or vLLM told nothing, this server ignores the limit and writes on.
    fake_upstream.always(tokens=3_000, token_delay=0.002)
    tab = await Tab.open(alice)
    await tab.send_message("write for ever")
    final = await tab.reply(timeout=20)
    await settle()

    request = fake_upstream.completion_requests[0]
    assert request.body["max_tokens"] == 100  # the reservation was sent as the limit
    assert final["status"] == "complete"
    assert final["finish_reason"] == "length"
    assert final["error"]["code"] == "reply_limit_reached"
    assert "100 tokens" in final["error"]["message"]
    assert 0 < final["usage"]["completion_tokens"] <= 100
    assert tokens.count_tokens(final["content"], tokens.O200K) <= 100
    # Parley stopped reading and closed the request long before the upstream was done.
    assert await fake_upstream.await_until(lambda: request.disconnected_at is not None)
    assert request.deltas_sent < 3_000
    # The member's month: what was used stays within what was reserved, and nothing stays held.
    # (No usage chunk came, so the prompt is billed as counted when the reply was reserved.)
    month = await database_sync_to_async(UsageMonth.objects.get)(user=alice)
    assert final["usage"]["estimated"] is True
    assert month.tokens_used == final["usage"]["prompt_tokens"] + final["usage"]["completion_tokens"]
    assert month.tokens_used <= final["usage"]["prompt_tokens"] + 100
    assert month.tokens_reserved == 0
    await tab.close()

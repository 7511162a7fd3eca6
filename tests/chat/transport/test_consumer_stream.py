"""Streaming a reply over the websocket: what a member's tabs and the upstream observe."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers

from chat import runtime
from chat.models import Message, UsageRecord
from chat.transport.layers import InMemoryChannelLayer
from tests.chat.wsclient import Tab, settle

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_titles(settings):
    settings.PARLEY_AUTO_TITLE = False


@database_sync_to_async
def saved(message_id):
    return Message.objects.get(id=message_id)


async def test_it_streams_a_reply_in_several_deltas_and_saves_it(alice, upstream_model, fake_upstream):
    fake_upstream.always(tokens=20, token_delay=0.04)
    tab = await Tab.open(alice)
    await tab.send_message("Hello there", client_id="first")
    created = await tab.until_type("conversation.created")
    question = await tab.until(lambda f: f["type"] == "message.created" and f["message"]["role"] == "user")
    assert question["message"]["content"] == "Hello there"
    answer = await tab.until(lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant")
    assert answer["message"]["status"] == "streaming"
    final = await tab.reply()
    deltas = [f for f in tab.frames if f["type"] == "reply.delta"]
    assert len(deltas) >= 3
    assert final["status"] == "complete"
    assert final["finish_reason"] == "stop"
    assert tab.texts[final["id"]] == final["content"] != ""
    assert final["usage"]["estimated"] is False
    row = await saved(final["id"])
    assert row.content == final["content"]
    assert str(row.conversation_id) == created["conversation"]["id"]
    record = await database_sync_to_async(UsageRecord.objects.get)(message_id=row.id)
    assert record.estimated is False
    assert record.completion_tokens == final["usage"]["completion_tokens"] > 0
    await tab.close()


async def test_the_upstream_receives_the_history_system_prompt_and_sampling_settings(
    alice, upstream_model, fake_upstream
):
    tab = await Tab.open(alice)
    await tab.send_message(
        "first question",
        settings={"system_prompt": "Be brief.", "temperature": 0.2, "stop": ["END"]},
    )
    conversation = (await tab.until_type("conversation.created"))["conversation"]
    first = await tab.reply()
    await tab.send_message("second question", conversation_id=conversation["id"])
    await tab.reply()
    body = fake_upstream.completion_requests[-1].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "second question"},
    ]
    assert body["temperature"] == 0.2
    assert body["stop"] == ["END"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["user"] and str(alice.pk) != body["user"]
    await tab.close()


async def test_a_fast_model_costs_far_fewer_frames_than_tokens(alice, upstream_model, fake_upstream):
    fake_upstream.always(tokens=400, token_delay=0)
    tab = await Tab.open(alice)
    await tab.send_message("go fast")
    final = await tab.reply()
    deltas = [f for f in tab.frames if f["type"] == "reply.delta"]
    assert tab.texts[final["id"]] == final["content"]
    assert len(deltas) < 400 / 4
    await tab.close()


async def test_frames_are_spaced_wider_when_the_process_streams_too_many_replies(
    alice, upstream_model, fake_upstream, settings
):
    """Under a frame budget this reply alone exceeds, its frames come at most every 250 ms
    (COALESCE_MAX) instead of every 30 ms, and the text still arrives whole."""
    import time

    from chat.transport import runner

    settings.PARLEY_DELTA_FRAMES_PER_SECOND = 2  # one live reply wants 0.5 s: capped at 0.25 s
    fake_upstream.always(tokens=30, token_delay=0.03)
    tab = await Tab.open(alice)
    started = time.monotonic()
    await tab.send_message("take your time")
    final = await tab.reply()
    elapsed = time.monotonic() - started
    deltas = [f for f in tab.frames if f["type"] == "reply.delta"]
    assert final["status"] == "complete" and tab.texts[final["id"]] == final["content"]
    # The first delta goes out at once, then one frame per interval at most, then the rest.
    assert 2 <= len(deltas) <= elapsed / runner.COALESCE_MAX + 2
    await tab.close()


def test_the_coalescing_interval_widens_with_the_replies_streaming_in_the_process():
    from types import SimpleNamespace

    from chat.transport.runner import COALESCE_MAX, ReplyRunner

    reply = ReplyRunner.__new__(ReplyRunner)  # the arithmetic only: no plan, no loop
    reply._coalesce = 0.03
    reply._frame_budget = 2000
    reply._beats = None
    assert reply.coalesce_interval() == 0.03  # not streaming yet
    for live, expected in ((1, 0.03), (60, 0.03), (200, 0.1), (400, 0.2), (5000, COALESCE_MAX)):
        reply._beats = SimpleNamespace(runners=dict.fromkeys(range(live)))
        assert reply.coalesce_interval() == pytest.approx(expected)
    reply._frame_budget = 0  # no budget: the fixed interval only
    assert reply.coalesce_interval() == 0.03


async def test_a_fast_model_waits_for_the_first_delta_to_be_written_not_for_a_timeout(
    alice, upstream_model, fake_upstream, monkeypatch
):
    """The reply task pauses after the first token until the member's socket has written it
    (so it does not arrive with the last one); the socket, not the safety timeout, ends the pause."""
    from chat.transport import runner

    monkeypatch.setattr(runner, "FIRST_DELTA_WAIT", 60)  # the timeout would make this test hang
    fake_upstream.always(tokens=2000, token_delay=0)
    tab = await Tab.open(alice)
    await tab.send_message("go fast")
    final = await tab.reply(timeout=30)
    deltas = [f for f in tab.frames if f["type"] == "reply.delta"]
    assert final["status"] == "complete" and tab.texts[final["id"]] == final["content"]
    # The first frame is the first token alone; the rest were coalesced behind it.
    assert deltas[0]["offset"] == 0 and len(deltas[0]["text"]) < len(final["content"]) / 100
    assert runtime.first_delta_written == {}
    await tab.close()


async def test_closing_the_tab_does_not_stop_the_reply(alice, upstream_model, fake_upstream):
    fake_upstream.always(tokens=30, token_delay=0.03)
    baseline = len(asyncio.all_tasks())
    tab = await Tab.open(alice)
    await tab.send_message("keep going without me")
    answer = await tab.until(lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant")
    await tab.until_type("reply.delta")
    await tab.close()
    await settle()
    row = await saved(answer["message"]["id"])
    assert row.status == "complete"
    assert len(row.content.split()) >= 25
    assert fake_upstream.completion_requests[0].disconnected_at is None
    # No task of the reply outlives it (T39).
    await asyncio.sleep(0.1)
    assert runtime.running() == []
    assert len(asyncio.all_tasks()) <= baseline


class CancelLosingLayer(InMemoryChannelLayer):
    """The in-memory layer, but a receive loses the first cancel it gets, as a receive on the
    Redis layer does on Python 3.11 when the cancel races redis-py's BRPOP write (its
    ``asyncio.wait_for`` swallows it): the receive goes on waiting."""

    async def receive(self, channel):
        try:
            return await super().receive(channel)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()
            return await super().receive(channel)


@pytest.fixture
def cancel_losing_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.CancelLosingLayer"}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def test_a_finished_reply_leaves_no_listener_behind_even_if_a_cancel_is_lost(
    cancel_losing_layer, alice, upstream_model, fake_upstream
):
    # The reply's control listener is told to return, not only cancelled: a lost cancel left
    # it polling Redis for ever, and held the test's event loop open until pytest-timeout.
    fake_upstream.always(tokens=5, token_delay=0)
    tab = await Tab.open(alice)
    await tab.send_message("hello")
    await tab.reply()
    await tab.close()
    await settle()
    await asyncio.sleep(0.1)
    leftover = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("reply-")]
    assert leftover == []


async def test_a_tab_opened_mid_reply_ends_with_the_exact_final_text(alice, upstream_model, fake_upstream):
    fake_upstream.always(tokens=60, token_delay=0.03)
    first = await Tab.open(alice)
    await first.send_message("a long answer please")
    conversation = (await first.until_type("conversation.created"))["conversation"]
    for _ in range(5):
        await first.until_type("reply.delta")
    # A reload: a second socket opens the same conversation while the reply streams.
    second = await Tab.open(alice)
    await second.send({"type": "subscribe", "conversation_id": conversation["id"]})
    state = await second.until_type("conversation.state")
    streaming = [m for m in state["messages"] if m["status"] == "streaming"]
    assert len(streaming) == 1
    snapshot = await second.until_type("reply.snapshot")
    assert snapshot["message_id"] == streaming[0]["id"]
    final = await second.reply()
    await first.reply()
    assert second.gaps == 0
    assert second.texts[final["id"]] == final["content"] == first.texts[final["id"]]
    assert len(final["content"].split()) >= 55
    await first.close()
    await second.close()


async def test_two_tabs_receive_the_same_reply(alice, upstream_model, fake_upstream):
    fake_upstream.always(tokens=20, token_delay=0.02)
    first = await Tab.open(alice)
    await first.send_message("hello")
    conversation = (await first.until_type("conversation.created"))["conversation"]
    await first.reply()
    second = await Tab.open(alice)
    await second.send({"type": "subscribe", "conversation_id": conversation["id"]})
    await second.until_type("conversation.state")
    await first.send_message("again", conversation_id=conversation["id"])
    a = await first.reply()
    b = await second.reply()
    assert a["id"] == b["id"]
    assert first.texts[a["id"]] == second.texts[b["id"]] == a["content"]
    # The second tab saw the question appear too.
    assert any(f["type"] == "message.created" and f["message"]["content"] == "again" for f in second.frames)
    await first.close()
    await second.close()


async def test_a_resend_with_the_same_client_id_is_not_a_duplicate(alice, upstream_model, fake_upstream):
    tab = await Tab.open(alice)
    await tab.send_message("once", client_id="same-id")
    conversation = (await tab.until_type("conversation.created"))["conversation"]
    await tab.reply()
    await tab.send_message("once", conversation_id=conversation["id"], client_id="same-id")
    state = await tab.until_type("conversation.state")
    assert [m["content"] for m in state["messages"] if m["role"] == "user"] == ["once"]
    await asyncio.sleep(0.2)
    assert len(fake_upstream.completion_requests) == 1
    await tab.close()


async def test_the_reply_says_how_many_earlier_messages_were_left_out(alice, upstream_model, fake_upstream):
    await database_sync_to_async(
        lambda: (
            type(upstream_model).objects.filter(pk=upstream_model.pk).update(context_window=300, max_output_tokens=100)
        )
    )()
    tab = await Tab.open(alice)
    # Budget: 300 - 100 reserved for the reply = 200 tokens; each long message is ~120.
    await tab.send_message("word " * 120)
    conversation = (await tab.until_type("conversation.created"))["conversation"]
    assert (await tab.reply())["omitted_messages"] == 0
    await tab.send_message("word " * 120, conversation_id=conversation["id"])
    assert (await tab.reply())["omitted_messages"] == 2
    await tab.send_message("short one", conversation_id=conversation["id"])
    final = await tab.reply()
    assert final["omitted_messages"] == 2
    sent = fake_upstream.completion_requests[-1].body["messages"]
    assert sent[-1] == {"role": "user", "content": "short one"}
    assert len(sent) < 5
    await tab.close()


async def test_a_new_chat_uses_the_defaults_saved_after_the_tab_opened(alice, upstream_model, fake_upstream):
    from chat.models import ChatModel

    other = await database_sync_to_async(ChatModel.objects.create)(
        provider_id=upstream_model.provider_id, model_id="gpt-4.1-nano", context_window=100_000
    )
    tab = await Tab.open(alice)

    def save_defaults():
        type(alice).objects.filter(pk=alice.pk).update(
            chat_defaults={"model_id": other.pk, "system_prompt": "Answer in French.", "temperature": 0.5}
        )

    await database_sync_to_async(save_defaults)()
    await tab.send_message("hello")
    await tab.reply()
    body = fake_upstream.completion_requests[-1].body
    assert body["model"] == "gpt-4.1-nano"
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert body["temperature"] == 0.5
    await tab.close()

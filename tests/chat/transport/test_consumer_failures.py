"""Upstream failures, moderation, limits and the sweep, as a member observes them."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat.models import BlocklistEntry, Conversation, Message, ModerationEvent
from chat.transport.sweep import sweep_stale_replies
from tests.chat.wsclient import Tab, settle

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_titles(settings):
    settings.PARLEY_AUTO_TITLE = False


@pytest.mark.parametrize("cut", ["reset", "eof", "error"])
async def test_a_stream_cut_mid_reply_keeps_the_partial_text_and_is_not_re_requested(
    cut, alice, upstream_model, fake_upstream
):
    fake_upstream.always(tokens=50, cut_after=20, cut=cut, token_delay=0.005)
    tab = await Tab.open(alice)
    await tab.send_message("tell me")
    final = await tab.reply()
    assert final["status"] == "interrupted"
    assert final["error"]["code"].startswith("upstream_")
    assert len(final["content"].split()) >= 15
    row = await database_sync_to_async(Message.objects.get)(id=final["id"])
    assert row.content == final["content"]
    assert row.usage_estimated is True
    assert len(fake_upstream.completion_requests) == 1
    await tab.close()


async def test_a_failure_before_the_first_token_is_an_error_with_a_stable_code(alice, upstream_model, fake_upstream):
    fake_upstream.always(status=401, error_message="Incorrect API key provided: sk-test-K...abcd")
    tab = await Tab.open(alice)
    await tab.send_message("hi")
    final = await tab.reply()
    assert final["status"] == "error"
    assert final["error"]["code"] == "upstream_auth_failed"
    assert final["content"] == ""
    assert len(fake_upstream.completion_requests) == 1
    assert "KEY0123456789" not in str(tab.frames)
    await tab.close()


async def test_a_length_cut_is_shown_as_such(alice, upstream_model, fake_upstream):
    fake_upstream.always(tokens=10, finish_reason="length")
    tab = await Tab.open(alice)
    await tab.send_message("hi")
    final = await tab.reply()
    assert final["status"] == "complete"
    assert final["finish_reason"] == "length"
    await tab.close()


async def test_a_blocked_message_makes_no_completion_call(alice, upstream_model, fake_upstream):
    tab = await Tab.open(alice)
    await tab.send_message("please FLAGME now")
    final = await tab.reply()
    assert final["status"] == "blocked"
    assert final["error"]["code"] == "moderation_blocked"
    assert "violence" in final["error"]["message"]
    assert fake_upstream.completion_requests == []
    question = await database_sync_to_async(lambda: Message.objects.get(role="user", conversation__owner=alice))()
    assert question.status == "blocked"
    assert "violence" in question.moderation_categories
    assert await database_sync_to_async(ModerationEvent.objects.filter(user=alice).count)() == 1
    await tab.close()


async def test_the_blocklist_blocks_without_any_upstream_call(alice, upstream_model, fake_upstream):
    await database_sync_to_async(BlocklistEntry.objects.create)(pattern="forbidden", category="policy")
    tab = await Tab.open(alice)
    await tab.send_message("a FORBIDDEN word")
    final = await tab.reply()
    assert final["status"] == "blocked"
    assert fake_upstream.completion_requests == []
    await tab.close()


async def test_a_second_send_while_a_reply_streams_is_refused_but_saved(alice, upstream_model, fake_upstream):
    fake_upstream.always(tokens=100, token_delay=0.03)
    tab = await Tab.open(alice)
    await tab.send_message("first")
    conversation = (await tab.until_type("conversation.created"))["conversation"]
    await tab.until_type("reply.delta")
    await tab.send_message("second", conversation_id=conversation["id"], client_id="second")
    error = await tab.until_type("error")
    assert error["code"] == "reply_in_progress"
    assert error["client_id"] == "second"
    assert await database_sync_to_async(
        Message.objects.filter(conversation_id=conversation["id"], content="second").exists
    )()
    await tab.send({"type": "stop", "conversation_id": conversation["id"]})
    await tab.reply()
    await tab.close()


async def test_a_member_has_at_most_the_configured_number_of_replies_in_flight(
    alice, upstream_model, fake_upstream, settings
):
    settings.PARLEY_MAX_CONCURRENT_REPLIES = 2
    fake_upstream.always(tokens=200, token_delay=0.03)
    tab = await Tab.open(alice)
    for n in range(3):
        await tab.send_message(f"chat {n}", client_id=f"c{n}")
        await tab.until(lambda f: f["type"] in ("conversation.created",) and f.get("client_id") == f"c{n}")
    error = await tab.until_type("error")
    assert error["code"] == "too_many_replies"
    await asyncio.sleep(0.2)
    assert fake_upstream.stats()["max_open_streams"] <= 2
    for conversation in await database_sync_to_async(lambda: list(Conversation.objects.values_list("id", flat=True)))():
        await tab.send({"type": "stop", "conversation_id": str(conversation)})
    await settle()
    await tab.close()


async def test_a_prompt_that_cannot_fit_fails_before_any_upstream_call(alice, upstream_model, fake_upstream):
    await database_sync_to_async(
        lambda: (
            type(upstream_model).objects.filter(pk=upstream_model.pk).update(context_window=200, max_output_tokens=100)
        )
    )()
    tab = await Tab.open(alice)
    await tab.send_message("word " * 300)
    error = await tab.until_type("error")
    assert error["code"] == "context_too_long"
    assert fake_upstream.completion_requests == []
    assert await database_sync_to_async(Message.objects.filter(role="user").count)() == 1
    await tab.close()


def _streaming_reply(user, *, heartbeat_age: float) -> Message:
    conversation = Conversation.objects.create(owner=user, title="t")
    Message.objects.create(conversation=conversation, role="user", content="q")
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="partial text",
        status="streaming",
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age),
    )


async def test_the_sweep_marks_a_dead_workers_reply_interrupted_and_keeps_its_text(alice, upstream_model):
    dead = await database_sync_to_async(_streaming_reply)(alice, heartbeat_age=120)
    alive = await database_sync_to_async(_streaming_reply)(alice, heartbeat_age=1)
    assert await database_sync_to_async(sweep_stale_replies)() == 1
    dead = await database_sync_to_async(Message.objects.get)(id=dead.id)
    alive = await database_sync_to_async(Message.objects.get)(id=alive.id)
    assert dead.status == "interrupted" and dead.content == "partial text"
    assert dead.error_code == "worker_lost"
    assert alive.status == "streaming"


async def test_the_sweep_never_touches_a_reply_whose_worker_is_saving(alice, upstream_model, fake_upstream, settings):
    settings.PARLEY_SAVE_INTERVAL = 0.2
    fake_upstream.always(tokens=40, token_delay=0.05)
    tab = await Tab.open(alice)
    await tab.send_message("slow")
    await tab.until_type("reply.delta")
    await asyncio.sleep(0.6)
    assert await database_sync_to_async(sweep_stale_replies)(stale_seconds=0.5) == 0
    final = await tab.reply()
    assert final["status"] == "complete"
    await tab.close()


async def test_the_replies_of_a_process_are_saved_together_at_each_interval(
    alice, bob, upstream_model, fake_upstream, settings, monkeypatch
):
    """Two members' replies streaming at once: each save is one call (one transaction) for both,
    and each reply's partial text is in the database while it streams."""
    from chat.services import replies
    from chat.transport import runner

    calls = []
    real = replies.replies_save_progress

    def recording(*, texts):
        calls.append(sorted(str(k) for k in texts))
        return real(texts=texts)

    monkeypatch.setattr(runner, "replies_save_progress", recording)
    settings.PARLEY_SAVE_INTERVAL = 0.2
    fake_upstream.always(tokens=30, token_delay=0.05)
    tabs = [await Tab.open(alice), await Tab.open(bob)]
    for tab in tabs:
        await tab.send_message("slow")
    ids = sorted([(await tab.until(lambda f: f["type"] == "reply.delta"))["message_id"] for tab in tabs])
    await asyncio.sleep(0.5)
    rows = await database_sync_to_async(list)(Message.objects.filter(id__in=ids).values_list("status", "content"))
    assert [status for status, _ in rows] == ["streaming", "streaming"]
    assert all(content for _, content in rows)  # the partial text is saved, not only the end
    for tab in tabs:
        assert (await tab.reply())["status"] == "complete"
        await tab.close()
    assert ids in calls  # both replies in one save
    assert all(len(set(call)) == len(call) for call in calls)
    assert runner._heartbeats().runners == {}  # nothing kept once the replies ended


async def test_a_reply_whose_row_is_gone_stops_at_the_next_save(alice, upstream_model, fake_upstream, settings):
    settings.PARLEY_SAVE_INTERVAL = 0.1
    fake_upstream.always(tokens=200, token_delay=0.05)
    tab = await Tab.open(alice)
    await tab.send_message("long")
    delta = await tab.until_type("reply.delta")
    # Ended behind the task's back (as the sweep or an admin would): the next save sees it.
    await database_sync_to_async(Message.objects.filter(id=delta["message_id"]).update)(status="interrupted")
    await asyncio.sleep(1.0)
    request = fake_upstream.completion_requests[0]
    assert request.disconnected_at is not None
    assert request.deltas_sent < 200
    await tab.close()

"""The websocket refuses what it must: foreign origins, strangers' ids, bad frames.

docs/security.md rows: T01-T03, T07, T20, T23, T29, T30.
"""

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from chat.models import Conversation, Message
from tests.chat.wsclient import Tab, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_titles(settings):
    settings.PARLEY_AUTO_TITLE = False


async def test_a_foreign_origin_is_refused_before_accept(alice):
    tab = await Tab.open(alice, origin="https://evil.example")
    assert tab.connected is False


async def test_a_missing_origin_is_refused(alice):
    tab = await Tab.open(alice, origin=None)
    assert tab.connected is False


async def test_the_real_origin_is_accepted(alice):
    tab = await Tab.open(alice)
    assert tab.connected is True
    await tab.close()


async def test_an_anonymous_socket_is_closed_with_4401():
    tab = await Tab.open(None)
    assert tab.connected is False
    assert tab.close_code == 4401


@database_sync_to_async
def alices_conversation(alice):
    conversation = Conversation.objects.create(owner=alice, title="alice's secret")
    question = Message.objects.create(conversation=conversation, role="user", content="secret question")
    Message.objects.create(conversation=conversation, role="assistant", content="secret answer")
    return conversation, question


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "subscribe"},
        {"type": "sync"},
        {"type": "send", "client_id": "x", "content": "append to alice"},
        {"type": "stop"},
        {"type": "regenerate"},
        {"type": "edit", "message_id": "QUESTION", "content": "changed"},
    ],
)
async def test_bob_gets_not_found_for_every_action_on_alices_conversation(
    frame, alice, bob, upstream_model, fake_upstream
):
    conversation, question = await alices_conversation(alice)
    frame = {**frame, "conversation_id": str(conversation.id)}
    if frame.get("message_id") == "QUESTION":
        frame["message_id"] = str(question.id)
    tab = await Tab.open(bob)
    await tab.send(frame)
    error = await tab.until_type("error")
    assert error["code"] == "not_found"
    assert "secret" not in json.dumps(tab.frames)
    messages = await database_sync_to_async(
        lambda: list(Message.objects.filter(conversation=conversation).values_list("content", flat=True))
    )()
    assert messages == ["secret question", "secret answer"]
    assert fake_upstream.requests == []
    await tab.close()


async def test_a_stranger_id_and_a_missing_id_look_the_same(alice, bob, upstream_model):
    conversation, _ = await alices_conversation(alice)
    tab = await Tab.open(bob)
    await tab.send({"type": "subscribe", "conversation_id": str(conversation.id)})
    stranger = await tab.until_type("error")
    await tab.send({"type": "subscribe", "conversation_id": "00000000-0000-0000-0000-000000000000"})
    missing = await tab.until_type("error")
    assert {k: v for k, v in stranger.items()} == {k: v for k, v in missing.items()}
    await tab.close()


async def test_a_binary_frame_gets_an_error_and_the_socket_keeps_working(alice):
    tab = await Tab.open(alice)
    await tab.ws.send_to(bytes_data=b"\x00\x01binary")
    assert (await tab.until_type("error"))["code"] == "bad_frame"
    await tab.send({"type": "ping"})
    await tab.until_type("pong")
    await tab.close()


async def test_an_oversize_message_is_refused_before_any_upstream_call(alice, upstream_model, fake_upstream, settings):
    settings.PARLEY_MAX_MESSAGE_CHARS = 1000
    tab = await Tab.open(alice)
    await tab.send_message("x" * 1001)
    error = await tab.until_type("error")
    assert error["code"] == "message_too_long"
    assert fake_upstream.requests == []
    await tab.close()


frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=50).map(lambda b: b.decode("latin-1")),
    st.recursive(
        st.none() | st.booleans() | st.integers(min_value=-(10**12), max_value=10**12) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=10,
    ).map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["send", "subscribe", "stop", "regenerate", "edit", "sync", "nope", "__init__"])},
        optional={
            "conversation_id": st.none() | st.integers() | st.text(max_size=40) | st.just([]),
            "client_id": st.none() | st.integers() | st.text(max_size=80),
            "content": st.none() | st.integers() | st.text(max_size=30) | st.just({"a": 1}),
            "message_id": st.none() | st.integers(min_value=0, max_value=10**9) | st.text(max_size=40),
            "model_id": st.none() | st.integers(min_value=-5, max_value=10**9) | st.text(max_size=5) | st.booleans(),
            "settings": st.none() | st.integers() | st.dictionaries(st.text(max_size=10), st.integers(), max_size=3),
        },
    ).map(json.dumps),
)


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=frames)
@pytest.mark.django_db(transaction=True)
def test_malformed_frames_get_an_error_frame_and_the_next_valid_frame_works(frame):
    from asgiref.sync import async_to_sync

    User = get_user_model()
    user, _ = User.objects.get_or_create(username="fuzz")

    async def scenario():
        tab = await Tab.open(user)
        await tab.send(frame)
        await tab.send({"type": "ping"})
        seen = []
        while True:
            reply = await tab.next(timeout=5)
            seen.append(reply)
            if reply["type"] == "pong":
                break
            if reply["type"] == "error":
                assert reply["code"] != "internal_error", reply
                assert isinstance(reply["message"], str) and reply["message"]
        await tab.close()
        return seen

    async_to_sync(scenario)()
    # Nothing the fuzzer sent could start a reply without a configured model.
    assert not Message.objects.filter(role="assistant").exists()


async def test_signing_out_elsewhere_ends_the_socket(alice, upstream_model, fake_upstream):
    cookie = await session_cookie(alice)
    tab = await Tab.open(cookie=cookie)
    await tab.send({"type": "ping"})
    await tab.until_type("pong")
    # Another client signs out: Django deletes the session.
    await database_sync_to_async(Session.objects.filter(session_key=cookie).delete)()
    await tab.send_message("are you still there")
    error = await tab.until_type("error")
    assert error["code"] == "session_ended"
    assert (await tab.ws.receive_output(timeout=2))["type"] == "websocket.close"
    assert fake_upstream.requests == []


async def test_deactivating_a_member_ends_their_socket(alice, upstream_model, fake_upstream):
    tab = await Tab.open(alice)
    await database_sync_to_async(get_user_model().objects.filter(pk=alice.pk).update)(is_active=False)
    await tab.send_message("hello")
    assert (await tab.until_type("error"))["code"] == "session_ended"
    assert fake_upstream.requests == []


async def test_a_password_change_elsewhere_ends_the_socket(alice, upstream_model, fake_upstream):
    tab = await Tab.open(alice)

    def change():
        alice.set_password("another-password-42")
        alice.save()

    await database_sync_to_async(change)()
    await tab.send_message("hello")
    assert (await tab.until_type("error"))["code"] == "session_ended"
    assert fake_upstream.requests == []


@database_sync_to_async
def restrict_to_group(model, user=None):
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="research")
    model.groups.add(group)
    if user is not None:
        user.groups.add(group)
    return group


async def test_a_model_granted_to_another_group_is_refused_with_no_upstream_call(alice, upstream_model, fake_upstream):
    # T07: whatever the client sends, an ungranted model is never used and its key never loaded.
    await restrict_to_group(upstream_model)
    tab = await Tab.open(alice)
    await tab.send_message("hi", model_id=upstream_model.pk)
    assert (await tab.until_type("error"))["code"] == "model_unavailable"
    await tab.send_message("hi")
    assert (await tab.until_type("error"))["code"] == "no_provider"
    assert fake_upstream.requests == []
    await tab.close()


async def test_a_member_of_the_granted_group_may_use_the_model(alice, upstream_model, fake_upstream, settings):
    settings.PARLEY_AUTO_TITLE = False
    await restrict_to_group(upstream_model, alice)
    tab = await Tab.open(alice)
    await tab.send_message("hi", model_id=upstream_model.pk)
    assert (await tab.reply())["status"] == "complete"
    await tab.close()


# --- issue 20 item 1: no part of a provider key reaches a member, the database or the log ----
HOSTILE_KEY = "gsk_4fTq9ZmW2xLp7RvN1sKc8DhJ3bYe6GaU"


def assert_no_key_part(text: str) -> None:
    for start in range(len(HOSTILE_KEY) - 7):
        part = HOSTILE_KEY[start : start + 8].lower()
        assert part not in text.lower(), f"a part of the provider key leaked: {text!r}"


@database_sync_to_async
def set_provider_key(model, key):
    provider = model.provider
    provider.api_key = key
    provider.use_moderation = False
    provider.save()


@pytest.mark.parametrize(
    ("status", "echo"),
    [
        (401, f"Incorrect API key provided: {HOSTILE_KEY[4:]}."),  # without its prefix
        (500, f"upstream auth header was Bearer-less {HOSTILE_KEY[:-6]}"),  # cut short
        (429, f"quota of key {HOSTILE_KEY.lower()[9:31]} used up"),  # a lowercased middle
    ],
)
async def test_a_hostile_upstream_echoing_part_of_the_key_leaks_nothing_to_the_member(
    status, echo, alice, upstream_model, fake_upstream, caplog, no_sleep
):
    await set_provider_key(upstream_model, HOSTILE_KEY)
    fake_upstream.always(status=status, error_message=echo)
    tab = await Tab.open(alice)
    await tab.send_message("hi")
    final = await tab.reply()
    assert final["status"] == "error"
    assert "The provider said" in final["error"]["message"]
    row = await database_sync_to_async(Message.objects.get)(id=final["id"])
    assert row.error_text == final["error"]["message"]
    assert_no_key_part(json.dumps(tab.frames))
    assert_no_key_part(row.error_text)
    assert_no_key_part(caplog.text)
    await tab.close()

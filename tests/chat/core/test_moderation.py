"""The moderation gate: blocklist, provider /moderations, fail closed or open, and the audit trail."""

import logging

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache

from chat.core import moderation
from chat.core.moderation import blocklist_match, moderation_gate
from chat.errors import MessageBlocked, ModerationUnavailable
from chat.models import BlocklistEntry, Conversation, Message, ModerationEvent, Provider
from tests.fakeupstream import FakeUpstream

pytestmark = [pytest.mark.usefixtures("close_llm_clients"), pytest.mark.django_db(transaction=True)]

KEY = "sk-test-MODERATIONKEY123456789"


@pytest.fixture(autouse=True)
def _fresh_blocklist():
    moderation.blocklist_invalidate()
    yield
    moderation.blocklist_invalidate()


@pytest.fixture
def provider(fake_upstream):
    provider = Provider(name="Fake", base_url=fake_upstream.base_url, use_moderation=True)
    provider.api_key = KEY
    provider.save()
    return provider


@pytest.fixture
def message(alice):
    conversation = Conversation.objects.create(owner=alice, title="t")
    return make_message(conversation, "hello")


def make_message(conversation, text):
    return Message.objects.create(conversation=conversation, role=Message.Role.USER, content=text)


def block(pattern, category="blocklist", is_regex=False, enabled=True):
    return BlocklistEntry.objects.create(pattern=pattern, category=category, is_regex=is_regex, enabled=enabled)


async def gate(message, provider):
    return await moderation_gate(message=message, provider=provider)


def events():
    return list(ModerationEvent.objects.order_by("created_at").values("user__username", "source", "categories", "text"))


# --- the blocklist ------------------------------------------------------------------------
def test_a_word_matches_whole_words_in_any_case():
    block("darn", "profanity")
    assert blocklist_match("Well, DARN it!") == ["profanity"]
    assert blocklist_match("darn") == ["profanity"]
    assert blocklist_match("darning socks") == []
    assert blocklist_match("undarn") == []


def test_unicode_tricks_do_not_hide_a_word():
    block("darn")
    block("fish", "food")
    block("straße", "street")
    assert blocklist_match("ＤＡＲＮ") == ["blocklist"]  # fullwidth
    assert blocklist_match("d\u200barn") == ["blocklist"]  # zero-width space
    assert blocklist_match("da\u00adrn") == ["blocklist"]  # soft hyphen
    assert blocklist_match("ﬁsh") == ["food"]  # ligature
    assert blocklist_match("STRASSE") == ["street"]  # case folding


# Issue 20 item 5: each class of trick that once reached the model.
@pytest.mark.parametrize(
    "text",
    [
        pytest.param("well d\u0430rn it", id="cyrillic-a"),
        pytest.param("\u0501\u0430rn", id="cyrillic-d-and-a"),
        pytest.param("\ua4d3ARN", id="lisu-D"),
        pytest.param("k\u0456ll", id="cyrillic-i"),
        pytest.param("\u039a\u0399LL", id="greek-capitals"),
        pytest.param("\u041aILL", id="cyrillic-capital-K"),
        pytest.param("d\u0301a\u0308r\u0303n", id="combining-marks"),
        pytest.param("\u0111arn", id="d-with-stroke"),
        pytest.param("d\ufe0fa\ufe0er\U000e0100n", id="variation-selectors"),
        pytest.param("da\u034frn", id="combining-grapheme-joiner"),
        pytest.param("d\u3164arn", id="hangul-filler"),
        pytest.param("d\u115fa\u1160rn", id="hangul-choseong-and-jungseong-fillers"),
        pytest.param("d\uffa0arn", id="halfwidth-hangul-filler"),
        pytest.param("d\u2060a\u200dr\u180en", id="joiners-and-separators"),
        pytest.param("oh d a r n it", id="spaced-out"),
        pytest.param("D  A  R  N", id="spaced-out-wide"),
        pytest.param("d\na\nr\nn", id="one-letter-a-line"),
        pytest.param("d.a.r.n", id="dotted"),
        pytest.param("D. A. R. N.", id="dotted-and-spaced"),
        pytest.param("d-a-r-n d_a_r_n", id="dashed-and-underscored"),
        pytest.param("d\u00b7a\u00b7r\u00b7n", id="middle-dots"),
        pytest.param("da.rn", id="a-dot-inside"),
        pytest.param("d*a*r*n", id="starred"),
        pytest.param("k \u0456 l l", id="spaced-out-homoglyph"),
    ],
)
def test_no_unicode_trick_hides_a_blocked_word(text):
    block("darn")
    block("kill")
    assert blocklist_match(text) == ["blocklist"]


def test_a_blocked_phrase_is_found_spelled_out_letter_by_letter():
    block("kill you", "violence")
    assert blocklist_match("i will k i l l y o u") == ["violence"]


def test_ordinary_text_is_not_blocked_by_the_looser_matching():
    for word in ("hell", "anal", "ass", "sex", "lol", "cum", "tit", "darn", "kill", "rape", "cop"):
        block(word)
    ordinary = (
        "He'll be there at 5 p.m.; we'll see. An alarm went off in the U.S.A., e.g. at 10:01. "
        "Skill-building for an Essex-based class: analysis of 101 items, x-ray and t-shirts, cumulative "
        "titles, therapist.com, grape juice, scope creep. Choose a, b or c. I'm at the B&B. "
        "Café naïve résumé, ﬁsh. Привет, как дела? Сорок сороков. Γειά σου κόσμε. 食べる。너는 바보야. 👍🏽 ❤️"
    )
    assert blocklist_match(ordinary) == []


def test_a_phrase_and_a_word_with_punctuation_match():
    block("rm -rf /", "danger")
    block("c++", "language")
    assert blocklist_match("please run RM -RF / now") == ["danger"]
    assert blocklist_match("I like C++.") == ["language"]


def test_a_word_in_a_script_without_spaces_matches_inside_a_sentence():
    block("杀人", "violence")
    assert blocklist_match("我想杀人了") == ["violence"]


def test_a_regex_matches_case_insensitively_after_normalization():
    block(r"\bkill\s+\w+", "violence", is_regex=True)
    assert blocklist_match("I will KILL them") == ["violence"]
    assert blocklist_match("ＫＩＬＬ　them") == ["violence"]  # fullwidth letters and space
    assert blocklist_match("skill set") == []


def test_each_category_is_reported_once_in_entry_order_and_disabled_entries_are_ignored():
    block("alpha", "one")
    block("beta", "two")
    block("gamma", "one")
    block("delta", "three", enabled=False)
    assert blocklist_match("gamma beta alpha delta") == ["one", "two"]


def test_a_bad_regex_is_skipped_and_logged_without_breaking_the_others(caplog):
    bad = block("(unclosed", "broken", is_regex=True)
    block("darn")
    with caplog.at_level(logging.WARNING):
        assert blocklist_match("darn (unclosed") == ["blocklist"]
    assert f"blocklist entry {bad.pk} is not a valid regular expression" in caplog.text


def test_saving_or_deleting_an_entry_takes_effect_at_once():
    assert blocklist_match("darn") == []
    entry = block("darn")
    assert blocklist_match("darn") == ["blocklist"]
    entry.pattern = "heck"
    entry.save()
    assert blocklist_match("darn") == [] and blocklist_match("heck") == ["blocklist"]
    entry.delete()
    assert blocklist_match("heck") == []


def test_an_edit_made_in_another_process_is_seen_through_the_shared_version():
    block("darn")
    assert blocklist_match("darn") == ["blocklist"]
    BlocklistEntry.objects.update(enabled=False)  # no signal here: the compiled copy is kept
    assert blocklist_match("darn") == ["blocklist"]
    cache.set(moderation._VERSION_KEY, "bumped by another worker")
    assert blocklist_match("darn") == []


# --- the gate -----------------------------------------------------------------------------
async def test_a_blocklisted_message_is_blocked_recorded_and_never_sent_anywhere(message, provider, fake_upstream):
    await sync_to_async(block)("forbidden", "secrets")
    message.content = "this is FORBIDDEN talk"
    await sync_to_async(message.save)()

    with pytest.raises(MessageBlocked) as caught:
        await gate(message, provider)

    assert caught.value.code == "moderation_blocked"
    assert caught.value.detail == {"categories": ["secrets"], "where": "message"}
    assert "secrets" in caught.value.message
    saved = await Message.objects.aget(pk=message.pk)
    assert (saved.status, saved.moderation_categories) == ("blocked", ["secrets"])
    assert await sync_to_async(events)() == [
        {"user__username": "alice", "source": "blocklist", "categories": ["secrets"], "text": "this is FORBIDDEN talk"}
    ]
    assert fake_upstream.requests == []


async def test_a_message_the_provider_flags_is_blocked_with_its_categories(message, provider, fake_upstream):
    message.content = "I will FLAGME and HATEME"
    await sync_to_async(message.save)()

    with pytest.raises(MessageBlocked) as caught:
        await gate(message, provider)

    assert caught.value.detail == {"categories": ["hate", "violence"], "where": "message"}
    assert "violence" in caught.value.message and "hate" in caught.value.message
    saved = await Message.objects.aget(pk=message.pk)
    assert (saved.status, saved.moderation_categories) == ("blocked", ["hate", "violence"])
    [event] = await sync_to_async(events)()
    assert event["source"] == "provider" and event["user__username"] == "alice"
    [request] = fake_upstream.requests
    assert request.path == "/v1/moderations"
    assert request.body == {"input": ["I will FLAGME and HATEME"]}
    assert request.authorization == f"Bearer {KEY}"
    assert fake_upstream.completion_requests == []


async def test_the_provider_gets_the_text_as_written_and_as_a_reader_sees_it(message, provider, fake_upstream):
    # The fake provider flags "FLAGME"; here its A is Cyrillic, and its letters spaced out.
    message.content = "I will FL\u0410GME and H A T E M E"
    await sync_to_async(message.save)()
    with pytest.raises(MessageBlocked) as caught:
        await gate(message, provider)
    assert caught.value.detail == {"categories": ["hate", "violence"], "where": "message"}
    [request] = fake_upstream.requests
    assert request.body == {"input": ["I will FL\u0410GME and H A T E M E", "I will FLAGME and HATEME"]}


async def test_text_in_one_script_reaches_the_provider_once_as_written(message, provider, fake_upstream):
    message.content = "Привет, как дела? Hello there."
    await sync_to_async(message.save)()
    await gate(message, provider)
    [request] = fake_upstream.requests
    assert request.body == {"input": ["Привет, как дела? Hello there."]}


async def test_a_clean_message_passes_after_one_moderation_call(message, provider, fake_upstream):
    assert await gate(message, provider) is None
    assert [r.path for r in fake_upstream.requests] == ["/v1/moderations"]
    saved = await Message.objects.aget(pk=message.pk)
    assert saved.status == "complete" and not saved.moderation_unchecked
    assert await sync_to_async(events)() == []


async def test_without_moderation_on_the_provider_only_the_blocklist_runs(message, provider, fake_upstream):
    provider.use_moderation = False
    await sync_to_async(provider.save)()
    message.content = "FLAGME"
    await gate(message, provider)
    assert fake_upstream.requests == []


async def test_a_gate_with_nothing_unchecked_makes_no_trip_to_the_database_thread(
    message, provider, fake_upstream, monkeypatch
):
    # A trip waits behind every reply start queued on the one database thread: at 100 replies
    # at once it held each reply's request until all 100 had started (docs/performance.md).
    trips = []
    real = moderation._passed
    monkeypatch.setattr(moderation, "_passed", lambda gate: trips.append(gate.unchecked) or real(gate))
    clean = moderation.GateInput(previous="an earlier question")
    provider.use_moderation = False
    await moderation_gate(message=message, provider=provider, blocklist_hits=[], gate=clean)
    provider.use_moderation = True
    await moderation_gate(message=message, provider=provider, blocklist_hits=[], gate=clean)
    assert trips == []
    # An earlier unchecked message is passed, and replayed from the next turn on.
    earlier = await sync_to_async(make_message)(message.conversation, "sent while moderation was down")
    earlier.status, earlier.moderation_unchecked = Message.Status.UNCHECKED, True
    await sync_to_async(earlier.save)()
    await moderation_gate(
        message=message, provider=provider, blocklist_hits=[], gate=moderation.GateInput(unchecked=((earlier.pk, "x"),))
    )
    assert trips == [((earlier.pk, "x"),)]
    await sync_to_async(earlier.refresh_from_db)()
    assert earlier.status == Message.Status.COMPLETE and not earlier.moderation_unchecked


async def test_a_named_moderation_provider_is_asked_instead(message, provider, fake_upstream):
    other = FakeUpstream().start()
    try:
        checker = Provider(name="Checker", base_url=other.base_url)
        checker.api_key = "sk-test-CHECKERKEY123456789"
        await sync_to_async(checker.save)()
        provider.use_moderation = False
        provider.moderation_provider = checker
        await sync_to_async(provider.save)()
        message.content = "FLAGME"

        with pytest.raises(MessageBlocked):
            await gate(message, provider)

        assert fake_upstream.requests == []
        [request] = other.requests
        assert request.path == "/v1/moderations"
        assert request.authorization == "Bearer sk-test-CHECKERKEY123456789"
    finally:
        other.stop()


async def test_a_failing_moderation_call_refuses_the_message_by_default(message, provider, fake_upstream, no_sleep):
    fake_upstream.script(status=500, endpoint="moderations", times=3)
    with pytest.raises(ModerationUnavailable) as caught:
        await gate(message, provider)
    assert caught.value.code == "moderation_unavailable"
    saved = await Message.objects.aget(pk=message.pk)
    # Not checked, so never replayed until a later gate passes it (issue 20 item 3).
    assert saved.status == "unchecked" and saved.moderation_unchecked
    [event] = await sync_to_async(events)()
    assert event["source"] == "failed"
    assert fake_upstream.completion_requests == []


async def test_fail_open_lets_the_message_through_marked_unchecked(message, provider, fake_upstream, settings):
    settings.PARLEY_MODERATION_FAIL_OPEN = True
    fake_upstream.script(status=401, endpoint="moderations")
    assert await gate(message, provider) is None
    saved = await Message.objects.aget(pk=message.pk)
    assert saved.moderation_unchecked is True and saved.status == "unchecked"
    [event] = await sync_to_async(events)()
    assert event["source"] == "unchecked"


async def test_a_disabled_moderation_provider_counts_as_unavailable(message, provider, fake_upstream):
    checker = Provider(name="Checker", base_url=fake_upstream.base_url, enabled=False)
    await sync_to_async(checker.save)()
    provider.moderation_provider = checker
    await sync_to_async(provider.save)()
    with pytest.raises(ModerationUnavailable):
        await gate(message, provider)
    assert fake_upstream.requests == []


async def test_a_bad_regex_in_the_blocklist_does_not_stop_the_gate(message, provider, fake_upstream):
    await sync_to_async(block)("([bad", "broken", is_regex=True)
    assert await gate(message, provider) is None
    assert len(fake_upstream.requests) == 1

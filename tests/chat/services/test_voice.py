"""Voice through the model-call core (chat/services/voice.py): dictation and audio documents
transcribed, replies read aloud and kept. Against the fake upstream, a real HTTP server.

What each test observes is what a member or the admin would: the text, the usage record in
its own units and cost, the provider's requests (none when the input is refused), the stored
clip, and a 404 for another member's reply (docs/security.md, "Voice").
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from chat.errors import AudioRefused, NoProvider, NotFound, QuotaExceeded, SpeechRefused, UpstreamError
from chat.models import Conversation, Document, MediaFile, Message, Reservation, SpeechClip, UsageRecord
from chat.services.documents import document_index, document_upload
from chat.services.preferences import voice_preferences_update
from chat.services.voice import dictation_transcribe, speech_open, spoken_text, voice_offered
from tests.audio_support import make_voice_models, mp3_bytes, wav_bytes, webm_bytes
from tests.documents_support import make_embedding_model, media_in_folder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_llm_clients")]

REPLY = "## Plan\n\nFirst, **pack** the [bags](https://example.test) [1].\n\n```python\nprint('x')\n```\n\nThen go."


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    media_in_folder(settings, tmp_path / "media")


@pytest.fixture
def voice_models(upstream_model):
    return make_voice_models(upstream_model.provider)


def a_reply(owner, text=REPLY, **fields):
    conversation = Conversation.objects.create(owner=owner, title="Trip")
    question = Message.objects.create(conversation=conversation, role="user", content="What now?")
    return Message.objects.create(conversation=conversation, role="assistant", content=text, parent=question, **fields)


async def read_all(audio) -> bytes:
    return b"".join([chunk async for chunk in audio.chunks])


# --- dictation ---------------------------------------------------------------------------------


async def test_a_dictation_is_transcribed_and_billed_per_minute_of_the_files_own_length(
    alice, voice_models, fake_upstream
):
    transcript = await dictation_transcribe(user=alice, data=wav_bytes(30.0))

    assert transcript.text == "Hello from the fake microphone."
    assert transcript.seconds == Decimal("30.0")
    (request,) = fake_upstream.audio_requests("transcriptions")
    assert request.form["model"] == "whisper-1"
    assert request.form["file"]["content_type"] == "audio/wav"
    record = await UsageRecord.objects.aget(user=alice)
    assert (record.kind, record.purpose, record.model_name) == ("transcription", "dictation", "whisper-1")
    assert record.audio_seconds == Decimal("30.0")
    assert record.cost == Decimal("0.003")  # half a minute at $0.006 a minute
    assert not await Reservation.objects.aexists()


async def test_translate_to_english_uses_the_translations_endpoint(alice, voice_models, fake_upstream):
    transcript = await dictation_transcribe(user=alice, data=webm_bytes(5.0), translate=True)

    assert transcript.text == "Hello in English, from the fake microphone."
    (request,) = fake_upstream.audio_requests("translations")
    assert request.form["file"]["filename"] == "audio.webm"
    record = await UsageRecord.objects.aget(user=alice)
    assert (record.kind, record.purpose, record.audio_seconds) == ("transcription", "translation", Decimal("5.0"))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "audio_empty"),
        (b"just some text, not sound at all" * 10, "audio_type_unsupported"),
        (wav_bytes(2.0)[:-999], "audio_unreadable"),
        (webm_bytes(2.0)[:-5], "audio_unreadable"),
        (wav_bytes(11.0), "audio_too_long"),
    ],
)
async def test_bad_audio_is_refused_before_any_provider_call(alice, voice_models, fake_upstream, settings, data, code):
    settings.PARLEY_VOICE_MAX_RECORDING_SECONDS = 10
    with pytest.raises(AudioRefused) as refused:
        await dictation_transcribe(user=alice, data=data)
    assert refused.value.code == code
    assert fake_upstream.requests == []
    assert not await UsageRecord.objects.aexists()
    assert not await Reservation.objects.aexists()


async def test_a_recording_larger_than_the_upload_limit_is_refused(alice, voice_models, fake_upstream, settings):
    settings.PARLEY_VOICE_MAX_UPLOAD_BYTES = 10_000
    with pytest.raises(AudioRefused) as refused:
        await dictation_transcribe(user=alice, data=wav_bytes(1.0))
    assert refused.value.code == "audio_too_large"
    assert fake_upstream.requests == []


async def test_the_budget_is_reserved_for_the_recordings_length_before_the_call(alice, voice_models, fake_upstream):
    alice.monthly_cost_budget = Decimal("0.001")  # ten seconds of whisper-1
    await alice.asave()
    with pytest.raises(QuotaExceeded):
        await dictation_transcribe(user=alice, data=wav_bytes(20.0))
    assert fake_upstream.requests == []
    transcript = await dictation_transcribe(user=alice, data=wav_bytes(5.0))
    assert transcript.text


async def test_a_failed_transcription_bills_nothing(alice, voice_models, fake_upstream, no_sleep):
    fake_upstream.script(endpoint="transcriptions", status=500, times=3)
    with pytest.raises(UpstreamError):
        await dictation_transcribe(user=alice, data=wav_bytes(3.0))
    assert not await UsageRecord.objects.aexists()
    assert not await Reservation.objects.aexists()


async def test_the_admins_transcription_model_is_used_and_an_ungranted_one_is_not(
    alice, voice_models, fake_upstream, settings
):
    whisper, _tts = voice_models
    other = await sync_to_async(
        lambda: whisper.__class__.objects.create(
            provider=whisper.provider, model_id="gpt-4o-transcribe", kind="transcription", max_output_tokens=0
        )
    )()
    settings.PARLEY_TRANSCRIPTION_MODEL = "gpt-4o-transcribe"
    await dictation_transcribe(user=alice, data=wav_bytes(1.0))
    assert fake_upstream.audio_requests("transcriptions")[-1].form["model"] == "gpt-4o-transcribe"

    other.enabled = False
    await other.asave()
    with pytest.raises(NoProvider) as refused:
        await dictation_transcribe(user=alice, data=wav_bytes(1.0))
    assert refused.value.code == "voice_unavailable"


def test_only_granted_kinds_are_offered(alice, upstream_model):
    assert voice_offered(user=alice) == {"transcription": False, "speech": False}
    make_voice_models(upstream_model.provider)
    assert voice_offered(user=alice) == {"transcription": True, "speech": True}


# --- read aloud -----------------------------------------------------------------------------------


def test_the_spoken_text_is_the_replys_words_without_markdown_code_or_link_targets():
    assert spoken_text(REPLY) == "Plan\nFirst, pack the bags .\nThen go."


async def test_a_reply_is_read_aloud_streamed_billed_per_character_and_kept(alice, voice_models, fake_upstream):
    reply = await sync_to_async(a_reply)(alice)
    fake_upstream.speech_audio = mp3_bytes(2.0)
    fake_upstream.speech_chunk = 2048

    audio = await speech_open(user=alice, message_id=reply.pk)
    assert not audio.cached
    assert audio.content_type == "audio/mpeg"
    assert await read_all(audio) == fake_upstream.speech_audio

    (request,) = fake_upstream.audio_requests("speech")
    spoken = spoken_text(REPLY)
    assert request.body["input"] == spoken
    assert (request.body["voice"], request.body["speed"], request.body["model"]) == ("alloy", 1.0, "tts-1")
    record = await UsageRecord.objects.aget(user=alice)
    assert (record.kind, record.purpose, record.characters) == ("speech", "speech", len(spoken))
    assert record.cost == (Decimal(len(spoken)) * 15 / 1_000_000).quantize(Decimal("0.000001"))
    assert record.message_id is None and record.conversation_id == reply.conversation_id
    clip = await SpeechClip.objects.select_related("media").aget(message=reply)
    assert (clip.voice, clip.model_name, clip.speed) == ("alloy", "tts-1", Decimal("1.00"))
    assert clip.media.content_type == "audio/mpeg" and clip.media.owner_id == alice.pk


async def test_the_second_play_comes_from_storage_with_no_provider_call(alice, voice_models, fake_upstream):
    reply = await sync_to_async(a_reply)(alice)
    fake_upstream.speech_audio = mp3_bytes(1.0)
    first = await read_all(await speech_open(user=alice, message_id=reply.pk))

    again = await speech_open(user=alice, message_id=reply.pk)
    assert again.cached and again.size == len(first)
    assert await read_all(again) == first
    assert len(fake_upstream.audio_requests("speech")) == 1
    assert await UsageRecord.objects.acount() == 1


async def test_another_voice_or_speed_is_another_clip(alice, voice_models, fake_upstream):
    reply = await sync_to_async(a_reply)(alice)
    await read_all(await speech_open(user=alice, message_id=reply.pk))
    await sync_to_async(voice_preferences_update)(user=alice, values={"voice": "nova", "speed": "1.5"})
    await read_all(await speech_open(user=alice, message_id=reply.pk))

    requests = fake_upstream.audio_requests("speech")
    assert [(r.body["voice"], r.body["speed"]) for r in requests] == [("alloy", 1.0), ("nova", 1.5)]
    assert await SpeechClip.objects.filter(message=reply).acount() == 2


async def test_the_first_bytes_are_relayed_before_the_provider_has_sent_the_whole_file(
    alice, voice_models, fake_upstream
):
    reply = await sync_to_async(a_reply)(alice)
    fake_upstream.speech_audio = mp3_bytes(4.0)
    fake_upstream.speech_chunk = 500
    audio = await speech_open(user=alice, message_id=reply.pk)
    first = await anext(audio.chunks)

    (request,) = fake_upstream.audio_requests("speech")
    assert first and request.finished_at is None  # the provider is still sending
    assert request.deltas_sent < len(fake_upstream.speech_audio) // 500
    rest = b"".join([chunk async for chunk in audio.chunks])
    assert first + rest == fake_upstream.speech_audio


async def test_a_listener_who_leaves_early_is_billed_and_nothing_half_is_kept(alice, voice_models, fake_upstream):
    reply = await sync_to_async(a_reply)(alice)
    fake_upstream.speech_audio = mp3_bytes(4.0)
    fake_upstream.speech_chunk = 500
    audio = await speech_open(user=alice, message_id=reply.pk)
    await anext(audio.chunks)
    await audio.chunks.aclose()

    (request,) = fake_upstream.audio_requests("speech")
    assert await fake_upstream.await_until(lambda: request.disconnected_at is not None)
    assert (await UsageRecord.objects.aget(user=alice)).characters == len(spoken_text(REPLY))
    assert not await SpeechClip.objects.aexists()
    assert not await Reservation.objects.aexists()


async def test_another_members_reply_is_a_missing_one(alice, bob, voice_models, fake_upstream):
    reply = await sync_to_async(a_reply)(alice)
    await read_all(await speech_open(user=alice, message_id=reply.pk))  # kept for alice

    for message_id in (reply.pk, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(NotFound):
            await speech_open(user=bob, message_id=message_id)
    question = await Message.objects.aget(role="user")
    with pytest.raises(NotFound):
        await speech_open(user=alice, message_id=question.pk)  # only replies are read aloud
    assert len(fake_upstream.audio_requests("speech")) == 1


@pytest.mark.parametrize(
    ("text", "fields", "code"),
    [
        ("x" * 50, {}, "speech_too_long"),
        ("```\ncode only\n```", {}, "speech_empty"),
        ("Half", {"status": "streaming"}, "speech_not_ready"),
    ],
)
async def test_a_reply_that_cannot_be_read_is_refused_before_any_call(
    alice, voice_models, fake_upstream, settings, text, fields, code
):
    settings.PARLEY_SPEECH_MAX_CHARACTERS = 40
    reply = await sync_to_async(a_reply)(alice, text, **fields)
    with pytest.raises(SpeechRefused) as refused:
        await speech_open(user=alice, message_id=reply.pk)
    assert refused.value.code == code
    assert fake_upstream.requests == []


async def test_without_a_speech_model_reading_aloud_is_unavailable(alice, upstream_model, fake_upstream):
    reply = await sync_to_async(a_reply)(alice)
    with pytest.raises(NoProvider) as refused:
        await speech_open(user=alice, message_id=reply.pk)
    assert refused.value.code == "voice_unavailable"
    assert fake_upstream.requests == []


async def test_a_failed_speech_call_is_an_error_before_any_byte_and_bills_nothing(
    alice, voice_models, fake_upstream, no_sleep
):
    reply = await sync_to_async(a_reply)(alice)
    fake_upstream.script(endpoint="speech", status=500, times=3)
    with pytest.raises(UpstreamError):
        await speech_open(user=alice, message_id=reply.pk)
    assert not await UsageRecord.objects.aexists()
    assert not await Reservation.objects.aexists()


async def test_kept_clips_go_with_their_conversation(alice, voice_models, fake_upstream, settings):
    reply = await sync_to_async(a_reply)(alice)
    await read_all(await speech_open(user=alice, message_id=reply.pk))
    clip = await SpeechClip.objects.select_related("media").aget(message=reply)
    folder = settings.STORAGES["media"]["OPTIONS"]["location"]
    from pathlib import Path

    stored = Path(folder) / clip.media.storage_name
    assert stored.exists()

    await Conversation.objects.filter(pk=reply.conversation_id).adelete()
    assert not await SpeechClip.objects.aexists()
    assert not await MediaFile.objects.aexists()
    assert not stored.exists()


def test_voice_preferences_accept_only_a_listed_voice_and_a_speed_in_range(alice):
    from chat.errors import InvalidSetting, UnknownSetting

    assert voice_preferences_update(user=alice, values={"voice": "shimmer", "speed": 2}) == {
        "voice": "shimmer",
        "speed": "2.00",
    }
    for values, error in (
        ({"voice": "evil"}, InvalidSetting),
        ({"speed": "9"}, InvalidSetting),
        ({"speed": "fast"}, InvalidSetting),
        ({"owner": 2}, UnknownSetting),
    ):
        with pytest.raises(error):
            voice_preferences_update(user=alice, values=values)


# --- audio documents ----------------------------------------------------------------------------


def test_an_attached_recording_becomes_a_document_whose_text_is_its_transcript(alice, voice_models, fake_upstream):
    make_embedding_model(voice_models[0].provider)
    fake_upstream.transcript = "Minutes of the meeting: the budget for Heron is approved."
    document = document_upload(user=alice, name="meeting.mp3", data=mp3_bytes(6.0))
    assert document.file.kind == MediaFile.Kind.AUDIO

    document_index(document.pk)
    document.refresh_from_db()
    assert document.status == Document.Status.READY
    assert "budget for Heron" in document.chunks.get().text
    record = UsageRecord.objects.get(kind="transcription")
    assert record.purpose == "document" and Decimal("6.0") <= record.audio_seconds <= Decimal("6.2")


def test_an_attached_file_that_is_not_the_audio_its_name_says_is_refused_at_upload(alice, voice_models, fake_upstream):
    with pytest.raises(AudioRefused) as refused:
        document_upload(user=alice, name="meeting.mp3", data=b"%PDF-1.7\n" + b"x" * 100)
    assert refused.value.code == "audio_type_unsupported"
    with pytest.raises(AudioRefused):
        document_upload(user=alice, name="meeting.wav", data=wav_bytes(2.0)[:-500])
    assert not Document.objects.exists() and not MediaFile.objects.exists()
    assert fake_upstream.requests == []


def test_an_attached_recording_longer_than_the_limit_is_refused_at_upload(alice, voice_models, settings):
    settings.PARLEY_AUDIO_DOCUMENT_MAX_SECONDS = 5
    with pytest.raises(AudioRefused) as refused:
        document_upload(user=alice, name="long.wav", data=wav_bytes(6.0))
    assert refused.value.code == "audio_too_long"


def test_an_attached_recording_without_a_transcription_model_is_refused_at_upload(alice, upstream_model, fake_upstream):
    with pytest.raises(NoProvider) as refused:
        document_upload(user=alice, name="meeting.wav", data=wav_bytes(2.0))
    assert refused.value.code == "voice_unavailable"
    assert not Document.objects.exists() and not MediaFile.objects.exists()

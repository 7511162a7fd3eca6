"""The voice endpoints (chat/web/voice.py) and what the chat page offers.

Dictation is a multipart POST answered with the text; a reply's speech is an audio stream for
an ``<audio>`` element, Parley's own URL (the CSP allows media from 'self' only), 404 for
another member's reply. The page offers only the voice buttons a granted model serves.
"""

from __future__ import annotations

import json
import re

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat.models import Conversation, Message, SpeechClip, UsageRecord
from tests.audio_support import make_voice_models, mp3_bytes, wav_bytes
from tests.documents_support import media_in_folder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_llm_clients")]


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    media_in_folder(settings, tmp_path / "media")


@pytest.fixture
def voice_models(upstream_model):
    return make_voice_models(upstream_model.provider)


def a_reply(owner, text="Pack the bags, then go."):
    conversation = Conversation.objects.create(owner=owner, title="Trip")
    question = Message.objects.create(conversation=conversation, role="user", content="What now?")
    return Message.objects.create(conversation=conversation, role="assistant", content=text, parent=question)


def speech_url(message_id) -> str:
    return reverse("chat:api_message_speech", args=[message_id])


async def body_of(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def page_config(response) -> dict:
    found = re.search(rb'<script id="parley-config" type="application/json">(.*?)</script>', response.content, re.S)
    return json.loads(found.group(1))


def test_a_dictation_is_posted_as_a_file_and_answered_with_its_text(alice_client, voice_models, fake_upstream):
    upload = SimpleUploadedFile("recording.webm", wav_bytes(4.0), content_type="audio/webm")
    response = alice_client.post(reverse("chat:api_voice_transcriptions"), {"audio": upload, "mode": "transcribe"})
    assert response.status_code == 200
    assert response.json() == {"text": "Hello from the fake microphone.", "seconds": "4.0"}
    # The type is the bytes' (a WAV), not the browser's claim.
    assert fake_upstream.audio_requests("transcriptions")[0].form["file"]["content_type"] == "audio/wav"

    upload = SimpleUploadedFile("recording.wav", wav_bytes(1.0))
    response = alice_client.post(reverse("chat:api_voice_transcriptions"), {"audio": upload, "mode": "translate"})
    assert response.json()["text"] == "Hello in English, from the fake microphone."


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, "audio_empty"),
        ({"mode": "summarize"}, "bad_request"),
        ({"audio": b"not audio at all, just words" * 20}, "audio_type_unsupported"),
        ({"audio": wav_bytes(3.0)[:-777]}, "audio_unreadable"),
    ],
)
def test_bad_dictations_get_a_clear_error_and_no_provider_call(alice_client, voice_models, fake_upstream, fields, code):
    if "audio" in fields:
        fields = {**fields, "audio": SimpleUploadedFile("recording.wav", fields["audio"])}
    response = alice_client.post(reverse("chat:api_voice_transcriptions"), fields)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert fake_upstream.requests == []


def test_an_upload_over_the_limit_is_refused(alice_client, voice_models, fake_upstream, settings):
    settings.PARLEY_VOICE_MAX_UPLOAD_BYTES = 20_000
    upload = SimpleUploadedFile("recording.wav", wav_bytes(2.0))
    response = alice_client.post(reverse("chat:api_voice_transcriptions"), {"audio": upload})
    assert response.json()["error"]["code"] == "audio_too_large"
    assert fake_upstream.requests == []


def test_anonymous_visitors_get_401(client, alice):
    reply = a_reply(alice)
    assert client.post(reverse("chat:api_voice_transcriptions")).status_code == 401
    assert client.get(speech_url(reply.pk)).status_code == 401
    assert client.get(reverse("chat:api_voice_settings")).status_code == 401


async def test_a_reply_is_streamed_as_audio_and_the_second_play_calls_nobody(
    alice, voice_models, fake_upstream, async_client
):
    reply = await sync_to_async(a_reply)(alice)
    fake_upstream.speech_audio = mp3_bytes(1.5)
    await async_client.aforce_login(alice)

    response = await async_client.get(speech_url(reply.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"
    assert response["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert not response.has_header("Content-Length")  # streamed as the provider sends it
    assert await body_of(response) == fake_upstream.speech_audio

    again = await async_client.get(speech_url(reply.pk))
    assert again["Content-Length"] == str(len(fake_upstream.speech_audio))
    assert await body_of(again) == fake_upstream.speech_audio
    assert len(fake_upstream.audio_requests("speech")) == 1
    assert await SpeechClip.objects.acount() == 1


async def test_another_member_gets_404_for_the_audio(alice, bob, voice_models, fake_upstream, async_client):
    reply = await sync_to_async(a_reply)(alice)
    await async_client.aforce_login(alice)
    await body_of(await async_client.get(speech_url(reply.pk)))  # alice's clip is kept

    await async_client.aforce_login(bob)
    response = await async_client.get(speech_url(reply.pk))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    clip = await SpeechClip.objects.select_related("media").aget()
    assert (await async_client.get(reverse("chat:media", args=[clip.media_id]))).status_code == 404
    assert len(fake_upstream.audio_requests("speech")) == 1
    assert not await UsageRecord.objects.filter(user=bob).aexists()


async def test_a_refusal_is_a_json_error_the_page_can_show(alice, upstream_model, fake_upstream, async_client):
    reply = await sync_to_async(a_reply)(alice)
    await async_client.aforce_login(alice)
    response = await async_client.get(speech_url(reply.pk))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "voice_unavailable"


def test_the_member_picks_a_voice_and_a_speed(alice_client):
    url = reverse("chat:api_voice_settings")
    assert alice_client.get(url).json() == {"voice": {"voice": "alloy", "speed": "1.00"}}
    response = alice_client.put(url, {"voice": "nova", "speed": "1.25"}, content_type="application/json")
    assert response.json() == {"voice": {"voice": "nova", "speed": "1.25"}}
    response = alice_client.put(url, {"voice": "nova", "user": 7}, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_setting"


def test_the_page_offers_voice_only_with_granted_voice_models(alice_client, upstream_model):
    response = alice_client.get(reverse("chat:new"))
    voice = page_config(response)["voice"]
    assert (voice["transcription"], voice["speech"]) == (False, False)

    make_voice_models(upstream_model.provider)
    voice = page_config(alice_client.get(reverse("chat:new")))["voice"]
    assert (voice["transcription"], voice["speech"]) == (True, True)
    assert voice["preferences"] == {"voice": "alloy", "speed": "1.00"}
    assert "nova" in voice["voices"]


def test_the_csp_allows_media_from_parleys_own_origin_only(alice_client):
    policy = alice_client.get(reverse("chat:new"))["Content-Security-Policy"]
    media = next(part.strip() for part in policy.split(";") if part.strip().startswith("media-src"))
    assert media == "media-src 'self'"

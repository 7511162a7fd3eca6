"""The audio calls of the one door out, against the fake upstream (a real HTTP server):
transcriptions and translations as multipart forms, speech streamed as it arrives."""

from __future__ import annotations

import hashlib

import pytest

from chat.errors import UpstreamError
from chat.upstream import client
from chat.upstream.wire import Endpoint
from tests.audio_support import mp3_bytes, wav_bytes

pytestmark = pytest.mark.usefixtures("close_llm_clients")
KEY = "sk-test-AUDIOKEY0123456789"


@pytest.fixture
def endpoint(fake_upstream):
    return Endpoint(fake_upstream.base_url, api_key=KEY)


async def test_a_transcription_sends_the_file_and_the_fields_as_a_form(fake_upstream, endpoint):
    audio = wav_bytes(1.0)
    text = await client.transcribe(
        endpoint, model="whisper-1", audio=audio, filename="audio.wav", content_type="audio/wav", language="en"
    )
    assert text == "Hello from the fake microphone."
    (request,) = fake_upstream.audio_requests("transcriptions")
    assert request.authorization == f"Bearer {KEY}"
    assert request.form["model"] == "whisper-1"
    assert request.form["response_format"] == "json"
    assert request.form["language"] == "en"
    assert request.form["file"] == {
        "filename": "audio.wav",
        "content_type": "audio/wav",
        "size": len(audio),
        "sha256": hashlib.sha256(audio).hexdigest(),
    }


async def test_a_translation_goes_to_the_translations_endpoint_without_a_language(fake_upstream, endpoint):
    text = await client.transcribe(
        endpoint,
        model="whisper-1",
        audio=wav_bytes(1.0),
        filename="audio.wav",
        content_type="audio/wav",
        translate=True,
        language="fr",
    )
    assert text == "Hello in English, from the fake microphone."
    (request,) = fake_upstream.audio_requests("translations")
    assert "language" not in request.form
    assert not fake_upstream.audio_requests("transcriptions")


async def test_a_refused_transcription_is_an_upstream_error_with_its_code(fake_upstream, endpoint, no_sleep):
    fake_upstream.script(endpoint="transcriptions", status=400, error_message="Invalid file format.")
    with pytest.raises(UpstreamError) as failed:
        await client.transcribe(
            endpoint, model="whisper-1", audio=wav_bytes(1.0), filename="a.wav", content_type="audio/wav"
        )
    assert "Invalid file format." in failed.value.message
    assert KEY not in failed.value.message


async def test_speech_arrives_in_pieces_and_adds_up_to_the_providers_file(fake_upstream, endpoint):
    fake_upstream.speech_audio = mp3_bytes(2.0)
    fake_upstream.speech_chunk = 1000
    pieces = [
        piece async for piece in client.speech(endpoint, model="tts-1", text="Hello there.", voice="nova", speed="1.25")
    ]
    assert b"".join(pieces) == fake_upstream.speech_audio
    assert len(pieces) > 1
    (request,) = fake_upstream.audio_requests("speech")
    assert request.body == {
        "model": "tts-1",
        "input": "Hello there.",
        "voice": "nova",
        "speed": 1.25,
        "response_format": "mp3",
    }


async def test_closing_the_speech_stream_closes_the_providers_connection(fake_upstream, endpoint):
    fake_upstream.speech_audio = mp3_bytes(5.0)
    fake_upstream.speech_chunk = 500
    fake_upstream.speech_pause = 0.05
    stream = client.speech(endpoint, model="tts-1", text="Hello.", voice="alloy", speed=1)
    await anext(stream)
    await stream.aclose()
    (request,) = fake_upstream.audio_requests("speech")
    assert await fake_upstream.await_until(lambda: request.disconnected_at is not None)
    assert request.deltas_sent < len(fake_upstream.speech_audio) // 500

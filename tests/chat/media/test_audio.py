"""Audio read from its bytes (chat/media/audio.py): the type and length limits and billing use.

Every file is made in the test (tests/audio_support.py), so each knows how long it lasts; a
refusal has its stable code, and nothing here calls a provider (T47).
"""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest

from chat.errors import AudioRefused
from chat.media.audio import audio_probe
from tests.audio_support import mp3_bytes, wav_bytes, webm_bytes

LIMITS = {"max_seconds": 300, "max_bytes": 50 * 1024 * 1024}


def code_of(data, **limits) -> str:
    with pytest.raises(AudioRefused) as refused:
        audio_probe(data, **{**LIMITS, **limits})
    return refused.value.code


@pytest.mark.parametrize(
    ("make", "content_type", "seconds"),
    [
        (lambda: wav_bytes(2.5), "audio/wav", Decimal("2.5")),
        (lambda: webm_bytes(4.0), "audio/webm", Decimal("4.0")),
        (lambda: webm_bytes(61.5), "audio/webm", Decimal("61.5")),
    ],
)
def test_the_length_is_read_from_the_file(make, content_type, seconds):
    info = audio_probe(make(), **LIMITS)
    assert info.content_type == content_type
    assert info.seconds == seconds


def test_an_mp3s_length_is_its_frames(request):
    info = audio_probe(mp3_bytes(3.0), **LIMITS)
    assert info.content_type == "audio/mpeg"
    # LAME pads the start and end by a few frames (a frame is 24 ms at 24 kHz).
    assert Decimal("3.0") <= info.seconds <= Decimal("3.2")


def test_a_wav_whose_header_claims_more_sound_than_it_holds_is_refused_as_truncated():
    data = bytearray(wav_bytes(1.0))
    data_at = data.index(b"data")
    struct.pack_into("<I", data, data_at + 4, 16_000 * 2 * 36_000)  # ten hours, claimed
    assert code_of(bytes(data)) == "audio_unreadable"


def test_a_cut_wav_and_a_cut_webm_are_refused():
    assert code_of(wav_bytes(2.0)[:-1001]) == "audio_unreadable"
    assert code_of(webm_bytes(2.0)[:-7]) == "audio_unreadable"


def test_a_cut_mp3_header_is_refused():
    assert code_of(mp3_bytes(2.0)[:50]) == "audio_unreadable"


def test_a_file_that_is_not_audio_is_refused_whatever_its_name_says():
    assert code_of(b"%PDF-1.7\n" + b"x" * 500) == "audio_type_unsupported"
    assert code_of(b"<html><script>alert(1)</script></html>") == "audio_type_unsupported"
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
    assert code_of(png) == "audio_type_unsupported"


def test_empty_audio_is_refused():
    assert code_of(b"") == "audio_empty"


def test_the_limits_come_from_the_callers_settings():
    assert code_of(wav_bytes(3.0), max_seconds=2) == "audio_too_long"
    assert audio_probe(wav_bytes(2.0), max_seconds=2, max_bytes=LIMITS["max_bytes"]).seconds == Decimal("2.0")
    data = wav_bytes(1.0)
    assert code_of(data, max_bytes=len(data) - 1) == "audio_too_large"


def test_a_long_recording_cannot_pass_as_a_short_one():
    # Timestamps that claim one second over 3.2 MB of blocks: at most 64 kB a second is
    # believable for a compressed format, so the length is at least 50 seconds.
    data = webm_bytes(1.0)
    padding = b"\xec" + (0x01000000_00000000 | 3_200_000).to_bytes(8, "big") + b"\x00" * 3_200_000  # a Void element
    info = audio_probe(data + padding, **LIMITS)
    assert info.seconds >= Decimal(50)
    assert code_of(data + padding, max_seconds=10) == "audio_too_long"

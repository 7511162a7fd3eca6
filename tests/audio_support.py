"""Real audio made in the tests: tones as WAV and MP3, speech spoken by espeak-ng, WebM by hand.

Nothing here is a recording shipped with the repository: every file is made when a test asks,
so each test knows exactly how long its audio lasts.
"""

from __future__ import annotations

import io
import math
import shutil
import struct
import subprocess
import wave
from pathlib import Path

RATE = 16_000


def pcm_tone(seconds: float, *, rate: int = RATE, frequency: float = 440.0) -> bytes:
    """Signed 16-bit mono samples of a quiet sine tone."""
    count = int(seconds * rate)
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * frequency * n / rate))) for n in range(count))


def wav_bytes(seconds: float, *, rate: int = RATE) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(pcm_tone(seconds, rate=rate))
    return out.getvalue()


def mp3_bytes(seconds: float, *, rate: int = 24_000, bitrate: int = 64) -> bytes:
    """An MP3 of a tone (LAME, through lameenc): what /audio/speech answers."""
    import lameenc

    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate)
    encoder.set_in_sample_rate(rate)
    encoder.set_channels(1)
    encoder.set_quality(7)
    return bytes(encoder.encode(pcm_tone(seconds, rate=rate)) + encoder.flush())


def espeak_wav(text: str, path: Path) -> Path:
    """``text`` spoken by espeak-ng into a WAV file (Debian's espeak-ng; .ci/run installs it)."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run([binary, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return path


# --- WebM, as Chromium's MediaRecorder writes it: unknown-size segment and clusters -----------
def _element(element_id: int, body: bytes) -> bytes:
    id_bytes = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return id_bytes + _size(len(body)) + body


def _size(length: int) -> bytes:
    """The shortest EBML size field for ``length``, as muxers write them."""
    for width in range(1, 9):
        if length < (1 << (7 * width)) - 1:
            return ((1 << (7 * width)) | length).to_bytes(width, "big")
    raise ValueError(length)


def webm_bytes(seconds: float, *, frame_ms: int = 20, cluster_ms: int = 1000) -> bytes:
    """A WebM file whose blocks span ``seconds`` (the payloads are not real Opus: only the
    container is read by Parley; libmagic knows it by its EBML header)."""
    unknown = bytes([0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    header = _element(
        0x1A45DFA3,
        _element(0x4286, b"\x01") + _element(0x42F7, b"\x01") + _element(0x4282, b"webm") + _element(0x4287, b"\x04"),
    )
    info = _element(0x1549A966, _element(0x2AD7B1, (1_000_000).to_bytes(3, "big")))
    clusters = b""
    total_ms = int(seconds * 1000)
    for start in range(0, total_ms, cluster_ms):
        blocks = b""
        for offset in range(0, min(cluster_ms, total_ms - start), frame_ms):
            blocks += _element(0xA3, b"\x81" + struct.pack(">h", offset) + b"\x80" + b"\x00" * 40)
        clusters += bytes.fromhex("1F43B675") + unknown + _element(0xE7, start.to_bytes(4, "big")) + blocks
    return header + bytes.fromhex("18538067") + unknown + info + clusters


def make_voice_models(provider):
    """whisper-1 and tts-1 at OpenAI's prices on ``provider``: (transcription, speech)."""
    from chat.models import ChatModel, ModelKind

    whisper = ChatModel.objects.create(
        provider=provider,
        model_id="whisper-1",
        kind=ModelKind.TRANSCRIPTION,
        audio_price_per_minute="0.006",
        max_output_tokens=0,
    )
    tts = ChatModel.objects.create(
        provider=provider,
        model_id="tts-1",
        kind=ModelKind.SPEECH,
        speech_price_per_million_characters="15",
        max_output_tokens=0,
    )
    return whisper, tts

"""What an audio file is and how long it lasts, read from its bytes before any provider sees it.

The browser's claims (name, type, a duration it measured) are never used: limits and billing
take the length from the file itself. Which reader:

- MP3, Ogg (Opus, Vorbis), FLAC and MP4/M4A: **mutagen**, pure Python (no native parser of
  untrusted bytes in Parley's process), maintained since 2005, and it reads the length the way
  players do (MP3 frames or the Xing/VBRI count, the last Ogg page's granule, FLAC's stream
  info, MP4's movie header).
- WAV: its RIFF chunks are read here, because the length is the data chunk's *declared* size,
  and a header that claims more bytes than the file holds is the T47 case ("audio whose header
  lies about its length"): refused as truncated.
- WebM (what Chromium's MediaRecorder makes): no maintained pure-Python library reads it, and
  MediaRecorder writes no Duration element anyway (it streams), so the length is the last
  block's timestamp, read here by a small EBML walker over clusters and blocks.

A length a header claims can still be too *short* for the bytes (a lie that would bill less
than the provider charges): every length is at least the file's size divided by the highest
byte rate of its format (``_MAX_BYTE_RATE``), so a long recording cannot pass as a short one.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal

from django.utils.translation import gettext as _

from chat.errors import AudioRefused
from chat.media.types import sniff

# Bytes a second of each format can take at most; lossy codecs top out near 512 kbit/s.
_LOSSY_MAX = 64_000
_MAX_BYTE_RATE = {
    "audio/mpeg": _LOSSY_MAX,
    "audio/ogg": _LOSSY_MAX,
    "audio/webm": _LOSSY_MAX,
    "audio/mp4": _LOSSY_MAX,
    "audio/flac": 800_000,  # lossless, up to 24-bit 96 kHz stereo after compression
}


@dataclass(frozen=True)
class AudioInfo:
    content_type: str
    extension: str
    seconds: Decimal  # rounded up to the tenth of a second: what limits and billing use


def _refused(code: str, message: str) -> AudioRefused:
    return AudioRefused(message, code=code)


def _unreadable() -> AudioRefused:
    return _refused("audio_unreadable", _("The audio is damaged or cut short, so its length cannot be read."))


def audio_probe(data: bytes, *, max_seconds: float, max_bytes: int) -> AudioInfo:
    """The type and length of ``data``, or AudioRefused saying why it cannot be sent."""
    if not data:
        raise _refused("audio_empty", _("The recording is empty."))
    if len(data) > max_bytes:
        raise _refused(
            "audio_too_large",
            _("The audio is larger than the limit of %(limit)s MB.") % {"limit": round(max_bytes / 1_048_576, 1)},
        )
    media_type = sniff(data)
    if media_type is None or media_type.family != "audio":
        raise _refused(
            "audio_type_unsupported",
            _("This is not an audio file Parley can read (MP3, WAV, Ogg, WebM, M4A or FLAC)."),
        )
    try:
        if media_type.content_type == "audio/wav":
            seconds = _wav_seconds(data)
        elif media_type.content_type == "audio/webm":
            seconds = _webm_seconds(data)
        else:
            seconds = _mutagen_seconds(data)
    except AudioRefused:
        raise
    except Exception:  # noqa: BLE001 - any parser failure on untrusted bytes is "damaged"
        raise _unreadable() from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise _unreadable()
    floor = len(data) / _MAX_BYTE_RATE.get(media_type.content_type, _LOSSY_MAX)
    seconds = max(seconds, floor)
    if seconds > max_seconds:
        raise _refused(
            "audio_too_long",
            _("The audio lasts %(seconds)s seconds; the limit is %(limit)s.")
            % {"seconds": math.ceil(seconds), "limit": int(max_seconds)},
        )
    rounded = Decimal(str(seconds)).quantize(Decimal("0.1"), rounding=ROUND_UP)
    return AudioInfo(media_type.content_type, media_type.extension, rounded)


def _mutagen_seconds(data: bytes) -> float:
    import mutagen

    found = mutagen.File(io.BytesIO(data))
    if found is None or found.info is None:
        raise _unreadable()
    return float(found.info.length or 0)


def _wav_seconds(data: bytes) -> float:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _unreadable()
    pos, byte_rate = 12, 0
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise _unreadable()
            byte_rate = struct.unpack_from("<I", data, body + 8)[0]
        elif chunk_id == b"data":
            if not byte_rate:
                raise _unreadable()
            available = len(data) - body
            if size in (0, 0xFFFFFFFF):  # a streaming writer that never went back: to the end
                size = available
            if size > available:
                raise _unreadable()  # the header claims more sound than the file holds (T47)
            return size / byte_rate
        pos = body + size + (size & 1)  # chunks are padded to an even length
    raise _unreadable()


# --- WebM / Matroska ------------------------------------------------------------------------
_SEGMENT, _CLUSTER, _INFO, _BLOCK_GROUP = 0x18538067, 0x1F43B675, 0x1549A966, 0xA0
_CONTAINERS = {_SEGMENT, _CLUSTER, _INFO, _BLOCK_GROUP}  # walked into, whatever their size says
_EBML, _TIMECODE_SCALE, _DURATION, _TIMECODE, _SIMPLE_BLOCK, _BLOCK = (
    0x1A45DFA3,
    0x2AD7B1,
    0x4489,
    0xE7,
    0xA3,
    0xA1,
)


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int, bool]:
    """An EBML variable-length integer at ``pos``: (value, next position, all ones)."""
    if pos >= len(data):
        raise _unreadable()
    first = data[pos]
    length = 8 - first.bit_length() + 1
    if first == 0 or length > 8 or pos + length > len(data):
        raise _unreadable()
    value = first if keep_marker else first & (0xFF >> length)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    ones = not keep_marker and value == (1 << (7 * length)) - 1
    return value, pos + length, ones


def _webm_seconds(data: bytes) -> float:
    """The last block's end in a WebM file (unknown-size segments and clusters allowed)."""
    element, _pos, _ones = _vint(data, 0, keep_marker=True)
    if element != _EBML:
        raise _unreadable()
    pos, scale, declared, cluster_time, last = 0, 1_000_000, 0.0, 0, -1
    while pos < len(data):
        element, pos, _ones = _vint(data, pos, keep_marker=True)
        size, pos, unknown = _vint(data, pos, keep_marker=False)
        if element in _CONTAINERS:
            continue  # read its children in place
        if unknown or pos + size > len(data):
            raise _unreadable()  # an element cut off: the file is truncated
        body = data[pos : pos + size]
        if element == _TIMECODE_SCALE:
            scale = int.from_bytes(body, "big") or scale
        elif element == _DURATION and size in (4, 8):
            declared = struct.unpack(">f" if size == 4 else ">d", body)[0]
        elif element == _TIMECODE:
            cluster_time = int.from_bytes(body, "big")
        elif element in (_SIMPLE_BLOCK, _BLOCK):
            _track, after, _ones = _vint(body, 0, keep_marker=False)
            if after + 2 > len(body):
                raise _unreadable()
            relative = struct.unpack_from(">h", body, after)[0]
            last = max(last, cluster_time + relative)
        pos += size
    if last < 0 and not declared:
        raise _unreadable()
    return max(float(declared), float(last)) * scale / 1e9

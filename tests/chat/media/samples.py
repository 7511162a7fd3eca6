"""Small real files made in the test: a PNG, a WAV, and polyglots with a script after a header."""

from __future__ import annotations

import io
import struct
import wave
import zlib

SCRIPT = b"<html><script>window.__pwned = 1</script><svg onload=alert(1)></svg></html>"


def png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00\xff" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def wav(frames: int = 800) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x01\x00" * frames)
    return buffer.getvalue()


def png_polyglot() -> bytes:
    return png() + SCRIPT


def wav_polyglot() -> bytes:
    return wav() + SCRIPT


HTML = b"<!doctype html><html><body><script>window.__pwned = 1</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned = 1"><rect width="1" height="1"/></svg>'
TEXT = b"Meeting notes: the budget is 42.\n"

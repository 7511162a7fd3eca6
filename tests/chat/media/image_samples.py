"""Real images for the image tests, made with Pillow, and hostile ones made by hand."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png(width: int = 64, height: int = 64, colour=(200, 30, 30, 255), mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), colour[: len(mode)] if mode != "RGBA" else colour).save(out, format="PNG")
    return out.getvalue()


def jpeg(width: int = 80, height: int = 40) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 10)).save(out, format="JPEG")
    return out.getvalue()


def mask(width: int, height: int, hole: tuple[int, int, int, int]) -> bytes:
    """An opaque mask with a transparent rectangle ``hole`` (left, top, right, bottom)."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), hole)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header claiming ``width`` × ``height`` pixels, with a few hundred bytes of data:
    decoded, it would take gigabytes (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def truncated_png() -> bytes:
    data = png(256, 256, (1, 2, 3, 255))
    noisy = Image.effect_noise((256, 256), 64).convert("RGBA")
    out = io.BytesIO()
    noisy.save(out, format="PNG")
    data = out.getvalue()
    return data[: len(data) // 2]

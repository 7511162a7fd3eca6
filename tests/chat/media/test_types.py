"""What a file is comes from its bytes; the name a member gave it is only cleaned for display."""

import pytest

from chat.media.types import MAX_NAME_CHARS, clean_name, sniff
from tests.chat.media import samples


@pytest.mark.parametrize(
    ("content", "expected", "extension"),
    [
        (samples.png(), "image/png", ".png"),
        (samples.wav(), "audio/wav", ".wav"),
        (samples.TEXT, "text/plain", ".txt"),
        (b"import os\n\n\ndef main():\n    return os.getcwd()\n", "text/plain", ".txt"),
        (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "application/pdf", ".pdf"),
        # A polyglot is what its header says: a PNG or a WAV, never HTML (T16).
        (samples.png_polyglot(), "image/png", ".png"),
        (samples.wav_polyglot(), "audio/wav", ".wav"),
    ],
)
def test_the_type_and_extension_come_from_the_bytes(content, expected, extension):
    media_type = sniff(content)
    assert (media_type.content_type, media_type.extension) == (expected, extension)


@pytest.mark.parametrize("content", [samples.SVG, b"MZ\x90\x00\x03" + bytes(200), b"\x7fELF\x02\x01\x01" + bytes(200)])
def test_svg_and_programs_are_not_on_the_allowlist(content):
    assert sniff(content) is None


def test_html_is_kept_only_as_a_download():
    media_type = sniff(samples.HTML)
    assert media_type.content_type == "text/html"
    assert media_type.response_type == "application/octet-stream"
    assert not media_type.inline


def test_only_raster_images_and_audio_may_be_shown_inline():
    assert sniff(samples.png()).inline and sniff(samples.wav()).inline
    for content in (samples.TEXT, samples.HTML, b"%PDF-1.4\n%%EOF\n"):
        assert not sniff(content).inline


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("holiday.png", "holiday.png"),
        ("../../x", "x"),
        ("/etc/cron.d/x", "x"),
        ("..\\..\\x", "x"),
        ("C:\\Users\\bob\\report.pdf", "report.pdf"),
        ("x\x00.png", "x.png"),
        ("a\nb\rc\td.txt", "abcd.txt"),
        ("\u202egnp.exe", "gnp.exe"),  # a right-to-left override would show "exe.png"
        ("报告 2026.pdf", "报告 2026.pdf"),
        ("..", "file"),
        ("", "file"),
        (None, "file"),
    ],
)
def test_the_original_name_keeps_no_path_and_no_control_character(given, shown):
    assert clean_name(given) == shown


def test_a_long_name_is_capped_and_keeps_its_extension():
    name = clean_name("a" * 1000 + ".png")
    assert len(name) == MAX_NAME_CHARS
    assert name.endswith("a.png")

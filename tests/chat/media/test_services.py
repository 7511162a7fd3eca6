"""Saving files: a name the server chose, the type from the bytes, limits from settings.

Every test that touches the store runs twice: on the data folder and on a real S3-compatible
server (moto's server mode, tests/s3server.py), through the same STORAGES["media"] entry
config/settings.py builds.
"""

import hashlib
import io
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from chat.errors import MediaEmpty, MediaNotFound, MediaQuotaExceeded, MediaTooLarge, MediaTypeUnsupported
from chat.media.services import media_save
from chat.models import Conversation, MediaFile, Message
from tests.chat.media import samples

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}\.(png|wav|txt|pdf|html)$")


def test_a_png_is_stored_under_a_name_the_server_chose(alice, media_store):
    content = samples.png()
    media = media_save(owner=alice, content=content, name="holiday.png")
    assert media.owner == alice
    assert media.original_name == "holiday.png"
    assert media.content_type == "image/png"
    assert media.size == len(content)
    assert media.sha256 == hashlib.sha256(content).hexdigest()
    assert GENERATED.match(media.storage_name)
    assert media_store.names() == {media.storage_name}


def test_an_uploaded_file_is_read_in_chunks_and_stored_whole(alice, media_store):
    content = samples.wav(frames=200_000)  # 400 kB: several chunks
    upload = SimpleUploadedFile("memo.wav", content, content_type="text/html")
    media = media_save(owner=alice, content=upload, name=upload.name, kind=MediaFile.Kind.AUDIO)
    assert media.content_type == "audio/wav"  # the browser's claim is not what is stored
    assert media.sha256 == hashlib.sha256(content).hexdigest()
    from chat.media.storage import media_storage

    with media_storage().open(media.storage_name, "rb") as handle:
        assert handle.read() == content


@pytest.mark.parametrize("name", ["x.html", "x.svg"])
@pytest.mark.parametrize(
    ("content", "content_type", "extension"),
    [(samples.png_polyglot(), "image/png", ".png"), (samples.wav_polyglot(), "audio/wav", ".wav")],
)
def test_a_polyglot_named_html_or_svg_is_stored_as_what_its_header_is(
    alice, media_store, name, content, content_type, extension
):
    """T16: a PNG or WAV header with a script after it, named x.html or x.svg."""
    media = media_save(owner=alice, content=content, name=name)
    assert media.content_type == content_type
    assert media.storage_name.endswith(extension)
    assert [stored for stored in media_store.names() if stored.endswith((".html", ".svg"))] == []


TRAVERSAL_NAMES = [
    "../../x",
    "/etc/cron.d/x",
    "..\\..\\x",
    "x\x00.png",
    "a" * 1000 + ".png",
    "../../报告\u202egnp.exe",
    "..",
    "",
]


@pytest.mark.parametrize("name", TRAVERSAL_NAMES)
def test_a_name_that_climbs_out_lands_only_in_the_store_under_a_generated_name(alice, media_store, tmp_path, name):
    """T28, with a sentinel in the temporary folder that holds the data folder."""
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("untouched")
    before = {path for path in tmp_path.rglob("*") if path.is_file()}

    media = media_save(owner=alice, content=samples.png(), name=name)

    assert GENERATED.match(media.storage_name)
    assert "/" not in media.original_name and "\\" not in media.original_name and "\x00" not in media.original_name
    assert len(media.original_name) <= 200
    assert sentinel.read_text() == "untouched"
    created = {path for path in tmp_path.rglob("*") if path.is_file()} - before
    assert not (tmp_path / "x").exists() and not (tmp_path / "data" / "x").exists()
    assert not Path("/etc/cron.d/x").exists()
    if media_store.backend == "filesystem":
        assert created == {media_store.root / media.storage_name}
    else:
        assert created == set()  # nothing written locally at all
        assert media_store.keys() >= {f"{media_store.prefix}/{media.storage_name}"}
        assert all(key.startswith("test-") for key in media_store.keys())
    assert media_store.names() == {media.storage_name}


def test_a_file_over_the_size_limit_is_refused_and_nothing_is_stored(alice, media_store, settings):
    settings.PARLEY_MEDIA_MAX_FILE_BYTES = 1000
    with pytest.raises(MediaTooLarge) as refused:
        media_save(owner=alice, content=samples.TEXT * 100, name="big.txt")
    assert refused.value.code == "media_too_large"
    assert refused.value.message == "This file is larger than the limit of 1000\xa0bytes per file."
    assert refused.value.as_frame()["detail"] == {"limit_bytes": 1000}
    assert media_store.names() == set()
    assert not MediaFile.objects.exists()


def test_a_stream_without_a_size_is_cut_at_the_limit(alice, media_store, settings):
    settings.PARLEY_MEDIA_MAX_FILE_BYTES = 1000

    class Endless(io.RawIOBase):
        """A client that never stops sending: reading must stop at the limit, not at the end."""

        reads = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            Endless.reads += 1
            buffer[:] = b"a" * len(buffer)
            return len(buffer)

    with pytest.raises(MediaTooLarge):
        media_save(owner=alice, content=Endless(), name="endless.txt")
    assert Endless.reads < 5
    assert media_store.names() == set()


def test_a_file_exactly_at_the_size_limit_is_stored(alice, media_store, settings):
    content = samples.png()
    settings.PARLEY_MEDIA_MAX_FILE_BYTES = len(content)
    assert media_save(owner=alice, content=content, name="edge.png").size == len(content)


def test_the_quota_refuses_a_file_that_would_pass_it_and_counts_per_member(alice, bob, media_store, settings):
    content = samples.png()
    settings.PARLEY_MEDIA_QUOTA_BYTES = 2 * len(content) + 10
    media_save(owner=alice, content=content, name="one.png")
    media_save(owner=alice, content=content, name="two.png")
    with pytest.raises(MediaQuotaExceeded) as refused:
        media_save(owner=alice, content=content, name="three.png")
    assert refused.value.code == "media_quota_exceeded"
    assert refused.value.message.startswith("Your file storage is full (")
    assert MediaFile.objects.filter(owner=alice).count() == 2
    assert len(media_store.names()) == 2
    # Bob's storage is his own.
    media_save(owner=bob, content=content, name="bobs.png")


def test_a_file_read_past_its_declared_size_is_counted_as_read(alice, media_store, settings):
    """The quota is checked again on the bytes read, inside the transaction that inserts the row."""
    content = samples.png()
    settings.PARLEY_MEDIA_QUOTA_BYTES = len(content) + 5

    class Lying(io.BytesIO):
        size = 1

    media_save(owner=alice, content=content, name="one.png")
    with pytest.raises(MediaQuotaExceeded):
        media_save(owner=alice, content=Lying(content), name="two.png")
    assert len(media_store.names()) == 1


def test_a_quota_of_zero_means_no_quota(alice, media_store, settings):
    settings.PARLEY_MEDIA_QUOTA_BYTES = 0
    media_save(owner=alice, content=samples.png(), name="one.png")


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (samples.SVG, MediaFile.Kind.UPLOAD),
        (b"MZ\x90\x00\x03" + bytes(500), MediaFile.Kind.UPLOAD),
        (samples.TEXT, MediaFile.Kind.IMAGE),  # not what the caller says it is
        (samples.png(), MediaFile.Kind.AUDIO),
        (samples.HTML, MediaFile.Kind.IMAGE),
    ],
)
def test_a_type_off_the_allowlist_or_not_of_its_kind_is_refused(alice, media_store, content, kind):
    with pytest.raises(MediaTypeUnsupported) as refused:
        media_save(owner=alice, content=content, name="picture.png", kind=kind)
    assert refused.value.code == "media_type_unsupported"
    assert media_store.names() == set()


def test_an_empty_file_is_refused(alice, media_store):
    with pytest.raises(MediaEmpty) as refused:
        media_save(owner=alice, content=b"", name="empty.txt")
    assert refused.value.code == "media_empty"
    assert media_store.names() == set()


def test_a_file_is_never_attached_to_another_members_conversation(alice, bob, media_store):
    bobs = Conversation.objects.create(owner=bob, title="Bob's")
    with pytest.raises(MediaNotFound):
        media_save(owner=alice, content=samples.png(), name="x.png", conversation=bobs)
    message = Message.objects.create(conversation=bobs, role=Message.Role.USER, content="hi")
    with pytest.raises(MediaNotFound):
        media_save(owner=alice, content=samples.png(), name="x.png", message=message)
    assert media_store.names() == set()


def test_a_file_attached_to_a_message_belongs_to_its_conversation(alice, media_store):
    conversation = Conversation.objects.create(owner=alice)
    message = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="")
    media = media_save(owner=alice, content=samples.png(), name="made.png", kind=MediaFile.Kind.IMAGE, message=message)
    assert (media.conversation, media.message, media.kind) == (conversation, message, "image")


def test_a_failed_insert_removes_the_stored_file(alice, media_store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(MediaFile.objects, "create", broken)
    with pytest.raises(RuntimeError):
        media_save(owner=alice, content=samples.png(), name="x.png")
    assert media_store.names() == set()


@pytest.mark.django_db(transaction=True)
def test_twenty_uploads_at_once_at_the_quota_edge_end_within_the_quota(alice, settings, tmp_path):
    """The quota is re-checked with the member's row locked: concurrent uploads cannot overshoot it together."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from config.settings import media_storage

    settings.STORAGES = {**settings.STORAGES, "media": media_storage("filesystem", root=tmp_path, s3={})}
    content = samples.png()
    settings.PARLEY_MEDIA_QUOTA_BYTES = 5 * len(content)

    def upload(_):
        try:
            media_save(owner=alice, content=content, name="race.png")
            return "stored"
        except MediaQuotaExceeded:
            return "refused"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(upload, range(20)))
    assert outcomes.count("stored") == 5
    assert outcomes.count("refused") == 15
    assert MediaFile.objects.filter(owner=alice).count() == 5
    assert len([path for path in tmp_path.rglob("*") if path.is_file()]) == 5


def test_a_stored_file_no_row_names_is_removed_once_it_is_old(alice, media_store):
    """What a process killed between writing a file and recording it leaves behind."""
    from datetime import timedelta

    from django.core.files.base import ContentFile

    from chat.media.services import media_orphans_delete
    from chat.media.storage import media_storage, new_storage_name

    kept = media_save(owner=alice, content=samples.png(), name="kept.png")
    orphan = media_storage().save(new_storage_name(".png"), ContentFile(samples.png()))
    assert media_orphans_delete() == 0  # younger than an hour: perhaps a save in progress
    assert media_store.names() == {kept.storage_name, orphan}
    assert media_orphans_delete(older_than=timedelta(minutes=-5)) == 1
    assert media_store.names() == {kept.storage_name}


def test_the_orphan_sweep_of_an_empty_store_finds_nothing(media_store):
    from chat.media.services import media_orphans_delete

    assert media_orphans_delete() == 0


def test_a_refusal_reads_in_the_members_language(alice, media_store, settings):
    from django.utils import translation

    settings.PARLEY_MEDIA_MAX_FILE_BYTES = 10
    with translation.override("zh-hans"), pytest.raises(MediaTooLarge) as refused:
        media_save(owner=alice, content=samples.png(), name="a.png")
    assert refused.value.message.startswith("此文件超过了每个文件")
    assert refused.value.code == "media_too_large"

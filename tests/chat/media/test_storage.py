"""The private media store: its configuration (config/settings.py) and the names it is given."""

import re
import stat

import pytest
from django.core.exceptions import ImproperlyConfigured

from chat.media.services import media_save
from chat.media.storage import new_storage_name, stored_open
from config.settings import media_storage
from tests.chat.media import samples

S3 = {
    "bucket": "parley-media",
    "endpoint_url": "https://minio.example.com:9000",
    "region": "eu-west-1",
    "access_key_id": "AKIAEXAMPLE",
    "secret_access_key": "secret",
    "addressing_style": "path",
    "prefix": "media",
    "verify": True,
}


def test_stored_names_are_random_and_carry_only_the_given_extension():
    names = {new_storage_name(".png") for _ in range(100)}
    assert len(names) == 100
    assert all(re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{32}\.png", name) for name in names)


def test_the_folder_store_has_no_url_and_keeps_files_to_parleys_user(tmp_path):
    entry = media_storage("filesystem", root=tmp_path / "media", s3=S3)
    assert entry["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert entry["OPTIONS"]["base_url"] is None
    assert entry["OPTIONS"]["file_permissions_mode"] == 0o600
    assert entry["OPTIONS"]["directory_permissions_mode"] == 0o700


def test_the_s3_store_is_built_from_the_variables():
    options = media_storage("s3", root=None, s3=S3)["OPTIONS"]
    assert media_storage("s3", root=None, s3=S3)["BACKEND"] == "storages.backends.s3.S3Storage"
    assert options["bucket_name"] == "parley-media"
    assert options["endpoint_url"] == "https://minio.example.com:9000"
    assert options["region_name"] == "eu-west-1"
    assert (options["access_key"], options["secret_key"]) == ("AKIAEXAMPLE", "secret")
    assert options["addressing_style"] == "path"
    assert options["location"] == "media"
    assert options["default_acl"] is None  # never a public-read object


def test_empty_s3_values_leave_the_choice_to_boto3():
    options = media_storage(
        "s3",
        root=None,
        s3={
            **S3,
            "endpoint_url": "",
            "region": "",
            "access_key_id": "",
            "secret_access_key": "",
            "addressing_style": "auto",
        },
    )["OPTIONS"]
    assert options["endpoint_url"] is None and options["region_name"] is None
    assert options["access_key"] is None and options["secret_key"] is None
    assert options["addressing_style"] is None


@pytest.mark.parametrize(
    ("backend", "s3", "message"),
    [
        ("s3", {**S3, "bucket": ""}, "PARLEY_MEDIA_S3_BUCKET"),
        ("s3", {**S3, "addressing_style": "sideways"}, "PARLEY_MEDIA_S3_ADDRESSING_STYLE"),
        ("ftp", S3, "PARLEY_MEDIA_BACKEND"),
    ],
)
def test_a_wrong_configuration_stops_parley_at_start_with_the_variable_named(backend, s3, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        media_storage(backend, root=None, s3=s3)


@pytest.mark.django_db
def test_a_stored_file_reads_back_in_chunks(alice, media_store):
    content = samples.wav(frames=100_000)
    media = media_save(owner=alice, content=content, name="memo.wav")
    handle = stored_open(media.storage_name)
    try:
        chunks = []
        while chunk := handle.read(64 * 1024):
            chunks.append(chunk)
    finally:
        handle.close()
    assert len(chunks) > 1
    assert b"".join(chunks) == content


@pytest.mark.django_db
def test_a_file_in_the_folder_store_is_readable_by_parley_alone(alice, settings, tmp_path):
    root = tmp_path / "media"
    settings.STORAGES = {**settings.STORAGES, "media": media_storage("filesystem", root=root, s3=S3)}
    media = media_save(owner=alice, content=samples.png(), name="a.png")
    path = root / media.storage_name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

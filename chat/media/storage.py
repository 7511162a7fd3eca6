"""The one door to the private media store, ``STORAGES["media"]``.

A folder under the data directory or an S3-compatible bucket (config/settings.py); the rest of
Parley only names files by the storage names this module makes.
"""

from __future__ import annotations

import logging
import sys
import uuid

from django.core.files.storage import Storage, storages

log = logging.getLogger(__name__)

ALIAS = "media"


def media_storage() -> Storage:
    # Looked up on every call, not kept: tests (and nothing else) swap the store per test.
    return storages[ALIAS]


def new_storage_name(extension: str) -> str:
    """A fresh name chosen by the server: ``ab/<uuid>.png``.

    Nothing from the client reaches it, so no name can climb out of the store (T28); the two
    hex characters spread files over 256 folders.
    """
    key = uuid.uuid4().hex
    return f"{key[:2]}/{key}{extension}"


def stored_open(name: str):
    """A binary stream of a stored file, to be read in chunks as it is sent.

    django-storages' S3File downloads the whole object (into memory by default) before its
    first read; the object's own body streams from the store instead.
    """
    storage = media_storage()
    # django-storages, and boto3 under it (about 30 MB), is imported by Django only when the
    # bucket is the configured store: when it is not loaded, the store cannot be a bucket.
    s3 = sys.modules.get("storages.backends.s3")
    if s3 is not None and isinstance(storage, s3.S3Storage):
        from storages.utils import clean_name

        key = storage._normalize_name(clean_name(name))  # the prefix joined as S3Storage joins it
        return storage.bucket.Object(key).get()["Body"]
    return storage.open(name, "rb")


def stored_delete(name: str) -> None:
    """Remove a file from the store. A failure is logged, never raised: the row is already gone,
    and a leftover file is garbage, not a leak (nothing can serve it without its row)."""
    try:
        media_storage().delete(name)
    except Exception:  # noqa: BLE001 - the outermost boundary of an after-commit callback
        log.exception("could not delete stored media file %s", name)

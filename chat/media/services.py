"""Saving and deleting stored files, within the limits from settings.

``media_save`` reads the content once, in chunks, into a temporary file: it stops reading at
the per-file limit (the client's declared size is only used to refuse early), hashes as it
reads, and sniffs the type from the first bytes. The file is written to the store under a
name the server chose, then its row is inserted in a transaction that holds the member's row
locked while it re-checks the quota, so concurrent uploads cannot overshoot it together. If
that transaction fails, the stored file is removed again.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import transaction
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.translation import gettext

from chat.errors import MediaEmpty, MediaNotFound, MediaQuotaExceeded, MediaTooLarge, MediaTypeUnsupported
from chat.media.selectors import media_bytes_used, media_for_user
from chat.media.storage import media_storage, new_storage_name, stored_delete
from chat.media.types import SNIFF_BYTES, MediaType, clean_name, sniff
from chat.models import MediaFile

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
# A stored file with no row, older than this, was left by a process that died between writing
# the file and recording it. Far longer than any save takes, so a save in progress is safe.
ORPHAN_AGE = timedelta(hours=1)

# Which sniffed families each kind of file accepts; an upload may be any allowlisted type.
_KIND_FAMILIES = {
    MediaFile.Kind.IMAGE: {"image"},
    MediaFile.Kind.AUDIO: {"audio"},
    MediaFile.Kind.DOCUMENT: {"document"},
}


def _chunks(content) -> Iterator[bytes]:
    if isinstance(content, bytes | bytearray | memoryview):
        yield bytes(content)
        return
    if hasattr(content, "chunks"):  # Django's File and UploadedFile (they rewind themselves)
        yield from content.chunks(CHUNK_BYTES)
        return
    while chunk := content.read(CHUNK_BYTES):
        yield chunk


def _declared_size(content) -> int | None:
    if isinstance(content, bytes | bytearray | memoryview):
        return len(content)
    size = getattr(content, "size", None)
    return size if isinstance(size, int) else None


def _too_large() -> MediaTooLarge:
    limit = filesizeformat(settings.PARLEY_MEDIA_MAX_FILE_BYTES)
    return MediaTooLarge(
        gettext("This file is larger than the limit of %(limit)s per file.") % {"limit": limit},
        limit_bytes=settings.PARLEY_MEDIA_MAX_FILE_BYTES,
    )


def _check_quota(*, owner, size: int) -> None:
    quota = settings.PARLEY_MEDIA_QUOTA_BYTES
    if quota and media_bytes_used(user=owner) + size > quota:
        raise MediaQuotaExceeded(
            gettext("Your file storage is full (%(quota)s). Delete files or conversations to make room.")
            % {"quota": filesizeformat(quota)},
            quota_bytes=quota,
        )


def _spool(content, spool) -> tuple[int, str, bytes]:
    """Copy ``content`` into ``spool``; return its size, SHA-256 and first bytes."""
    limit = settings.PARLEY_MEDIA_MAX_FILE_BYTES
    digest = hashlib.sha256()
    head = bytearray()
    size = 0
    for chunk in _chunks(content):
        size += len(chunk)
        if size > limit:
            raise _too_large()
        digest.update(chunk)
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        spool.write(chunk)
    return size, digest.hexdigest(), bytes(head)


def _media_type(head: bytes, kind: str) -> MediaType:
    media_type = sniff(head)
    if media_type is None or (kind in _KIND_FAMILIES and media_type.family not in _KIND_FAMILIES[kind]):
        raise MediaTypeUnsupported()
    return media_type


def media_save(
    *,
    owner,
    content,
    name: str,
    kind: str = MediaFile.Kind.UPLOAD,
    conversation=None,
    message=None,
) -> MediaFile:
    """Store ``content`` (bytes or a file-like object such as an UploadedFile) for ``owner``.

    ``name`` is the client's name for it, kept cleaned for display; the type comes from the
    bytes. Raises MediaTooLarge, MediaQuotaExceeded, MediaTypeUnsupported or MediaEmpty, each
    with nothing stored. Best called outside a transaction: if an enclosing one rolls back, the
    row goes but the file stays until housekeeping's orphan sweep (media_orphans_delete).
    """
    if kind not in MediaFile.Kind.values:
        raise ValueError(f"unknown media kind {kind!r}")
    if message is not None:
        if conversation is not None and message.conversation_id != conversation.pk:
            raise ValueError("the message is not in the conversation")
        conversation = message.conversation
    if conversation is not None and conversation.owner_id != owner.pk:
        # Never attach a file to another member's conversation; it looks like a missing one.
        raise MediaNotFound()

    declared = _declared_size(content)
    if declared is not None:
        if declared > settings.PARLEY_MEDIA_MAX_FILE_BYTES:
            raise _too_large()
        _check_quota(owner=owner, size=declared)

    with tempfile.TemporaryFile() as spool:
        size, sha256, head = _spool(content, spool)
        if size == 0:
            raise MediaEmpty()
        media_type = _media_type(head, kind)
        spool.seek(0)
        stored = media_storage().save(new_storage_name(media_type.extension), File(spool))

    try:
        with transaction.atomic():
            # The member's row is the lock that serialises their uploads (SQLite's IMMEDIATE
            # transactions serialise all writers anyway).
            list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk", flat=True))
            _check_quota(owner=owner, size=size)
            return MediaFile.objects.create(
                owner=owner,
                conversation=conversation,
                message=message,
                kind=kind,
                original_name=clean_name(name),
                storage_name=stored,
                content_type=media_type.content_type,
                size=size,
                sha256=sha256,
            )
    except BaseException:
        stored_delete(stored)
        raise


def media_delete(*, user, media_id) -> None:
    """Delete one of the member's files; the stored file goes after the commit (chat.media.signals)."""
    media_for_user(user=user, media_id=media_id).delete()


def media_orphans_delete(*, older_than: timedelta = ORPHAN_AGE) -> int:
    """Delete stored files that no row names (housekeeping, hourly); returns how many.

    Only a process killed between writing a file and inserting its row leaves one: nothing can
    serve such a file, but it takes space. The store is walked folder by folder (``ab/``);
    only names without a row are asked for their age.
    """
    storage = media_storage()
    cutoff = timezone.now() - older_than
    try:
        folders, _ = storage.listdir("")
    except FileNotFoundError:  # a folder store nothing was ever saved to
        return 0
    deleted = 0
    for folder in folders:
        names = {f"{folder}/{name}" for name in storage.listdir(folder)[1]}
        known = set(MediaFile.objects.filter(storage_name__in=names).values_list("storage_name", flat=True))
        for name in sorted(names - known):
            if storage.get_modified_time(name) < cutoff:
                storage.delete(name)
                deleted += 1
    if deleted:
        log.info("deleted %d stored media files that no row named", deleted)
    return deleted

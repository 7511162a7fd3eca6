"""A stored file is deleted when its row is, however the row goes.

Deleting a message, a conversation or a member cascades to their MediaFile rows, and so does
a bulk ``QuerySet.delete()``; Django sends ``post_delete`` for each cascaded row (a receiver
stops it from skipping them), so this one receiver covers every path. The file is removed
only after the transaction commits: a rolled-back delete keeps its file.
"""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete

from chat.media.storage import stored_delete


def _delete_file_after_commit(sender, instance, using, **kwargs) -> None:
    transaction.on_commit(partial(stored_delete, instance.storage_name), using=using)


def connect_signals() -> None:
    from chat.models import MediaFile

    post_delete.connect(_delete_file_after_commit, sender=MediaFile, dispatch_uid="media-file-delete")

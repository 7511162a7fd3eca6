"""Collections: named sets of documents a member makes once and searches from any conversation.

A member (or an admin) makes a collection and adds files to it; it is private to its owner
until an admin shares it with groups in the Django admin (chat/admin). Members of those
groups may read its documents and use it in their conversations; only its owner adds,
replaces or removes files. Everyone else is answered ``not_found`` (docs/security.md, T45).
A file uploaded again under the same name replaces the earlier one once it is indexed: the
swap of chunks is one transaction (chat/services/documents.py, ``document_index``), so a
question never sees both or neither.
"""

from __future__ import annotations

import unicodedata

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.errors import CollectionReadOnly, CollectionRefused, NotFound
from chat.models import Collection, Conversation, Document, MediaFile
from chat.selectors import collection_for_user, readable_collection_ids
from chat.services.documents import document_upload

NAME_MAX = 120


def _name_check(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise CollectionRefused(_("Give the collection a name."), code="collection_name_invalid")
    name = " ".join(name.split())
    if len(name) > NAME_MAX or any(unicodedata.category(c).startswith("C") for c in name):
        raise CollectionRefused(
            _("A collection's name is at most %(limit)s printable characters.") % {"limit": NAME_MAX},
            code="collection_name_invalid",
        )
    return name


def collection_create(*, user, name) -> Collection:
    name = _name_check(name)
    if Collection.objects.filter(owner=user).count() >= settings.PARLEY_COLLECTIONS_PER_MEMBER:
        raise CollectionRefused(
            _("You have %(limit)s collections, the most a member may have.")
            % {"limit": settings.PARLEY_COLLECTIONS_PER_MEMBER},
            code="collection_too_many",
        )
    try:
        with transaction.atomic():
            return Collection.objects.create(owner=user, name=name)
    except IntegrityError:
        raise CollectionRefused(
            _("You already have a collection named %(name)s.") % {"name": name}, code="collection_name_taken"
        ) from None


def collection_rename(*, user, collection_id, name) -> Collection:
    """Give the member's own collection another name (unique among theirs)."""
    collection = collection_owned(user=user, collection_id=collection_id)
    name = _name_check(name)
    if name == collection.name:
        return collection
    if Collection.objects.filter(owner=user, name=name).exclude(pk=collection.pk).exists():
        raise CollectionRefused(
            _("You already have a collection named %(name)s.") % {"name": name}, code="collection_name_taken"
        )
    try:
        with transaction.atomic():
            Collection.objects.filter(pk=collection.pk).update(name=name, updated_at=timezone.now())
    except IntegrityError:  # a rename racing another to the same name
        raise CollectionRefused(
            _("You already have a collection named %(name)s.") % {"name": name}, code="collection_name_taken"
        ) from None
    collection.name = name
    return collection


def collection_owned(*, user, collection_id) -> Collection:
    """The collection, for a change: NotFound if the member may not read it, CollectionReadOnly
    if they may read it but do not own it."""
    collection = collection_for_user(user=user, collection_id=collection_id)
    if collection.owner_id != user.pk:
        raise CollectionReadOnly()
    return collection


def collection_delete(*, user, collection_id) -> None:
    """Delete the collection, its files, their chunks and vectors (and the citations of them)."""
    collection = collection_owned(user=user, collection_id=collection_id)
    with transaction.atomic():
        collections_files_delete(Collection.objects.filter(pk=collection.pk))
        collection.delete()


def collections_files_delete(collections) -> None:
    """The stored originals of the collections' files (their rows, chunks and vectors go with
    the collections, by cascade); the admin's delete calls it too."""
    MediaFile.objects.filter(document__collection__in=collections).delete()


def collection_document_add(*, user, collection_id, name, data: bytes) -> Document:
    """Save a file into the member's collection for indexing (the caller enqueues the job)."""
    collection = collection_owned(user=user, collection_id=collection_id)
    files = Document.objects.filter(collection=collection).exclude(status=Document.Status.FAILED)
    if files.count() >= settings.PARLEY_COLLECTION_MAX_DOCUMENTS:
        raise CollectionRefused(
            _("A collection holds at most %(limit)s files.") % {"limit": settings.PARLEY_COLLECTION_MAX_DOCUMENTS},
            code="collection_too_many_files",
        )
    document = document_upload(user=user, name=name, data=data, collection=collection)
    Collection.objects.filter(pk=collection.pk).update(updated_at=timezone.now())
    return document


def collections_use(*, user, conversation: Conversation, collection_ids) -> list[Collection]:
    """Make ``conversation`` search the collections ``collection_ids`` (inside the caller's
    transaction: a collection the member may not read refuses the whole turn, NotFound)."""
    if not collection_ids:
        return []
    if not isinstance(collection_ids, list) or not all(isinstance(i, str) for i in collection_ids):
        raise CollectionRefused(_("The collections must be a list of ids."), code="bad_frame")
    found = [collection_for_user(user=user, collection_id=i) for i in dict.fromkeys(collection_ids)]
    already = set(conversation.collections.values_list("pk", flat=True))
    if len(already | {c.pk for c in found}) > settings.PARLEY_COLLECTIONS_PER_CONVERSATION:
        raise CollectionRefused(
            _("A conversation searches at most %(limit)s collections.")
            % {"limit": settings.PARLEY_COLLECTIONS_PER_CONVERSATION},
            code="collection_too_many",
        )
    conversation.collections.add(*[c for c in found if c.pk not in already])
    if not conversation.has_documents:
        Conversation.objects.filter(pk=conversation.pk).update(has_documents=True)
        conversation.has_documents = True
    return found


def collection_stop_using(*, user, conversation: Conversation, collection_id) -> None:
    """The conversation no longer searches the collection (a stranger's id: NotFound)."""
    try:
        removed = conversation.collections.through.objects.filter(
            conversation_id=conversation.pk, collection_id=collection_id
        ).delete()[0]
    except (ValueError, TypeError):
        removed = 0
    if not removed:
        raise NotFound()


def conversation_collections(*, user, conversation: Conversation) -> list[Collection]:
    """The collections the conversation searches that the member may still read."""
    return list(
        conversation.collections.filter(pk__in=readable_collection_ids(user.pk))
        .select_related("owner")
        .order_by("name")
    )

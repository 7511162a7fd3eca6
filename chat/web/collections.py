"""The collections' endpoints: list, make, read, delete; add a file; stop using one in a chat.

Thin: every id goes through a selector or service that answers ``not_found`` for a collection
the member may not read (T45) and ``collection_read_only`` (403) for a change by a member who
may read it but does not own it. A collection is picked for a conversation in the composer:
the ``send`` frame's ``collection_ids`` (docs/websocket-protocol.md).
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.utils.translation import gettext as _

from chat import selectors
from chat.errors import DocumentRefused
from chat.jobs.documents import document_enqueue
from chat.models import Document
from chat.serializers import collection_to_dict, document_to_dict
from chat.services import collections as service
from chat.web.api import _json_body, api_view


@api_view("GET", "POST")
def collection_list(request):
    if request.method == "POST":
        collection = service.collection_create(user=request.user, name=_json_body(request).get("name"))
        return JsonResponse({"collection": collection_to_dict(collection, user=request.user)}, status=201)
    found = selectors.collections_for_user(user=request.user)
    return JsonResponse({"collections": [collection_to_dict(c, user=request.user) for c in found]})


@api_view("GET", "DELETE")
def collection_detail(request, collection_id):
    if request.method == "DELETE":
        service.collection_delete(user=request.user, collection_id=collection_id)
        return JsonResponse({}, status=204)
    collection = selectors.collection_for_user(user=request.user, collection_id=collection_id)
    documents = Document.objects.filter(collection=collection).order_by("name", "created_at")
    return JsonResponse(
        {
            "collection": collection_to_dict(collection, user=request.user),
            "documents": [document_to_dict(d) for d in documents],
        }
    )


@api_view("POST")
def collection_document_create(request, collection_id):
    upload = request.FILES.get("file")
    if upload is None:
        raise DocumentRefused(_("Choose a file to attach."), code="document_empty")
    if upload.size > settings.PARLEY_DOCUMENT_MAX_BYTES:
        raise DocumentRefused(
            _("The file is %(size)s bytes; the limit is %(limit)s.")
            % {"size": upload.size, "limit": settings.PARLEY_DOCUMENT_MAX_BYTES},
            code="document_too_large",
        )
    document = service.collection_document_add(
        user=request.user,
        collection_id=collection_id,
        name=upload.name,
        data=upload.read(settings.PARLEY_DOCUMENT_MAX_BYTES + 1),
    )
    transaction.on_commit(lambda: document_enqueue(document))
    return JsonResponse({"document": document_to_dict(document)}, status=201)


@api_view("GET")
def conversation_collection_list(request, conversation_id):
    """The collections the conversation searches that the member may still read ("Save as
    preset" offers them first)."""
    conversation = selectors.conversation_for_user(user=request.user, conversation_id=conversation_id)
    found = service.conversation_collections(user=request.user, conversation=conversation)
    return JsonResponse({"collections": [{"id": str(c.pk), "name": c.name} for c in found]})


@api_view("DELETE")
def conversation_collection(request, conversation_id, collection_id):
    """The conversation stops searching the collection."""
    conversation = selectors.conversation_for_user(user=request.user, conversation_id=conversation_id)
    service.collection_stop_using(user=request.user, conversation=conversation, collection_id=collection_id)
    return JsonResponse({}, status=204)

"""The collections' endpoints: list, make, read, rename, delete; add a file; use one in a chat
or stop using it.

Thin: every id goes through a selector or service that answers ``not_found`` for a collection
the member may not read (T45) and ``collection_read_only`` (403) for a change by a member who
may read it but does not own it. A collection is picked for a conversation in the composer:
the ``send`` frame's ``collection_ids`` (docs/websocket-protocol.md).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from chat import selectors
from chat.errors import DocumentRefused, NotFound
from chat.jobs.documents import document_enqueue
from chat.models import Document
from chat.serializers import collection_to_dict, document_to_dict
from chat.services import collections as service
from chat.web.api import _json_body, api_view
from chat.web.ui_text import collections_catalog


@api_view("GET", "POST")
def collection_list(request):
    if request.method == "POST":
        collection = service.collection_create(user=request.user, name=_json_body(request).get("name"))
        return JsonResponse({"collection": collection_to_dict(collection, user=request.user)}, status=201)
    found = selectors.collections_for_user(user=request.user)
    return JsonResponse({"collections": [collection_to_dict(c, user=request.user) for c in found]})


@api_view("GET", "PATCH", "DELETE")
def collection_detail(request, collection_id):
    if request.method == "DELETE":
        service.collection_delete(user=request.user, collection_id=collection_id)
        return JsonResponse({}, status=204)
    if request.method == "PATCH":
        collection = service.collection_rename(
            user=request.user, collection_id=collection_id, name=_json_body(request).get("name")
        )
        return JsonResponse({"collection": collection_to_dict(collection, user=request.user)})
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


@api_view("PUT", "DELETE")
def conversation_collection(request, conversation_id, collection_id):
    """PUT: the conversation searches the collection from its next turn on (the composer's
    "Collections" picker saves the choice at once); DELETE: it stops searching it."""
    conversation = selectors.conversation_for_user(user=request.user, conversation_id=conversation_id)
    if request.method == "PUT":
        with transaction.atomic():
            (collection,) = service.collections_use(
                user=request.user, conversation=conversation, collection_ids=[str(collection_id)]
            )
        return JsonResponse({"collection": collection_to_dict(collection, user=request.user)})
    service.collection_stop_using(user=request.user, conversation=conversation, collection_id=collection_id)
    return JsonResponse({}, status=204)


@login_required
@require_GET
def collections_page(request, collection_id=None):
    """The member's collections: make, rename, delete, upload, replace and remove files
    (static/app/collections.js). A collection the member may not read is a 404 (T45)."""
    if collection_id is not None:
        try:
            selectors.collection_for_user(user=request.user, collection_id=collection_id)
        except NotFound:
            raise Http404 from None
    config = {
        "csrf_token": get_token(request),
        "collection_id": None if collection_id is None else str(collection_id),
        "user": {"name": request.user.get_short_name() or request.user.get_username()},
        "max_file_bytes": settings.PARLEY_DOCUMENT_MAX_BYTES,
        "urls": {
            "socket": "/ws/chat/",
            "login": reverse("login"),
            "page": reverse("chat:collections"),
            "api_collections": reverse("chat:api_collections"),
            "api_documents": reverse("chat:api_documents"),
        },
    }
    return render(request, "chat/collections.html", {"parley_config": config, "parley_i18n": collections_catalog()})

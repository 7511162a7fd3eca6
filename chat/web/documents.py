"""The documents' endpoints: upload a file, read its state, delete it, open a cited passage.

Thin: the service checks and saves, the job (chat/jobs/documents.py) is enqueued once the
row is committed, and every read goes through an ownership selector (404 for another
member's file, passage or citation: T48).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from chat import selectors
from chat.errors import CollectionReadOnly, DocumentRefused, NotFound
from chat.jobs.documents import document_enqueue
from chat.serializers import document_to_dict
from chat.services.documents import document_upload
from chat.web.api import api_view


@api_view("POST")
def document_create(request):
    upload = request.FILES.get("file")
    if upload is None:
        raise DocumentRefused(_("Choose a file to attach."), code="document_empty")
    if upload.size > settings.PARLEY_DOCUMENT_MAX_BYTES:
        raise DocumentRefused(
            _("The file is %(size)s bytes; the limit is %(limit)s.")
            % {"size": upload.size, "limit": settings.PARLEY_DOCUMENT_MAX_BYTES},
            code="document_too_large",
        )
    document = document_upload(
        user=request.user,
        name=upload.name,
        data=upload.read(settings.PARLEY_DOCUMENT_MAX_BYTES + 1),
        conversation_id=request.POST.get("conversation_id") or None,
    )
    transaction.on_commit(lambda: document_enqueue(document))
    return JsonResponse({"document": document_to_dict(document)}, status=201)


@api_view("GET", "DELETE")
def document_detail(request, document_id):
    document = selectors.document_for_user(user=request.user, document_id=document_id)
    if request.method == "DELETE":
        if document.owner_id != request.user.pk:
            raise CollectionReadOnly()  # a file of a collection shared with the member
        if document.file_id:
            document.file.delete()  # the stored original (chat/media/signals.py)
        document.delete()  # its chunks and vectors go with it
        return JsonResponse({}, status=204)
    return JsonResponse({"document": document_to_dict(document)})


@require_GET
@login_required
def passage(request, message_id, number):
    """Source ``number`` of a reply: the file, the page and the quoted text, as inert text."""
    try:
        citation = selectors.citation_for_user(user=request.user, message_id=message_id, number=number)
    except NotFound:
        raise Http404 from None
    chunk = citation.chunk
    return render(
        request,
        "chat/passage.html",
        {"citation": citation, "chunk": chunk, "document": chunk.document, "message_id": message_id},
    )

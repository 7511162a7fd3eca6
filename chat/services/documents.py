"""Documents: accepting a member's file, indexing it in a background job, attaching it to a turn.

``document_upload`` checks what can be checked at once (name, kind, size, files waiting to be
sent), stores the original in the private media store (chat/media/: the member's quota, the
type sniffed from the bytes) and saves the document as ``queued``; the caller enqueues
``document_index`` (chat/jobs/documents.py). The job claims the document with
``select_for_update(skip_locked=True)`` and a numbered attempt, reads it, chunks it, embeds
the passages in batches through the model-call core (billed to the uploader, kind
``embedding``, purpose ``document``) and writes every chunk in one transaction, only if its
attempt still holds the claim: a worker killed mid-file leaves no chunk behind, and the
document is taken up again once its lease (``PARLEY_DOCUMENT_LEASE_SECONDS``) ran out
without a heartbeat (``documents_resume``). Two workers never index one file twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.core.calls import Units, model_call
from chat.core.grants import granted_copies
from chat.errors import DocumentRefused, NoProvider, NotFound, ParleyError
from chat.media.services import media_save
from chat.media.storage import stored_open
from chat.models import Chunk, Collection, Conversation, Document, MediaFile, ModelKind, UsageKind
from chat.selectors import preset_collections_for_user, preset_for_user, readable_collection_ids
from chat.services.chunking import chunk_pages
from chat.services.extract import Page, extract, kind_of, name_check, sniff
from chat.services.voice import audio_document_check, audio_transcript
from chat.upstream import client

logger = logging.getLogger(__name__)
PREFERRED_EMBEDDING = "text-embedding-3-small"


def document_upload(*, user, name, data: bytes, conversation_id=None, collection=None) -> Document:
    """Save a member's file for indexing, or raise a ParleyError saying why not (DocumentRefused,
    or the media store's own: media_quota_exceeded, media_too_large, media_type_unsupported).
    ``collection``: one the member owns (chat/services/collections.py checked it and its limit)."""
    name = name_check(name)
    kind = kind_of(name)
    if kind == "audio":
        audio_document_check(data, user=user)  # a model, type, truncation, length: before any job
    else:
        sniff(kind, data)
    conversation = None
    if collection is not None:
        media = media_save(owner=user, content=data, name=name, kind=MediaFile.Kind.DOCUMENT)
        try:
            return Document.objects.create(
                owner=user, collection=collection, name=name, kind=kind, size=len(data), sha256=media.sha256, file=media
            )
        except BaseException:
            media.delete()
            raise
    if conversation_id:
        conversation = Conversation.objects.filter(pk=conversation_id, owner=user).first()
        if conversation is None:
            raise NotFound()
    # Files waiting to be sent (the member's storage is the media store's quota, checked by media_save).
    waiting = Document.objects.filter(owner=user, message__isnull=True).exclude(status=Document.Status.FAILED)
    if conversation is not None:
        waiting = waiting.filter(Q(conversation__isnull=True) | Q(conversation=conversation))
    else:
        waiting = waiting.filter(conversation__isnull=True)
    if waiting.count() >= settings.PARLEY_DOCUMENT_MAX_FILES_PER_MESSAGE:
        raise DocumentRefused(
            _("A message can carry at most %(limit)s files.")
            % {"limit": settings.PARLEY_DOCUMENT_MAX_FILES_PER_MESSAGE},
            code="document_too_many_files",
        )
    # Stored first, outside any transaction (media_save's advice), within the member's quota.
    media_kind = MediaFile.Kind.AUDIO if kind == "audio" else MediaFile.Kind.DOCUMENT
    media = media_save(owner=user, content=data, name=name, kind=media_kind, conversation=conversation)
    try:
        with transaction.atomic():
            if conversation is not None and not conversation.has_documents:
                Conversation.objects.filter(pk=conversation.pk).update(has_documents=True)
            return Document.objects.create(
                owner=user,
                conversation=conversation,
                name=name,
                kind=kind,
                size=len(data),
                sha256=media.sha256,
                file=media,
            )
    except BaseException:
        media.delete()
        raise


def documents_attach(*, user, conversation: Conversation, message, document_ids) -> list[Document]:
    """Attach the member's uploaded documents to ``message`` (in ``conversation``)."""
    if not document_ids:
        return []
    if not isinstance(document_ids, list) or len(document_ids) > settings.PARLEY_DOCUMENT_MAX_FILES_PER_MESSAGE:
        raise DocumentRefused(
            _("A message can carry at most %(limit)s files.")
            % {"limit": settings.PARLEY_DOCUMENT_MAX_FILES_PER_MESSAGE},
            code="document_too_many_files",
        )
    ids = [str(i) for i in document_ids]
    try:
        documents = list(Document.objects.filter(owner=user, pk__in=ids))
    except Exception:  # noqa: BLE001 - a malformed id is a missing document
        raise NotFound() from None
    if len(documents) != len(set(ids)) or any(
        d.conversation_id not in (None, conversation.pk) or d.message_id not in (None, message.pk) for d in documents
    ):
        raise NotFound()
    waiting = [d for d in documents if d.status != Document.Status.READY]
    if waiting:
        raise DocumentRefused(
            _("%(name)s is not ready yet: wait until it is indexed, or remove it.") % {"name": waiting[0].name},
            code="document_not_ready",
        )
    Document.objects.filter(pk__in=[d.pk for d in documents]).update(conversation=conversation, message=message)
    if not conversation.has_documents:
        Conversation.objects.filter(pk=conversation.pk).update(has_documents=True)
        conversation.has_documents = True
    return documents


def document_fail(document: Document, error: ParleyError, *, attempt: int | None = None) -> None:
    rows = Document.objects.filter(pk=document.pk)
    if attempt is not None:
        rows = rows.filter(attempt=attempt)
    if rows.update(
        status=Document.Status.FAILED,
        error_code=error.code[:64],
        error_message=str(error.message)[:500],
        claimed_at=None,
        updated_at=timezone.now(),
    ):
        # A file that cannot be used takes no room: its stored original goes.
        MediaFile.objects.filter(document__pk=document.pk).delete()


def document_claim(document_id) -> Document | None:
    """Take the document for this worker: queued, or unfinished with an expired lease. None if
    another worker holds it (skip_locked: no waiting) or it is done."""
    cutoff = timezone.now() - timedelta(seconds=settings.PARLEY_DOCUMENT_LEASE_SECONDS)
    with transaction.atomic():
        document = (
            Document.objects.select_for_update(skip_locked=True)
            .filter(pk=document_id)
            .filter(
                Q(status=Document.Status.QUEUED)
                | Q(status__in=[Document.Status.READING, Document.Status.INDEXING], claimed_at__lt=cutoff)
            )
            .first()
        )
        if document is None:
            return None
        now = timezone.now()
        # Conditional on the attempt read: on SQLite, where there are no row locks, the second
        # of two racing workers updates nothing and walks away.
        taken = Document.objects.filter(pk=document.pk, attempt=document.attempt).update(
            status=Document.Status.READING, attempt=document.attempt + 1, claimed_at=now, updated_at=now
        )
        if not taken:
            return None
        document.attempt += 1
        document.status = Document.Status.READING
        document.claimed_at = now
        return document


def _heartbeat(document: Document, **changes) -> None:
    """Show the claim is alive (and change the status); raise if another attempt took it."""
    now = timezone.now()
    if not Document.objects.filter(pk=document.pk, attempt=document.attempt).update(
        claimed_at=now, updated_at=now, **changes
    ):
        raise _LostClaim()


class _LostClaim(Exception):
    pass


def embedding_model(user):
    """The embedding model the admin picked (PARLEY_EMBEDDING_MODEL), else the catalog's first."""
    return embedding_model_of(user.pk)


def embedding_model_of(user_id: int, *, recheck: bool = True):
    """``embedding_model`` for a member's id, read from the process's copy of the catalog
    (``granted_copies``: no query while the copy holds; ``recheck`` as there)."""
    rows = granted_copies(user_id=user_id, kind=ModelKind.EMBEDDING, recheck=recheck)
    if settings.PARLEY_EMBEDDING_MODEL:
        rows = [r for r in rows if r.model_id == settings.PARLEY_EMBEDDING_MODEL]
    row = next((r for r in rows if r.model_id == PREFERRED_EMBEDDING), None) or (rows[0] if rows else None)
    if row is None:
        raise NoProvider(_("No embedding model is available: an admin must enable one."), code="no_embedding_model")
    return row.instance()


def embedding_dimensions(model) -> int:
    """The length of the vectors ``model`` answers: its own when fixed (``ChatModel.dimensions``,
    a local model), else PARLEY_EMBEDDING_DIMENSIONS, which is asked of it."""
    return model.dimensions or settings.PARLEY_EMBEDDING_DIMENSIONS


_COLUMN_DIMENSIONS: dict[str, int | None] = {}


def vector_column_dimensions() -> int | None:
    """The size of the passages' ``vector`` column on PostgreSQL (fixed when the table was
    made, from PARLEY_EMBEDDING_DIMENSIONS then), read from the catalog once per process;
    None on SQLite, whose vectors are bytes of any length."""
    if connection.vendor != "postgresql":
        return None
    alias = connection.alias
    if alias not in _COLUMN_DIMENSIONS:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
                [Chunk._meta.db_table],
            )
            row = cursor.fetchone()
        _COLUMN_DIMENSIONS[alias] = int(row[0]) if row and row[0] and row[0] > 0 else None
    return _COLUMN_DIMENSIONS[alias]


def embedding_fits(model) -> None:
    """Refuse, before any call, a model whose vectors the database cannot hold: on PostgreSQL
    the column's size is fixed (docs/local-models.md, "The vector length")."""
    want, column = embedding_dimensions(model), vector_column_dimensions()
    if column is not None and want != column:
        raise ParleyError(
            _(
                "The embedding model %(model)s answers vectors of %(got)s numbers, and this database "
                "holds vectors of %(want)s: pick another embedding model, or see docs/local-models.md "
                "to change the vector length."
            )
            % {"model": model.model_id, "got": want, "want": column},
            code="embedding_dimensions",
        )


async def embed_texts(*, user, model, texts: list[str], purpose: str) -> list:
    """Vectors for ``texts``, one admitted and settled call per batch (billed to ``user``)."""
    if connection.vendor == "postgresql":  # SQLite holds any length: no trip to the database thread
        await sync_to_async(embedding_fits)(model)
    want = embedding_dimensions(model)
    vectors: list = []
    batch = max(settings.PARLEY_EMBEDDING_BATCH, 1)
    for start in range(0, len(texts), batch):
        part = texts[start : start + batch]
        estimate = Units(input_tokens=sum(_estimate_tokens(t) for t in part))
        async with model_call(
            user=user,
            kind=UsageKind.EMBEDDING,
            estimate=estimate,
            purpose=purpose,
            model=model,
            granted=True,
            rate=False,
        ) as call:
            result = await client.embed(
                call.endpoint,
                model.model_id,
                part,
                user=call.admission.pseudonym,
                # A model of fixed length is not asked for one (llama.cpp ignores the field).
                dimensions=None if model.dimensions else want,
            )
            call.usage = Units(input_tokens=result.prompt_tokens or estimate.input_tokens)
            call.estimated = not result.prompt_tokens
        for vector in result.vectors:
            if len(vector) != want:
                raise ParleyError(
                    _("The embedding model answered vectors of %(got)s numbers; Parley is set up for %(want)s.")
                    % {"got": len(vector), "want": want},
                    code="embedding_dimensions",
                )
        vectors.extend(result.vectors)
    return vectors


def _estimate_tokens(text: str) -> int:
    from chat import tokens

    return tokens.count_tokens(text, tokens.O200K)


def document_index(document_id, *, after_batch=None) -> str:
    """Index one document (the job's body); returns its final status, or "skipped".

    ``after_batch`` is called after each embedding batch (tests use it to stop mid-file).
    """
    document = document_claim(document_id)
    if document is None:
        return "skipped"
    user = document.owner
    try:
        pages = _pages(document, user)
        pieces = chunk_pages(pages, settings.PARLEY_DOCUMENT_CHUNK_TOKENS)
        _heartbeat(document, status=Document.Status.INDEXING, pages=sum(1 for p in pages if p.number) or 0)
        model = embedding_model(user)
        vectors: list = []
        batch = max(settings.PARLEY_EMBEDDING_BATCH, 1)
        for start in range(0, len(pieces), batch):
            part = [p.text for p in pieces[start : start + batch]]
            vectors.extend(async_to_sync(embed_texts)(user=user, model=model, texts=part, purpose="document"))
            _heartbeat(document)
            if after_batch is not None:
                after_batch(start // batch)
        with transaction.atomic():
            held = Document.objects.select_for_update().filter(pk=document.pk, attempt=document.attempt).first()
            if held is None:
                raise _LostClaim()
            Chunk.objects.filter(document=held).delete()
            Chunk.objects.bulk_create(
                [
                    Chunk(
                        document=held,
                        owner_id=held.owner_id,
                        ordinal=i,
                        page=p.page,
                        text=p.text,
                        tokens=p.tokens,
                        embedding=v,
                    )
                    for i, (p, v) in enumerate(zip(pieces, vectors, strict=True))
                ],
                batch_size=500,
            )
            if held.conversation_id:
                # A file attached again under the same name replaces the earlier one and its chunks.
                replaced = Document.objects.filter(
                    owner_id=held.owner_id,
                    conversation_id=held.conversation_id,
                    name=held.name,
                    status=Document.Status.READY,
                ).exclude(pk=held.pk)
                MediaFile.objects.filter(document__in=replaced).delete()
                replaced.delete()
            if held.collection_id:
                # A changed file uploaded again to a collection under the same name: the earlier
                # one's chunks go in the same transaction the new ones become ready in.
                replaced = Document.objects.filter(
                    collection_id=held.collection_id, name=held.name, status=Document.Status.READY
                ).exclude(pk=held.pk)
                MediaFile.objects.filter(document__in=replaced).delete()
                replaced.delete()
            Document.objects.filter(pk=held.pk).update(
                status=Document.Status.READY,
                tokens=sum(p.tokens for p in pieces),
                claimed_at=None,
                error_code="",
                error_message="",
                updated_at=timezone.now(),
            )
        return Document.Status.READY
    except _LostClaim:
        return "skipped"
    except ParleyError as exc:
        document_fail(document, exc, attempt=document.attempt)
        return Document.Status.FAILED


def _pages(document: Document, user) -> list[Page]:
    """The document's text: extracted from the file, or an audio file's transcript."""
    data = _original(document)
    if document.kind != "audio":
        return extract(document.kind, data)
    text = audio_transcript(user=user, data=data)
    if not text.strip():
        raise DocumentRefused(_("No speech was heard in the audio."), code="document_empty")
    return [Page(0, text)]


def _original(document: Document) -> bytes:
    media = MediaFile.objects.filter(pk=document.file_id).first() if document.file_id else None
    if media is None:
        raise DocumentRefused(_("The file is damaged and cannot be read."), code="document_corrupt")
    with stored_open(media.storage_name) as stream:
        return stream.read(settings.PARLEY_DOCUMENT_MAX_BYTES + 1)


def documents_resume() -> list:
    """Documents whose worker died (lease ran out) or whose job was lost: ids to enqueue again."""
    cutoff = timezone.now() - timedelta(seconds=settings.PARLEY_DOCUMENT_LEASE_SECONDS)
    stale = Document.objects.filter(
        status__in=[Document.Status.READING, Document.Status.INDEXING], claimed_at__lt=cutoff
    )
    return list(stale.values_list("pk", flat=True)[:1000])


def question_embedding_model(*, user, conversation_id=None, document_ids=None, collection_ids=None, preset_id=None):
    """The embedding model a question is embedded with when its turn will retrieve passages
    (files or collections attached, or the conversation has documents, or a new chat's preset
    has collections the member may read); None otherwise. One to three reads."""
    if preset_id is not None and conversation_id is None:
        try:
            preset = preset_for_user(user=user, preset_id=preset_id)
        except NotFound:
            preset = None  # turn_start says not_found
        if preset is not None:
            readable, _skipped = preset_collections_for_user(user=user, preset=preset)
            extra = [str(c.pk) for c in readable]
            if extra:
                given = collection_ids if isinstance(collection_ids, list) else []
                collection_ids = extra + [i for i in given if isinstance(i, str)]
    if collection_ids and not document_ids and conversation_id is None:
        # Only a collection the member may read is worth a call (another's is refused next).
        ids = [i for i in collection_ids if isinstance(i, str)] if isinstance(collection_ids, list) else []
        try:
            if not Collection.objects.filter(pk__in=ids[:20]).filter(pk__in=readable_collection_ids(user.pk)).exists():
                return None
        except (ValueError, ValidationError):
            return None
    elif not document_ids and not collection_ids:
        if conversation_id is None:
            return None
        try:
            if not Conversation.objects.filter(pk=conversation_id, owner=user, has_documents=True).exists():
                return None
        except (ValueError, ValidationError):
            return None  # a malformed id: turn_start says not_found
    try:
        return embedding_model_of(user.pk, recheck=False)  # none: the question is not embedded
    except ParleyError:
        return None


async def question_vector(
    *, user, question, conversation_id=None, document_ids=None, collection_ids=None, preset_id=None
):
    """The question's embedding for retrieval, computed before the turn's trip to the database
    thread and outside any transaction (an upstream call must not hold either). None when the
    turn retrieves nothing, or when the embedding call is refused or fails: retrieval then
    ranks by keywords alone."""
    if not isinstance(question, str) or not question.strip() or len(question) > settings.PARLEY_MAX_MESSAGE_CHARS:
        return None  # turn_start refuses it with its own code
    model = await sync_to_async(question_embedding_model)(
        user=user,
        conversation_id=conversation_id,
        document_ids=document_ids,
        collection_ids=collection_ids,
        preset_id=preset_id,
    )
    if model is None:
        return None
    try:
        return (await embed_texts(user=user, model=model, texts=[question], purpose="retrieval"))[0]
    except ParleyError as exc:
        logger.info("question not embedded (%s): keyword ranking only", exc.code)
        return None

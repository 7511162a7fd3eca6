"""Documents: what alice can attach, what is refused and why, and how a file becomes passages.

Each refusal has its stable code and leaves no chunk behind; the process lives on. See
docs/security.md, "Documents" (T45, T47, T48, T51).
"""

from __future__ import annotations

import pytest

from chat.errors import DocumentRefused, NotFound, ParleyError
from chat.models import Chunk, Conversation, Document, MediaFile, Reservation, UsageRecord
from chat.services.documents import document_claim, document_index, document_upload, documents_resume
from chat.services.retrieval import passages_search
from tests.documents_support import (
    FILLER,
    docx_with,
    docx_zip_bomb,
    long_pdf,
    make_embedding_model,
    media_in_folder,
    pdf_with_pages,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    media_in_folder(settings, tmp_path / "media")


FACT = "The launch code of project Heron is BLUE-FALCON-7, kept in the north vault."


@pytest.fixture
def embedding(upstream_model):
    return make_embedding_model(upstream_model.provider)


def upload_and_index(user, name, data, **kw) -> Document:
    document = document_upload(user=user, name=name, data=data, **kw)
    document_index(document.pk)
    document.refresh_from_db()
    return document


# --- what is read ---------------------------------------------------------------------------------


def test_a_pdf_is_read_page_by_page_and_its_passages_remember_their_page(alice, embedding, fake_upstream):
    document = upload_and_index(alice, "report.pdf", long_pdf(60, {41: FACT}))

    assert document.status == Document.Status.READY
    assert document.pages == 60
    assert document.file.original_name == "report.pdf"  # the original stays, in the media store
    fact = Chunk.objects.get(document=document, text__contains="BLUE-FALCON-7")
    assert fact.page == 41
    assert fact.owner == alice
    assert len(fact.embedding) == 256


def test_indexing_is_billed_to_the_uploader_as_embedding_usage_in_batches(alice, embedding, fake_upstream, settings):
    settings.PARLEY_EMBEDDING_BATCH = 8
    document = upload_and_index(alice, "report.pdf", long_pdf(30, {}))

    chunks = Chunk.objects.filter(document=document).count()
    requests = [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]
    assert len(requests) == -(-chunks // 8)
    assert all(len(r.body["input"]) <= 8 and r.body["model"] == "text-embedding-3-small" for r in requests)
    records = UsageRecord.objects.filter(user=alice, kind="embedding", purpose="document")
    assert records.count() == len(requests)
    assert sum(r.prompt_tokens for r in records) > 0
    assert not Reservation.objects.exists()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("notes.md", b"# Heron\n\nThe launch code is BLUE-FALCON-7.", "BLUE-FALCON-7"),
        ("table.csv", b"project,code\nHeron,BLUE-FALCON-7\n", "Heron,BLUE-FALCON-7"),
        ("page.html", b"<p>The code is <b>BLUE-FALCON-7</b></p><script>alert(1)</script>", "BLUE-FALCON-7"),
        ("tool.py", b"CODE = 'BLUE-FALCON-7'\n", "BLUE-FALCON-7"),
        ("memo.docx", docx_with(["Memo", "The launch code is BLUE-FALCON-7."]), "BLUE-FALCON-7"),
    ],
)
def test_text_markdown_csv_html_code_and_docx_are_read_as_text(alice, embedding, fake_upstream, name, data, expected):
    document = upload_and_index(alice, name, data)

    assert document.status == Document.Status.READY
    text = " ".join(Chunk.objects.filter(document=document).values_list("text", flat=True))
    assert expected in text
    assert "alert(1)" not in text  # HTML is text: its scripts are neither run nor kept


# --- what is refused at once ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd.txt", "a/b.txt", "a\\b.txt", "bad\x00name.txt", "tab\tname.txt", "", " ", "..", "x" * 300 + ".txt"],
)
def test_a_name_with_a_path_or_control_characters_is_refused(alice, name):
    with pytest.raises(DocumentRefused) as refused:
        document_upload(user=alice, name=name, data=b"hello")
    assert refused.value.code == "document_bad_name"
    assert not Document.objects.exists()


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("virus.exe", b"MZ...", "document_type_unsupported"),
        ("noext", b"hello", "document_type_unsupported"),
        ("report.pdf", b"just some text, not a PDF", "document_type_mismatch"),
        ("notes.txt", pdf_with_pages(["hi"]), "document_type_mismatch"),
        ("memo.docx", b"plain text pretending", "document_type_mismatch"),
        ("binary.txt", b"\x00\x01\x02 binary", "document_type_mismatch"),
        ("empty.txt", b"", "document_empty"),
        ("fake.docx", b"PK\x03\x04 not really a zip at all", "media_type_unsupported"),
    ],
)
def test_a_file_whose_content_does_not_match_its_name_is_refused(alice, name, data, code):
    with pytest.raises(ParleyError) as refused:
        document_upload(user=alice, name=name, data=data)
    assert refused.value.code == code
    assert refused.value.message
    assert not Document.objects.exists()


def test_a_file_over_the_size_limit_is_refused(alice, settings):
    settings.PARLEY_DOCUMENT_MAX_BYTES = 1000
    with pytest.raises(DocumentRefused) as refused:
        document_upload(user=alice, name="big.txt", data=b"a" * 1001)
    assert refused.value.code == "document_too_large"
    assert "1000" in refused.value.message


def test_a_member_over_their_storage_is_refused_and_bob_is_not_counted(alice, bob, settings):
    settings.PARLEY_MEDIA_QUOTA_BYTES = 2500  # documents count against the member's file storage
    document_upload(user=bob, name="bob.txt", data=b"b" * 2000)
    document_upload(user=alice, name="one.txt", data=b"a" * 2000)
    with pytest.raises(ParleyError) as refused:
        document_upload(user=alice, name="two.txt", data=b"a" * 501)
    assert refused.value.code == "media_quota_exceeded"
    assert Document.objects.filter(owner=alice).count() == 1


def test_more_files_than_a_message_may_carry_are_refused(alice, settings):
    settings.PARLEY_DOCUMENT_MAX_FILES_PER_MESSAGE = 2
    document_upload(user=alice, name="one.txt", data=b"one")
    document_upload(user=alice, name="two.txt", data=b"two")
    with pytest.raises(DocumentRefused) as refused:
        document_upload(user=alice, name="three.txt", data=b"three")
    assert refused.value.code == "document_too_many_files"


def test_bob_cannot_upload_into_alices_conversation(alice, bob, upstream_model):
    from chat.models import Conversation

    conversation = Conversation.objects.create(owner=alice, model=upstream_model)
    with pytest.raises(NotFound):
        document_upload(user=bob, name="x.txt", data=b"x", conversation_id=conversation.pk)


# --- what is refused while reading: failed with the reason, nothing half-indexed -------------------


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("locked.pdf", pdf_with_pages(["secret plans"], password="s3cret"), "document_encrypted"),
        ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage \xff\xfe trailer", "document_corrupt"),
        ("truncated.pdf", long_pdf(3, {})[:400], "document_corrupt"),
        ("bomb.docx", docx_zip_bomb(), "document_zip_bomb"),
        ("blank.pdf", pdf_with_pages([""]), "document_empty"),
    ],
)
def test_a_file_that_cannot_be_read_fails_with_its_reason_and_leaves_no_chunk(
    alice, embedding, fake_upstream, name, data, code
):
    document = upload_and_index(alice, name, data)

    assert document.status == Document.Status.FAILED
    assert document.error_code == code
    assert document.error_message
    assert document.file is None and not MediaFile.objects.exists()  # its stored original is gone
    assert not Chunk.objects.exists()
    assert not [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]


def test_a_pdf_over_the_page_limit_fails_with_its_reason(alice, embedding, settings):
    settings.PARLEY_DOCUMENT_MAX_PAGES = 5
    document = upload_and_index(alice, "long.pdf", long_pdf(6, {}))
    assert (document.status, document.error_code) == (Document.Status.FAILED, "document_too_many_pages")
    assert not Chunk.objects.exists()


def test_an_embedding_call_the_budget_cannot_cover_is_refused_before_any_request(alice, embedding, fake_upstream):
    alice.monthly_token_budget = 50
    alice.save()

    document = upload_and_index(alice, "report.pdf", long_pdf(10, {}))

    assert (document.status, document.error_code) == (Document.Status.FAILED, "quota_exceeded")
    assert not Chunk.objects.exists()
    assert not [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]
    assert not Reservation.objects.exists()


def test_without_an_embedding_model_indexing_fails_and_says_so(alice, upstream_model):
    document = upload_and_index(alice, "notes.txt", b"some notes")
    assert (document.status, document.error_code) == (Document.Status.FAILED, "no_embedding_model")


def test_an_upstream_failure_fails_the_document_and_keeps_nothing(alice, embedding, fake_upstream):
    fake_upstream.always(endpoint="embeddings", status=400, error_message="bad input")
    document = upload_and_index(alice, "notes.txt", b"some notes " * 50)
    assert document.status == Document.Status.FAILED
    assert not Chunk.objects.exists()


# --- jobs: one claim, a lease, the re-upload ----------------------------------------------------


def test_two_workers_never_claim_the_same_document(alice):
    document = document_upload(user=alice, name="notes.txt", data=b"notes")
    first = document_claim(document.pk)
    second = document_claim(document.pk)
    assert first is not None and first.attempt == 1
    assert second is None


def test_a_claim_whose_lease_ran_out_is_taken_up_again_and_the_old_attempt_writes_nothing(
    alice, embedding, fake_upstream, settings
):
    document = document_upload(user=alice, name="notes.txt", data=b"notes about herons " * 40)
    assert document_claim(document.pk) is not None  # a worker that then died
    settings.PARLEY_DOCUMENT_LEASE_SECONDS = 0
    assert documents_resume() == [document.pk]
    assert document_index(document.pk) == Document.Status.READY
    document.refresh_from_db()
    assert document.attempt == 2
    assert Chunk.objects.filter(document=document).count() >= 1
    assert document_index(document.pk) == "skipped"  # a second run of the job does nothing


def test_attaching_a_changed_file_again_replaces_its_chunks(alice, embedding, fake_upstream, upstream_model):
    from chat.models import Conversation

    conversation = Conversation.objects.create(owner=alice, model=upstream_model)
    first = upload_and_index(alice, "policy.md", b"Holidays: 20 days a year.", conversation_id=conversation.pk)
    second = upload_and_index(alice, "policy.md", b"Holidays: 25 days a year.", conversation_id=conversation.pk)

    assert not Document.objects.filter(pk=first.pk).exists()
    assert list(MediaFile.objects.values_list("pk", flat=True)) == [second.file_id]  # the old original went too
    texts = list(Chunk.objects.filter(owner=alice).values_list("text", flat=True))
    assert texts == ["Holidays: 25 days a year."]
    assert second.status == Document.Status.READY


# --- retrieval ---------------------------------------------------------------------------------------


def test_the_passage_that_answers_ranks_first_by_meaning_and_keywords(alice, embedding, fake_upstream, upstream_model):
    from asgiref.sync import async_to_sync

    from chat.models import Conversation
    from chat.services.documents import embed_texts

    conversation = Conversation.objects.create(owner=alice, model=upstream_model)
    upload_and_index(alice, "report.pdf", long_pdf(60, {41: FACT}), conversation_id=conversation.pk)
    question = "What is the launch code of project Heron?"
    vector = async_to_sync(embed_texts)(user=alice, model=embedding, texts=[question], purpose="retrieval")[0]

    for ranked in (
        passages_search(owner_id=alice.pk, conversation_id=conversation.pk, query=question, vector=vector),
        passages_search(owner_id=alice.pk, conversation_id=conversation.pk, query=question, vector=None),
        passages_search(owner_id=alice.pk, conversation_id=conversation.pk, query="", vector=vector),
    ):
        best = Chunk.objects.get(pk=ranked[0], owner=alice)
        assert best.page == 41
        assert "BLUE-FALCON-7" in best.text


def test_bobs_passages_are_never_candidates_in_alices_search_even_in_her_conversation(
    alice, bob, embedding, fake_upstream, upstream_model
):
    from chat.models import Conversation

    conversation = Conversation.objects.create(owner=alice, model=upstream_model)
    upload_and_index(alice, "mine.txt", FILLER.encode(), conversation_id=conversation.pk)
    bobs = upload_and_index(bob, "bobs.txt", (FILLER + FACT).encode())
    # Even a row that wrongly points at alice's conversation stays bob's (T45).
    Document.objects.filter(pk=bobs.pk).update(conversation=conversation)

    ranked = passages_search(
        owner_id=alice.pk, conversation_id=conversation.pk, query="warehouse forklifts heron", vector=None
    )

    assert ranked
    assert not Chunk.objects.filter(pk__in=ranked, owner=bob).exists()
    bobs_search = passages_search(
        owner_id=bob.pk, conversation_id=conversation.pk, query="warehouse forklifts heron", vector=None
    )
    assert bobs_search
    assert not Chunk.objects.filter(pk__in=bobs_search, owner=alice).exists()


def test_a_document_that_names_urls_makes_parley_fetch_nothing(alice, embedding, fake_upstream):
    bait = f"{fake_upstream.base_url}/bait"
    html = f'<p>See <a href="{bait}-link">this</a> <img src="{bait}-image"> <iframe src="{bait}-frame"></iframe></p>'
    document = upload_and_index(alice, "links.html", html.encode())

    assert document.status == Document.Status.READY
    assert not [r for r in fake_upstream.requests if "bait" in r.path]
    assert {r.path.rsplit("/", 1)[-1] for r in fake_upstream.requests} == {"embeddings"}


# --- the question's embedding, before the turn -----------------------------------------------------


def test_turn_start_calls_no_model_for_the_question_it_ranks_with_the_vector_it_is_given(
    alice, embedding, fake_upstream, settings
):
    from chat.services.turns import turn_start
    from tests.fakeupstream.embeddings import embed

    settings.PARLEY_DOCUMENT_CONTEXT_TOKENS = 600
    document = upload_and_index(alice, "report.pdf", long_pdf(60, {41: FACT}))
    before = len(fake_upstream.requests)
    question = "What is the launch code of project Heron?"

    start = turn_start(
        user=alice,
        conversation_id=None,
        client_id="q1",
        content=question,
        document_ids=[str(document.pk)],
        query_vector=embed(question),
    )

    assert fake_upstream.requests[before:] == []  # no embedding call on the database thread
    assert any("BLUE-FALCON-7" in c.text for c in start.plan.prompt.sources.chunks)


def test_question_vector_embeds_only_for_a_turn_that_retrieves_and_only_the_owners(
    alice, bob, embedding, fake_upstream
):
    from asgiref.sync import async_to_sync

    from chat.services.documents import question_vector

    document = upload_and_index(alice, "notes.txt", (FILLER + FACT).encode())
    conversation = Conversation.objects.create(owner=alice, has_documents=True)
    plain = Conversation.objects.create(owner=alice)
    ask = async_to_sync(question_vector)

    assert ask(user=alice, question="launch code?", conversation_id=None) is None
    assert ask(user=alice, question="launch code?", conversation_id=str(plain.pk)) is None
    assert ask(user=bob, question="launch code?", conversation_id=str(conversation.pk)) is None
    assert ask(user=alice, question="launch code?", conversation_id="not-a-uuid") is None
    assert ask(user=alice, question="", document_ids=[str(document.pk)]) is None
    assert len(ask(user=alice, question="launch code?", conversation_id=str(conversation.pk))) == 256
    assert len(ask(user=alice, question="launch code?", document_ids=[str(document.pk)])) == 256

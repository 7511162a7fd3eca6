"""The documents' HTTP endpoints and the passage a citation opens: alice's only."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from chat.models import Chunk, Citation, Conversation, Document, MediaFile, Message
from chat.services.documents import document_index, document_upload
from tests.documents_support import long_pdf, make_embedding_model, media_in_folder

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    media_in_folder(settings, tmp_path / "media")


@pytest.fixture
def embedding(upstream_model):
    return make_embedding_model(upstream_model.provider)


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_alice_uploads_a_file_and_its_indexing_job_is_queued(alice, settings):
    from django_tasks_db.models import DBTaskResult

    response = client_of(alice).post(
        "/api/documents/", {"file": SimpleUploadedFile("notes.md", b"# Notes\n\nHerons nest in trees.")}
    )

    assert response.status_code == 201
    body = response.json()["document"]
    assert (body["name"], body["status"], body["size"]) == ("notes.md", "queued", 30)
    task = DBTaskResult.objects.get()
    assert task.args_kwargs["args"] == [body["id"]]


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("report.pdf", b"not a pdf", "document_type_mismatch"),
        ("program.exe", b"MZ", "document_type_unsupported"),
    ],
)
def test_a_bad_upload_gets_its_code_and_a_readable_message(alice, name, data, code):
    # (Names with paths or control characters are cleaned by Django's parser before the
    # service refuses them again: tests/chat/services/test_documents.py.)
    response = client_of(alice).post("/api/documents/", {"file": SimpleUploadedFile(name, data)})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert not Document.objects.exists()


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(alice, settings):
    settings.PARLEY_DOCUMENT_MAX_BYTES = 10
    response = client_of(alice).post("/api/documents/", {"file": SimpleUploadedFile("a.txt", b"x" * 11)})
    assert response.json()["error"]["code"] == "document_too_large"


def test_an_upload_without_a_session_is_refused(client):
    response = client.post("/api/documents/", {"file": SimpleUploadedFile("a.txt", b"x")})
    assert response.status_code == 401


def test_bob_cannot_read_or_delete_alices_file(alice, bob):
    document = document_upload(user=alice, name="notes.txt", data=b"notes")
    bob_client = client_of(bob)

    assert bob_client.get(f"/api/documents/{document.id}/").status_code == 404
    assert bob_client.delete(f"/api/documents/{document.id}/").status_code == 404
    assert client_of(alice).get(f"/api/documents/{document.id}/").json()["document"]["status"] == "queued"
    assert Document.objects.filter(pk=document.pk).exists()


def test_deleting_a_file_deletes_its_chunks_and_vectors(alice, embedding, fake_upstream):
    document = document_upload(user=alice, name="notes.txt", data=b"notes on herons " * 50)
    document_index(document.pk)
    assert Chunk.objects.filter(document=document).exists()

    assert client_of(alice).delete(f"/api/documents/{document.id}/").status_code == 204

    assert not Chunk.objects.exists()
    assert not MediaFile.objects.exists()


def test_deleting_the_conversation_deletes_its_files_and_chunks(alice, embedding, fake_upstream, upstream_model):
    conversation = Conversation.objects.create(owner=alice, model=upstream_model)
    document = document_upload(user=alice, name="notes.txt", data=b"herons", conversation_id=conversation.pk)
    document_index(document.pk)

    conversation.delete()

    assert not Document.objects.exists()
    assert not MediaFile.objects.exists()
    assert not Chunk.objects.exists()


@pytest.fixture
def cited(alice, embedding, fake_upstream, upstream_model):
    """A reply of alice's that cites page 41 of her PDF as source [1]."""
    conversation = Conversation.objects.create(owner=alice, model=upstream_model)
    hostile = 'Page 41: the code is BLUE-FALCON-7. <script>alert("x")</script><img src=x onerror=alert(1)>'
    document = document_upload(
        user=alice, name="report.pdf", data=long_pdf(45, {41: hostile}), conversation_id=conversation.pk
    )
    document_index(document.pk)
    reply = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="It is [1].")
    chunk = Chunk.objects.get(document=document, page=41)
    Citation.objects.create(message=reply, number=1, chunk=chunk)
    return reply


def test_a_citation_opens_the_file_the_page_and_the_quoted_text_as_inert_text(alice, cited):
    response = client_of(alice).get(f"/sources/{cited.id}/1/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "report.pdf" in page
    assert '<dd class="passage-page">41</dd>' in page
    assert "BLUE-FALCON-7" in page
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page


def test_bob_cannot_open_alices_citation_and_a_missing_number_is_404(alice, bob, cited):
    assert client_of(bob).get(f"/sources/{cited.id}/1/").status_code == 404
    assert client_of(alice).get(f"/sources/{cited.id}/2/").status_code == 404


def test_a_visitor_without_a_session_is_sent_to_sign_in(client, cited):
    response = client.get(f"/sources/{cited.id}/1/")
    assert response.status_code == 302

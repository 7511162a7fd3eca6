"""The collections' HTTP endpoints: alice's answer her; bob outside the shared groups gets 404,
a member of them reads but gets 403 collection_read_only on a change (T45)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from chat.models import Collection, Conversation, Document
from chat.services.collections import collection_create, collection_document_add

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    from tests.documents_support import media_in_folder

    media_in_folder(settings, tmp_path / "media")


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def policies(alice) -> Collection:
    collection = collection_create(user=alice, name="HR policies")
    collection_document_add(
        user=alice, collection_id=str(collection.pk), name="leave.md", data=b"# Leave\n\nSix weeks."
    )
    return collection


def test_alice_makes_a_collection_adds_a_file_and_lists_it(alice):
    client = client_of(alice)

    made = client.post("/api/collections/", {"name": "  Onboarding   notes "}, content_type="application/json")
    assert made.status_code == 201
    collection = made.json()["collection"]
    assert (collection["name"], collection["mine"]) == ("Onboarding notes", True)
    added = client.post(
        f"/api/collections/{collection['id']}/documents/", {"file": SimpleUploadedFile("faq.md", b"# FAQ\n\nYes.")}
    )
    assert added.status_code == 201
    assert added.json()["document"]["collection_id"] == collection["id"]
    listed = client.get("/api/collections/").json()["collections"]
    assert [(c["name"], c["documents"]) for c in listed] == [("Onboarding notes", 1)]
    detail = client.get(f"/api/collections/{collection['id']}/").json()
    assert [d["name"] for d in detail["documents"]] == ["faq.md"]


def test_bob_gets_404_for_alices_private_collection_and_its_files(alice, bob, policies):
    client = client_of(bob)
    document = policies.documents.get()

    assert client.get("/api/collections/").json()["collections"] == []
    assert client.get(f"/api/collections/{policies.pk}/").status_code == 404
    assert client.delete(f"/api/collections/{policies.pk}/").status_code == 404
    upload = client.post(f"/api/collections/{policies.pk}/documents/", {"file": SimpleUploadedFile("x.md", b"# x")})
    assert upload.status_code == 404
    assert client.get(f"/api/documents/{document.pk}/").status_code == 404
    assert client.delete(f"/api/documents/{document.pk}/").status_code == 404
    assert Collection.objects.filter(pk=policies.pk).exists()
    assert policies.documents.count() == 1


def test_a_group_member_reads_the_shared_collection_and_gets_403_on_a_change(alice, bob, policies):
    staff = Group.objects.create(name="Staff")
    bob.groups.add(staff)
    policies.groups.add(staff)
    client = client_of(bob)
    document = policies.documents.get()

    listed = client.get("/api/collections/").json()["collections"]
    assert [(c["name"], c["mine"], c["owner"]) for c in listed] == [("HR policies", False, "alice")]
    assert client.get(f"/api/documents/{document.pk}/").status_code == 200
    for response in (
        client.delete(f"/api/collections/{policies.pk}/"),
        client.delete(f"/api/documents/{document.pk}/"),
        client.post(f"/api/collections/{policies.pk}/documents/", {"file": SimpleUploadedFile("x.md", b"# x")}),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "collection_read_only"
    assert Document.objects.filter(pk=document.pk).exists()


def test_bad_input_gets_its_code(alice, policies):
    client = client_of(alice)

    for body, code in [({"name": ""}, "collection_name_invalid"), ({"name": "HR policies"}, "collection_name_taken")]:
        response = client.post("/api/collections/", body, content_type="application/json")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == code
    response = client.post("/api/collections/", b"[1]", content_type="application/json")
    assert response.json()["error"]["code"] == "bad_request"
    response = client.post(f"/api/collections/{policies.pk}/documents/", {})
    assert response.json()["error"]["code"] == "document_empty"


def test_a_conversation_stops_using_a_collection_only_for_its_owner(alice, bob, policies):
    conversation = Conversation.objects.create(owner=alice)
    policies.conversations.add(conversation)
    url = f"/api/conversations/{conversation.pk}/collections/{policies.pk}/"

    assert client_of(bob).delete(url).status_code == 404
    assert policies.conversations.exists()
    assert client_of(alice).delete(url).status_code == 204
    assert not policies.conversations.exists()
    assert client_of(alice).delete(url).status_code == 404


def test_alice_renames_her_collection_and_bob_cannot(alice, bob, policies):
    url = f"/api/collections/{policies.pk}/"
    other = collection_create(user=alice, name="Onboarding")

    renamed = client_of(alice).patch(url, {"name": "  People   policies "}, content_type="application/json")
    assert renamed.status_code == 200
    assert renamed.json()["collection"]["name"] == "People policies"
    taken = client_of(alice).patch(url, {"name": other.name}, content_type="application/json")
    assert (taken.status_code, taken.json()["error"]["code"]) == (400, "collection_name_taken")
    blank = client_of(alice).patch(url, {"name": "\u0000"}, content_type="application/json")
    assert blank.json()["error"]["code"] == "collection_name_invalid"
    assert client_of(bob).patch(url, {"name": "Mine now"}, content_type="application/json").status_code == 404
    staff = Group.objects.create(name="Staff")
    bob.groups.add(staff)
    policies.groups.add(staff)
    refused = client_of(bob).patch(url, {"name": "Mine now"}, content_type="application/json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "collection_read_only")
    assert Collection.objects.get(pk=policies.pk).name == "People policies"


def test_picking_a_collection_for_a_conversation_saves_it_and_a_stranger_gets_404(alice, bob, policies, settings):
    conversation = Conversation.objects.create(owner=alice)
    url = f"/api/conversations/{conversation.pk}/collections/{policies.pk}/"

    picked = client_of(alice).put(url)
    assert picked.status_code == 200
    assert picked.json()["collection"]["name"] == "HR policies"
    assert client_of(alice).put(url).status_code == 200  # picked again: nothing changes
    assert list(conversation.collections.all()) == [policies]
    conversation.refresh_from_db()
    assert conversation.has_documents  # the next turn retrieves

    # Bob can pick neither alice's collection for his chat nor anything for hers.
    bobs = Conversation.objects.create(owner=bob)
    assert client_of(bob).put(f"/api/conversations/{bobs.pk}/collections/{policies.pk}/").status_code == 404
    assert client_of(bob).put(url).status_code == 404
    assert not bobs.collections.exists()

    settings.PARLEY_COLLECTIONS_PER_CONVERSATION = 1
    second = collection_create(user=alice, name="Second")
    over = client_of(alice).put(f"/api/conversations/{conversation.pk}/collections/{second.pk}/")
    assert (over.status_code, over.json()["error"]["code"]) == (400, "collection_too_many")
    assert list(conversation.collections.all()) == [policies]


def test_the_collections_page_opens_for_its_readers_only(alice, bob, policies, client):
    assert client_of(alice).get("/collections/").status_code == 200
    page = client_of(alice).get(f"/collections/{policies.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert re.search(r'<script type="module" src="[^"]*app/collections[^"]*\.js"', body) and str(policies.pk) in body
    assert " style=" not in body and "<script>" not in body  # CSP: data blocks and modules only
    assert client_of(bob).get(f"/collections/{policies.pk}/").status_code == 404
    assert client_of(bob).get("/collections/").status_code == 200
    assert client.get("/collections/").status_code == 302  # anonymous: to sign-in

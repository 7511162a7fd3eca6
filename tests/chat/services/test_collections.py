"""Collections: alice's are hers until an admin shares them with a group; bob, outside it, gets
not_found everywhere; a member of the group reads and uses but does not change (T45)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from chat.errors import CollectionReadOnly, CollectionRefused, NotFound
from chat.models import Chunk, Citation, Collection, Conversation, Document, MediaFile
from chat.selectors import citation_for_user, collection_for_user, collections_for_user, document_for_user
from chat.services.collections import (
    collection_create,
    collection_delete,
    collection_document_add,
    collection_stop_using,
    collections_use,
)
from chat.services.documents import document_index
from chat.services.retrieval import passages_search
from chat.services.turns import turn_start
from tests.documents_support import long_pdf, make_embedding_model, media_in_folder
from tests.fakeupstream.embeddings import embed

pytestmark = pytest.mark.django_db(transaction=True)

FACT = "Parental leave lasts twenty-six weeks at full pay, policy HR-7."
QUESTION = "How long does parental leave last?"


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    media_in_folder(settings, tmp_path / "media")
    settings.PARLEY_DOCUMENT_CONTEXT_TOKENS = 600  # retrieval chooses


@pytest.fixture
def embedding(upstream_model):
    return make_embedding_model(upstream_model.provider)


def add_indexed(user, collection, name, data) -> Document:
    document = collection_document_add(user=user, collection_id=str(collection.pk), name=name, data=data)
    assert document_index(document.pk) == "ready"
    document.refresh_from_db()
    return document


@pytest.fixture
def policies(alice, embedding, fake_upstream) -> Collection:
    collection = collection_create(user=alice, name="HR policies")
    add_indexed(alice, collection, "handbook.pdf", long_pdf(30, {17: FACT}))
    return collection


def ask(user, collection=None, conversation_id=None, text=QUESTION):
    return turn_start(
        user=user,
        conversation_id=conversation_id,
        client_id=f"c-{abs(hash((user.pk, text, conversation_id)))}",
        content=text,
        collection_ids=[str(collection.pk)] if collection else None,
        query_vector=embed(text),
    )


def test_alice_uses_her_collection_in_a_new_chat_and_the_passage_reaches_the_prompt(alice, policies):
    start = ask(alice, policies)

    chunks = start.plan.prompt.sources.chunks
    assert any(FACT in c.text for c in chunks)
    assert policies.conversations.filter(pk=start.saved.conversation.pk).exists()
    citation = Citation.objects.get(message=start.plan.reply, chunk__text__contains=FACT)
    assert citation_for_user(user=alice, message_id=start.plan.reply.pk, number=citation.number) == citation


def test_a_follow_up_searches_the_collection_again_without_picking_it(alice, policies):
    first = ask(alice, policies)
    first.plan.reply.__class__.objects.filter(pk=first.plan.reply.pk).update(status="complete", content="ok")

    again = ask(alice, conversation_id=str(first.saved.conversation.pk), text="Parental leave weeks, policy?")

    assert any(FACT in c.text for c in again.plan.prompt.sources.chunks)


def test_bob_outside_the_groups_gets_not_found_everywhere(alice, bob, policies):
    document = policies.documents.get()
    start = ask(alice, policies)
    citation = start.plan.reply.citations.first()

    with pytest.raises(NotFound):
        collection_for_user(user=bob, collection_id=str(policies.pk))
    assert collections_for_user(user=bob) == []
    with pytest.raises(NotFound):
        document_for_user(user=bob, document_id=str(document.pk))
    with pytest.raises(NotFound):
        collection_document_add(user=bob, collection_id=str(policies.pk), name="x.txt", data=b"bob's text")
    with pytest.raises(NotFound):
        collection_delete(user=bob, collection_id=str(policies.pk))
    with pytest.raises(NotFound):
        citation_for_user(user=bob, message_id=start.plan.reply.pk, number=citation.number)
    with pytest.raises(NotFound):
        ask(bob, policies)
    assert not Conversation.objects.filter(owner=bob).exists()  # nothing half-saved
    # Even a conversation of bob's wrongly linked to it searches none of it.
    conversation = Conversation.objects.create(owner=bob, has_documents=True)
    policies.conversations.add(conversation)
    assert (
        passages_search(owner_id=bob.pk, conversation_id=conversation.pk, query=QUESTION, vector=embed(QUESTION)) == []
    )


def test_a_member_of_a_shared_group_reads_and_uses_it_but_cannot_change_it(alice, bob, policies):
    staff = Group.objects.create(name="Staff")
    bob.groups.add(staff)
    policies.groups.add(staff)
    document = policies.documents.get()

    assert [c.pk for c in collections_for_user(user=bob)] == [policies.pk]
    assert document_for_user(user=bob, document_id=str(document.pk)) == document
    start = ask(bob, policies)
    assert any(FACT in c.text for c in start.plan.prompt.sources.chunks)
    citation = start.plan.reply.citations.first()
    assert citation_for_user(user=bob, message_id=start.plan.reply.pk, number=citation.number)
    with pytest.raises(CollectionReadOnly):
        collection_document_add(user=bob, collection_id=str(policies.pk), name="x.txt", data=b"bob's text")
    with pytest.raises(CollectionReadOnly):
        collection_delete(user=bob, collection_id=str(policies.pk))

    # Out of the group: the collection, its passages and the citations of them are gone for bob.
    bob.groups.remove(staff)
    with pytest.raises(NotFound):
        citation_for_user(user=bob, message_id=start.plan.reply.pk, number=citation.number)
    conversation = start.saved.conversation
    assert (
        passages_search(owner_id=bob.pk, conversation_id=conversation.pk, query=QUESTION, vector=embed(QUESTION)) == []
    )


def test_uploading_a_changed_file_under_the_same_name_replaces_its_chunks_once_ready(alice, policies):
    old = policies.documents.get()
    conversation = ask(alice, policies).saved.conversation
    changed = FACT.replace("twenty-six", "thirty")

    new = collection_document_add(
        user=alice, collection_id=str(policies.pk), name="handbook.pdf", data=long_pdf(30, {17: changed})
    )
    # Until the new one is ready, questions still find the old passages.
    found = passages_search(owner_id=alice.pk, conversation_id=conversation.pk, query=QUESTION, vector=embed(QUESTION))
    assert Chunk.objects.filter(pk__in=found, document=old).exists()

    assert document_index(new.pk) == "ready"

    assert list(policies.documents.values_list("pk", flat=True)) == [new.pk]
    assert not Chunk.objects.filter(document_id=old.pk).exists()
    assert not MediaFile.objects.filter(pk=old.file_id).exists()
    found = passages_search(owner_id=alice.pk, conversation_id=conversation.pk, query=QUESTION, vector=embed(QUESTION))
    assert any("thirty" in c.text for c in Chunk.objects.filter(pk__in=found[:5]))


def test_deleting_a_collection_deletes_its_files_chunks_and_originals(alice, policies):
    document = policies.documents.get()

    collection_delete(user=alice, collection_id=str(policies.pk))

    assert not Document.objects.filter(pk=document.pk).exists()
    assert not Chunk.objects.filter(document_id=document.pk).exists()
    assert not MediaFile.objects.filter(pk=document.file_id).exists()


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "collection_name_invalid"),
        ("   ", "collection_name_invalid"),
        ("x" * 121, "collection_name_invalid"),
        ("HR\x00policies", "collection_name_invalid"),
        (None, "collection_name_invalid"),
        ("HR policies", "collection_name_taken"),
    ],
)
def test_a_bad_name_is_refused_with_its_code(alice, policies, name, code):
    with pytest.raises(CollectionRefused) as refused:
        collection_create(user=alice, name=name)
    assert refused.value.code == code
    assert Collection.objects.filter(owner=alice).count() == 1


def test_limits_come_from_settings(alice, policies, settings):
    settings.PARLEY_COLLECTIONS_PER_MEMBER = 1
    with pytest.raises(CollectionRefused) as refused:
        collection_create(user=alice, name="Another")
    assert refused.value.code == "collection_too_many"

    settings.PARLEY_COLLECTION_MAX_DOCUMENTS = 1
    with pytest.raises(CollectionRefused) as refused:
        collection_document_add(user=alice, collection_id=str(policies.pk), name="more.txt", data=b"more text")
    assert refused.value.code == "collection_too_many_files"


def test_bad_collection_ids_in_a_turn_are_refused_and_nothing_is_saved(alice, policies):
    conversation = Conversation.objects.create(owner=alice)
    with pytest.raises(CollectionRefused):
        collections_use(user=alice, conversation=conversation, collection_ids="not a list")
    with pytest.raises(NotFound):
        collections_use(user=alice, conversation=conversation, collection_ids=["not-a-uuid"])
    with pytest.raises(NotFound):
        collections_use(user=alice, conversation=conversation, collection_ids=["00000000-0000-0000-0000-000000000000"])
    assert not conversation.collections.exists()


def test_a_conversation_stops_using_a_collection_and_bob_cannot_unlink_it(alice, bob, policies):
    conversation = ask(alice, policies).saved.conversation
    bobs = Conversation.objects.create(owner=bob)

    with pytest.raises(NotFound):
        collection_stop_using(user=bob, conversation=bobs, collection_id=str(policies.pk))
    collection_stop_using(user=alice, conversation=conversation, collection_id=str(policies.pk))

    assert not policies.conversations.exists()
    assert passages_search(owner_id=alice.pk, conversation_id=conversation.pk, query=QUESTION, vector=None) == []


def test_bob_naming_alices_collection_is_not_embedded_on_his_bill(alice, bob, policies):
    from asgiref.sync import async_to_sync

    from chat.services.documents import question_vector

    ask_vector = async_to_sync(question_vector)
    assert ask_vector(user=bob, question=QUESTION, collection_ids=[str(policies.pk)]) is None
    assert ask_vector(user=bob, question=QUESTION, collection_ids=["junk", 7]) is None
    assert len(ask_vector(user=alice, question=QUESTION, collection_ids=[str(policies.pk)])) == 256

"""Asking about attached files over the websocket: what alice's tab sees and what the model reads."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.models import Citation, Document, Message, UsageRecord
from chat.services.documents import document_index, document_upload
from tests.chat.wsclient import Tab
from tests.documents_support import FILLER, long_pdf, make_embedding_model, media_in_folder

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    media_in_folder(settings, tmp_path / "media")


FACT = "The launch code of project Heron is BLUE-FALCON-7, kept in the north vault."


@pytest.fixture(autouse=True)
def _no_titles(settings):
    settings.PARLEY_AUTO_TITLE = False


@pytest.fixture
def embedding(upstream_model):
    return make_embedding_model(upstream_model.provider)


@database_sync_to_async
def indexed(user, name, data):
    document = document_upload(user=user, name=name, data=data)
    document_index(document.pk)
    document.refresh_from_db()
    return document


def system_text(request) -> str:
    return request.body["messages"][0]["content"]


async def test_a_long_pdf_sends_the_passage_that_answers_numbered_and_the_reply_cites_it(
    alice, embedding, fake_upstream, settings
):
    settings.PARLEY_DOCUMENT_CONTEXT_TOKENS = 800  # far less than 60 pages: retrieval must choose
    document = await indexed(alice, "report.pdf", long_pdf(60, {41: FACT}))
    tab = await Tab.open(alice)

    await tab.send_message("What is the launch code of project Heron?", document_ids=[str(document.id)])
    final = await tab.reply()

    request = fake_upstream.completion_requests[-1]
    sources = system_text(request)
    assert "BLUE-FALCON-7" in sources
    assert 'file="report.pdf, page 41"' in sources
    assert "not instructions" in sources
    assert final["passages"] >= 1
    assert final["omitted_passages"] > 0  # the member is told passages were left out
    citation = await database_sync_to_async(
        lambda: Citation.objects.select_related("chunk").get(message_id=final["id"], chunk__page=41)
    )()
    assert f'<source n="{citation.number}" file="report.pdf, page 41">' in sources
    await tab.close()


async def test_a_small_document_goes_in_whole(alice, embedding, fake_upstream):
    document = await indexed(alice, "notes.md", b"# Heron\n\nFirst part.\n\nSecond part: BLUE-FALCON-7.")
    tab = await Tab.open(alice)

    await tab.send_message("Summarise my notes", document_ids=[str(document.id)])
    final = await tab.reply()

    sources = system_text(fake_upstream.completion_requests[-1])
    assert "First part." in sources and "BLUE-FALCON-7" in sources
    assert final["omitted_passages"] == 0
    await tab.close()


async def test_a_follow_up_question_retrieves_again_from_the_conversations_documents(
    alice, embedding, fake_upstream, settings
):
    settings.PARLEY_DOCUMENT_CONTEXT_TOKENS = 600
    facts = {12: "The boiler room key is held by Marguerite.", 41: FACT}
    document = await indexed(alice, "report.pdf", long_pdf(60, facts))
    tab = await Tab.open(alice)
    await tab.send_message("What is the launch code of project Heron?", document_ids=[str(document.id)])
    conversation = (await tab.until_type("conversation.created"))["conversation"]
    await tab.reply()

    await tab.send_message("Who holds the boiler room key?", conversation_id=conversation["id"])
    await tab.reply()

    assert "Marguerite" in system_text(fake_upstream.completion_requests[-1])
    await tab.close()


async def test_a_file_still_being_indexed_cannot_be_sent_and_nothing_is_saved(alice, embedding, fake_upstream):
    document = await database_sync_to_async(document_upload)(user=alice, name="notes.txt", data=b"notes")
    tab = await Tab.open(alice)

    await tab.send_message("Read this", document_ids=[str(document.id)])
    error = await tab.until_type("error")

    assert error["code"] == "document_not_ready"
    assert not await database_sync_to_async(Message.objects.exists)()
    await tab.close()


async def test_bob_cannot_attach_alices_file(alice, bob, embedding, fake_upstream):
    document = await indexed(alice, "notes.txt", (FILLER + FACT).encode())
    tab = await Tab.open(bob)

    await tab.send_message("Read this", document_ids=[str(document.id)])
    error = await tab.until_type("error")

    assert error["code"] == "not_found"
    assert (await database_sync_to_async(Document.objects.get)(pk=document.pk)).conversation_id is None
    await tab.close()


async def test_the_tab_sees_each_files_progress_until_ready_and_only_its_own(alice, bob, embedding, fake_upstream):
    mine = await database_sync_to_async(document_upload)(user=alice, name="notes.txt", data=b"notes on herons")
    bobs = await database_sync_to_async(document_upload)(user=bob, name="bob.txt", data=b"bob's notes")
    tab = await Tab.open(alice)

    await tab.send({"type": "watch_documents", "document_ids": [str(mine.id), str(bobs.id)]})
    first = await tab.until_type("document.updated")
    assert first["document"] == {
        "id": str(mine.id),
        "name": "notes.txt",
        "kind": "text",
        "size": 15,
        "pages": 0,
        "status": "queued",
        "error": None,
        "conversation_id": None,
        "collection_id": None,
    }
    await database_sync_to_async(document_index)(mine.pk)
    ready = await tab.until(lambda f: f["type"] == "document.updated" and f["document"]["status"] == "ready")
    assert ready["document"]["id"] == str(mine.id)
    assert all(f["document"]["id"] != str(bobs.id) for f in tab.frames if f["type"] == "document.updated")
    await tab.close()


async def test_a_failed_file_shows_its_reason(alice, embedding, fake_upstream):
    document = await database_sync_to_async(document_upload)(user=alice, name="locked.pdf", data=b"%PDF-1.7 junk")
    tab = await Tab.open(alice)
    await tab.send({"type": "watch_documents", "document_ids": [str(document.id)]})
    await database_sync_to_async(document_index)(document.pk)

    failed = await tab.until(lambda f: f["type"] == "document.updated" and f["document"]["status"] == "failed")

    assert failed["document"]["error"]["code"] == "document_corrupt"
    assert failed["document"]["error"]["message"]
    await tab.close()


def embedding_requests(fake_upstream) -> list:
    return [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]


async def test_the_question_is_embedded_before_the_turn_and_billed_as_retrieval(
    alice, embedding, fake_upstream, settings
):
    settings.PARLEY_DOCUMENT_CONTEXT_TOKENS = 600
    document = await indexed(alice, "report.pdf", long_pdf(60, {41: FACT}))
    before = len(embedding_requests(fake_upstream))
    tab = await Tab.open(alice)

    await tab.send_message("What is the launch code of project Heron?", document_ids=[str(document.id)])
    await tab.reply()

    asked = embedding_requests(fake_upstream)[before:]
    assert [r.body["input"] for r in asked] == [["What is the launch code of project Heron?"]]
    assert "BLUE-FALCON-7" in system_text(fake_upstream.completion_requests[-1])
    assert (
        await database_sync_to_async(
            lambda: UsageRecord.objects.filter(user=alice, kind="embedding", purpose="retrieval").count()
        )()
        == 1
    )
    await tab.close()


async def test_a_failing_question_embedding_leaves_keyword_ranking_and_the_reply_goes_on(
    alice, embedding, fake_upstream, settings
):
    settings.PARLEY_DOCUMENT_CONTEXT_TOKENS = 600
    document = await indexed(alice, "report.pdf", long_pdf(60, {41: FACT}))
    fake_upstream.script(endpoint="embeddings", status=500, times=5)
    tab = await Tab.open(alice)

    await tab.send_message("What is the launch code of project Heron?", document_ids=[str(document.id)])
    final = await tab.reply()

    assert final["status"] == "complete"
    assert "BLUE-FALCON-7" in system_text(fake_upstream.completion_requests[-1])
    await tab.close()


async def test_a_chat_without_documents_embeds_nothing(alice, embedding, fake_upstream):
    tab = await Tab.open(alice)
    await tab.send_message("Hello there")
    conversation = (await tab.until_type("conversation.created"))["conversation"]
    await tab.reply()
    await tab.send_message("And again", conversation_id=conversation["id"])
    await tab.reply()

    assert embedding_requests(fake_upstream) == []
    await tab.close()


@database_sync_to_async
def collection_with(user, name, data):
    from chat.services.collections import collection_create, collection_document_add

    collection = collection_create(user=user, name="Projects")
    document = collection_document_add(user=user, collection_id=str(collection.pk), name=name, data=data)
    document_index(document.pk)
    return collection


async def test_a_collection_picked_in_the_composer_is_searched_and_bob_cannot_pick_alices(
    alice, bob, embedding, fake_upstream, settings
):
    settings.PARLEY_DOCUMENT_CONTEXT_TOKENS = 600
    collection = await collection_with(alice, "report.pdf", long_pdf(60, {41: FACT}))
    tab = await Tab.open(alice)

    await tab.send_message("What is the launch code of project Heron?", collection_ids=[str(collection.pk)])
    final = await tab.reply()

    assert "BLUE-FALCON-7" in system_text(fake_upstream.completion_requests[-1])
    assert final["passages"] >= 1
    await tab.close()

    requests = len(fake_upstream.completion_requests)
    bobs = await Tab.open(bob)
    await bobs.send_message("What is the launch code of project Heron?", collection_ids=[str(collection.pk)])
    error = await bobs.until_type("error")
    assert error["code"] == "not_found"
    assert not await database_sync_to_async(Message.objects.filter(conversation__owner=bob).exists)()
    assert len(fake_upstream.completion_requests) == requests
    await bobs.close()


def moderation_inputs(fake_upstream) -> str:
    return " ".join(str(r.body.get("input")) for r in fake_upstream.requests if r.path.endswith("/moderations"))


async def test_document_text_goes_to_moderation_only_when_the_setting_is_on(alice, embedding, fake_upstream, settings):
    document = await indexed(alice, "notes.txt", b"The vault plan says FLAGME at midnight.")
    tab = await Tab.open(alice)

    await tab.send_message("What does the vault plan say?", document_ids=[str(document.id)])
    off = await tab.reply()

    assert off["status"] == "complete"
    assert "vault plan says" not in moderation_inputs(fake_upstream)  # default: the member's text only
    await tab.close()

    settings.PARLEY_MODERATE_DOCUMENTS = True
    second = await indexed(alice, "plan.txt", b"The vault plan says FLAGME at midnight.")
    completions = len(fake_upstream.completion_requests)
    tab = await Tab.open(alice)
    await tab.send_message("What does the vault plan say?", document_ids=[str(second.id)])
    on = await tab.reply()

    assert on["status"] == "blocked"
    assert on["error"]["code"] == "moderation_blocked"
    assert "documents" in on["error"]["message"]
    assert "vault plan says FLAGME" in moderation_inputs(fake_upstream)
    assert len(fake_upstream.completion_requests) == completions  # no model read it
    await tab.close()


@database_sync_to_async
def published_preset(*collections, group_member):
    from django.contrib.auth.models import Group

    from chat.models import Preset

    group = Group.objects.create(name="Heron team")
    group_member.groups.add(group)
    preset = Preset.objects.create(owner=None, name="Heron desk")
    preset.collections.set(collections)
    preset.groups.add(group)
    return preset


async def test_a_new_chat_from_a_preset_searches_its_collections_and_says_how_many_were_skipped(
    alice, bob, embedding, fake_upstream, settings
):
    from django.contrib.auth.models import Group

    from chat.services.collections import collection_create

    settings.PARLEY_DOCUMENT_CONTEXT_TOKENS = 600
    shared = await collection_with(alice, "report.pdf", long_pdf(60, {41: FACT}))
    private = await database_sync_to_async(collection_create)(user=alice, name="Diary")
    preset = await published_preset(shared, private, group_member=bob)
    await database_sync_to_async(lambda: shared.groups.add(Group.objects.get(name="Heron team")))()
    tab = await Tab.open(bob)

    await tab.send_message("What is the launch code of project Heron?", preset_id=preset.pk)
    created = await tab.until_type("conversation.created")
    final = await tab.reply()

    assert created["collections_skipped"] == 1  # alice's diary: not bob's to read, nor to name
    assert "Diary" not in str(created)
    assert "BLUE-FALCON-7" in system_text(fake_upstream.completion_requests[-1])
    assert final["passages"] >= 1
    # The question was embedded before the turn, on bob's bill, for the collection he may read.
    assert any("launch code" in str(r.body) for r in embedding_requests(fake_upstream))
    await tab.close()

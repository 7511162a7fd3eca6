"""Search by meaning: a member's messages embedded by the job, and the sidebar search fusing text
matches with the conversations nearest by meaning. Ownership (T45): another member's
conversation is never a result, and deleting a message, a conversation or a member deletes
its vectors.

The fake upstream's embeddings are hashed word features (tests/fakeupstream/embeddings.py): two
texts are close when they share words (a plural "s" aside), in any order. So a search whose
words are all in a conversation, but not as one phrase, is found by meaning and not by the
text search, which looks for the phrase.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from chat.models import Conversation, Message, MessageChunk, MessageIndex, Reservation, UsageRecord
from chat.selectors import CONVERSATION_LIST_FIELDS, conversation_list
from chat.services import search
from chat.services.conversations import conversation_delete
from tests.documents_support import make_embedding_model

pytestmark = pytest.mark.django_db(transaction=True)

KYOTO = [
    ("user", "We are planning a holiday in Kyoto next spring and want to see the old temples."),
    ("assistant", "Kyoto has many temples: Kinkaku-ji and Fushimi Inari are worth a morning each."),
]
SOUP = [("user", "How long should a lentil soup simmer?"), ("assistant", "About forty minutes, stirring now and then.")]
QUERY = "temple holiday Kyoto"  # every word is in the Kyoto conversation, the phrase in none


@pytest.fixture(autouse=True)
def _fresh_cache():
    search.MATRICES.clear()
    yield
    search.MATRICES.clear()


@pytest.fixture
def embedding(upstream_model):
    return make_embedding_model(upstream_model.provider)


def make_thread(owner, messages, title="Untitled") -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title)
    parent = None
    for role, content in messages:
        parent = Message.objects.create(conversation=conversation, role=role, content=content, parent=parent)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent)
    return conversation


def queue_turn(reply: Message):
    """What the reply's task does with a reply it has saved complete (chat.transport.runner)."""
    return search.turn_queue(reply=reply, owner_id=reply.conversation.owner_id)


def embedded_thread(owner, messages, title="Untitled") -> Conversation:
    """A conversation whose every turn completed and was embedded by the job."""
    conversation = make_thread(owner, messages, title)
    for reply in conversation.messages.filter(role="assistant"):
        assert queue_turn(reply) == conversation.pk
    assert search.conversation_index(conversation.pk) == "ready"
    return conversation


def embedding_requests(fake_upstream):
    return [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]


def find(user, query):
    rows = list(conversation_list(user=user, query=query, limit=51))
    return search.conversation_search(user=user, query=query, text_rows=rows, fields=CONVERSATION_LIST_FIELDS)


# --- indexing --------------------------------------------------------------------------------------


def test_a_completed_turn_is_embedded_passage_by_passage_and_billed_to_the_member(alice, embedding, fake_upstream):
    conversation = embedded_thread(alice, KYOTO)

    chunks = list(MessageChunk.objects.filter(conversation=conversation).order_by("message__created_at"))
    assert [c.text for c in chunks] == [text for _, text in KYOTO]
    assert {c.owner_id for c in chunks} == {alice.pk}
    assert all(len(c.embedding) == 256 for c in chunks)
    assert set(MessageIndex.objects.values_list("status", flat=True)) == {"ready"}
    record = UsageRecord.objects.get(purpose="search")
    assert (record.user_id, record.kind) == (alice.pk, "embedding")
    assert len(embedding_requests(fake_upstream)) == 1  # the turn's passages in one batch
    assert not Reservation.objects.exists()


def test_a_member_without_an_embedding_model_queues_nothing(alice, upstream_model):
    # A reply that did not complete is never queued: tests/chat/transport/test_consumer_search.py.
    conversation = make_thread(alice, KYOTO)
    reply = conversation.messages.get(role="assistant")
    assert queue_turn(reply) is None  # no embedding model: text search only
    assert not MessageIndex.objects.exists()


def test_queueing_a_reply_just_saved_reads_nothing_back_and_no_catalog_without_an_embedding_model(
    alice, upstream_model
):
    # The reply's task queues every completed turn (chat.transport.runner): a member without an
    # embedding model costs no query there, one with it only the question's check and the rows.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    conversation = make_thread(alice, KYOTO)
    reply = conversation.messages.select_related("conversation").get(role="assistant")
    search.turn_queue(reply=reply, owner_id=alice.pk)  # the process's copy of the catalog is read
    with CaptureQueriesContext(connection) as without:
        assert search.turn_queue(reply=reply, owner_id=alice.pk) is None
    assert len(without) == 0

    make_embedding_model(upstream_model.provider)
    with CaptureQueriesContext(connection) as queries:
        assert search.turn_queue(reply=reply, owner_id=alice.pk) == conversation.pk
    assert not [q for q in queries if "chat_conversation" in q["sql"]]  # the reply is not read back
    assert set(MessageIndex.objects.values_list("message_id", flat=True)) == {reply.pk, reply.parent_id}


def test_an_embedding_model_added_past_the_signals_is_found_by_indexing_at_once_by_search_soon(alice, upstream_model):
    # Written past Django's signals (raw SQL, another process without a shared cache): the
    # process's copy still says "none". Indexing a document, which fails without one, checks
    # the database before refusing; whether search by meaning is available (a finished turn, a
    # sidebar search) does not, and catches up when the copy is next read fresh
    # (chat.core.grants._MAX_AGE).
    from chat.errors import NoProvider
    from chat.models import ChatModel
    from chat.services.documents import embedding_model, embedding_model_of

    assert search.search_model(alice) is None
    model = ChatModel(
        provider=upstream_model.provider,
        model_id="text-embedding-3-small",
        display_name="Embedding 3 small",
        kind="embedding",
        context_window=8191,
        max_output_tokens=0,
    )
    ChatModel.objects.bulk_create([model])  # no post_save: the copy is not told
    with pytest.raises(NoProvider):
        embedding_model_of(alice.pk, recheck=False)
    assert search.search_model(alice) is None
    assert embedding_model(alice).model_id == "text-embedding-3-small"
    assert search.search_model(alice).model_id == "text-embedding-3-small"  # the copy was reloaded


def test_the_job_run_twice_or_raced_by_a_second_worker_embeds_each_message_once(alice, embedding, fake_upstream):
    conversation = make_thread(alice, KYOTO + SOUP)
    for reply in conversation.messages.filter(role="assistant"):
        queue_turn(reply)
    seen = []

    def second_worker(ids):
        # Another worker given the same job while the first holds the messages: nothing is due.
        seen.append(ids)
        assert search.conversation_index(conversation.pk) == "skipped"

    assert search.conversation_index(conversation.pk, after_claim=second_worker) == "ready"
    assert len(seen[0]) == 4
    assert search.conversation_index(conversation.pk) == "skipped"  # run again: all done
    assert MessageChunk.objects.count() == 4
    assert MessageIndex.objects.filter(attempt=1, status="ready").count() == 4
    embedded = [text for r in embedding_requests(fake_upstream) for text in r.body["input"]]
    assert sorted(embedded) == sorted(text for _, text in KYOTO + SOUP)


def test_a_failed_embedding_call_is_retried_after_the_lease_and_the_reply_is_untouched(
    alice, embedding, fake_upstream, settings, no_sleep
):
    conversation = make_thread(alice, KYOTO)
    reply = conversation.messages.get(role="assistant")
    queue_turn(reply)
    fake_upstream.always(endpoint="embeddings", status=500)

    assert search.conversation_index(conversation.pk) == "retry"
    row = MessageIndex.objects.get(pk=reply.pk)
    assert (row.status, row.tries, row.claim) == ("queued", 1, None)
    assert row.error_code.startswith("upstream_")
    assert not MessageChunk.objects.exists()
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("complete", KYOTO[1][1])
    assert search.conversation_index(conversation.pk) == "skipped"  # not due before its lease has passed
    assert search.search_due_conversations() == []

    fake_upstream.always(endpoint="embeddings")
    settings.PARLEY_DOCUMENT_LEASE_SECONDS = 0
    assert [str(c) for c in search.search_due_conversations()] == [str(conversation.pk)]
    assert search.conversation_index(conversation.pk) == "ready"
    assert MessageChunk.objects.count() == 2


def test_a_message_failing_every_try_is_marked_failed_and_the_backfill_takes_it_up_again(
    alice, embedding, fake_upstream, settings, no_sleep
):
    conversation = make_thread(alice, KYOTO)
    queue_turn(conversation.messages.get(role="assistant"))
    settings.PARLEY_DOCUMENT_LEASE_SECONDS = 0
    fake_upstream.always(endpoint="embeddings", status=500)
    for _ in range(search.MAX_TRIES):
        assert search.conversation_index(conversation.pk) == "retry"
    assert set(MessageIndex.objects.values_list("status", flat=True)) == {"failed"}
    assert search.conversation_index(conversation.pk) == "skipped"

    fake_upstream.always(endpoint="embeddings")
    assert search.search_backfill(retry_failed=True) == [conversation.pk]
    assert search.conversation_index(conversation.pk) == "ready"
    assert MessageChunk.objects.count() == 2


def test_the_backfill_queues_earlier_conversations_of_members_with_an_embedding_model(
    alice, bob, embedding, fake_upstream
):
    mine = make_thread(alice, KYOTO)
    theirs = make_thread(bob, SOUP)
    Message.objects.create(conversation=mine, role="assistant", content="cut short", status="stopped")

    queued = search.search_backfill(owner_ids=[alice.pk])
    assert queued == [mine.pk]
    assert MessageIndex.objects.filter(conversation=mine).count() == 2  # the stopped reply is not
    assert not MessageIndex.objects.filter(conversation=theirs).exists()
    assert search.conversation_index(mine.pk) == "ready"
    assert search.search_backfill(owner_ids=[alice.pk]) == []  # nothing left


def test_a_budget_that_cannot_cover_the_embedding_leaves_the_messages_queued(alice, embedding, fake_upstream):
    alice.monthly_token_budget = 5
    alice.save()
    conversation = make_thread(alice, KYOTO)
    queue_turn(conversation.messages.get(role="assistant"))

    assert search.conversation_index(conversation.pk) == "retry"
    assert set(MessageIndex.objects.values_list("error_code", flat=True)) == {"quota_exceeded"}
    assert not embedding_requests(fake_upstream)
    assert not MessageChunk.objects.exists()


# --- search ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("exact_passages", [50_000, 0])
def test_a_conversation_is_found_by_meaning_when_the_words_match_but_not_the_phrase(
    alice, embedding, fake_upstream, monkeypatch, exact_passages
):
    monkeypatch.setattr(search, "EXACT_PASSAGES", exact_passages)
    kyoto = embedded_thread(alice, KYOTO, title="Spring trip")
    embedded_thread(alice, SOUP, title="Soup")

    assert not list(conversation_list(user=alice, query=QUERY))  # the text search alone finds nothing
    found = find(alice, QUERY)

    assert found.meaning == "on" and found.notice is None
    assert [c.pk for c in found.conversations] == [kyoto.pk]
    match = found.matches[kyoto.pk.hex]
    assert (match["text"], match["meaning"]) == (False, True)
    assert "temples" in match["snippet"]
    record = UsageRecord.objects.filter(purpose="search").order_by("-pk").first()
    assert record.user_id == alice.pk  # the question's embedding, billed to her


def test_text_and_meaning_matches_are_fused_and_a_text_match_shows_its_words(alice, embedding, fake_upstream):
    kyoto = embedded_thread(alice, KYOTO, title="Spring trip")
    lentils = embedded_thread(alice, SOUP, title="Soup")
    # The phrase "temple holiday Kyoto" in one more conversation: a text match, and by meaning.
    both = embedded_thread(
        alice, [("user", "Notes: temple holiday Kyoto, booked."), ("assistant", "Noted.")], title="Notes"
    )

    found = find(alice, QUERY)
    assert [c.pk for c in found.conversations][:2] == [both.pk, kyoto.pk]
    assert lentils.pk not in [c.pk for c in found.conversations]
    assert found.matches[both.pk.hex]["text"] and found.matches[both.pk.hex]["meaning"]
    assert "temple holiday Kyoto" in found.matches[both.pk.hex]["snippet"]


@pytest.mark.parametrize("exact_passages", [50_000, 0])  # PostgreSQL: the exact ranking, and the HNSW index's
def test_another_members_conversation_is_never_found_by_meaning(
    alice, bob, embedding, fake_upstream, monkeypatch, exact_passages
):
    monkeypatch.setattr(search, "EXACT_PASSAGES", exact_passages)
    embedded_thread(bob, KYOTO, title="Bob's trip")
    mine = embedded_thread(alice, SOUP, title="Soup")

    found = find(alice, QUERY)
    assert found.conversations == []
    # Even when alice's own passages are all far away, and on the vector ranking itself.
    assert search.meaning_ranking(owner_id=alice.pk, vector=_vector(QUERY)) == []
    assert all(cid == mine.pk.hex for _, cid, _ in search.nearest_passages(alice.pk, _vector(QUERY)))


def test_deleting_a_message_a_conversation_or_a_member_deletes_its_vectors(alice, bob, embedding, fake_upstream):
    kyoto = embedded_thread(alice, KYOTO)
    find(alice, QUERY)  # the vectors are kept in this process now (SQLite)
    soup = embedded_thread(alice, SOUP)
    bobs = embedded_thread(bob, KYOTO)
    assert MessageChunk.objects.count() == 6

    soup.messages.get(role="assistant").delete()
    assert MessageChunk.objects.filter(conversation=soup).count() == 1
    conversation_delete(conversation=kyoto)
    assert not MessageChunk.objects.filter(conversation_id=kyoto.pk).exists()
    assert not MessageIndex.objects.filter(conversation_id=kyoto.pk).exists()
    assert find(alice, QUERY).conversations == []  # never a deleted conversation
    get_user_model().objects.filter(pk=bob.pk).delete()
    assert not MessageChunk.objects.filter(conversation_id=bobs.pk).exists()
    assert set(MessageChunk.objects.values_list("owner_id", flat=True)) == {alice.pk}


def test_without_an_embedding_model_the_search_is_by_text_and_says_so(alice, upstream_model, fake_upstream):
    make_thread(alice, KYOTO, title="Kyoto temple holiday")
    found = find(alice, "temple holiday")
    assert [c.title for c in found.conversations] == ["Kyoto temple holiday"]
    assert found.meaning == "unavailable"
    assert found.notice["code"] == "search_meaning_unavailable"
    assert not embedding_requests(fake_upstream)


def test_a_refused_or_failed_embedding_of_the_search_gives_text_results_and_a_notice(
    alice, embedding, fake_upstream, no_sleep
):
    embedded_thread(alice, KYOTO, title="Kyoto temple holiday")
    alice.monthly_token_budget = 1
    alice.save()
    found = find(alice, "temple holiday")
    assert [c.title for c in found.conversations] == ["Kyoto temple holiday"]
    assert (found.meaning, found.notice["code"], found.notice["cause"]) == (
        "failed",
        "search_meaning_failed",
        "quota_exceeded",
    )

    alice.monthly_token_budget = None
    alice.save()
    fake_upstream.always(endpoint="embeddings", status=500)
    found = find(alice, "temple holiday")
    assert [c.title for c in found.conversations] == ["Kyoto temple holiday"]
    assert found.notice["code"] == "search_meaning_failed"
    assert found.notice["cause"].startswith("upstream_")
    assert not Reservation.objects.exists()


def test_new_passages_are_added_to_the_kept_vectors_and_a_deletion_reloads_them(alice, embedding, fake_upstream):
    embedded_thread(alice, SOUP)
    first = search.MATRICES.get(alice.pk)
    kyoto = embedded_thread(alice, KYOTO)
    second = search.MATRICES.get(alice.pk)
    assert len(second.chunk_ids) == len(first.chunk_ids) + 2
    assert [c.pk for c in find(alice, QUERY).conversations] == [kyoto.pk]
    Conversation.objects.filter(pk=kyoto.pk).delete()
    assert len(search.MATRICES.get(alice.pk).chunk_ids) == 2


def _vector(text):
    from tests.fakeupstream.embeddings import embed

    return embed(text)


def test_the_backfill_command_embeds_here_or_enqueues_and_refuses_an_unknown_member(alice, embedding, fake_upstream):
    from io import StringIO

    from django.core.management import CommandError, call_command
    from django_tasks_db.models import DBTaskResult

    make_thread(alice, KYOTO)
    out = StringIO()
    call_command("search_backfill", "--member", "alice", "--now", stdout=out)
    assert "1 conversations embedded here: 1 ready" in out.getvalue()
    assert MessageChunk.objects.count() == 2

    soup = make_thread(alice, SOUP)
    call_command("search_backfill", stdout=out)
    assert "1 conversations enqueued" in out.getvalue()
    assert [r["args"] for r in DBTaskResult.objects.values_list("args_kwargs", flat=True)] == [[str(soup.pk)]]
    with pytest.raises(CommandError, match="unknown member: nobody"):
        call_command("search_backfill", "--member", "nobody")

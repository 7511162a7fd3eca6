"""Message embedding as it runs for real: two ``manage.py db_worker`` processes given the same
conversation's job embed each message once (chat/jobs/search.py)."""

from __future__ import annotations

import pytest
from django_tasks_db.models import DBTaskResult

from chat.jobs.search import conversation_index_enqueue
from chat.models import MessageChunk, MessageIndex
from tests.chat.jobs.test_documents_worker import worker
from tests.chat.services.test_search import KYOTO, SOUP, make_thread, queue_turn
from tests.documents_support import make_embedding_model

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def test_two_workers_given_the_same_conversation_embed_each_message_once(alice, upstream_model, fake_upstream):
    make_embedding_model(upstream_model.provider)
    conversation = make_thread(alice, KYOTO + SOUP)
    for reply in conversation.messages.filter(role="assistant"):
        queue_turn(reply)
    conversation_index_enqueue(conversation.pk)
    conversation_index_enqueue(conversation.pk)  # the same job twice, as after a requeue racing a worker

    workers = [worker("--batch"), worker("--batch")]
    for process in workers:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors.decode()

    assert MessageChunk.objects.filter(conversation=conversation).count() == 4
    assert MessageIndex.objects.filter(status="ready", attempt=1).count() == 4
    embedded = [t for r in fake_upstream.requests if r.path.endswith("/embeddings") for t in r.body["input"]]
    assert sorted(embedded) == sorted(text for _, text in KYOTO + SOUP)  # each message once
    assert sorted(DBTaskResult.objects.values_list("return_value", flat=True)) == ["ready", "skipped"]

"""The sidebar's search over HTTP: text matches fused with conversations found by meaning, each
saying why it matched; the member's own only (T45); a notice with a stable code when search by
meaning took no part."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chat.models import Conversation, Message
from chat.services import search
from tests.chat.services.test_search import KYOTO, QUERY, SOUP, embedded_thread, make_thread
from tests.documents_support import make_embedding_model

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_cache():
    search.MATRICES.clear()
    yield
    search.MATRICES.clear()


@pytest.fixture
def embedding(upstream_model):
    return make_embedding_model(upstream_model.provider)


def listed(client, q, **params):
    response = client.get(reverse("chat:api_conversations"), {"q": q, **params})
    assert response.status_code == 200
    return response.json()


def test_the_search_finds_by_meaning_what_the_text_search_misses_and_says_why(
    alice_client, alice, bob, embedding, fake_upstream
):
    kyoto = embedded_thread(alice, KYOTO, title="Spring trip")
    embedded_thread(alice, SOUP, title="Soup")
    embedded_thread(bob, KYOTO, title="Bob's Kyoto trip")

    data = listed(alice_client, QUERY)
    assert [c["id"] for c in data["conversations"]] == [str(kyoto.pk)]
    match = data["conversations"][0]["match"]
    assert (match["text"], match["meaning"]) == (False, True)
    assert "Kyoto" in match["snippet"]
    assert data["search"] == {"meaning": "on", "notice": None}


def test_a_text_match_comes_first_with_its_words_and_later_pages_are_text_matches(alice_client, alice, embedding):
    by_text = make_thread(alice, [("user", "Where to eat near the temple holiday Kyoto market?")], title="Food")
    data = listed(alice_client, QUERY)
    assert [c["id"] for c in data["conversations"]] == [str(by_text.pk)]
    assert data["conversations"][0]["match"]["text"] is True
    assert "temple holiday Kyoto" in data["conversations"][0]["match"]["snippet"]
    # A later page (the cursor) is the text search's, as before: no embedding call, no "match".
    later = listed(alice_client, QUERY, before="2999-01-01T00:00:00+00:00")
    assert "search" not in later and "match" not in later["conversations"][0]


def test_without_an_embedding_model_the_answer_says_search_by_meaning_is_unavailable(
    alice_client, alice, upstream_model
):
    make_thread(alice, KYOTO, title="Kyoto temple holiday")
    data = listed(alice_client, "temple holiday")
    assert [c["title"] for c in data["conversations"]] == ["Kyoto temple holiday"]
    assert data["search"]["meaning"] == "unavailable"
    assert data["search"]["notice"]["code"] == "search_meaning_unavailable"
    assert "unavailable" in data["search"]["notice"]["message"]


def test_a_budget_refusal_of_the_search_embedding_gives_text_results_and_its_code(
    alice_client, alice, embedding, fake_upstream
):
    make_thread(alice, KYOTO, title="Kyoto temple holiday")
    alice.monthly_token_budget = 1
    alice.save()
    data = listed(alice_client, "temple holiday")
    assert [c["title"] for c in data["conversations"]] == ["Kyoto temple holiday"]
    assert data["search"]["notice"]["code"] == "search_meaning_failed"
    assert data["search"]["notice"]["cause"] == "quota_exceeded"
    assert not [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]


def test_a_deleted_conversation_is_not_found_by_meaning(alice_client, alice, embedding):
    kyoto = embedded_thread(alice, KYOTO)
    assert listed(alice_client, QUERY)["conversations"]
    assert alice_client.delete(reverse("chat:api_conversation", args=[kyoto.pk])).status_code == 204
    assert listed(alice_client, QUERY)["conversations"] == []
    assert not Conversation.objects.filter(pk=kyoto.pk).exists()
    assert not Message.objects.filter(conversation_id=kyoto.pk).exists()

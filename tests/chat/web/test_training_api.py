"""The consent endpoint of the chat page: PUT marks, DELETE withdraws, 409 once uploaded, 404 for others."""

from __future__ import annotations

import pytest
from django.utils import timezone

from chat.models import Conversation, Provider
from tests.finetuning_support import make_base_model, make_thread

pytestmark = pytest.mark.django_db


@pytest.fixture
def thread(alice):
    base = make_base_model(Provider.objects.create(name="OpenAI", base_url="https://api.openai.com/v1"))
    return make_thread(alice, base, [("q", "a")], consent=False)


def url(conversation):
    return f"/api/conversations/{conversation.pk}/training/"


def test_the_member_toggles_consent_and_the_sidebar_sees_it(alice_client, thread):
    assert alice_client.put(url(thread)).json()["training"] == "on"
    listed = alice_client.get("/api/conversations/").json()["conversations"]
    assert listed[0]["training"] == "on"
    assert alice_client.delete(url(thread)).json()["training"] == "off"


def test_withdrawal_after_upload_is_refused_with_a_clear_error(alice_client, thread):
    Conversation.objects.filter(pk=thread.pk).update(
        training_consent_at=timezone.now(), training_locked_at=timezone.now()
    )
    response = alice_client.delete(url(thread))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "training_consent_locked"
    assert "can no longer be taken back" in response.json()["error"]["message"]


def test_another_member_gets_404_and_changes_nothing(client, bob, thread):
    client.force_login(bob)
    assert client.put(url(thread)).status_code == 404
    thread.refresh_from_db()
    assert thread.training_consent_at is None


def test_anonymous_is_asked_to_sign_in(client, thread):
    assert client.put(url(thread)).status_code == 401


def test_other_methods_are_refused(alice_client, thread):
    assert alice_client.post(url(thread)).status_code == 405

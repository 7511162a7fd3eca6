"""The member's "API keys" page: a key is made, shown once, listed by name and revoked;
another member's key can be neither seen nor revoked (T01)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from chat.models import ApiPolicy, ApiToken, UsageRecord
from chat.services.api_tokens import api_token_create

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"pk-parley-[A-Za-z0-9_\-]{43}")


def test_the_chat_menu_has_an_api_keys_entry(alice_client, upstream_model):
    page = alice_client.get(reverse("chat:home")).content.decode()

    assert f'href="{reverse("chat:api_keys")}">API keys</a>' in page


def test_alice_makes_a_key_and_sees_it_once(alice, alice_client, upstream_model):
    made = alice_client.post(reverse("chat:api_keys"), {"name": "notebook", "models": [str(upstream_model.pk)]})

    assert made.status_code == 201
    assert made["Cache-Control"] == "no-store"
    secrets = set(SECRET.findall(made.content.decode()))
    assert len(secrets) == 1
    token = ApiToken.objects.get(user=alice)
    assert token.name == "notebook" and list(token.allowed_models.all()) == [upstream_model]
    later = alice_client.get(reverse("chat:api_keys")).content.decode()
    assert "notebook" in later and token.hint in later
    assert not SECRET.findall(later), "the secret is shown only on the page that made it"


def test_a_key_needs_a_name_and_a_future_expiry(alice_client, upstream_model):
    nameless = alice_client.post(reverse("chat:api_keys"), {"name": ""})
    expired = alice_client.post(reverse("chat:api_keys"), {"name": "old", "expires_on": "2000-01-01"})

    assert nameless.status_code == expired.status_code == 200
    assert "Pick a day after today." in expired.content.decode()
    assert not ApiToken.objects.exists()


def test_alice_revokes_her_key(alice, alice_client, upstream_model):
    token = api_token_create(user=alice, name="editor").token

    response = alice_client.post(reverse("chat:api_key_revoke", args=[token.pk]))

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked and token.revoked_at is not None


def test_bob_can_neither_see_nor_revoke_alices_key(alice, bob, client, upstream_model):
    token = api_token_create(user=alice, name="alice-secret-script").token
    client.force_login(bob)

    page = client.get(reverse("chat:api_keys")).content.decode()
    revoke = client.post(reverse("chat:api_key_revoke", args=[token.pk]))

    assert "alice-secret-script" not in page and token.hint not in page
    assert revoke.status_code == 404
    token.refresh_from_db()
    assert not token.revoked


def test_a_member_the_policy_leaves_out_cannot_make_a_key(alice_client, upstream_model):
    policy = ApiPolicy.current()
    policy.enabled = False
    policy.save()

    page = alice_client.post(reverse("chat:api_keys"), {"name": "notebook"})

    assert "The API is not available to your account." in page.content.decode()
    assert not ApiToken.objects.exists()


def test_the_usage_page_names_the_key_a_call_came_through(alice, alice_client, upstream_model):
    token = api_token_create(user=alice, name="nightly-report").token
    UsageRecord.objects.create(user=alice, model_name="gpt-4o-mini", purpose="api", api_token=token, prompt_tokens=5)

    page = alice_client.get(reverse("chat:usage")).content.decode()

    assert "nightly-report" in page

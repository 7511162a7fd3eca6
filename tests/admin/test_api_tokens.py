"""Member API tokens in the console: admins see every member's tokens (never a secret) and
revoke them; the API access policy is one form."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chat.models import ApiPolicy, ApiToken
from chat.services.api_tokens import api_token_create

pytestmark = pytest.mark.django_db


def test_an_admin_sees_every_token_but_no_secret(admin_client, alice, bob):
    alices = api_token_create(user=alice, name="alice-notebook")
    bobs = api_token_create(user=bob, name="bob-editor")

    page = admin_client.get(reverse("admin:chat_apitoken_changelist")).content.decode()
    detail = admin_client.get(reverse("admin:chat_apitoken_change", args=[alices.token.pk])).content.decode()

    assert "alice-notebook" in page and "bob-editor" in page
    for made in (alices, bobs):
        assert made.secret not in page and made.secret not in detail
        assert made.token.token_hash not in detail


def test_an_admin_revokes_a_members_token(admin_client, alice):
    made = api_token_create(user=alice, name="leaked")

    admin_client.post(
        reverse("admin:chat_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [made.token.pk]},
    )

    assert ApiToken.objects.get().revoked


def test_the_api_access_policy_is_one_form(admin_client):
    listed = admin_client.get(reverse("admin:chat_apipolicy_changelist"))

    assert listed.status_code == 302
    assert admin_client.get(listed["Location"]).status_code == 200
    assert ApiPolicy.objects.count() == 1


def test_usage_through_a_token_is_filtered_and_exported_with_its_name(admin_client, alice):
    import csv
    import io

    from chat.models import UsageRecord

    made = api_token_create(user=alice, name="nightly-report")
    UsageRecord.objects.create(user=alice, model_name="gpt-4o-mini", purpose="api", api_token=made.token)
    UsageRecord.objects.create(user=alice, model_name="gpt-4o-mini")

    listed = admin_client.get(reverse("admin:chat_usagerecord_changelist"), {"api_token__id__exact": made.token.pk})
    exported = admin_client.get(reverse("admin:chat_usagerecord_export"))

    assert listed.context["cl"].result_count == 1
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert sorted(row["api_token"] for row in rows) == ["", "nightly-report"]

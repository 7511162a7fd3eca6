"""``manage.py api_token``: a deployment script makes a member's token and revokes it."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from chat.models import ApiToken, token_hash

pytestmark = pytest.mark.django_db


def test_create_prints_only_the_token_and_revoke_stops_it(alice, upstream_model):
    out = io.StringIO()
    call_command("api_token", "create", "alice", "--name", "ci", "--model", "gpt-4o-mini", stdout=out)

    secret = out.getvalue().strip()
    token = ApiToken.objects.get(user=alice)
    assert secret.startswith("pk-parley-") and token.token_hash == token_hash(secret)
    assert token.name == "ci" and [m.model_id for m in token.allowed_models.all()] == ["gpt-4o-mini"]

    call_command("api_token", "revoke", "alice", "--name", "ci", stderr=io.StringIO())
    token.refresh_from_db()
    assert token.revoked


def test_revoke_by_the_token_itself(alice, upstream_model):
    out = io.StringIO()
    call_command("api_token", "create", "alice", "--name", "ci", stdout=out)

    call_command("api_token", "revoke", "--token", out.getvalue().strip(), stderr=io.StringIO())

    assert ApiToken.objects.get().revoked


def test_an_unknown_member_is_an_error(db):
    with pytest.raises(CommandError):
        call_command("api_token", "create", "nobody", "--name", "ci")

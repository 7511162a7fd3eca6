"""API tokens as services make them: hashed, limited, recognised only while active."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.errors import BadRequest
from chat.models import ApiToken, token_hash
from chat.services.api_tokens import api_token_authenticate, api_token_create, api_token_revoke

pytestmark = pytest.mark.django_db


def test_a_new_token_is_kept_only_as_its_hash(alice, upstream_model):
    made = api_token_create(user=alice, name="script")

    row = ApiToken.objects.get()
    assert made.secret.startswith("pk-parley-")
    assert row.token_hash == token_hash(made.secret) and made.secret not in str(row.__dict__)
    assert api_token_authenticate(secret=made.secret, address="10.0.0.1") == row


def test_revoked_expired_and_deactivated_tokens_are_not_recognised(alice, bob, upstream_model):
    revoked = api_token_create(user=alice, name="a")
    expired = api_token_create(user=alice, name="b", expires_at=timezone.now() + timedelta(seconds=30))
    bobs = api_token_create(user=bob, name="c")
    api_token_revoke(token=revoked.token)
    ApiToken.objects.filter(pk=expired.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    bob.is_active = False
    bob.save()

    for made in (revoked, expired, bobs):
        assert api_token_authenticate(secret=made.secret, address=None) is None
    assert api_token_authenticate(secret=revoked.secret + "x", address=None) is None
    assert api_token_authenticate(secret="sk-not-ours", address=None) is None


def test_a_member_has_at_most_the_configured_number_of_active_tokens(alice, upstream_model, settings):
    settings.PARLEY_API_TOKENS_PER_MEMBER = 2
    first = api_token_create(user=alice, name="one")
    api_token_create(user=alice, name="two")

    with pytest.raises(BadRequest):
        api_token_create(user=alice, name="three")
    api_token_revoke(token=first.token)
    assert api_token_create(user=alice, name="three").token.name == "three"


def test_a_token_can_only_be_limited_to_models_its_member_may_use(alice, upstream_model):
    from django.contrib.auth.models import Group

    upstream_model.groups.add(Group.objects.create(name="research"))

    with pytest.raises(BadRequest):
        api_token_create(user=alice, name="sneaky", model_ids=[upstream_model.pk])

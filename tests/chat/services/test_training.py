"""A member's consent to training: mark, withdraw, locked once uploaded; another member's is not found."""

from __future__ import annotations

import pytest
from django.utils import timezone

from chat.errors import NotFound, TrainingConsentLocked
from chat.models import Conversation, FineTuneDataset, FineTuneExample, Provider
from chat.services.training import training_consent_set
from tests.finetuning_support import make_base_model, make_thread

pytestmark = pytest.mark.django_db


@pytest.fixture
def base(db):
    return make_base_model(Provider.objects.create(name="OpenAI", base_url="https://api.openai.com/v1"))


def test_a_member_marks_and_unmarks_their_conversation(alice, base):
    c = make_thread(alice, base, [("q", "a")], consent=False)
    assert training_consent_set(user=alice, conversation_id=c.pk, allowed=True).training_state == "on"
    assert training_consent_set(user=alice, conversation_id=c.pk, allowed=False).training_state == "off"


def test_another_members_conversation_is_not_found_and_unchanged(alice, bob, base):
    c = make_thread(alice, base, [("q", "a")], consent=False)
    with pytest.raises(NotFound):
        training_consent_set(user=bob, conversation_id=c.pk, allowed=True)
    c.refresh_from_db()
    assert c.training_consent_at is None


def test_withdrawal_is_refused_once_the_conversation_was_uploaded(alice, admin_user, base):
    c = make_thread(alice, base, [("q", "a")])
    Conversation.objects.filter(pk=c.pk).update(training_locked_at=timezone.now())
    with pytest.raises(TrainingConsentLocked) as refused:
        training_consent_set(user=alice, conversation_id=c.pk, allowed=False)
    assert refused.value.code == "training_consent_locked"
    c.refresh_from_db()
    assert c.training_state == "locked" and c.training_consent_at is not None


def test_withdrawal_leaves_datasets_not_uploaded_yet(alice, admin_user, base):
    c = make_thread(alice, base, [("q", "a")])
    dataset = FineTuneDataset.objects.create(name="d", base_model=base, created_by=admin_user)
    FineTuneExample.objects.create(dataset=dataset, conversation=c)
    training_consent_set(user=alice, conversation_id=c.pk, allowed=False)
    assert not FineTuneExample.objects.filter(conversation=c).exists()

"""A member's consent to fine-tuning on one of their conversations (docs/fine-tuning.md, T49).

Consent is the only way into a dataset: the admin's dataset builder lists marked conversations
and nothing else, whatever ``PARLEY_ADMIN_CAN_READ_CONVERSATIONS`` says. It can be withdrawn
until a dataset holding the conversation starts leaving Parley (``training_locked_at``, set in
the same statement that checks consent, chat.services.finetuning.dataset_upload).
"""

from __future__ import annotations

from django.utils import timezone

from chat.errors import TrainingConsentLocked
from chat.models import Conversation, FineTuneExample
from chat.selectors import conversation_for_user


def training_state(conversation: Conversation) -> str:
    return conversation.training_state


def training_consent_set(*, user, conversation_id, allowed: bool) -> Conversation:
    """Mark (``allowed``) or unmark the member's conversation for training.

    Unmarking a conversation that already left in an uploaded dataset is refused
    (TrainingConsentLocked); otherwise it also leaves every dataset not uploaded yet.
    """
    conversation = conversation_for_user(user=user, conversation_id=conversation_id)
    rows = Conversation.objects.filter(pk=conversation.pk)
    if allowed:
        rows.filter(training_consent_at__isnull=True).update(training_consent_at=timezone.now())
    else:
        # One statement checks the lock and withdraws: an upload locking it at the same moment
        # either sees the consent gone (and stops) or wins (and this refuses).
        withdrawn = rows.filter(training_locked_at__isnull=True).update(training_consent_at=None)
        if not withdrawn:
            raise TrainingConsentLocked()
        FineTuneExample.objects.filter(conversation_id=conversation.pk, dataset__uploaded_at__isnull=True).delete()
    conversation.refresh_from_db(fields=["training_consent_at", "training_locked_at"])
    return conversation

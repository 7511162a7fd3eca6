"""The sweep of replies whose worker died (chat/transport/sweep.py): what it bills."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import tokens
from chat.models import Message, Reservation, UsageRecord
from chat.services.turns import turn_start
from chat.transport.sweep import sweep_stale_replies

pytestmark = pytest.mark.django_db


def test_a_dead_workers_three_answers_are_billed_all_three_once(alice, upstream_model):
    start = turn_start(
        user=alice, conversation_id=None, client_id="c1", content="name a colour", chat_settings={"n": 3}
    )
    assert start.plan is not None and start.refusal is None
    answers = list(start.saved.conversation.messages.filter(role="assistant").order_by("choice"))
    assert [a.choice for a in answers] == [0, 1, 2]
    texts = ["Blue, like the sea at noon.", "Green.", "A deep and quiet red, I think."]
    stale = timezone.now() - timedelta(minutes=10)
    for answer, text in zip(answers, texts, strict=True):
        Message.objects.filter(pk=answer.pk).update(content=text, heartbeat_at=stale)

    assert sweep_stale_replies() == 3

    written = sum(tokens.count_tokens(text, "o200k_base") for text in texts)
    record = UsageRecord.objects.get()  # one request, one record
    assert record.completion_tokens == written  # every answer's text, not only the first's
    assert record.estimated
    assert not Reservation.objects.exists()
    assert set(Message.objects.filter(role="assistant").values_list("status", flat=True)) == {"interrupted"}

"""Conversations in the console: metadata for admins, the words only when the deployment allows it."""

from decimal import Decimal

import pytest
from django.urls import reverse

from chat.models import Conversation, Message, UsageRecord

pytestmark = pytest.mark.django_db

PRIVATE = "my salary is 123456 and my doctor said"


@pytest.fixture
def conversation(alice):
    conversation = Conversation.objects.create(owner=alice, title="Planning", system_prompt="SYSTEM-PRIVATE-PROMPT")
    Message.objects.create(conversation=conversation, role="user", content=PRIVATE)
    reply = Message.objects.create(conversation=conversation, role="assistant", content="ASSISTANT-PRIVATE-REPLY")
    UsageRecord.objects.create(
        user=alice,
        conversation=conversation,
        message=reply,
        model_name="m",
        prompt_tokens=30,
        completion_tokens=12,
        cost=Decimal("0.004"),
    )
    UsageRecord.objects.create(
        user=alice, conversation=conversation, model_name="m", prompt_tokens=8, completion_tokens=0, cost=Decimal(0)
    )
    return conversation


def _row(body, title):
    start = body.index(f">{title}</a>")
    return body[start : body.index("</tr>", start)]


def test_admins_see_owner_title_message_count_and_tokens(admin_client, conversation):
    body = admin_client.get(reverse("admin:chat_conversation_changelist")).content.decode()
    row = _row(body, "Planning")
    assert "alice" in row
    assert ">2<" in row  # messages
    assert ">50<" in row  # 30 + 12 + 8 tokens
    assert PRIVATE not in body


def test_message_text_stays_private_by_default(admin_client, conversation, settings):
    settings.PARLEY_ADMIN_CAN_READ_CONVERSATIONS = False
    body = admin_client.get(reverse("admin:chat_conversation_change", args=[conversation.pk])).content.decode()
    assert "Planning" in body
    assert PRIVATE not in body
    assert "ASSISTANT-PRIVATE-REPLY" not in body
    assert "SYSTEM-PRIVATE-PROMPT" not in body


def test_message_text_appears_when_the_deployment_allows_it(admin_client, conversation, settings):
    settings.PARLEY_ADMIN_CAN_READ_CONVERSATIONS = True
    body = admin_client.get(reverse("admin:chat_conversation_change", args=[conversation.pk])).content.decode()
    assert PRIVATE in body
    assert "ASSISTANT-PRIVATE-REPLY" in body
    assert "SYSTEM-PRIVATE-PROMPT" in body


def test_delete_confirmations_do_not_list_message_text(admin_client, conversation, alice, settings):
    settings.PARLEY_ADMIN_CAN_READ_CONVERSATIONS = False
    pages = [
        admin_client.get(reverse("admin:chat_conversation_delete", args=[conversation.pk])),
        admin_client.get(reverse("admin:accounts_user_delete", args=[alice.pk])),
        admin_client.post(
            reverse("admin:chat_conversation_changelist"),
            {"action": "delete_selected", "_selected_action": [conversation.pk]},
        ),
    ]
    for page in pages:
        body = page.content.decode()
        assert page.status_code == 200
        assert "Are you sure" in body
        assert PRIVATE[:30] not in body
        assert "ASSISTANT-PRIVATE" not in body


def test_admins_cannot_add_or_edit_a_members_conversation(admin_client, conversation):
    assert admin_client.get(reverse("admin:chat_conversation_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:chat_conversation_change", args=[conversation.pk]), {"title": "Hacked", "owner": "1"}
    )
    assert response.status_code == 403
    conversation.refresh_from_db()
    assert conversation.title == "Planning"


def test_the_changelist_counts_without_a_query_per_conversation(admin_client, alice, django_assert_max_num_queries):
    for i in range(25):
        c = Conversation.objects.create(owner=alice, title=f"c{i}")
        Message.objects.create(conversation=c, role="user", content="x")
        UsageRecord.objects.create(user=alice, conversation=c, model_name="m", prompt_tokens=i, completion_tokens=1)
    admin_client.get(reverse("admin:chat_conversation_changelist"))
    with django_assert_max_num_queries(8):
        assert admin_client.get(reverse("admin:chat_conversation_changelist")).status_code == 200

"""docs/security.md T14: names an admin or a model can set are escaped in changelists, forms, history and charts."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from chat.models import ChatModel, Conversation, UsageRecord
from tests.admin.conftest import XSS

pytestmark = pytest.mark.django_db
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def _assert_escaped(body: str) -> None:
    assert XSS not in body
    assert "<img src=x" not in body
    assert "onerror=alert" not in body.replace(ESCAPED, "").replace("onerror=alert(1)&gt;", "")


def test_a_provider_name_is_escaped_in_the_changelist_form_history_and_messages(admin_client, upstream):
    response = admin_client.post(
        reverse("admin:chat_provider_add"),
        {"name": XSS, "base_url": upstream.base_url, "timeout": "30"},
        follow=True,
    )
    assert ESCAPED in response.content.decode()
    _assert_escaped(response.content.decode())
    from chat.models import Provider

    provider = Provider.objects.get()
    for url in (
        reverse("admin:chat_provider_changelist"),
        reverse("admin:chat_provider_change", args=[provider.pk]),
        reverse("admin:chat_provider_history", args=[provider.pk]),
        reverse("admin:chat_provider_delete", args=[provider.pk]),
        reverse("admin:index"),  # recent actions
    ):
        body = admin_client.get(url).content.decode()
        assert ESCAPED in body, url
        _assert_escaped(body)


def test_model_names_are_escaped_in_the_catalog_and_the_dashboard(admin_client, chat_model, alice):
    ChatModel.objects.filter(pk=chat_model.pk).update(display_name=XSS)
    UsageRecord.objects.create(user=alice, model_name=XSS, prompt_tokens=5, completion_tokens=5)
    for url in (
        reverse("admin:chat_chatmodel_changelist"),
        reverse("admin:chat_chatmodel_change", args=[chat_model.pk]),
        reverse("admin:chat_usagerecord_changelist"),
        reverse("admin:chat_usagerecord_dashboard"),
    ):
        body = admin_client.get(url).content.decode()
        assert ESCAPED in body, url
        _assert_escaped(body)


def test_member_names_are_escaped_in_the_member_list_history_and_dashboard(admin_client, alice):
    url = reverse("admin:accounts_user_change", args=[alice.pk])
    admin_client.post(
        url,
        {
            "username": "alice",
            "first_name": XSS,
            "last_name": XSS,
            "email": "a@example.test",
            "role": "member",
            "is_active": "on",
        },
    )
    alice.refresh_from_db()
    assert alice.first_name == XSS
    weird = get_user_model().objects.create_user("x<b>y")  # usernames are free text to the database
    UsageRecord.objects.create(user=weird, model_name="m", prompt_tokens=5, completion_tokens=5)
    for page in (reverse("admin:accounts_user_changelist") + "?q=alice", url):
        body = admin_client.get(page).content.decode()
        assert ESCAPED in body, page
        _assert_escaped(body)
    _assert_escaped(admin_client.get(reverse("admin:accounts_user_history", args=[alice.pk])).content.decode())
    for page in (reverse("admin:chat_usagerecord_dashboard"), reverse("admin:accounts_user_changelist")):
        body = admin_client.get(page).content.decode()
        assert "x<b>y" not in body
        assert "x&lt;b&gt;y" in body


def test_a_conversation_title_is_escaped(admin_client, alice):
    conversation = Conversation.objects.create(owner=alice, title=XSS)
    for url in (
        reverse("admin:chat_conversation_changelist"),
        reverse("admin:chat_conversation_change", args=[conversation.pk]),
        reverse("admin:chat_conversation_delete", args=[conversation.pk]),
    ):
        body = admin_client.get(url).content.decode()
        assert ESCAPED in body, url
        _assert_escaped(body)

"""Moderation in the console: the event log is read-only, the blocklist is editable."""

import pytest
from django.urls import reverse

from chat.models import BlocklistEntry, ModerationEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(alice):
    return ModerationEvent.objects.create(
        user=alice, text="FLAGME please", categories=["violence"], source=ModerationEvent.Source.PROVIDER
    )


def test_admins_read_the_moderation_log(admin_client, event):
    listing = admin_client.get(reverse("admin:chat_moderationevent_changelist")).content.decode()
    assert "FLAGME please" in listing
    assert "violence" in listing
    detail = admin_client.get(reverse("admin:chat_moderationevent_change", args=[event.pk]))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()


def test_nobody_adds_changes_or_deletes_moderation_events(admin_client, event):
    assert admin_client.get(reverse("admin:chat_moderationevent_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:chat_moderationevent_change", args=[event.pk]), {"text": "edited"}).status_code
        == 403
    )
    assert (
        admin_client.post(reverse("admin:chat_moderationevent_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )
    response = admin_client.post(
        reverse("admin:chat_moderationevent_changelist"), {"action": "delete_selected", "_selected_action": [event.pk]}
    )
    assert ModerationEvent.objects.filter(pk=event.pk, text="FLAGME please").exists()
    assert response.status_code in (200, 302)


def test_admins_add_and_edit_blocklist_entries(admin_client):
    response = admin_client.post(
        reverse("admin:chat_blocklistentry_add"),
        {"pattern": r"\bpassword\s*=", "is_regex": "on", "category": "secrets", "enabled": "on"},
    )
    assert response.status_code == 302
    entry = BlocklistEntry.objects.get()
    assert entry.is_regex and entry.category == "secrets"


def test_an_invalid_regular_expression_is_refused(admin_client):
    response = admin_client.post(
        reverse("admin:chat_blocklistentry_add"),
        {"pattern": "([unclosed", "is_regex": "on", "category": "blocklist", "enabled": "on"},
    )
    assert response.status_code == 200
    assert "Not a valid regular expression" in response.content.decode()
    assert not BlocklistEntry.objects.exists()


def test_unflagged_messages_in_the_log_stay_private_unless_admins_may_read_conversations(admin_client, alice, settings):
    unchecked = ModerationEvent.objects.create(
        user=alice, text="an ordinary private note", source=ModerationEvent.Source.UNCHECKED, detail="upstream_timeout"
    )
    settings.PARLEY_ADMIN_CAN_READ_CONVERSATIONS = False
    pages = [
        admin_client.get(reverse("admin:chat_moderationevent_changelist")),
        admin_client.get(reverse("admin:chat_moderationevent_change", args=[unchecked.pk])),
    ]
    for page in pages:
        body = page.content.decode()
        assert "an ordinary private note" not in body
        assert "private: the message was not flagged" in body
        assert "upstream_timeout" in body or page is pages[0]
    # Search cannot be used to guess it either.
    found = admin_client.get(reverse("admin:chat_moderationevent_changelist"), {"q": "ordinary"}).content.decode()
    assert "0 results" in found

    settings.PARLEY_ADMIN_CAN_READ_CONVERSATIONS = True
    body = admin_client.get(reverse("admin:chat_moderationevent_change", args=[unchecked.pk])).content.decode()
    assert "an ordinary private note" in body

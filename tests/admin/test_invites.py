"""Invites in the console: links with expiry and uses, who joined, counters the form cannot touch."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from accounts.models import Invite

pytestmark = pytest.mark.django_db
User = get_user_model()


def _future(days=3):
    return timezone.localtime() + dt.timedelta(days=days)


def _add(admin_client, **extra):
    when = _future()
    data = {
        "note": "Design team",
        "expires_at_0": when.strftime("%Y-%m-%d"),
        "expires_at_1": when.strftime("%H:%M:%S"),
        "max_uses": "5",
        **extra,
    }
    return admin_client.post(reverse("admin:accounts_invite_add"), data)


def test_an_admin_creates_an_invite_and_sees_its_full_join_link(admin_client, admin_user):
    response = _add(admin_client)
    assert response.status_code == 302
    invite = Invite.objects.get()
    assert invite.created_by == admin_user
    assert invite.max_uses == 5 and invite.uses == 0
    join = f"http://testserver/accounts/join/{invite.code}/"
    assert join in admin_client.get(reverse("admin:accounts_invite_changelist")).content.decode()
    assert join in admin_client.get(reverse("admin:accounts_invite_change", args=[invite.pk])).content.decode()


def test_the_add_form_proposes_an_expiry_a_week_ahead(admin_client):
    body = admin_client.get(reverse("admin:accounts_invite_add")).content.decode()
    assert (timezone.localtime() + dt.timedelta(days=7)).strftime("%Y-%m-%d") in body


def test_posted_counters_code_and_creator_are_ignored(admin_client, admin_user, bob):
    _add(admin_client, uses="999", code="chosen-code", created_by=str(bob.pk), created_at="2001-01-01")
    invite = Invite.objects.get()
    assert invite.uses == 0
    assert invite.code != "chosen-code"
    assert invite.created_by == admin_user

    when = _future(10)
    admin_client.post(
        reverse("admin:accounts_invite_change", args=[invite.pk]),
        {
            "note": "Renamed",
            "expires_at_0": when.strftime("%Y-%m-%d"),
            "expires_at_1": when.strftime("%H:%M:%S"),
            "max_uses": "5",
            "uses": "999",
            "code": "chosen-code",
            "created_by": str(bob.pk),
        },
    )
    invite.refresh_from_db()
    assert invite.note == "Renamed"
    assert invite.uses == 0
    assert invite.code != "chosen-code"
    assert invite.created_by == admin_user


def test_it_shows_who_joined_through_each_invite(admin_client, admin_user):
    invite = Invite.objects.create(note="Sales", expires_at=_future(), max_uses=3, uses=2, created_by=admin_user)
    User.objects.create_user("carol", invite=invite)
    User.objects.create_user("dave", invite=invite)
    User.objects.create_user("erin")
    body = admin_client.get(reverse("admin:accounts_invite_change", args=[invite.pk])).content.decode()
    assert reverse("admin:accounts_user_change", args=[User.objects.get(username="carol").pk]) in body
    assert ">dave</a>" in body
    assert "erin" not in body
    listing = admin_client.get(reverse("admin:accounts_invite_changelist")).content.decode()
    assert "2 / 3" in listing


def test_the_status_says_expired_or_used_up(admin_client, admin_user):
    Invite.objects.create(note="Old", expires_at=timezone.now() - dt.timedelta(hours=1), max_uses=1)
    Invite.objects.create(note="Full", expires_at=_future(), max_uses=1, uses=1)
    Invite.objects.create(note="Open", expires_at=_future(), max_uses=1)
    body = admin_client.get(reverse("admin:accounts_invite_changelist")).content.decode()
    for note, status in (("Old", "expired"), ("Full", "used up"), ("Open", "active")):
        row = body[body.index(f">{note}</a>") :]
        row = row[: row.index("</tr>")]
        assert f">{status}<" in row

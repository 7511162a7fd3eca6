"""Editing and deleting presets and prompts over JSON (a member's own; an admin's, the published
ones too; anyone else 404), presets with collections, a conversation's collections, and a
folder's own pages of conversations (issue 18)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.models import Collection, Conversation, Folder, Preset, Prompt
from tests.chat.web.test_views import make_conversation
from tests.chat.web.test_views import model as model  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def send(client, method, url, body=None):
    return getattr(client, method)(url, data=json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def staff(django_user_model):
    """An admin allowed to change and delete presets and prompts in the console, not a superuser."""
    user = django_user_model.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="chat",
            codename__in=["change_preset", "delete_preset", "change_prompt", "delete_prompt"],
        )
    )
    return user


def test_a_member_renames_and_changes_her_preset_and_prompt_then_deletes_them(alice, model):
    client = client_of(alice)
    preset = Preset.objects.create(owner=alice, name="Draft", settings={"temperature": 0.5})
    prompt = Prompt.objects.create(owner=alice, title="Greet", body="Hello {{name}}")

    response = send(
        client,
        "patch",
        reverse("chat:api_preset", args=[preset.pk]),
        {"name": "Reviewer", "system_prompt": "Be terse.", "model_id": model.pk, "settings": {"max_tokens": 300}},
    )
    assert response.status_code == 200
    data = response.json()["preset"]
    assert (data["name"], data["system_prompt"], data["model_id"]) == ("Reviewer", "Be terse.", model.pk)
    assert data["settings"] == {"max_tokens": 300} and data["editable"] and data["collections"] == []
    response = send(
        client, "patch", reverse("chat:api_prompt", args=[prompt.pk]), {"title": "Hi", "body": "Hi {{who}}"}
    )
    assert response.status_code == 200
    assert response.json()["prompt"]["variables"] == ["who"] and response.json()["prompt"]["editable"]

    # A refused change saves nothing.
    response = send(client, "patch", reverse("chat:api_preset", args=[preset.pk]), {"name": "X", "settings": {"n": 9}})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_setting"
    assert Preset.objects.get(pk=preset.pk).name == "Reviewer"

    assert send(client, "delete", reverse("chat:api_preset", args=[preset.pk])).status_code == 204
    assert send(client, "delete", reverse("chat:api_prompt", args=[prompt.pk])).status_code == 204
    assert not Preset.objects.exists() and not Prompt.objects.exists()


def test_an_admin_changes_and_deletes_published_presets_and_prompts_a_member_cannot(alice, bob, staff):
    team = Group.objects.create(name="Team")
    bob.groups.add(team)
    published = Preset.objects.create(owner=None, name="Team style")
    published.groups.add(team)
    shared = Prompt.objects.create(owner=None, title="Team prompt", body="Hi")
    shared.groups.add(team)
    alices = Preset.objects.create(owner=alice, name="Alice's")

    # Bob uses them but does not change them: 404, as for a stranger's.
    listed = client_of(bob).get(reverse("chat:api_presets")).json()["presets"]
    assert [(p["name"], p["mine"], p["editable"]) for p in listed] == [("Team style", False, False)]
    for method, url in [
        ("patch", reverse("chat:api_preset", args=[published.pk])),
        ("delete", reverse("chat:api_preset", args=[published.pk])),
        ("patch", reverse("chat:api_prompt", args=[shared.pk])),
        ("delete", reverse("chat:api_prompt", args=[shared.pk])),
    ]:
        response = send(client_of(bob), method, url, {"name": "x"} if "preset" in url else {"title": "x"})
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"

    admin = client_of(staff)
    response = send(admin, "patch", reverse("chat:api_preset", args=[published.pk]), {"name": "Team voice"})
    assert response.status_code == 200 and response.json()["preset"]["editable"]
    published.refresh_from_db()
    assert published.name == "Team voice" and published.owner_id is None  # still published
    assert list(published.groups.all()) == [team]
    assert send(admin, "patch", reverse("chat:api_prompt", args=[shared.pk]), {"title": "Hello"}).status_code == 200
    # A member's own preset is theirs alone, even for an admin.
    assert send(admin, "patch", reverse("chat:api_preset", args=[alices.pk]), {"name": "x"}).status_code == 404
    assert send(admin, "delete", reverse("chat:api_preset", args=[alices.pk])).status_code == 404
    assert send(admin, "delete", reverse("chat:api_prompt", args=[shared.pk])).status_code == 204
    assert send(admin, "delete", reverse("chat:api_preset", args=[published.pk])).status_code == 204
    assert Preset.objects.filter(pk=alices.pk).exists()


def test_an_admin_without_the_consoles_permission_cannot_change_published_presets(django_user_model):
    helper = django_user_model.objects.create_user("helper", password="pw-helper-123", is_staff=True)
    published = Preset.objects.create(owner=None, name="Team style")
    response = send(client_of(helper), "patch", reverse("chat:api_preset", args=[published.pk]), {"name": "x"})
    assert response.status_code == 404


def test_a_preset_with_collections_over_json(alice, bob):
    hr = Group.objects.create(name="HR")
    bob.groups.add(hr)
    shared = Collection.objects.create(owner=alice, name="HR policies")
    shared.groups.add(hr)
    private = Collection.objects.create(owner=alice, name="Board minutes")
    bobs = client_of(bob)

    # Bob saves the collection shared with his group; alice's private one is not found for him.
    response = send(bobs, "post", reverse("chat:api_presets"), {"name": "HR", "collection_ids": [str(shared.pk)]})
    assert response.status_code == 201
    preset = response.json()["preset"]
    assert preset["collections"] == [{"id": str(shared.pk), "name": "HR policies"}]
    response = send(bobs, "post", reverse("chat:api_presets"), {"name": "Spy", "collection_ids": [str(private.pk)]})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert "Board minutes" not in response.content.decode()
    response = send(
        bobs, "patch", reverse("chat:api_preset", args=[preset["id"]]), {"collection_ids": [str(private.pk)]}
    )
    assert response.status_code == 404
    response = send(bobs, "patch", reverse("chat:api_preset", args=[preset["id"]]), {"collection_ids": "all"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"
    assert list(Preset.objects.get(pk=preset["id"]).collections.all()) == [shared]

    # Unshared later: the list shows it no more by name, only that one is hidden.
    shared.groups.remove(hr)
    listed = bobs.get(reverse("chat:api_presets")).json()["presets"]
    assert listed[0]["collections"] == [] and listed[0]["collections_hidden"] == 1
    assert "HR policies" not in json.dumps(listed)


def test_a_conversations_collections_are_listed_for_its_owner_only(alice, bob):
    conversation = make_conversation(alice, "Plans")
    mine = Collection.objects.create(owner=alice, name="Handbook")
    mine.conversations.add(conversation)
    url = reverse("chat:api_conversation_collections", args=[conversation.pk])
    assert client_of(alice).get(url).json() == {"collections": [{"id": str(mine.pk), "name": "Handbook"}]}
    response = client_of(bob).get(url)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_folder_lists_all_its_conversations_in_pages(alice, bob, django_assert_max_num_queries):
    folder = Folder.objects.create(owner=alice, name="Reports")
    now = timezone.now()
    for number in range(60):
        conversation = make_conversation(alice, f"Report {number}", folder=folder)
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now - timedelta(hours=200 + number))
    for number in range(70):  # newer, outside the folder: the sidebar's first page holds none of the folder's
        conversation = make_conversation(alice, f"Other {number}")
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now - timedelta(hours=number))
    client = client_of(alice)
    first_sidebar_page = client.get(reverse("chat:api_conversations")).json()["conversations"]
    assert not any(c["folder_id"] == folder.pk for c in first_sidebar_page)

    # The folders say how many conversations each holds, so an open folder is fetched only when
    # the sidebar's pages do not hold it whole.
    assert client.get(reverse("chat:api_folders")).json()["folders"] == [
        {"id": folder.pk, "name": "Reports", "collapsed": False, "conversations": 60}
    ]
    with django_assert_max_num_queries(4):  # session, member, the folder, the page
        first = client.get(reverse("chat:api_conversations"), {"folder": folder.pk}).json()
    assert len(first["conversations"]) == 50 and first["next_before"]
    assert all(c["folder_id"] == folder.pk for c in first["conversations"])
    rest = client.get(reverse("chat:api_conversations"), {"folder": folder.pk, "before": first["next_before"]}).json()
    titles = [c["title"] for c in first["conversations"] + rest["conversations"]]
    assert titles == [f"Report {n}" for n in range(60)] and rest["next_before"] is None

    # Search inside the folder, and another member's or a made-up folder is not found.
    found = client.get(reverse("chat:api_conversations"), {"folder": folder.pk, "q": "Report 5"}).json()
    assert sorted(c["title"] for c in found["conversations"]) == ["Report 5"] + [f"Report {n}" for n in range(50, 60)]
    for value in (folder.pk, "nope", 10**30):
        response = client_of(bob).get(reverse("chat:api_conversations"), {"folder": value})
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"

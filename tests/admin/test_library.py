"""Presets and prompts published to groups in the console (chat/admin/library.py)."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from chat.models import Preset, Prompt
from chat.selectors import presets_for_user, prompts_for_user

pytestmark = pytest.mark.django_db


def test_an_admin_publishes_a_preset_to_a_group_and_only_its_members_see_it(admin_client, alice, bob):
    team = Group.objects.create(name="Team")
    alice.groups.add(team)
    response = admin_client.post(
        reverse("admin:chat_preset_add"),
        {
            "name": "  Team   style ",
            "system_prompt": "Answer in our house style.",
            "model": "",
            "settings": '{"temperature": 0.4, "max_tokens": 500}',
            "groups": [team.pk],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    preset = Preset.objects.get()
    assert (preset.owner, preset.name, preset.settings) == (None, "Team style", {"temperature": 0.4, "max_tokens": 500})
    assert [p.name for p in presets_for_user(user=alice)] == ["Team style"]
    assert presets_for_user(user=bob) == []


@pytest.mark.parametrize(
    "parameters", ['{"temperature": 7}', '{"best_of": 2}', '{"n": "three"}'], ids=["range", "unknown", "type"]
)
def test_a_preset_with_bad_settings_is_refused_in_the_console(admin_client, parameters):
    response = admin_client.post(
        reverse("admin:chat_preset_add"), {"name": "Bad", "system_prompt": "", "settings": parameters}
    )
    assert response.status_code == 200  # the form again, with the error
    assert not Preset.objects.exists()


def test_an_admin_shares_a_prompt_and_a_malformed_variable_is_refused(admin_client, bob):
    team = Group.objects.create(name="Team")
    bob.groups.add(team)
    bad = admin_client.post(reverse("admin:chat_prompt_add"), {"title": "T", "body": "Hi {{ 1x }}"})
    assert bad.status_code == 200 and not Prompt.objects.exists()
    good = admin_client.post(
        reverse("admin:chat_prompt_add"), {"title": "Greet", "body": "Hi {{name}}", "groups": [team.pk]}
    )
    assert good.status_code == 302
    assert [p.title for p in prompts_for_user(user=bob)] == ["Greet"]


def test_members_own_presets_and_prompts_are_not_listed_in_the_console(admin_client, alice):
    Preset.objects.create(owner=alice, name="Alice's private preset", system_prompt="secret")
    Prompt.objects.create(owner=alice, title="Alice's private prompt", body="secret")
    assert "Alice's private preset" not in admin_client.get(reverse("admin:chat_preset_changelist")).content.decode()
    assert "Alice's private prompt" not in admin_client.get(reverse("admin:chat_prompt_changelist")).content.decode()
    mine = Preset.objects.get()
    assert admin_client.get(reverse("admin:chat_preset_change", args=[mine.pk])).status_code == 302  # not found


def test_an_admin_gives_a_published_preset_collections_shared_with_groups_only(admin_client, alice, settings):
    from chat.models import Collection

    team = Group.objects.create(name="Team")
    shared = Collection.objects.create(owner=alice, name="Team handbook")
    shared.groups.add(team)
    private = Collection.objects.create(owner=alice, name="Alice's diary")
    form = admin_client.get(reverse("admin:chat_preset_add")).content.decode()
    assert "Team handbook" in form and "Alice&#x27;s diary" not in form and "Alice's diary" not in form

    refused = admin_client.post(
        reverse("admin:chat_preset_add"),
        {"name": "Spy", "system_prompt": "", "settings": "{}", "collections": [str(private.pk)]},
    )
    assert refused.status_code == 200 and not Preset.objects.exists()  # not a choice
    settings.PARLEY_COLLECTIONS_PER_CONVERSATION = 0
    too_many = admin_client.post(
        reverse("admin:chat_preset_add"),
        {"name": "Many", "system_prompt": "", "settings": "{}", "collections": [str(shared.pk)]},
    )
    assert too_many.status_code == 200 and not Preset.objects.exists()
    settings.PARLEY_COLLECTIONS_PER_CONVERSATION = 5
    saved = admin_client.post(
        reverse("admin:chat_preset_add"),
        {
            "name": "Team desk",
            "system_prompt": "",
            "settings": "{}",
            "collections": [str(shared.pk)],
            "groups": [team.pk],
        },
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert list(Preset.objects.get().collections.all()) == [shared]

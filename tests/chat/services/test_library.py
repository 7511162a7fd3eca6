"""Presets, prompts, folders and share links as services: rules, limits and bad input."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from chat.errors import (
    InvalidName,
    InvalidPrompt,
    InvalidSetting,
    LimitReached,
    ModelUnavailable,
    NotFound,
    UnknownSetting,
)
from chat.models import ChatModel, Conversation, Folder, Message, Preset, Prompt, Provider, ShareLink
from chat.selectors import preset_for_user, presets_for_user, prompts_for_user, share_link_by_token
from chat.services import library
from chat.services.conversations import conversation_create, conversation_update

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(db):
    provider = Provider(name="Fake", base_url="http://127.0.0.1:9/v1")
    provider.api_key = "sk-test-KEY0123456789abcd"
    provider.save()
    return ChatModel.objects.create(provider=provider, model_id="gpt-4o-mini", display_name="Mini", is_default=True)


@pytest.fixture
def other_model(model):
    return ChatModel.objects.create(provider=model.provider, model_id="gpt-4o", display_name="Big")


def conversation_with(owner, *pairs, title="Plans"):
    conversation = Conversation.objects.create(owner=owner, title=title)
    parent = None
    for role, content, *status in pairs:
        parent = Message.objects.create(
            conversation=conversation, role=role, content=content, parent=parent, status=(status or ["complete"])[0]
        )
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent)
    conversation.refresh_from_db()
    return conversation


# --- presets ----------------------------------------------------------------------------------
def test_a_new_chat_from_a_preset_takes_its_model_prompt_and_settings_and_records_it(alice, model, other_model):
    preset = library.preset_create(
        user=alice,
        values={
            "name": "  Code   reviewer ",
            "system_prompt": "Review code tersely.",
            "model_id": other_model.pk,
            "settings": {"temperature": 0.2, "max_tokens": 300},
        },
    )
    assert preset.name == "Code reviewer"
    alice.chat_defaults = {"temperature": 1.5, "top_p": 0.5}
    alice.save()

    conversation = conversation_create(user=alice, title="t", preset_id=preset.pk, settings={"max_tokens": 99})

    assert conversation.model == other_model
    assert conversation.system_prompt == "Review code tersely."
    assert conversation.temperature == 0.2  # the preset's, over the member's default
    assert conversation.top_p == 0.5  # a default the preset does not set stays
    assert conversation.max_tokens == 99  # chosen for this chat, over the preset
    assert conversation.preset == preset and conversation.preset_name == "Code reviewer"
    preset.delete()
    conversation.refresh_from_db()
    assert conversation.preset is None and conversation.preset_name == "Code reviewer"


def test_a_preset_published_to_a_group_is_used_by_its_members_and_not_found_for_others(alice, bob, model):
    team = Group.objects.create(name="Team")
    alice.groups.add(team)
    published = Preset.objects.create(name="Team style", system_prompt="Be brief.")
    published.groups.add(team)

    assert [p.name for p in presets_for_user(user=alice)] == ["Team style"]
    assert presets_for_user(user=bob) == []
    assert conversation_create(user=alice, preset_id=published.pk).system_prompt == "Be brief."
    with pytest.raises(NotFound):
        conversation_create(user=bob, preset_id=published.pk)
    # Used, never changed, by a member of the group.
    with pytest.raises(NotFound):
        preset_for_user(user=alice, preset_id=published.pk, own=True)
    assert Conversation.objects.filter(owner=bob).count() == 0


def test_a_members_own_preset_is_not_found_for_another_member(alice, bob, model):
    mine = library.preset_create(user=alice, values={"name": "Mine"})
    for preset_id in (mine.pk, str(mine.pk), "x", None, True, 10**30):
        with pytest.raises(NotFound):
            preset_for_user(user=bob, preset_id=preset_id)
    with pytest.raises(NotFound):
        conversation_create(user=bob, preset_id=mine.pk)


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"name": ""}, InvalidName),
        ({"name": "   "}, InvalidName),
        ({"name": 7}, InvalidName),
        ({"name": "x" * 101}, InvalidName),
        ({"name": "ok", "owner": 1}, UnknownSetting),
        ({"name": "ok", "settings": {"temperature": 9}}, InvalidSetting),
        ({"name": "ok", "settings": {"best_of": 2}}, UnknownSetting),
        ({"name": "ok", "model_id": 999999}, ModelUnavailable),
    ],
)
def test_a_bad_preset_is_refused_and_nothing_is_saved(alice, model, values, error):
    with pytest.raises(error):
        library.preset_create(user=alice, values=values)
    assert Preset.objects.count() == 0


def test_a_model_granted_to_another_group_cannot_go_into_a_preset(alice, model, other_model):
    other_model.groups.add(Group.objects.create(name="Research"))
    with pytest.raises(ModelUnavailable):
        library.preset_create(user=alice, values={"name": "Big", "model_id": other_model.pk})


def test_presets_per_member_are_limited_by_the_setting(alice, bob, model, settings):
    settings.PARLEY_MAX_PRESETS = 2
    library.preset_create(user=alice, values={"name": "One"})
    library.preset_create(user=alice, values={"name": "Two"})
    with pytest.raises(LimitReached):
        library.preset_create(user=alice, values={"name": "Three"})
    library.preset_create(user=bob, values={"name": "Bob's"})  # a limit per member
    assert Preset.objects.filter(owner=alice).count() == 2


# --- prompts ----------------------------------------------------------------------------------
def test_a_prompt_lists_its_variables_and_fills_them(alice):
    prompt = library.prompt_create(
        user=alice,
        values={"title": "Translate", "body": "Translate into {{language}} for {{ audience }}: {{language}}"},
    )
    assert library.prompt_variables(prompt.body) == ["language", "audience"]
    text = library.prompt_fill(prompt=prompt, values={"language": "French", "audience": "{{kids}}"})
    # Every use replaced; a value is inserted as it is, never read as a variable again.
    assert text == "Translate into French for {{kids}}: French"


@pytest.mark.parametrize(
    "values",
    [{"language": "French", "tone": "dry"}, {}, {"language": 3}, {"language": "x" * 20_001}],
)
def test_an_unknown_missing_or_bad_variable_is_refused(alice, values):
    prompt = library.prompt_create(user=alice, values={"title": "T", "body": "Into {{language}}"})
    with pytest.raises(InvalidPrompt):
        library.prompt_fill(prompt=prompt, values=values)


@pytest.mark.parametrize(
    "body", ["{{}}", "{{ 1st }}", "{{a b}}", "{{x-y}}", "".join(f"{{{{v{i}}}}}" for i in range(21))]
)
def test_a_prompt_with_a_malformed_variable_is_refused(alice, body):
    with pytest.raises(InvalidPrompt):
        library.prompt_create(user=alice, values={"title": "T", "body": body})
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"title": "", "body": "x"}, InvalidName),
        ({"title": "T", "body": "  "}, InvalidPrompt),
        ({"title": "T"}, InvalidPrompt),
        ({"title": "T", "body": "x" * 20_001}, InvalidPrompt),
        ({"title": "T", "body": "x", "groups": [1]}, UnknownSetting),
    ],
)
def test_a_bad_prompt_is_refused(alice, values, error):
    with pytest.raises(error):
        library.prompt_create(user=alice, values=values)
    assert Prompt.objects.count() == 0


def test_prompts_shared_with_a_group_are_seen_by_its_members_only(alice, bob, settings):
    team = Group.objects.create(name="Team")
    bob.groups.add(team)
    shared = Prompt.objects.create(title="Shared", body="Hi")
    shared.groups.add(team)
    mine = library.prompt_create(user=alice, values={"title": "Mine", "body": "Hello"})
    assert prompts_for_user(user=alice) == [mine]
    assert prompts_for_user(user=bob) == [shared]
    settings.PARLEY_MAX_PROMPTS = 1
    with pytest.raises(LimitReached):
        library.prompt_create(user=alice, values={"title": "Two", "body": "x"})


# --- folders ----------------------------------------------------------------------------------
def test_a_conversation_moves_only_into_its_owners_folder(alice, bob):
    conversation = conversation_with(alice, ("user", "hi"))
    folder = library.folder_create(user=alice, values={"name": "Work"})
    bobs = library.folder_create(user=bob, values={"name": "Bob's"})
    before = conversation.updated_at

    conversation_update(conversation=conversation, values={"folder_id": folder.pk})
    conversation.refresh_from_db()
    assert conversation.folder == folder
    assert conversation.updated_at == before  # filing is not activity: the order stays
    with pytest.raises(NotFound):
        conversation_update(conversation=conversation, values={"folder_id": bobs.pk})
    conversation.refresh_from_db()
    assert conversation.folder == folder
    conversation_update(conversation=conversation, values={"folder_id": None})
    conversation.refresh_from_db()
    assert conversation.folder is None


def test_deleting_a_folder_keeps_its_conversations(alice):
    folder = library.folder_create(user=alice, values={"name": "Work"})
    conversation = conversation_with(alice, ("user", "hi"))
    Conversation.objects.filter(pk=conversation.pk).update(folder=folder)
    library.folder_delete(folder=folder)
    conversation.refresh_from_db()
    assert conversation.folder is None


def test_folders_are_renamed_collapsed_limited_and_checked(alice, settings):
    folder = library.folder_create(user=alice, values={"name": "Work"})
    library.folder_update(folder=folder, values={"name": "Projects", "collapsed": True})
    folder.refresh_from_db()
    assert (folder.name, folder.collapsed) == ("Projects", True)
    with pytest.raises(InvalidName):
        library.folder_update(folder=folder, values={"name": ""})
    with pytest.raises(UnknownSetting):
        library.folder_update(folder=folder, values={"owner": 2})
    with pytest.raises(InvalidName):
        library.folder_create(user=alice, values={})
    settings.PARLEY_MAX_FOLDERS = 1
    with pytest.raises(LimitReached):
        library.folder_create(user=alice, values={"name": "Two"})
    assert list(Folder.objects.values_list("name", flat=True)) == ["Projects"]


# --- share links ------------------------------------------------------------------------------
def test_a_share_link_is_a_copy_of_the_current_path_that_later_edits_do_not_change(alice):
    conversation = conversation_with(
        alice,
        ("user", "What is **2+2**?"),
        ("assistant", "It is 4."),
        ("user", "And 3+3?"),
        ("assistant", "half", "streaming"),
    )
    share = library.share_create(user=alice, conversation=conversation)
    assert share.messages == [
        {"role": "user", "content": "What is **2+2**?", "model": ""},
        {"role": "assistant", "content": "It is 4.", "model": ""},
        {"role": "user", "content": "And 3+3?", "model": ""},
    ]
    assert len(share.token) >= 43  # 32 random bytes
    Message.objects.filter(conversation=conversation).update(content="changed")
    Conversation.objects.filter(pk=conversation.pk).update(title="Renamed")
    again = share_link_by_token(token=share.token)
    assert again.title == "Plans" and again.messages[1]["content"] == "It is 4."
    conversation.delete()
    assert share_link_by_token(token=share.token).messages == share.messages


def test_tokens_are_unguessable_and_a_revoked_link_is_gone(alice):
    conversation = conversation_with(alice, ("user", "hi"), ("assistant", "hello"))
    tokens = {library.share_create(user=alice, conversation=conversation).token for _ in range(20)}
    assert len(tokens) == 20
    share = ShareLink.objects.first()
    library.share_revoke(share=share)
    with pytest.raises(NotFound):
        share_link_by_token(token=share.token)
    for made_up in ("", "x" * 43, None, "a" * 500):
        with pytest.raises(NotFound):
            share_link_by_token(token=made_up)


def test_an_empty_conversation_cannot_be_shared_and_links_are_limited(alice, settings):
    from chat.errors import BadRequest

    empty = Conversation.objects.create(owner=alice, title="Empty")
    with pytest.raises(BadRequest) as refused:
        library.share_create(user=alice, conversation=empty)
    assert refused.value.code == "nothing_to_share"
    settings.PARLEY_MAX_SHARE_LINKS = 1
    conversation = conversation_with(alice, ("user", "hi"))
    library.share_create(user=alice, conversation=conversation)
    with pytest.raises(LimitReached):
        library.share_create(user=alice, conversation=conversation)
    assert ShareLink.objects.count() == 1

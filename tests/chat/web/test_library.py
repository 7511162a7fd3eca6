"""The presets, prompts, folders and share links endpoints, and the shared page: ownership from
both sides (404), bad input with stable codes, the page's query budget, what a shared page
shows and hides."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from chat.models import Conversation, Folder, Preset, Prompt, ShareLink
from tests.chat.web.test_views import make_conversation, page_config
from tests.chat.web.test_views import model as model  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_client(bob):
    client = Client()
    client.force_login(bob)
    return client


def send(client, method, url, body=None):
    return getattr(client, method)(url, data=json.dumps(body or {}), content_type="application/json")


def alices_things(alice):
    conversation = make_conversation(alice, "Secret plans", messages=[("user", "hi"), ("assistant", "hello")])
    preset = Preset.objects.create(owner=alice, name="Mine")
    prompt = Prompt.objects.create(owner=alice, title="Mine", body="Hi {{name}}")
    folder = Folder.objects.create(owner=alice, name="Mine")
    share = ShareLink.objects.create(owner=alice, conversation=conversation, title="t", messages=[])
    return conversation, preset, prompt, folder, share


def test_bob_gets_404_for_every_action_on_alices_presets_prompts_folders_and_links(alice, bob, bob_client):
    conversation, preset, prompt, folder, share = alices_things(alice)
    cases = [
        ("patch", reverse("chat:api_preset", args=[preset.pk]), {"name": "x"}),
        ("delete", reverse("chat:api_preset", args=[preset.pk]), None),
        ("patch", reverse("chat:api_prompt", args=[prompt.pk]), {"title": "x"}),
        ("delete", reverse("chat:api_prompt", args=[prompt.pk]), None),
        ("post", reverse("chat:api_prompt_fill", args=[prompt.pk]), {"values": {"name": "x"}}),
        ("patch", reverse("chat:api_folder", args=[folder.pk]), {"name": "x"}),
        ("delete", reverse("chat:api_folder", args=[folder.pk]), None),
        ("delete", reverse("chat:api_share_detail", args=[share.pk]), None),
        ("post", reverse("chat:api_share", args=[conversation.pk]), None),
    ]
    for method, url, body in cases:
        response = send(bob_client, method, url, body)
        assert response.status_code == 404, (method, url)
        assert response.json()["error"]["code"] == "not_found"
    # Nothing changed, and no list shows them.
    assert Preset.objects.get(pk=preset.pk).name == "Mine"
    assert Prompt.objects.get(pk=prompt.pk).title == "Mine"
    assert Folder.objects.get(pk=folder.pk).name == "Mine"
    assert ShareLink.objects.filter(pk=share.pk).exists()
    for name, key in [
        ("api_presets", "presets"),
        ("api_prompts", "prompts"),
        ("api_folders", "folders"),
        ("api_shares", "shares"),
    ]:
        assert bob_client.get(reverse(f"chat:{name}")).json()[key] == []
    # Bob cannot file his conversation in Alice's folder either.
    bobs = make_conversation(bob, "B")
    response = send(bob_client, "patch", reverse("chat:api_conversation", args=[bobs.pk]), {"folder_id": folder.pk})
    assert response.status_code == 404
    assert Conversation.objects.get(pk=bobs.pk).folder_id is None


def test_a_missing_id_and_a_strangers_id_look_the_same(alice, bob_client):
    _conversation, preset, *_ = alices_things(alice)
    stranger = send(bob_client, "delete", reverse("chat:api_preset", args=[preset.pk]))
    missing = send(bob_client, "delete", reverse("chat:api_preset", args=[preset.pk + 1000]))
    assert (stranger.status_code, stranger.json()) == (missing.status_code, missing.json())


def test_alice_manages_her_library_over_json(alice_client, model):
    created = send(
        alice_client,
        "post",
        reverse("chat:api_presets"),
        {"name": "Terse", "system_prompt": "Short answers.", "model_id": model.pk, "settings": {"temperature": 0.3}},
    )
    assert created.status_code == 201
    preset = created.json()["preset"]
    assert preset["mine"] is True and preset["settings"]["temperature"] == 0.3
    renamed = send(alice_client, "patch", reverse("chat:api_preset", args=[preset["id"]]), {"name": "Short"})
    assert renamed.json()["preset"]["name"] == "Short"

    prompt = send(alice_client, "post", reverse("chat:api_prompts"), {"title": "Tr", "body": "To {{lang}}: "}).json()[
        "prompt"
    ]
    assert prompt["variables"] == ["lang"]
    filled = send(
        alice_client, "post", reverse("chat:api_prompt_fill", args=[prompt["id"]]), {"values": {"lang": "Welsh"}}
    )
    assert filled.json() == {"text": "To Welsh: "}
    unknown = send(
        alice_client,
        "post",
        reverse("chat:api_prompt_fill", args=[prompt["id"]]),
        {"values": {"lang": "x", "tone": "y"}},
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "invalid_prompt"

    folder = send(alice_client, "post", reverse("chat:api_folders"), {"name": "Work"}).json()["folder"]
    assert send(alice_client, "patch", reverse("chat:api_folder", args=[folder["id"]]), {"collapsed": True}).json()[
        "folder"
    ] == {"id": folder["id"], "name": "Work", "collapsed": True}
    assert send(alice_client, "delete", reverse("chat:api_folder", args=[folder["id"]])).status_code == 204


@pytest.mark.parametrize(
    ("route", "body", "code"),
    [
        ("chat:api_presets", {"name": ""}, "invalid_name"),
        ("chat:api_presets", {"name": "x", "user_id": 2}, "unknown_setting"),
        ("chat:api_presets", {"name": "x", "settings": {"n": 9}}, "invalid_setting"),
        ("chat:api_prompts", {"title": "x", "body": "{{ not a name }}"}, "invalid_prompt"),
        ("chat:api_prompts", {"title": "x" * 101, "body": "y"}, "invalid_name"),
        ("chat:api_folders", {"name": "  "}, "invalid_name"),
        ("chat:api_folders", {"name": "x", "owner": 1}, "unknown_setting"),
    ],
)
def test_bad_input_is_refused_with_its_code_and_nothing_is_saved(alice_client, route, body, code):
    response = send(alice_client, "post", reverse(route), body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert (Preset.objects.count(), Prompt.objects.count(), Folder.objects.count()) == (0, 0, 0)


def test_a_limit_is_answered_with_its_code(alice_client, settings):
    settings.PARLEY_MAX_FOLDERS = 1
    assert send(alice_client, "post", reverse("chat:api_folders"), {"name": "One"}).status_code == 201
    response = send(alice_client, "post", reverse("chat:api_folders"), {"name": "Two"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "limit_reached"


def test_a_published_preset_is_listed_for_the_group_and_cannot_be_changed_by_its_members(
    alice_client, alice, bob_client
):
    team = Group.objects.create(name="Team")
    alice.groups.add(team)
    published = Preset.objects.create(name="Team style")
    published.groups.add(team)
    presets = alice_client.get(reverse("chat:api_presets")).json()["presets"]
    assert [(p["name"], p["mine"]) for p in presets] == [("Team style", False)]
    assert bob_client.get(reverse("chat:api_presets")).json()["presets"] == []
    assert send(alice_client, "delete", reverse("chat:api_preset", args=[published.pk])).status_code == 404
    assert Preset.objects.filter(pk=published.pk).exists()


# --- the chat page and the sidebar: no query per conversation --------------------------------------
def test_folders_and_presets_add_no_query_per_conversation(alice_client, alice, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    folders = [Folder.objects.create(owner=alice, name=f"F{n}") for n in range(3)]
    Preset.objects.create(owner=alice, name="P")
    for number in range(3):
        make_conversation(alice, f"Chat {number}", folder=folders[number % 3], messages=[("user", "x")])
    with CaptureQueriesContext(connection) as few:
        alice_client.get(reverse("chat:new"))
    for number in range(3, 40):
        make_conversation(alice, f"Chat {number}", folder=folders[number % 3], messages=[("user", "x")])
    with django_assert_num_queries(len(few.captured_queries)):
        response = alice_client.get(reverse("chat:new"))
    config = page_config(response)
    assert len(config["folders"]) == 3 and len(config["presets"]) == 1
    assert all(c["folder_id"] in {f.pk for f in folders} for c in config["sidebar"]["conversations"])
    with django_assert_num_queries(3):  # the sidebar's own budget (bench/queries.py), folders included
        listed = alice_client.get(reverse("chat:api_conversations")).json()["conversations"]
    assert len(listed) == 40


def test_the_sidebar_search_covers_folder_names(alice_client, alice, bob):
    work = Folder.objects.create(owner=alice, name="Quarterly reports")
    make_conversation(alice, "Numbers", folder=work, messages=[("user", "x")])
    make_conversation(alice, "Holiday", messages=[("user", "y")])
    bobs = Folder.objects.create(owner=bob, name="Quarterly reports")
    make_conversation(bob, "Bob's numbers", folder=bobs, messages=[("user", "x")])
    found = alice_client.get(reverse("chat:api_conversations"), {"q": "quarterly"}).json()["conversations"]
    assert [c["title"] for c in found] == ["Numbers"]


# --- share links and the shared page --------------------------------------------------------------
def share(client, conversation):
    response = send(client, "post", reverse("chat:api_share", args=[conversation.pk]))
    assert response.status_code == 201
    return response.json()["share"]


def test_a_shared_page_opens_for_another_member_and_shows_only_the_snapshot(alice_client, alice, bob_client):
    conversation = make_conversation(
        alice, "Trip", messages=[("user", "Where to go?"), ("assistant", "<img src=x onerror=alert(1)> Lisbon")]
    )
    link = share(alice_client, conversation)
    other = make_conversation(alice, "Other secret chat", messages=[("user", "private")])
    response = bob_client.get(link["url"])
    assert response.status_code == 200
    html = response.content.decode()
    config = page_config(response)
    assert config["shared"]["messages"] == [
        {"role": "user", "content": "Where to go?", "model": ""},
        {"role": "assistant", "content": "<img src=x onerror=alert(1)> Lisbon", "model": ""},
    ]
    # Model output travels as JSON data (escaped), to be rendered by render.js, never as markup.
    assert "<img src=x" not in html
    for leak in (alice.username, alice.email, str(conversation.pk), str(other.pk), other.title, "csrf"):
        assert leak not in html, leak
    assert "script-src" in response["Content-Security-Policy"]
    assert "unsafe-inline" not in response["Content-Security-Policy"].split("script-src")[1].split(";")[0]
    assert response["X-Robots-Tag"] == "noindex, nofollow"


def test_a_revoked_link_is_not_found_and_only_its_owner_lists_and_revokes_it(alice_client, alice, bob_client):
    conversation = make_conversation(alice, "Trip", messages=[("user", "hi"), ("assistant", "hello")])
    link = share(alice_client, conversation)
    listed = alice_client.get(reverse("chat:api_shares")).json()["shares"]
    assert [s["id"] for s in listed] == [link["id"]]
    assert send(bob_client, "delete", reverse("chat:api_share_detail", args=[link["id"]])).status_code == 404
    assert bob_client.get(link["url"]).status_code == 200
    assert send(alice_client, "delete", reverse("chat:api_share_detail", args=[link["id"]])).status_code == 204
    assert bob_client.get(link["url"]).status_code == 404
    assert alice_client.get(link["url"]).status_code == 404


def test_a_link_needs_a_signed_in_member_unless_public_links_are_allowed(alice_client, alice, settings):
    conversation = make_conversation(alice, "Trip", messages=[("user", "hi"), ("assistant", "hello")])
    link = share(alice_client, conversation)
    anonymous = Client()
    response = anonymous.get(link["url"])
    assert response.status_code == 302 and reverse("login") in response["Location"]
    settings.PARLEY_PUBLIC_SHARE_LINKS = True
    response = anonymous.get(link["url"])
    assert response.status_code == 200
    assert "Trip" in response.content.decode()
    assert anonymous.get(reverse("chat:shared", args=["x" * 43])).status_code == 404


def test_a_made_up_token_is_not_found(bob_client):
    for token in ("x" * 43, "short", "a" * 64):
        assert bob_client.get(reverse("chat:shared", args=[token])).status_code == 404


def test_the_chat_page_shows_which_preset_a_conversation_started_from(alice_client, alice):
    conversation = make_conversation(alice, "From preset", preset_name="Code <b>reviewer</b>", messages=[("user", "x")])
    response = alice_client.get(reverse("chat:conversation", args=[conversation.pk]))
    html = response.content.decode()
    assert re.search(r'id="chat-preset">Preset: Code &lt;b&gt;reviewer&lt;/b&gt;</p>', html)
    assert page_config(response)["conversation"]["preset_name"] == "Code <b>reviewer</b>"


def test_the_library_module_gets_its_strings_when_it_loads_not_with_the_page(alice_client):
    strings = alice_client.get(reverse("chat:api_library_text")).json()["strings"]
    assert "Share conversation" not in strings  # English: the key is the text
    page = page_config(alice_client.get(reverse("chat:new")))
    assert page["urls"]["api_library_text"] == reverse("chat:api_library_text")
    assert "Share conversation" not in alice_client.get(reverse("chat:new")).content.decode()
    alice_client.cookies["django_language"] = "zh-hans"
    assert alice_client.get(reverse("chat:api_library_text")).json()["strings"]["Share conversation"] == "分享对话"

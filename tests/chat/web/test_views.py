"""The chat pages and their JSON endpoints: ownership from both sides, mass assignment, CSRF,
the sidebar's query budget, export, and escaping of titles in server-rendered HTML."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from chat.models import ChatModel, Conversation, Message, Provider, UsageRecord
from chat.web.ui_text import COLLECTION_STRINGS, LIBRARY_STRINGS, PLURALS, STRINGS, catalog

pytestmark = pytest.mark.django_db

XSS_TITLE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'


@pytest.fixture
def model(db):
    provider = Provider(name="Fake", base_url="http://127.0.0.1:9/v1")
    provider.api_key = "sk-test-KEY0123456789abcd"
    provider.save()
    return ChatModel.objects.create(
        provider=provider, model_id="gpt-4o-mini", display_name="GPT-4o mini", is_default=True
    )


def make_conversation(owner, title="Plans", *, model=None, messages=(), **fields):
    """A conversation with ``messages`` as one branch, the last one shown."""
    conversation = Conversation.objects.create(owner=owner, title=title, model=model, **fields)
    parent = None
    for role, content in messages:
        parent = Message.objects.create(conversation=conversation, role=role, content=content, parent=parent)
    if parent is not None:
        Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent)
        conversation.current_leaf = parent
    return conversation


def page_config(response) -> dict:
    match = re.search(rb'<script id="parley-config" type="application/json">(.*?)</script>', response.content, re.S)
    assert match, "the chat page carries its configuration as a JSON data block"
    return json.loads(match.group(1))


@pytest.fixture
def bob_client(bob):
    client = Client()
    client.force_login(bob)
    return client


# --- pages ------------------------------------------------------------------------------------
def test_the_chat_page_asks_anonymous_visitors_to_sign_in(client):
    for url in (reverse("chat:home"), reverse("chat:new"), reverse("chat:usage")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_home_opens_the_newest_conversation(alice_client, alice):
    make_conversation(alice, "Older one")
    newest = make_conversation(alice, "Newest one")
    Conversation.objects.filter(pk=newest.pk).update(updated_at=timezone.now() + timedelta(minutes=1))
    response = alice_client.get(reverse("chat:home"))
    assert response.status_code == 200
    assert page_config(response)["conversation"]["id"] == str(newest.id)
    assert b"Newest one" in response.content


def test_home_shows_suggestions_to_a_member_without_conversations(alice_client):
    response = alice_client.get(reverse("chat:home"))
    assert response.status_code == 200
    assert page_config(response)["conversation"] is None
    assert b'class="suggestion"' in response.content
    assert b'id="empty-state" hidden' not in response.content


def test_a_conversation_page_is_only_for_its_owner(alice_client, bob_client, alice):
    conversation = make_conversation(alice, "Alice's plans")
    url = reverse("chat:conversation", args=[conversation.id])
    assert alice_client.get(url).status_code == 200
    assert bob_client.get(url).status_code == 404
    assert (
        bob_client.get(reverse("chat:conversation", args=["6f1c1d2e-0000-4000-8000-000000000000"])).status_code == 404
    )


def test_a_page_never_lists_another_members_conversations(bob_client, alice, bob):
    make_conversation(alice, "Alice secret")
    make_conversation(bob, "Bob's own")
    response = bob_client.get(reverse("chat:home"))
    titles = [c["title"] for c in page_config(response)["sidebar"]["conversations"]]
    assert titles == ["Bob's own"]
    assert b"Alice secret" not in response.content


def test_a_hostile_title_is_escaped_in_the_page(alice_client, alice):
    conversation = make_conversation(alice, XSS_TITLE)
    response = alice_client.get(reverse("chat:conversation", args=[conversation.id]))
    body = response.content.decode()
    assert "<img src=x" not in body
    assert "<script>window.__pwned" not in body
    assert "&lt;img src=x onerror=" in body  # the header and <title> show it as text
    # Inside the JSON data block, < and > are escaped so the block cannot be closed early.
    assert page_config(response)["conversation"]["title"] == XSS_TITLE


def test_the_chat_page_has_no_inline_script_or_style(alice_client, alice):
    conversation = make_conversation(alice)
    body = alice_client.get(reverse("chat:conversation", args=[conversation.id])).content.decode()
    for tag in re.findall(r"<script\b[^>]*>", body):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert " style=" not in body
    assert not re.search(r"\son[a-z]+=", body)
    assert "https://" not in body and "http://" not in body  # no CDN, no third-party origin


def test_the_page_strings_cover_every_string_the_scripts_show():
    missing = []
    for path in Path(settings.BASE_DIR, "static", "app").glob("*.js"):
        source = path.read_text()
        # library.js brings its own strings when it loads, on top of the page's.
        keys = {*STRINGS, *PLURALS} | (set(LIBRARY_STRINGS) if path.name == "library.js" else set())
        # collections.js is its own page's: that page's catalog has the page's strings and its own.
        keys |= set(COLLECTION_STRINGS) if path.name == "collections.js" else set()
        for match in re.finditer(r'(?<![\w.])n?t\(\s*"((?:[^"\\]|\\.)*)"', source):
            if match.group(1) not in keys:
                missing.append(f"{path.name}: {match.group(1)}")
    assert not missing


def test_the_page_catalog_carries_only_what_the_language_changes():
    # English: t() shows the key itself, so no entry is needed (the page is lighter).
    assert catalog() == {}
    with translation.override("zh-hans"):
        chinese = catalog()
    assert chinese["Previous version"] != "Previous version"
    assert len(chinese) > len(STRINGS) // 2


def test_the_usage_page_shows_this_months_usage_against_the_budget(alice_client, alice, bob, model):
    alice.monthly_token_budget = 10_000
    alice.save()
    conversation = make_conversation(alice, "Costly chat", model=model)
    UsageRecord.objects.create(
        user=alice,
        conversation=conversation,
        model=model,
        model_name="gpt-4o-mini",
        prompt_tokens=1200,
        completion_tokens=300,
        cost=Decimal("0.000360"),
    )
    UsageRecord.objects.create(user=bob, model_name="bob-model", prompt_tokens=5, completion_tokens=5)
    from chat.core.budget import month_start
    from chat.models import UsageMonth

    UsageMonth.objects.create(user=alice, month=month_start(), tokens_used=1500, cost_used=Decimal("0.000360"))
    response = alice_client.get(reverse("chat:usage"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "1,500" in body and "10,000" in body and "8,500" in body
    assert "Costly chat" in body and "gpt-4o-mini" in body
    assert "bob-model" not in body


def test_the_usage_page_counts_every_kind_of_call_in_its_own_units(alice_client, alice, bob):
    UsageRecord.objects.create(
        user=alice, model_name="text-embedding-3-small", kind="embedding", purpose="document", prompt_tokens=4_000
    )
    UsageRecord.objects.create(
        user=alice, model_name="tts-1", kind="speech", purpose="read_aloud", characters=20_000, cost=Decimal("0.30")
    )
    UsageRecord.objects.create(user=bob, model_name="dall-e-3", kind="image", images=2, cost=Decimal("0.08"))
    body = alice_client.get(reverse("chat:usage")).content.decode()
    assert re.search(r"<td>tts-1</td><td>speech</td>.*?<td>20,000 characters</td><td[^>]*>\$0\.30<", body, re.S)
    assert re.search(r"<td>text-embedding-3-small</td><td>embedding</td><td[^>]*>1</td><td[^>]*>4,000</td>", body)
    assert "dall-e-3" not in body  # Bob's


# --- the sidebar list ---------------------------------------------------------------------------
def test_the_list_is_the_members_own_pinned_first(alice_client, alice, bob):
    first = make_conversation(alice, "First")
    pinned = make_conversation(alice, "Pinned", pinned=True)
    make_conversation(bob, "Bob's")
    data = alice_client.get(reverse("chat:api_conversations")).json()
    assert [c["title"] for c in data["conversations"]] == ["Pinned", "First"]
    assert data["conversations"][0]["id"] == str(pinned.id)
    assert set(data["conversations"][1]) == {
        "id",
        "title",
        "pinned",
        "folder_id",
        "training",
        "created_at",
        "updated_at",
    }
    assert data["conversations"][1]["training"] == "off"
    assert data["next_before"] is None
    assert first


def test_the_list_searches_titles_and_message_text_of_the_member_only(alice_client, alice, bob):
    make_conversation(alice, "Holiday plans")
    make_conversation(alice, "Untitled", messages=[("user", "What is a PLANetary nebula?")])
    make_conversation(alice, "Recipes", messages=[("user", "soup")])
    make_conversation(bob, "Bob plans", messages=[("user", "plans")])
    data = alice_client.get(reverse("chat:api_conversations"), {"q": "plan"}).json()
    assert sorted(c["title"] for c in data["conversations"]) == ["Holiday plans", "Untitled"]


def test_the_list_comes_in_pages(alice_client, alice):
    now = timezone.now()
    for number in range(55):
        conversation = make_conversation(alice, f"Chat {number:02}")
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now - timedelta(minutes=number))
    first = alice_client.get(reverse("chat:api_conversations")).json()
    assert len(first["conversations"]) == 50
    assert first["next_before"]
    second = alice_client.get(reverse("chat:api_conversations"), {"before": first["next_before"]}).json()
    titles = [c["title"] for c in first["conversations"] + second["conversations"]]
    assert titles == [f"Chat {n:02}" for n in range(55)]
    assert second["next_before"] is None


def test_the_list_refuses_a_malformed_cursor(alice_client):
    response = alice_client.get(reverse("chat:api_conversations"), {"before": "yesterday"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_the_list_takes_at_most_three_queries_and_never_loads_message_bodies(
    alice_client, alice, django_assert_max_num_queries
):
    for number in range(30):
        make_conversation(alice, f"Chat {number}", messages=[("user", "x" * 1000), ("assistant", "y" * 1000)])
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with django_assert_max_num_queries(3), CaptureQueriesContext(connection) as queries:
        response = alice_client.get(reverse("chat:api_conversations"))
    assert response.status_code == 200
    assert len(response.json()["conversations"]) == 30
    assert not any('"content"' in q["sql"] for q in queries.captured_queries)
    # A search adds the member's embedding model (search by meaning, chat/services/search.py;
    # none here) and the snippets of the text matches, a window of each matching message.
    with django_assert_max_num_queries(6), CaptureQueriesContext(connection) as queries:
        alice_client.get(reverse("chat:api_conversations"), {"q": "x"})
    selected = [q["sql"].split(" FROM ")[0] for q in queries.captured_queries]
    assert not [s for s in selected if '"content"' in s and "SUBSTR" not in s.upper()]  # only windows of bodies
    assert any("SUBSTR" in s.upper() for s in selected)
    # Whether the member has an embedding model comes from the process's copy of the catalog
    # (chat.core.grants): read by the first search, not again; "none" is not rechecked.
    with CaptureQueriesContext(connection) as again:
        alice_client.get(reverse("chat:api_conversations"), {"q": "x"})
    assert not [q for q in again.captured_queries if "chat_chatmodel" in q["sql"]]


def test_json_answers_for_a_member_are_private_and_unstored(alice_client):
    response = alice_client.get(reverse("chat:api_conversations"))
    assert response["Cache-Control"] == "private, no-store"


def test_anonymous_json_requests_get_401(client):
    for url in (reverse("chat:api_conversations"), reverse("chat:api_models"), reverse("chat:api_defaults")):
        assert client.get(url).status_code == 401


# --- rename, pin, settings, delete ----------------------------------------------------------------------
def patch(client, url, body, **extra):
    return client.patch(url, data=json.dumps(body), content_type="application/json", **extra)


def test_a_member_renames_and_pins_a_conversation(alice_client, alice):
    conversation = make_conversation(alice, "Old")
    url = reverse("chat:api_conversation", args=[conversation.id])
    response = patch(alice_client, url, {"title": "  New title  ", "pinned": True})
    assert response.status_code == 200
    assert response.json()["conversation"]["title"] == "New title"
    conversation.refresh_from_db()
    assert (conversation.title, conversation.pinned) == ("New title", True)


def test_a_member_changes_a_conversations_settings(alice_client, alice, model):
    conversation = make_conversation(alice, model=model)
    url = reverse("chat:api_conversation", args=[conversation.id])
    body = {
        "model_id": model.pk,
        "system_prompt": "Be brief.",
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 256,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "stop": ["END"],
    }
    assert patch(alice_client, url, body).status_code == 200
    conversation.refresh_from_db()
    assert conversation.system_prompt == "Be brief."
    assert (conversation.temperature, conversation.top_p, conversation.max_tokens) == (0.3, 0.9, 256)
    assert conversation.stop == ["END"]


def test_an_out_of_range_setting_is_refused(alice_client, alice):
    conversation = make_conversation(alice)
    response = patch(alice_client, reverse("chat:api_conversation", args=[conversation.id]), {"temperature": 7})
    assert response.status_code == 400
    conversation.refresh_from_db()
    assert conversation.temperature is None


def test_a_model_the_member_may_not_use_is_refused(alice_client, alice, model):
    from django.contrib.auth.models import Group

    model.groups.add(Group.objects.create(name="Staff only"))
    conversation = make_conversation(alice)
    response = patch(alice_client, reverse("chat:api_conversation", args=[conversation.id]), {"model_id": model.pk})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_unavailable"


def test_extra_fields_are_refused_and_cannot_reassign_or_forge_anything(alice_client, alice, bob):
    conversation = make_conversation(alice, "Mine")
    created = conversation.created_at
    url = reverse("chat:api_conversation", args=[conversation.id])
    for name, value in {
        "owner": bob.pk,
        "owner_id": bob.pk,
        "user": bob.pk,
        "user_id": bob.pk,
        "is_staff": True,
        "is_superuser": True,
        "tokens_used": 0,
        "created_at": "2000-01-01T00:00:00Z",
        "id": "x",
        "current_leaf_id": "x",
    }.items():
        response = patch(alice_client, url, {"title": "Renamed", name: value})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "unknown_setting" and name in error["message"]
    conversation.refresh_from_db()
    alice.refresh_from_db()
    assert conversation.owner_id == alice.pk
    assert conversation.created_at == created
    assert conversation.title == "Mine"  # a refused request changes nothing
    assert not alice.is_staff and not alice.is_superuser
    assert patch(alice_client, url, {"title": "Renamed"}).status_code == 200


def test_a_member_deletes_a_conversation(alice_client, alice):
    conversation = make_conversation(alice, messages=[("user", "hi")])
    response = alice_client.delete(reverse("chat:api_conversation", args=[conversation.id]))
    assert response.status_code == 204
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()


@pytest.mark.parametrize("action", ["read", "rename", "pin", "settings", "delete", "export_md", "export_json"])
def test_bob_gets_404_for_every_action_on_alices_conversation(action, bob_client, alice):
    conversation = make_conversation(alice, "Alice's", messages=[("user", "private words")], system_prompt="Hers")
    before = Conversation.objects.filter(pk=conversation.pk).values().get()
    url = reverse("chat:api_conversation", args=[conversation.id])
    if action == "read":
        response = bob_client.get(url)
    elif action == "rename":
        response = patch(bob_client, url, {"title": "Bob was here"})
    elif action == "pin":
        response = patch(bob_client, url, {"pinned": True})
    elif action == "settings":
        response = patch(bob_client, url, {"system_prompt": "Bob's now", "temperature": 2})
    elif action == "delete":
        response = bob_client.delete(url)
    else:
        name = "chat:api_export_md" if action == "export_md" else "chat:api_export_json"
        response = bob_client.get(reverse(name, args=[conversation.id]))
    assert response.status_code == 404
    assert b"private words" not in response.content and b"Alice" not in response.content
    assert Conversation.objects.filter(pk=conversation.pk).values().get() == before
    assert Message.objects.filter(conversation=conversation).count() == 1


def test_a_strangers_id_and_a_missing_id_look_the_same(bob_client, alice):
    conversation = make_conversation(alice)
    theirs = bob_client.get(reverse("chat:api_conversation", args=[conversation.id]))
    missing = bob_client.get(reverse("chat:api_conversation", args=["0f0f0f0f-0000-4000-8000-000000000000"]))
    assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json())


def test_alice_cannot_act_on_bobs_conversation_either(alice_client, bob):
    conversation = make_conversation(bob, "Bob's")
    url = reverse("chat:api_conversation", args=[conversation.id])
    assert patch(alice_client, url, {"title": "Alice was here"}).status_code == 404
    assert alice_client.delete(url).status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Bob's"


# --- CSRF ---------------------------------------------------------------------------------------------
@pytest.fixture
def csrf_client(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    return client


def test_a_cross_site_write_without_a_csrf_token_is_refused(csrf_client, alice):
    conversation = make_conversation(alice, "Keep me")
    url = reverse("chat:api_conversation", args=[conversation.id])
    assert patch(csrf_client, url, {"title": "Forged"}).status_code == 403
    assert csrf_client.delete(url).status_code == 403
    response = csrf_client.put(
        reverse("chat:api_defaults"), data=json.dumps({"system_prompt": "x"}), content_type="application/json"
    )
    assert response.status_code == 403
    conversation.refresh_from_db()
    assert conversation.title == "Keep me"
    alice.refresh_from_db()
    assert alice.chat_defaults == {}


def test_a_write_with_the_pages_csrf_token_is_accepted(csrf_client, alice):
    conversation = make_conversation(alice, "Old")
    token = page_config(csrf_client.get(reverse("chat:home")))["csrf_token"]
    url = reverse("chat:api_conversation", args=[conversation.id])
    response = patch(csrf_client, url, {"title": "New"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200


def test_no_answer_allows_other_origins(alice_client, alice):
    conversation = make_conversation(alice)
    for url in (reverse("chat:api_conversations"), reverse("chat:api_conversation", args=[conversation.id])):
        response = alice_client.get(url, HTTP_ORIGIN="https://evil.example")
        assert not response.has_header("Access-Control-Allow-Origin")


# --- defaults and models ---------------------------------------------------------------------------------
def test_a_member_sets_defaults_for_new_chats_and_unknown_keys_are_refused(alice_client, alice, model):
    body = {"model_id": model.pk, "system_prompt": "Answer in French.", "temperature": 0.2}
    url = reverse("chat:api_defaults")
    refused = alice_client.put(url, data=json.dumps({**body, "is_staff": True}), content_type="application/json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unknown_setting"
    alice.refresh_from_db()
    assert alice.chat_defaults == {}
    response = alice_client.put(url, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    alice.refresh_from_db()
    assert alice.chat_defaults == {"model_id": model.pk, "system_prompt": "Answer in French.", "temperature": 0.2}
    assert not alice.is_staff
    assert alice_client.get(reverse("chat:api_defaults")).json()["defaults"] == alice.chat_defaults


def test_the_model_list_has_only_models_the_member_may_use(alice_client, model):
    from django.contrib.auth.models import Group

    hidden = ChatModel.objects.create(provider=model.provider, model_id="secret-model")
    hidden.groups.add(Group.objects.create(name="Research"))
    ChatModel.objects.create(provider=model.provider, model_id="disabled-model", enabled=False)
    data = alice_client.get(reverse("chat:api_models")).json()
    assert [m["name"] for m in data["models"]] == ["GPT-4o mini"]
    assert "sk-test" not in json.dumps(data)


# --- export -----------------------------------------------------------------------------------------------
def test_export_as_markdown_is_an_attachment_with_the_whole_conversation(alice_client, alice):
    conversation = make_conversation(
        alice,
        "Trip to Lyon",
        messages=[("user", "Where should I eat?"), ("assistant", "Try a **bouchon**.")],
        system_prompt="You are a guide.",
    )
    response = alice_client.get(reverse("chat:api_export_md", args=[conversation.id]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    assert response["Content-Disposition"].startswith('attachment; filename="trip-to-lyon-')
    text = response.content.decode()
    assert text.startswith("# Trip to Lyon\n")
    assert "You are a guide." in text
    assert text.index("Where should I eat?") < text.index("Try a **bouchon**.")


def test_export_as_json_lists_every_message(alice_client, alice):
    conversation = make_conversation(alice, "Numbers", messages=[("user", "one"), ("assistant", "two")])
    response = alice_client.get(reverse("chat:api_export_json", args=[conversation.id]))
    assert response["Content-Disposition"].startswith("attachment;")
    data = json.loads(response.content)
    assert data["conversation"]["title"] == "Numbers"
    assert [(m["role"], m["content"]) for m in data["messages"]] == [("user", "one"), ("assistant", "two")]
    assert "sk-" not in response.content.decode()


def branched(alice):
    """ "question" answered twice: "old answer", then "new answer" (the branch shown)."""
    conversation = make_conversation(alice, "Branches", messages=[("user", "question"), ("assistant", "old answer")])
    question = conversation.messages.get(role="user")
    newer = Message.objects.create(conversation=conversation, role="assistant", content="new answer", parent=question)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=newer)
    return conversation


def test_exports_hold_the_branch_shown_and_the_json_export_every_branch(alice_client, alice):
    conversation = branched(alice)
    markdown = alice_client.get(reverse("chat:api_export_md", args=[conversation.id])).content.decode()
    assert "new answer" in markdown and "old answer" not in markdown
    data = json.loads(alice_client.get(reverse("chat:api_export_json", args=[conversation.id])).content)
    assert [m["content"] for m in data["messages"]] == ["question", "new answer"]
    everything = {m["content"]: m for m in data["all_messages"]}
    assert set(everything) == {"question", "old answer", "new answer"}
    question_id = everything["question"]["id"]
    assert everything["old answer"]["parent_id"] == everything["new answer"]["parent_id"] == question_id


def test_fork_starts_a_new_conversation_from_the_path_up_to_a_message(alice_client, alice, bob_client):
    conversation = branched(alice)
    old = conversation.messages.get(content="old answer")
    url = reverse("chat:api_fork", args=[conversation.id])
    assert bob_client.post(url, {"message_id": str(old.id)}, content_type="application/json").status_code == 404
    response = alice_client.post(url, {"message_id": str(old.id)}, content_type="application/json")
    assert response.status_code == 201
    fork = Conversation.objects.get(pk=response.json()["conversation"]["id"])
    assert fork.owner == alice and fork.title == "Branches (fork)"
    exported = json.loads(alice_client.get(reverse("chat:api_export_json", args=[fork.id])).content)
    assert [m["content"] for m in exported["messages"]] == ["question", "old answer"]
    assert len(exported["all_messages"]) == 2
    missing = alice_client.post(url, {"message_id": "nope"}, content_type="application/json")
    assert missing.status_code == 404


def test_budget_endpoint_reports_the_members_month(alice_client, alice):
    alice.monthly_token_budget = 500
    alice.save()
    budget = alice_client.get(reverse("chat:api_budget")).json()["budget"]
    assert budget["token_budget"] == 500 and budget["tokens_remaining"] == 500


def test_the_chat_page_is_compressed_with_random_padding(client, alice):
    # The page's HTML is most of its first load (tests/browser/test_page_weight.py): it goes
    # gzip-compressed to a browser that accepts it, padded at random against BREACH (T53).
    import gzip

    client.force_login(alice)
    sizes = set()
    for _ in range(5):
        response = client.get("/new/", headers={"accept-encoding": "gzip"})
        assert response.status_code == 200
        assert response["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in response["Vary"]
        assert b"<html" in gzip.decompress(response.content)
        sizes.add(len(response.content))
    assert len(sizes) > 1, "the same page compressed five times should differ in length (random padding)"
    plain = client.get("/new/")
    assert "Content-Encoding" not in plain and b"<html" in plain.content

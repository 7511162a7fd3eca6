"""Presets with collections, editing presets and prompts, and a folder's own pages, in Debian's
chromium against a live daphne and the fake upstream (issue 18).

The collection is made and indexed in the server's own process (``manage.py shell``) with the
fake upstream's embeddings, as the document tests do; everything the member does is done in the
page, by role and accessible name.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.test_chat import open_new_chat, send, wait_reply_done

pytestmark = pytest.mark.browser

FACT = "The spare key of the Osprey lab is kept under the blue ceramic heron."


def make_collection(live, name: str) -> str:
    """Alice's collection ``name`` holding one indexed PDF with FACT on page 5; its id."""
    out = live.shell(
        "from accounts.models import User\n"
        "from chat.models import ChatModel, Provider\n"
        "from chat.services.collections import collection_create, collection_document_add\n"
        "from chat.services.documents import document_index\n"
        "from tests.documents_support import long_pdf\n"
        "ChatModel.objects.get_or_create(provider=Provider.objects.get(name='Fake upstream'),"
        " model_id='text-embedding-3-small', defaults={'kind': 'embedding', 'display_name': 'Embedding'})\n"
        "alice = User.objects.get(username='alice')\n"
        f"collection = collection_create(user=alice, name={name!r})\n"
        "document = collection_document_add(user=alice, collection_id=str(collection.pk), name='lab-notes.pdf',"
        f" data=long_pdf(12, {{5: {FACT!r}}}))\n"
        "assert document_index(document.pk) == 'ready'\n"
        "print(collection.pk)\n"
    )
    return out.strip().splitlines()[-1]


def test_a_preset_saved_with_a_collection_starts_a_chat_that_searches_it(alice_page, live, watch):
    page = alice_page
    stamp = time.time_ns() % 10**9
    collection = f"Lab notes {stamp}"
    preset = f"Lab helper {stamp}"
    make_collection(live, collection)

    # "Save as preset" in the chat settings offers the collections alice may read.
    page.reload()
    open_new_chat(page)
    page.get_by_role("button", name="Chat settings").click()
    settings = page.get_by_role("dialog", name="Chat settings")
    offered = settings.get_by_role("group", name="Collections the preset searches")
    offered.get_by_label(collection).check()
    settings.get_by_label("System prompt").fill("Answer from the lab's notes.")
    settings.get_by_label("Preset name").fill(preset)
    settings.get_by_role("button", name="Save as preset").click()
    expect(settings.get_by_role("status")).to_have_text(f"Preset “{preset}” saved.")
    shot(page, "preset-with-collection")
    settings.get_by_role("button", name="Cancel").click()

    # A new chat from it searches the collection, as if picked in the composer.
    open_new_chat(page)
    page.get_by_label("Start from a preset").select_option(label=preset)
    send(page, f'Where is the spare key of the Osprey lab? {stamp} [[fake reply="Under the heron [1]." tokens=3]]')
    wait_reply_done(page)
    expect(page.get_by_text(f"Preset: {preset}")).to_be_visible()
    asked = [r["body"] for r in live.upstream.completions() if f"Osprey lab? {stamp}" in json.dumps(r["body"])]
    system = asked[0]["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Answer from the lab's notes.")
    assert "<sources>" in system["content"] and FACT in system["content"]
    assert 'file="lab-notes.pdf, page 5"' in system["content"]
    # The question was embedded for the search: the fake upstream saw it.
    embedded = [r for r in live.upstream.requests() if r["path"].endswith("/embeddings")]
    assert any(f"Osprey lab? {stamp}" in json.dumps(r["body"]) for r in embedded)

    # The library dialog lists it with its collection; alice renames it and takes the collection out.
    page.get_by_role("button", name="alice").click()
    page.get_by_role("button", name="Presets and prompts").click()
    library = page.get_by_role("dialog", name="Presets and prompts")
    row = library.get_by_role("listitem").filter(has_text=preset)
    expect(row).to_contain_text(f"Searches {collection}")
    row.get_by_role("button", name=f"Edit preset “{preset}”").click()
    edit = page.get_by_role("dialog", name=f"Edit preset “{preset}”")
    expect(edit.get_by_label(collection)).to_be_checked()
    edit.get_by_label("Name", exact=True).fill(f"{preset} v2")
    edit.get_by_label(collection).uncheck()
    shot(page, "preset-edit")
    edit.get_by_role("button", name="Save").click()
    renamed = library.get_by_role("listitem").filter(has_text=f"{preset} v2")
    expect(renamed).to_be_visible()
    expect(renamed).not_to_contain_text("Searches")
    saved = [p for p in json.loads(page.request.get("/api/presets/").text())["presets"] if p["name"] == f"{preset} v2"]
    assert saved[0]["collections"] == [] and saved[0]["system_prompt"] == "Answer from the lab's notes."

    renamed.get_by_role("button", name=f"Delete preset “{preset} v2”").click()
    expect(library.get_by_role("listitem").filter(has_text=f"{preset} v2")).to_have_count(0)
    library.get_by_role("button", name="Close").click()
    watch.assert_clean()


def test_a_member_edits_her_prompt_in_the_library(alice_page, live, watch):
    page = alice_page
    title = f"Summary {time.time_ns() % 10**9}"
    page.get_by_role("button", name="alice").click()
    page.get_by_role("button", name="Presets and prompts").click()
    library = page.get_by_role("dialog", name="Presets and prompts")
    library.get_by_label("Prompt title").fill(title)
    library.get_by_label("Prompt text").fill("Summarise in {{words}} words.")
    library.get_by_role("button", name="Save prompt").click()
    library.get_by_role("button", name=f"Edit prompt “{title}”").click()
    edit = page.get_by_role("dialog", name=f"Edit prompt “{title}”")
    edit.get_by_label("Prompt text").fill("Summarise in {{count}} bullet points.")
    edit.get_by_role("button", name="Save").click()
    expect(edit).to_be_hidden()
    mine = [p for p in json.loads(page.request.get("/api/prompts/").text())["prompts"] if p["title"] == title]
    assert mine[0]["body"] == "Summarise in {{count}} bullet points." and mine[0]["variables"] == ["count"]
    library.get_by_role("button", name=f"Delete prompt “{title}”").click()
    expect(library.get_by_text(title)).to_have_count(0)
    library.get_by_role("button", name="Close").click()
    watch.assert_clean()


def test_a_folder_lists_all_its_conversations_not_only_the_sidebars_first_page(alice_page, live, watch):
    page = alice_page
    name = f"Archive {time.time_ns() % 10**9}"
    # 55 old conversations in the folder, and 60 newer ones outside it: the sidebar's first page
    # (50) holds none of the folder's.
    live.shell(
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from accounts.models import User\n"
        "from chat.models import Conversation, Folder\n"
        "alice = User.objects.get(username='alice')\n"
        f"folder = Folder.objects.create(owner=alice, name={name!r}, collapsed=True)\n"
        "now = timezone.now()\n"
        "for n in range(55):\n"
        f"    c = Conversation.objects.create(owner=alice, title=f'Filed {{n}} {name}', folder=folder)\n"
        "    Conversation.objects.filter(pk=c.pk).update(updated_at=now - timedelta(days=400 + n))\n"
        "for n in range(60):\n"
        "    Conversation.objects.create(owner=alice, title=f'Recent {n}')\n"
    )
    page.reload()
    folder = page.get_by_role("button", name=re.compile("^" + re.escape(name)))
    expect(folder).to_have_attribute("aria-expanded", "false")
    folder.click()
    section = page.locator("section.folder").filter(has=folder)
    links = section.get_by_role("link", name=re.compile(r"^Filed \d+ "))
    expect(links).to_have_count(50)
    expect(folder).to_contain_text("(50+)")
    section.get_by_role("button", name=f"Show more in folder {name}").click()
    expect(links).to_have_count(55)
    expect(section.get_by_role("button", name=f"Show more in folder {name}")).to_have_count(0)
    expect(section.get_by_role("link", name=f"Filed 54 {name}", exact=True)).to_be_visible()
    shot(page, "folder-all-conversations")
    # After a search and back, the open folder still lists them all from the server.
    search = page.get_by_label("Search")
    search.fill(f"Filed 7 {name}")
    expect(section.get_by_role("link", name=f"Filed 7 {name}", exact=True)).to_be_visible()
    search.fill("")
    expect(links).to_have_count(50)
    watch.assert_clean()
    live.shell(
        "from chat.models import Conversation, Folder\n"
        f"Conversation.objects.filter(folder__name={name!r}).delete(); Folder.objects.filter(name={name!r}).delete()\n"
        "Conversation.objects.filter(title__startswith='Recent ').delete()\n"
    )

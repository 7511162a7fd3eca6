"""Share links, presets published to a group, folders and the prompt library in Debian's
chromium, against a live daphne and the fake upstream (issue 18, part 4).

Elements are found by role and accessible name or label, as in tests/browser/test_chat.py.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, shot, sign_in
from tests.browser.test_chat import current_conversation_id, last_reply, open_new_chat, send, wait_reply_done

pytestmark = pytest.mark.browser


def another_member(browser, live, watch, username: str):
    context = browser.new_context(base_url=live.base_url, viewport={"width": 1280, "height": 860})
    from tests.browser.conftest import WATCH_SCRIPT

    context.add_init_script(WATCH_SCRIPT)
    context.on("page", watch.attach)
    page = context.new_page()
    return context, sign_in(page, username)


def ensure_member(live, username: str, group: str | None = None) -> None:
    live.shell(
        "from accounts.models import User; from django.contrib.auth.models import Group\n"
        f"user, made = User.objects.get_or_create(username={username!r})\n"
        f"user.email = {username + '@example.test'!r}\n"
        f"user.set_password({PASSWORD!r}); user.save()\n"
        + (f"user.groups.add(Group.objects.get_or_create(name={group!r})[0])\n" if group else "")
    )


def titled(page, sent: str) -> str:
    """The conversation's title, once the automatic one has replaced the first words."""
    heading = page.get_by_role("heading", level=1)
    expect(heading).not_to_have_text(re.compile("^" + re.escape(sent)), timeout=10_000)
    return heading.inner_text()


def test_a_share_link_is_opened_by_another_member_and_refused_after_revocation(alice_page, browser, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Share this [[fake reply="A **bold** answer.\\n\\n```python\\nprint(1)\\n```" tokens=4]]')
    wait_reply_done(page)
    title = titled(page, "Share this")

    page.get_by_role("button", name="Share").click()
    dialog = page.get_by_role("dialog", name="Share conversation")
    dialog.get_by_role("button", name="Create link").click()
    link = dialog.get_by_label("Share link")
    expect(link).to_have_value(re.compile(r"/s/[A-Za-z0-9_-]{43}/$"))
    url = link.input_value()
    shot(page, "share-created")
    dialog.get_by_role("button", name="Close").click()

    # Later messages are not part of the snapshot.
    send(page, 'After sharing [[fake reply="Not shared." tokens=2]]')
    wait_reply_done(page)

    context, bob = another_member(browser, live, watch, "bob")
    try:
        bob.goto(url)
        expect(bob.get_by_role("heading", name=title, level=1)).to_be_visible()
        reply = bob.get_by_role("article", name="Parley said")
        expect(reply).to_have_count(1)
        expect(reply.locator("strong")).to_have_text("bold")  # the chat's own Markdown rendering
        expect(reply.locator("pre code")).to_contain_text("print(1)")
        expect(bob.get_by_text("Not shared.")).to_have_count(0)
        html = bob.content()
        assert "alice" not in html and current_conversation_id(page) not in html
        shot(bob, "share-opened-by-bob")

        page.get_by_role("button", name="alice").click()
        page.get_by_role("button", name="Share links").click()
        links = page.get_by_role("dialog", name="Your share links")
        links.get_by_role("button", name=f"Revoke link to “{title}”").click()
        expect(links.get_by_role("status")).to_have_text("The link is revoked: it no longer opens.")

        # Asked without navigating, so the 404 is not a console error of the page.
        assert bob.request.get(url).status == 404
    finally:
        context.close()
    watch.assert_clean()


def test_a_preset_published_to_a_group_is_used_by_a_member_of_it_and_not_by_another(browser, page, live, watch):
    ensure_member(live, "carol", group="Reviewers")
    live.shell(
        "from chat.models import Preset, ChatModel; from django.contrib.auth.models import Group\n"
        "preset, _ = Preset.objects.get_or_create(name='Careful reviewer', owner=None, defaults={"
        "'system_prompt': 'Review like a careful senior engineer.', 'settings': {'temperature': 0.1},"
        "'model': ChatModel.objects.get(model_id='gpt-4o')})\n"
        "preset.groups.add(Group.objects.get(name='Reviewers'))\n"
    )
    carol = sign_in(page, "carol")
    open_new_chat(carol)
    picker = carol.get_by_label("Start from a preset")
    expect(picker).to_be_visible()
    picker.select_option(label="Careful reviewer")
    send(carol, 'Review my plan [[fake reply="Looks fine." tokens=2]]')
    wait_reply_done(carol)
    expect(carol.get_by_text("Preset: Careful reviewer")).to_be_visible()
    request = [r for r in live.upstream.completions() if "Review my plan" in json.dumps(r["body"])][0]["body"]
    assert request["model"] == "gpt-4o"
    assert request["temperature"] == 0.1
    assert request["messages"][0] == {"role": "system", "content": "Review like a careful senior engineer."}
    carol.reload()
    expect(carol.get_by_text("Preset: Careful reviewer")).to_be_visible()
    shot(carol, "preset-used")

    context, bob = another_member(browser, live, watch, "bob")
    try:
        open_new_chat(bob)
        expect(bob.get_by_label("Start from a preset")).to_be_hidden()
        presets = json.loads(bob.request.get("/api/presets/").text())["presets"]
        assert all(p["name"] != "Careful reviewer" for p in presets)
    finally:
        context.close()
    watch.assert_clean()


def test_folders_collapse_after_a_reload_and_move_by_keyboard(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    # A reply of its own: the automatic title repeats it, and earlier tests of this session's
    # server left conversations titled after their short replies ("Ok") in alice's list.
    marker = f"Note {time.time_ns() % 10**9}"
    send(page, f'Filed [[fake reply="{marker}." tokens=1]]')
    wait_reply_done(page)
    title = titled(page, "Filed")

    page.get_by_role("button", name="New folder").click()
    page.get_by_label("Folder name").fill("Projects")
    page.get_by_role("button", name="Save").click()
    folder = page.get_by_role("button", name=re.compile(r"^Projects"))
    expect(folder).to_have_attribute("aria-expanded", "true")

    sidebar = page.get_by_role("navigation", name="Conversation list")
    item = sidebar.get_by_role("listitem").filter(has=page.get_by_role("link", name=title, exact=True))
    item.get_by_role("link").focus()
    item.get_by_role("button", name="Move to folder").focus()
    page.keyboard.press("Enter")
    page.get_by_label("Folder", exact=True).select_option(label="Projects")
    page.get_by_role("button", name="Move", exact=True).click()
    in_folder = page.locator("section.folder").get_by_role("link", name=title, exact=True)
    expect(in_folder).to_be_visible()

    folder.click()
    expect(folder).to_have_attribute("aria-expanded", "false")
    expect(in_folder).to_be_hidden()
    page.reload()
    folder = page.get_by_role("button", name=re.compile(r"^Projects"))
    expect(folder).to_have_attribute("aria-expanded", "false")
    # The search covers folders: their names find what is filed in them.
    page.get_by_label("Search").fill("projects")
    expect(page.locator("section.folder").get_by_role("link", name=title, exact=True)).to_be_visible()
    shot(page, "folders")
    watch.assert_clean()


def test_a_prompt_is_inserted_with_slash_and_its_variables_filled_in(alice_page, live, watch):
    page = alice_page
    page.get_by_role("button", name="alice").click()
    page.get_by_role("button", name="Presets and prompts").click()
    library = page.get_by_role("dialog", name="Presets and prompts")
    library.get_by_label("Prompt title").fill("Translate text")
    library.get_by_label("Prompt text").fill("Translate into {{language}}, please:")
    library.get_by_role("button", name="Save prompt").click()
    expect(library.get_by_text("Translate text")).to_be_visible()
    library.get_by_role("button", name="Close").click()

    open_new_chat(page)
    box = page.get_by_label("Message", exact=True)
    box.press_sequentially("/tra")
    menu = page.get_by_role("listbox", name="Prompts")
    expect(menu.get_by_role("option", name="Translate text")).to_be_visible()
    box.press("Enter")
    fill = page.get_by_role("dialog", name="Fill in “Translate text”")
    fill.get_by_label("language").fill("French")
    fill.get_by_role("button", name="Insert").click()
    expect(box).to_have_value("Translate into French, please:")
    shot(page, "prompt-inserted")
    box.press("Enter")
    wait_reply_done(page)
    asked = [r["body"] for r in live.upstream.completions() if "Translate into French" in json.dumps(r["body"])]
    assert asked[0]["messages"][-1]["content"] == "Translate into French, please:"
    expect(last_reply(page)).to_be_visible()
    watch.assert_clean()

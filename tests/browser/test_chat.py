"""The chat interface in Debian's chromium against a live daphne and the fake upstream.

Elements are found the way a person finds them: by role and accessible name or label.
Every test ends with the page's own verdict: no console error, no uncaught exception, no CSP
violation and no request to another origin (the ``watch`` fixture).
"""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, shot, sign_in, wait_for

pytestmark = pytest.mark.browser


_EXPECTED_REPLIES: dict[int, int] = {}
FINAL = re.compile(r"^(complete|stopped|interrupted|error|blocked)$")


def send(page, text: str):
    """Type a message and press Enter; remember that one more reply is due."""
    _EXPECTED_REPLIES[id(page)] = assistant_messages(page).count() + 1
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def assistant_messages(page):
    return page.get_by_role("article", name="Parley said")


def last_reply(page):
    return assistant_messages(page).last


def wait_reply_done(page, timeout: float = 20_000):
    """The reply that is due has arrived and ended, and Send is back in place of Stop."""
    expected = _EXPECTED_REPLIES.pop(id(page), None)
    if expected is not None:
        wait_for(lambda: assistant_messages(page).count() >= expected, timeout / 1000, what="the reply to appear")
    expect(last_reply(page)).to_have_attribute("data-status", FINAL, timeout=timeout)
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=timeout)


def open_new_chat(page):
    menu = page.get_by_role("button", name="Show conversations")
    if menu.is_visible():  # a phone: the list is a drawer
        menu.click()
    page.get_by_role("link", name="New chat").click()
    expect(page.get_by_role("heading", name="New chat", level=1)).to_be_visible()


def saved_reply(live, conversation_id: str) -> dict:
    code = (
        "import json; from chat.models import Message; "
        f"m = Message.objects.filter(conversation_id='{conversation_id}', role='assistant')"
        ".order_by('-created_at').first(); "
        "print(json.dumps({'content': m.content, 'status': m.status}))"
    )
    return json.loads(live.shell(code).strip().splitlines()[-1])


def current_conversation_id(page) -> str:
    match = re.search(r"/c/([0-9a-f-]{36})/", page.url)
    assert match, page.url
    return match.group(1)


# --- sign in, send, stream ------------------------------------------------------------------------
def test_a_member_signs_in_sends_and_watches_the_reply_grow(page, live, watch):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    shot(page, "sign-in")
    sign_in(page, "alice")
    open_new_chat(page)
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    reply = "Streaming replies arrive word by word so that you can read them while the model is still writing."
    send(page, f'Tell me about streaming [[fake reply="{reply}" token_delay=0.08]]')

    # The user's message appears, then the reply grows in several visible steps.
    expect(page.get_by_role("article", name="You said").last).to_contain_text("Tell me about streaming")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    lengths = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        text = last_reply(page).locator(".message-body").inner_text() if assistant_messages(page).count() else ""
        if text and (not lengths or len(text) != lengths[-1]):
            lengths.append(len(text))
        if page.get_by_role("button", name="Send").is_visible():
            break
        time.sleep(0.05)
    assert len(lengths) >= 4, f"the reply should be seen growing in steps, saw lengths {lengths}"
    assert lengths == sorted(lengths)
    wait_reply_done(page)
    expect(last_reply(page).locator(".message-body")).to_have_text(reply)
    # The address is the conversation's own, the sidebar lists it, the title arrives by itself.
    conversation_id = current_conversation_id(page)
    expect(page.get_by_role("navigation", name="Conversation list").get_by_role("link")).not_to_have_count(0)
    expect(page.get_by_role("heading", level=1)).not_to_have_text("New chat")
    # Tokens and cost are there for the hover.
    expect(last_reply(page).locator(".message-meta")).to_contain_text("tokens")
    assert saved_reply(live, conversation_id) == {"content": reply, "status": "complete"}
    shot(page, "reply-complete")
    watch.assert_clean()


def test_markdown_code_and_maths_render_with_a_copy_button(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    answer = (
        "## Result\\n\\nA **bold** claim with a [link](https://example.com/docs).\\n\\n"
        "| n | square |\\n|---|---:|\\n| 3 | 9 |\\n\\n"
        "```python\\ndef square(n):\\n    return n * n\\n```\\n\\nEuler: $e^{i\\\\pi} + 1 = 0$"
    )
    send(page, f'Show me markdown [[fake reply="{answer}" tokens=8]]')
    wait_reply_done(page)
    reply = last_reply(page)
    expect(reply.get_by_role("heading", name="Result")).to_be_visible()
    expect(reply.get_by_role("table")).to_be_visible()
    expect(reply.get_by_role("link", name="link")).to_have_attribute("href", "https://example.com/docs")
    expect(reply.locator("code.hljs .hljs-keyword").first).to_have_text("def")  # highlighted
    expect(reply.locator(".math .katex").first).to_be_visible()  # KaTeX arrived on demand
    reply.get_by_role("button", name="Copy code").click()
    shot(page, "markdown")
    watch.assert_clean()


# --- reload, stop, regenerate, edit ---------------------------------------------------------------
def test_a_reload_mid_reply_shows_it_finish_with_the_same_text(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, "Write something long [[fake tokens=40 token_delay=0.1]]")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(last_reply(page).locator(".message-body")).not_to_have_text("", timeout=5000)
    wait_for(lambda: len(last_reply(page).locator(".message-body").inner_text()) > 20, 10, what="a partial reply")
    conversation_id = current_conversation_id(page)
    page.reload()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()  # still streaming after the reload
    wait_reply_done(page, timeout=30_000)
    saved = saved_reply(live, conversation_id)
    assert saved["status"] == "complete"
    expect(last_reply(page).locator(".message-body")).to_have_text(saved["content"])
    assert len(saved["content"].split()) == 40
    watch.assert_clean()


def test_stop_keeps_the_partial_text_and_closes_the_upstream_request(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, "Go on and on [[fake tokens=200 token_delay=0.1]]")
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    wait_for(lambda: len(last_reply(page).locator(".message-body").inner_text()) > 10, 10, what="a partial reply")
    stop.click()
    wait_reply_done(page)
    reply = last_reply(page)
    expect(reply).to_contain_text("You stopped this reply")
    expect(reply.get_by_role("button", name="Regenerate").first).to_be_visible()
    partial = reply.locator(".message-body").inner_text()
    assert 0 < len(partial.split()) < 200
    saved = saved_reply(live, current_conversation_id(page))
    assert saved["status"] == "stopped"
    assert saved["content"].strip() == partial.strip()
    # The upstream saw its request closed long before the 20 s the reply would have taken.
    record = [r for r in live.upstream.completions() if "Go on and on" in json.dumps(r["body"])][-1]
    assert record["disconnected_at"] is not None
    assert record["deltas_sent"] < 200
    watch.assert_clean()


def test_regenerate_replaces_the_last_reply(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Pick a colour [[fake reply="Blue." tokens=2]]')
    wait_reply_done(page)
    expect(last_reply(page).locator(".message-body")).to_have_text("Blue.")
    live.upstream.script({"reply": "Green, on second thought.", "tokens": 3})
    last_reply(page).get_by_role("button", name="Regenerate").click()
    wait_reply_done(page)
    expect(last_reply(page).locator(".message-body")).to_have_text("Green, on second thought.")
    expect(assistant_messages(page)).to_have_count(1)
    watch.assert_clean()


def test_edit_the_last_message_and_resend(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'First wording [[fake reply="Answer one." tokens=2]]')
    wait_reply_done(page)
    mine = page.get_by_role("article", name="You said").last
    mine.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name="Edit message")
    editor.fill('Second wording [[fake reply="Answer two." tokens=2]]')
    page.get_by_role("button", name="Save and send").click()
    wait_reply_done(page)
    expect(page.get_by_role("article", name="You said")).to_have_count(1)
    expect(page.get_by_role("article", name="You said")).to_contain_text("Second wording")
    expect(assistant_messages(page)).to_have_count(1)
    expect(last_reply(page).locator(".message-body")).to_have_text("Answer two.")
    watch.assert_clean()


def test_a_failed_reply_explains_itself_and_offers_a_retry(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, "Fail please [[fake tokens=30 token_delay=0.05 cut_after=5 cut=error stream_error=overloaded]]")
    wait_reply_done(page)
    reply = last_reply(page)
    expect(reply.locator(".note")).to_be_visible()
    expect(reply.get_by_role("note").get_by_role("button", name=re.compile("Try again|Regenerate"))).to_be_visible()
    shot(page, "failed-reply")
    watch.assert_clean()


def test_a_reply_cut_at_the_token_limit_says_so(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, "Be long [[fake tokens=5 finish_reason=length]]")
    wait_reply_done(page)
    expect(last_reply(page)).to_contain_text("cut off at the maximum reply length")
    watch.assert_clean()


def test_a_reply_parley_ended_at_its_reserved_length_says_why(alice_page, live, watch):
    # Issue 20 item 8: the fake upstream ignores max_tokens and writes on; Parley ends the reply.
    page = alice_page
    open_new_chat(page)
    send(page, 'Short first [[fake reply="Ok." tokens=1]]')
    wait_reply_done(page)
    page.get_by_role("button", name="Chat settings").click()
    dialog = page.get_by_role("dialog", name="Chat settings")
    dialog.get_by_label("Maximum reply tokens").fill("20")
    dialog.get_by_role("button", name="Save", exact=True).click()
    expect(dialog).to_be_hidden()
    send(page, "Write for ever [[fake tokens=400 token_delay=0.005]]")
    wait_reply_done(page)
    note = last_reply(page).get_by_role("note")
    expect(note).to_contain_text("Parley ended this reply at 20 tokens")
    expect(note.get_by_role("button", name="Change settings")).to_be_visible()
    watch.assert_clean()


# --- the sidebar -----------------------------------------------------------------------------------
def test_rename_search_pin_and_delete_from_the_sidebar(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Apricot harvest schedule [[fake reply="Harvest in June." tokens=2]]')
    wait_reply_done(page)
    open_new_chat(page)
    send(page, 'Quince jam [[fake reply="Cook it slowly with a pinch of zanzibarite." tokens=3]]')
    wait_reply_done(page)
    sidebar = page.get_by_role("navigation", name="Conversation list")

    # Rename
    # The automatic title of the first chat is the fake model's reply.
    item = sidebar.get_by_role("listitem").filter(has=page.get_by_role("link", name="Harvest in June"))
    item.hover()
    item.get_by_role("button", name="Rename").click()
    title = page.get_by_role("textbox", name="Conversation title")
    title.fill("Apricot orchard plan")
    title.press("Enter")
    expect(sidebar.get_by_role("link", name="Apricot orchard plan")).to_be_visible()

    # Search over titles and message text
    search = page.get_by_role("searchbox", name="Search")
    search.fill("zanzibarite")
    expect(sidebar.get_by_role("link")).to_have_count(1)
    expect(sidebar.get_by_role("link").first).to_have_text(re.compile("zanzibarite"))
    search.fill("Apricot orchard")
    expect(sidebar.get_by_role("link")).to_have_count(1)
    search.fill("")
    expect(sidebar.get_by_role("link", name="Apricot orchard plan")).to_be_visible()

    # Pin: it moves into the Pinned group
    orchard = sidebar.get_by_role("listitem").filter(has=page.get_by_role("link", name="Apricot orchard plan"))
    orchard.hover()
    orchard.get_by_role("button", name="Pin").click()
    pinned = sidebar.get_by_role("region", name="Pinned")
    expect(pinned.get_by_role("link", name="Apricot orchard plan")).to_be_visible()

    # Delete, after confirming
    orchard = sidebar.get_by_role("listitem").filter(has=page.get_by_role("link", name="Apricot orchard plan"))
    orchard.hover()
    orchard.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete conversation?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Delete").click()
    expect(sidebar.get_by_role("link", name="Apricot orchard plan")).to_have_count(0)
    page.reload()
    expect(
        page.get_by_role("navigation", name="Conversation list").get_by_role("link", name="Apricot orchard plan")
    ).to_have_count(0)
    watch.assert_clean()


def test_a_title_being_edited_survives_a_sidebar_redraw(alice_page, live, watch, context):
    """The list redraws when any conversation changes (another tab, a title written by the
    model); a rename in progress keeps its text, its focus and its place."""
    page = alice_page
    open_new_chat(page)
    send(page, 'Plum tart [[fake reply="Plum tart recipe." tokens=2]]')
    wait_reply_done(page)
    open_new_chat(page)
    send(page, 'Pear cider [[fake reply="Pear cider notes." tokens=2]]')
    wait_reply_done(page)
    pear_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    sidebar = page.get_by_role("navigation", name="Conversation list")
    expect(sidebar.get_by_role("link", name="Pear cider notes")).to_be_visible()

    plum = sidebar.get_by_role("listitem").filter(has=page.get_by_role("link", name="Plum tart recipe"))
    plum.hover()
    plum.get_by_role("button", name="Rename").click()
    title = page.get_by_role("textbox", name="Conversation title")
    # The input opens focused with the old title selected: typing replaces it.
    expect(title).to_be_focused()
    page.keyboard.type("Plum")
    expect(title).to_have_value("Plum")
    # Meanwhile the member pins the other chat elsewhere: every tab's list is redrawn.
    csrf = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
    answer = page.request.patch(
        f"/api/conversations/{pear_id}/", data={"pinned": True}, headers={"X-CSRFToken": csrf, "Referer": live.base_url}
    )
    assert answer.ok, answer.text()
    expect(sidebar.get_by_role("region", name="Pinned").get_by_role("link", name="Pear cider notes")).to_be_visible()

    expect(title).to_be_focused()
    expect(title).to_have_value("Plum")
    page.keyboard.type(" and apricot tart")
    page.keyboard.press("Enter")
    expect(sidebar.get_by_role("link", name="Plum and apricot tart")).to_be_visible()
    watch.assert_clean()


def test_export_downloads_markdown_and_json(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Export me [[fake reply="Exported words." tokens=2]]')
    wait_reply_done(page)
    page.get_by_role("button", name="Export").click()
    with page.expect_download() as markdown:
        page.get_by_role("link", name="Export as Markdown").click()
    text = open(markdown.value.path(), encoding="utf-8").read()
    assert "Export me" in text and "Exported words." in text
    assert markdown.value.suggested_filename.endswith(".md")
    if not page.get_by_role("link", name="Export as JSON").is_visible():
        page.get_by_role("button", name="Export").click()
    with page.expect_download() as exported:
        page.get_by_role("link", name="Export as JSON").click()
    data = json.loads(open(exported.value.path(), encoding="utf-8").read())
    assert [m["content"] for m in data["messages"]][-1] == "Exported words."
    watch.assert_clean()


# --- settings, drafts, connection ---------------------------------------------------------------------
def test_settings_reach_the_upstream_and_defaults_apply_to_new_chats(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Hello [[fake reply="Hi." tokens=1]]')
    wait_reply_done(page)
    page.get_by_role("button", name="Chat settings").click()
    dialog = page.get_by_role("dialog", name="Chat settings")
    dialog.get_by_label("Model").select_option(label="GPT-4o · Fake upstream")
    dialog.get_by_label("System prompt").fill("Answer like a pirate.")
    dialog.get_by_label("Temperature").fill("0.4")
    dialog.get_by_label("Maximum reply tokens").fill("321")
    dialog.get_by_label("Stop sequences").fill("ARR\nYO")
    dialog.get_by_role("button", name="Save", exact=True).click()
    expect(dialog).to_be_hidden()
    send(page, 'Again [[fake reply="Arr." tokens=1]]')
    wait_reply_done(page)
    body = [r for r in live.upstream.completions() if "Again" in json.dumps(r["body"])][0]["body"]
    assert body["model"] == "gpt-4o"
    assert body["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
    assert body["temperature"] == 0.4 and body["max_tokens"] == 321 and body["stop"] == ["ARR", "YO"]

    # Defaults for new chats
    page.get_by_role("button", name="Chat settings").click()
    dialog.get_by_label("System prompt").fill("Default voice.")
    dialog.get_by_role("button", name="Save as my defaults").click()
    expect(dialog).to_be_hidden()
    open_new_chat(page)
    send(page, 'Fresh chat [[fake reply="Ok." tokens=1]]')
    wait_reply_done(page)
    body = [r for r in live.upstream.completions() if "Fresh chat" in json.dumps(r["body"])][0]["body"]
    assert body["messages"][0] == {"role": "system", "content": "Default voice."}
    live.shell("from accounts.models import User; User.objects.filter(username='alice').update(chat_defaults={})")
    watch.assert_clean()


def test_a_draft_survives_a_reload_and_a_fresh_sign_in(alice_page, live, watch, context):
    page = alice_page
    open_new_chat(page)
    page.get_by_label("Message", exact=True).fill("An unfinished thought")
    page.wait_for_timeout(600)  # drafts are saved shortly after typing stops
    page.reload()
    expect(page.get_by_label("Message", exact=True)).to_have_value("An unfinished thought")
    page.get_by_role("button", name="alice").click()
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "alice")
    page.goto("/new/")
    expect(page.get_by_label("Message", exact=True)).to_have_value("An unfinished thought")
    page.get_by_label("Message", exact=True).fill("")
    watch.assert_clean()


def test_enter_sends_and_shift_enter_adds_a_line(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    box = page.get_by_label("Message", exact=True)
    box.fill("line one")
    box.press("Shift+Enter")
    box.type('line two [[fake reply="Two lines." tokens=1]]')
    assert "\n" in box.input_value()
    box.press("Enter")
    wait_reply_done(page)
    expect(page.get_by_role("article", name="You said").last).to_contain_text("line one\nline two")
    watch.assert_clean()


def test_the_connection_banner_and_resume_after_the_socket_drops(alice_page, live, watch):
    page = alice_page
    # Every socket goes through Playwright, so the test can cut it and refuse reconnects for a while.
    links = []
    down = {"now": False}

    def route(ws):
        if down["now"]:
            ws.close(code=4000, reason="test: network down")
            return
        links.append((ws, ws.connect_to_server()))

    page.route_web_socket(re.compile(r"/ws/chat/$"), route)
    page.reload()
    open_new_chat(page)
    send(page, "Keep going [[fake tokens=40 token_delay=0.1]]")
    wait_for(lambda: len(last_reply(page).locator(".message-body").inner_text()) > 10, 10, what="a partial reply")
    conversation_id = current_conversation_id(page)

    down["now"] = True
    ws, server = links[-1]
    server.close()
    ws.close(code=4000, reason="test: network down")
    banner = page.get_by_role("status").filter(has_text="Reconnecting")
    expect(banner).to_be_visible(timeout=10_000)
    shot(page, "connection-banner")
    page.wait_for_timeout(1500)  # the reply goes on without us meanwhile
    down["now"] = False
    expect(banner).to_be_hidden(timeout=30_000)
    wait_reply_done(page, timeout=30_000)
    saved = saved_reply(live, conversation_id)
    assert saved["status"] == "complete"
    expect(last_reply(page).locator(".message-body")).to_have_text(saved["content"])
    assert len(saved["content"].split()) == 40
    watch.assert_clean()


# --- other members, pages, accessibility ------------------------------------------------------------
def test_another_members_conversation_is_not_found(browser, live, alice_page, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Private matter [[fake reply="Secret." tokens=1]]')
    wait_reply_done(page)
    url = page.url
    bob_context = browser.new_context(base_url=live.base_url)
    try:
        bob = sign_in(bob_context.new_page(), "bob")
        response = bob.goto(url)
        assert response.status == 404
        bob.goto("/")
        expect(bob.get_by_text("Private matter")).to_have_count(0)
    finally:
        bob_context.close()
    watch.assert_clean()


def test_the_usage_page_shows_this_months_spending(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Count me [[fake reply="Counted." tokens=1]]')
    wait_reply_done(page)
    expect(page.locator("#budget-line")).to_contain_text("tokens")
    page.get_by_role("link", name=re.compile("tokens used this month|left this month|Usage")).first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Your usage")
    expect(page.get_by_role("cell", name=re.compile("gpt-4o", re.I)).first).to_be_visible()
    shot(page, "usage")
    watch.assert_clean()


def test_a_phone_sized_screen_works(browser, live, watch):
    context = browser.new_context(
        base_url=live.base_url, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    context.add_init_script(
        "window.__cspViolations=[];document.addEventListener('securitypolicyviolation',e=>window.__cspViolations.push(e.violatedDirective))"
    )
    try:
        page = context.new_page()
        watch.attach(page)
        sign_in(page, "alice")
        open_new_chat(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        send(page, 'Small screen [[fake reply="Fits nicely on a phone." tokens=3]]')
        wait_reply_done(page)
        expect(last_reply(page)).to_be_in_viewport()
        menu = page.get_by_role("button", name="Show conversations")
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(page.get_by_role("complementary", name="Conversations")).not_to_be_in_viewport()
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        sidebar = page.get_by_role("navigation", name="Conversation list")
        expect(sidebar.get_by_role("link", name=re.compile("Fits nicely|Small screen")).first).to_be_in_viewport()
        shot(page, "phone-sidebar")
        sidebar.get_by_role("link", name=re.compile("Fits nicely|Small screen")).first.click()
        expect(page.get_by_role("complementary", name="Conversations")).not_to_be_in_viewport()
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        shot(page, "phone-chat")
    finally:
        context.close()
    watch.assert_clean()


def test_every_control_has_a_name_and_the_keyboard_reaches_them(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    for role, name in [
        ("link", "New chat"),
        ("searchbox", "Search"),
        ("textbox", "Message"),
        ("button", "Send"),
        ("button", "Chat settings"),
    ]:
        expect(page.get_by_role(role, name=name, exact=True)).to_be_visible()
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, a[href], input, select, textarea, summary')]
              .filter((el) => el.offsetParent !== null)
              .filter((el) => !(el.getAttribute('aria-label') || el.textContent.trim()
                               || (el.labels && el.labels.length) || el.title))
              .map((el) => el.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []
    # Keyboard: Tab reaches the composer and Send, and the focus is drawn.
    page.get_by_label("Message", exact=True).focus()
    page.keyboard.type('Typed with the keyboard [[fake reply="Heard." tokens=1]]')
    page.keyboard.press("Tab")
    send_button = page.get_by_role("button", name="Send")
    expect(send_button).to_be_focused()
    outline = send_button.evaluate("(el) => getComputedStyle(el).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    wait_reply_done(page)
    expect(last_reply(page).locator(".message-body")).to_have_text("Heard.")
    watch.assert_clean()


def test_the_theme_follows_the_system_and_the_toggle_is_remembered(browser, live, watch):
    context = browser.new_context(base_url=live.base_url, color_scheme="dark")
    try:
        page = context.new_page()
        watch.attach(page)
        sign_in(page, "alice")
        background = lambda: page.evaluate("getComputedStyle(document.body).backgroundColor")  # noqa: E731
        assert background() == "rgb(33, 33, 33)"
        page.get_by_role("button", name="alice").click()
        toggle = page.get_by_role("button", name=re.compile("^Theme"))
        toggle.click()  # system → light
        expect(toggle).to_have_text("Theme: light")
        assert background() == "rgb(255, 255, 255)"
        page.reload()
        assert background() == "rgb(255, 255, 255)"
    finally:
        context.close()
    watch.assert_clean()


def test_no_console_errors_or_csp_violations_on_any_page(alice_page, browser, live, watch):
    page = alice_page
    for url in ["/", "/new/", "/usage/", "/accounts/password/"]:
        page.goto(url)
        page.wait_for_load_state("networkidle")
    admin_context = browser.new_context(base_url=live.base_url)
    admin_context.add_init_script(
        "window.__cspViolations=[];document.addEventListener('securitypolicyviolation',e=>window.__cspViolations.push(e.violatedDirective))"
    )
    try:
        admin = admin_context.new_page()
        watch.attach(admin)
        admin.goto("/admin/login/")
        admin.get_by_label("Username").fill("root")
        admin.get_by_label("Password").fill(PASSWORD)
        admin.get_by_role("button", name=re.compile("Log in|Sign in")).click()
        admin.wait_for_load_state("networkidle")
        for url in ["/admin/", "/admin/chat/conversation/", "/admin/accounts/user/", "/"]:
            admin.goto(url)
            admin.wait_for_load_state("networkidle")
        shot(admin, "admin-index")
    finally:
        admin_context.close()
    watch.assert_clean()


# --- limits and refusals, explained in words ------------------------------------------------------------
def test_a_blocked_message_says_so_and_offers_to_edit(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, "Please FLAGME now")  # the fake upstream's moderation flags this word
    wait_reply_done(page)
    reply = last_reply(page)
    expect(reply).to_contain_text("blocked by moderation")
    reply.get_by_role("button", name="Edit your message").click()
    expect(page.get_by_role("textbox", name="Edit message")).to_be_focused()
    shot(page, "blocked")
    watch.assert_clean()


def test_left_out_history_is_announced_on_the_reply(alice_page, live, watch):
    live.shell(
        "from chat.models import ChatModel, Provider; "
        "ChatModel.objects.get_or_create(provider=Provider.objects.get(name='Fake upstream'), model_id='tiny-context', "
        "defaults={'display_name': 'Tiny context', 'context_window': 400, 'max_output_tokens': 60})"
    )
    page = alice_page
    page.reload()
    open_new_chat(page)
    page.get_by_role("button", name="Chat settings").click()
    dialog = page.get_by_role("dialog", name="Chat settings")
    dialog.get_by_label("Model").select_option(label="Tiny context · Fake upstream")
    dialog.get_by_role("button", name="Save", exact=True).click()
    filler = " ".join(["alpha beta gamma delta epsilon"] * 12)
    for number in range(4):
        send(page, f'Turn {number}: {filler} [[fake reply="{filler}" tokens=6]]')
        wait_reply_done(page)
    note = last_reply(page).get_by_text(re.compile(r"earlier messages? (was|were) not sent: context limit"))
    expect(note).to_be_visible()
    watch.assert_clean()


def test_an_exhausted_budget_is_explained_and_the_message_is_kept(alice_page, live, watch):
    live.shell("from accounts.models import User; User.objects.filter(username='alice').update(monthly_token_budget=1)")
    try:
        page = alice_page
        page.reload()
        open_new_chat(page)
        page.get_by_label("Message", exact=True).fill("Anything at all")
        page.get_by_label("Message", exact=True).press("Enter")
        alert = page.get_by_role("alert").filter(has_text="budget")
        expect(alert).to_be_visible()
        # The message itself was saved; a reply can be asked for again later.
        mine = page.get_by_role("article", name="You said").last
        expect(mine).to_contain_text("Anything at all")
        expect(mine.get_by_role("button", name="Get a reply")).to_be_visible()
        expect(page.locator("#budget-line")).to_contain_text("left this month")
        shot(page, "budget-exhausted")
    finally:
        live.shell(
            "from accounts.models import User; User.objects.filter(username='alice').update(monthly_token_budget=None)"
        )
    watch.assert_clean()

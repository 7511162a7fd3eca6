"""Branches, forks and several answers in Debian's chromium, against a live daphne and the fake upstream.

Elements are found by role and accessible name or label, as in tests/browser/test_chat.py.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, wait_for
from tests.browser.test_chat import (
    FINAL,
    assistant_messages,
    current_conversation_id,
    last_reply,
    open_new_chat,
    send,
    wait_reply_done,
)

pytestmark = pytest.mark.browser


def mine(page):
    return page.get_by_role("article", name="You said")


def bodies(page):
    """The texts of the thread shown, oldest first."""
    return [text.strip() for text in page.locator("#thread .message-body").all_inner_texts()]


def test_editing_an_earlier_message_makes_a_branch_and_the_member_switches_between_the_two(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'One [[fake reply="First answer." tokens=2]]')
    wait_reply_done(page)
    send(page, 'Two [[fake reply="Second answer." tokens=2]]')
    wait_reply_done(page)

    mine(page).first.get_by_role("button", name="Edit").click()
    page.get_by_role("textbox", name="Edit message").fill('Uno [[fake reply="Primera." tokens=1]]')
    page.get_by_role("button", name="Save and send").click()
    expect(mine(page)).to_have_count(1)
    wait_reply_done(page)
    first = mine(page).first
    expect(first).to_contain_text("Uno")
    expect(last_reply(page).locator(".message-body")).to_have_text("Primera.")
    expect(first.get_by_text("2 / 2")).to_be_visible()
    shot(page, "branch-edited")

    first.get_by_role("button", name="Previous version").click()
    expect(mine(page)).to_have_count(2)
    expect(mine(page).first.get_by_text("1 / 2")).to_be_visible()
    assert [text[:3] for text in bodies(page)] == ["One", "Fir", "Two", "Sec"]

    # The branch picked is saved: a reload shows it.
    page.reload()
    expect(mine(page)).to_have_count(2)
    expect(mine(page).first.get_by_text("1 / 2")).to_be_visible()
    expect(mine(page).first.get_by_role("button", name="Previous version")).to_be_disabled()

    mine(page).first.get_by_role("button", name="Next version").click()
    expect(mine(page)).to_have_count(1)
    expect(mine(page).first).to_contain_text("Uno")
    expect(last_reply(page).locator(".message-body")).to_have_text("Primera.")
    watch.assert_clean()


def test_regenerating_twice_keeps_three_versions(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Pick a colour [[fake reply="Blue." tokens=1]]')
    wait_reply_done(page)
    # The automatic title is a request of its own: let it pass before scripting the replies.
    expect(page.get_by_role("heading", level=1)).not_to_have_text(re.compile("^Pick a colour"), timeout=10_000)
    for colour in ("Green.", "Red."):
        live.upstream.script({"reply": colour, "tokens": 1})
        last_reply(page).get_by_role("button", name="Regenerate").click()
        expect(last_reply(page).locator(".message-body")).to_have_text(colour, timeout=20_000)
        wait_reply_done(page)
    reply = last_reply(page)
    expect(reply.get_by_text("3 / 3")).to_be_visible()
    expect(assistant_messages(page)).to_have_count(1)
    shot(page, "branch-three-versions")

    reply.get_by_role("button", name="Previous version").click()
    expect(last_reply(page).locator(".message-body")).to_have_text("Green.")
    last_reply(page).get_by_role("button", name="Previous version").click()
    expect(last_reply(page).locator(".message-body")).to_have_text("Blue.")
    expect(last_reply(page).get_by_text("1 / 3")).to_be_visible()
    watch.assert_clean()


def test_fork_starts_a_new_conversation_from_the_path_up_to_a_message(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Plan a trip [[fake reply="Go to Lyon." tokens=2]]')
    wait_reply_done(page)
    send(page, 'And then? [[fake reply="Then Annecy." tokens=2]]')
    wait_reply_done(page)
    original = current_conversation_id(page)

    assistant_messages(page).first.get_by_role("button", name="Fork").click()
    page.wait_for_url(lambda url: original not in url and "/c/" in url)
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"\(fork\)$"))
    expect(assistant_messages(page)).to_have_count(1)
    expect(mine(page)).to_have_count(1)
    expect(last_reply(page).locator(".message-body")).to_have_text("Go to Lyon.")

    # Going on in the fork sends only the forked path upstream; the original is unchanged.
    send(page, 'Somewhere else? [[fake reply="Grenoble." tokens=1]]')
    wait_reply_done(page)
    body = [r for r in live.upstream.completions() if "Somewhere else?" in json.dumps(r["body"])][-1]["body"]
    assert [m["content"][:10] for m in body["messages"]] == ["Plan a tri", "Go to Lyon", "Somewhere "]
    page.goto(f"/c/{original}/")
    expect(assistant_messages(page)).to_have_count(2)
    watch.assert_clean()


def test_three_answers_side_by_side_and_the_member_continues_from_the_second(alice_page, live, watch):
    page = alice_page
    open_new_chat(page)
    send(page, 'Hello [[fake reply="Hi." tokens=1]]')
    wait_reply_done(page)
    page.get_by_role("button", name="Chat settings").click()
    dialog = page.get_by_role("dialog", name="Chat settings")
    dialog.get_by_label("Answers per message").fill("3")
    dialog.get_by_role("button", name="Save", exact=True).click()
    expect(dialog).to_be_hidden()

    box = page.get_by_label("Message", exact=True)
    box.fill('Name a fruit [[fake reply="Apple." tokens=1]]')
    box.press("Enter")
    answers = page.get_by_role("group", name="Answers to pick from").get_by_role("article")
    expect(answers).to_have_count(3, timeout=20_000)
    for n in range(3):
        expect(answers.nth(n)).to_have_attribute("data-status", FINAL, timeout=20_000)
    expect(answers.nth(0).locator(".message-body")).to_have_text("Apple.")
    expect(answers.nth(1).locator(".message-body")).to_have_text("(choice 1) Apple.")
    expect(answers.nth(2).locator(".message-body")).to_have_text("(choice 2) Apple.")
    request = [r for r in live.upstream.completions() if "Name a fruit" in json.dumps(r["body"])][-1]["body"]
    assert request["n"] == 3
    shot(page, "three-answers")

    page.get_by_role("button", name="Continue from answer 2").click()
    expect(page.get_by_role("group", name="Answers to pick from")).to_have_count(0)
    expect(last_reply(page).locator(".message-body")).to_have_text("(choice 1) Apple.")
    expect(last_reply(page).get_by_text("2 / 3")).to_be_visible()

    page.get_by_role("button", name="Chat settings").click()
    dialog.get_by_label("Answers per message").fill("1")
    dialog.get_by_role("button", name="Save", exact=True).click()
    expect(dialog).to_be_hidden()
    send(page, 'Why that one? [[fake reply="It is crisp." tokens=1]]')
    wait_reply_done(page)
    body = [r for r in live.upstream.completions() if "Why that one?" in json.dumps(r["body"])][-1]["body"]
    assert "n" not in body
    history = [(m["role"], m["content"]) for m in body["messages"]]
    assert history[-3][0] == "user" and history[-3][1].startswith("Name a fruit")
    assert history[-2] == ("assistant", "(choice 1) Apple.")
    assert history[-1][1].startswith("Why that one?")
    wait_for(lambda: bodies(page)[-1] == "It is crisp.", 10, what="the reply in the thread")
    watch.assert_clean()


def test_words_to_avoid_seed_and_json_reach_the_upstream_and_a_model_without_a_known_encoding_hides_them(
    alice_page, live, watch
):
    page = alice_page
    live.shell(
        "from chat.models import ChatModel, Provider; "
        "ChatModel.objects.get_or_create(provider=Provider.objects.first(), model_id='llama-3.1-8b', "
        "defaults={'display_name': 'Llama 3.1 8B', 'context_window': 8000})"
    )
    page.reload()
    open_new_chat(page)
    page.get_by_role("button", name="Chat settings").click()
    dialog = page.get_by_role("dialog", name="Chat settings")
    dialog.get_by_label("Model").select_option(label="Llama 3.1 8B · Fake upstream")
    expect(dialog.get_by_label("Avoid words")).to_be_hidden()
    dialog.get_by_label("Model").select_option(label="GPT-4o · Fake upstream")
    dialog.get_by_label("Avoid words").fill("banana\ncherry")
    dialog.get_by_label("Seed").fill("7")
    dialog.get_by_label("Response format").select_option(label="JSON object")
    dialog.get_by_role("button", name="Save", exact=True).click()
    expect(dialog).to_be_hidden()
    send(page, 'Fruit as JSON [[fake reply="{}" tokens=1]]')
    wait_reply_done(page)
    # The first request is the reply's (the automatic title's comes after it).
    body = [r for r in live.upstream.completions() if "Fruit as JSON" in json.dumps(r["body"])][0]["body"]
    assert body["seed"] == 7 and body["response_format"] == {"type": "json_object"}
    assert body["logit_bias"] and set(body["logit_bias"].values()) == {-100}

    # A value out of range is refused with a readable error, and nothing changes.
    page.get_by_role("button", name="Chat settings").click()
    dialog.get_by_label("Answers per message").fill("9")
    dialog.get_by_role("button", name="Save", exact=True).click()
    expect(dialog.get_by_role("alert")).to_contain_text("Answers per message")
    dialog.get_by_role("button", name="Cancel").click()
    live.shell("from chat.models import ChatModel; ChatModel.objects.filter(model_id='llama-3.1-8b').delete()")
    watch.assert_clean()

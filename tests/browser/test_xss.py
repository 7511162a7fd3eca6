"""docs/security.md T12, T13, T14, T17 in a real browser, under Parley's real CSP.

Model output comes from the fake upstream, whole and split across deltas at hostile
boundaries; titles come from the model (automatic titles) and from renames. A
MutationObserver checks the thread after every change, so an unsafe intermediate render
would be caught even if the final one were safe.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.test_chat import last_reply, open_new_chat, send, wait_reply_done
from tests.browser.xss_corpus import CHECK_DOM, DELTAS, PAYLOADS, TITLES

pytestmark = pytest.mark.browser

# The check is compiled by the DevTools protocol together with this function, not by the page
# (eval is refused by Parley's CSP, and must stay refused).
OBSERVE = (
    """
() => {
  const run = """
    + CHECK_DOM
    + """;
  window.__problems = [];
  window.__renders = 0;
  const thread = document.getElementById("thread");
  new MutationObserver((records) => {
    if (records.some((r) => r.type === "childList")) window.__renders += 1;
    for (const problem of run("#thread")) window.__problems.push(problem);
  }).observe(thread, {subtree: true, childList: true, attributes: true, characterData: true});
}
"""
)


def observe(page):
    page.evaluate(OBSERVE)


def problems(page) -> list:
    return page.evaluate("window.__problems") + page.evaluate(CHECK_DOM, "#thread") + page.evaluate(CHECK_DOM, None)


def test_every_prefix_of_every_payload_renders_safely(alice_page, watch):
    """T13 exhaustively: the page's own pipeline, fed each payload one code point at a time."""
    page = alice_page
    render_url = page.locator("link[rel=modulepreload][href*='render']").get_attribute("href")
    page.evaluate(
        """async (url) => {
            const module = await import(url);
            const box = document.createElement("div");
            box.id = "probe";
            box.className = "message-body markdown";
            // Outside #thread: the app redraws the thread when a conversation's state arrives,
            // which would remove the probe mid-test.
            document.body.append(box);
            window.__renderInto = (text) => module.renderMarkdown(box, text);
        }""",
        render_url,
    )
    found = []
    for payload in PAYLOADS + ["".join(parts) for parts in DELTAS]:
        chars = list(payload)
        for end in range(1, len(chars) + 1):
            page.evaluate("(text) => window.__renderInto(text)", "".join(chars[:end]))
            issues = page.evaluate(CHECK_DOM, "#probe")
            if issues:
                found.append((payload, end, issues))
    page.wait_for_timeout(1500)  # KaTeX and highlight.js arrive, and everything is drawn again
    assert found == []
    assert page.evaluate(CHECK_DOM, "#probe") == []
    watch.assert_clean()


def test_hostile_model_output_never_runs_or_leaks(alice_page, live, watch):
    """T12 and T17: the whole corpus as one streamed reply."""
    page = alice_page
    open_new_chat(page)
    observe(page)
    live.upstream.script({"reply": "\n\n".join(PAYLOADS), "tokens": 60, "token_delay": 0.02})
    send(page, "Show me the corpus")
    wait_reply_done(page)
    body = last_reply(page).locator(".message-body")
    expect(body).to_contain_text("click me")
    # Images are links to where they would have come from, and nothing was fetched from there.
    expect(last_reply(page).get_by_role("link", name="Image: secret")).to_have_attribute(
        "href", "https://attacker.test/p.png?d=SECRET"
    )
    page.wait_for_timeout(1500)  # lazy libraries (KaTeX) load and redraw
    assert problems(page) == []
    assert page.evaluate("window.__renders") > 3
    shot(page, "xss-corpus")
    watch.assert_clean()


def test_payloads_split_across_deltas_are_safe_at_every_step(alice_page, live, watch):
    """T13: the split points cut tags, attributes and schemes in the middle."""
    page = alice_page
    open_new_chat(page)
    observe(page)
    deltas = [piece for parts in DELTAS for piece in [*parts, "\n\n"]]
    live.upstream.script({"deltas": deltas, "token_delay": 0.05})
    send(page, "Split payloads please")
    wait_reply_done(page)
    expect(last_reply(page).locator(".message-body")).to_contain_text("Safe start")
    page.wait_for_timeout(1000)
    assert problems(page) == []
    watch.assert_clean()


def test_hostile_titles_are_shown_as_text(alice_page, live, watch):
    """T14: a model-written title and renamed titles, live and after a reload."""
    page = alice_page
    open_new_chat(page)
    # The reply, then the automatic title request: the title is a payload.
    live.upstream.script({"reply": "Fine.", "tokens": 1}, {"reply": TITLES[0], "tokens": 3})
    send(page, "Give this a nasty title")
    wait_reply_done(page)
    heading = page.get_by_role("heading", level=1)
    # The server tidies model-written titles (markdown marks go); what is left is shown as text.
    expect(heading).to_contain_text("<img src=x onerror=", timeout=10_000)
    sidebar = page.get_by_role("navigation", name="Conversation list")
    for title in TITLES[1:]:
        item = sidebar.get_by_role("listitem").filter(has=page.locator("a[aria-current=page]"))
        item.hover()
        item.get_by_role("button", name="Rename").click()
        box = page.get_by_role("textbox", name="Conversation title")
        box.fill(title)
        box.press("Enter")
        expect(sidebar.get_by_role("link", name=title)).to_be_visible()
        expect(heading).to_have_text(title)
        assert page.title().startswith(title)
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLES[-1])
    assert page.evaluate(CHECK_DOM, None) == []
    assert page.evaluate("window.__pwned") is None
    watch.assert_clean()

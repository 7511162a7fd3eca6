"""alice types in the sidebar search and finds a conversation by what it was about: the words of
her search are in it, the phrase is not (the fake upstream's embeddings are hashed words).

The live server of tests/browser/conftest.py, plus an embedding model in its catalog and the
worker (``manage.py db_worker``) that embeds completed turns, as ``manage.py serve`` runs it.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import embedding_worker, shot, wait_for
from tests.browser.test_chat import open_new_chat, send, wait_reply_done

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def search_worker(live):
    with embedding_worker(live):
        yield


def embedded(live, conversation_id: str) -> bool:
    out = live.shell(
        "from chat.models import MessageChunk\n"
        f"print(MessageChunk.objects.filter(conversation_id='{conversation_id}').count())"
    )
    return int(out.strip().splitlines()[-1]) >= 2


def test_the_sidebar_search_finds_a_conversation_by_meaning(alice_page, live, watch, search_worker):
    page = alice_page
    open_new_chat(page)
    send(
        page,
        "We are planning a holiday in Kyoto to see the old temples. "
        '[[fake reply="Kinkaku-ji is golden; go early in the morning." tokens=8]]',
    )
    wait_reply_done(page)
    conversation_id = re.search(r"/c/([0-9a-f-]{36})/", page.url).group(1)
    wait_for(lambda: embedded(live, conversation_id), 60, what="the turn to be embedded by the worker")

    sidebar = page.get_by_role("navigation", name="Conversation list")
    page.get_by_role("searchbox", name="Search").fill("temple holiday Kyoto")
    found = sidebar.get_by_role("listitem").filter(has=page.locator(f'a[data-id="{conversation_id}"]'))
    expect(found).to_be_visible()
    expect(found.locator(".match-kind")).to_have_text("Similar in meaning")
    expect(found.locator(".match-snippet")).to_contain_text("temples")
    expect(sidebar.get_by_role("region", name="Best matches")).to_be_visible()
    expect(page.locator("#search-notice")).to_be_hidden()
    shot(page, "search-by-meaning")

    # Words of no conversation: nothing is close enough in meaning either.
    page.get_by_role("searchbox", name="Search").fill("carburettor gasket torque")
    expect(sidebar.get_by_text(re.compile("No conversations match"))).to_be_visible()

    # A budget that cannot cover the search's embedding: the text matches, and the sidebar says
    # search by meaning took no part, with the reason's code.
    budget(live, 1)
    try:
        page.get_by_role("searchbox", name="Search").fill("Kinkaku-ji")
        notice = page.locator("#search-notice")
        expect(notice).to_be_visible()
        expect(notice).to_have_attribute("data-code", "search_meaning_failed")
        expect(notice).to_contain_text("Showing text matches only")
        expect(sidebar.locator(f'a[data-id="{conversation_id}"]')).to_be_visible()  # its title matches
    finally:
        budget(live, None)
    page.get_by_role("searchbox", name="Search").fill("")
    expect(page.locator("#search-notice")).to_be_hidden()
    watch.assert_clean()


def budget(live, tokens):
    live.shell(
        f"from accounts.models import User\nUser.objects.filter(username='alice').update(monthly_token_budget={tokens})"
    )

"""T10 and T16 in a real browser: stored files opened straight from Parley's origin.

A PNG with a script after its header, uploaded as ``x.html``, shown inline, runs nothing; an
HTML document is only ever a download; bob's browser gets 404 for alice's file.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.browser

SAVE = """
import json
from accounts.models import User
from chat.media.services import media_save
from tests.chat.media import samples
alice = User.objects.get(username="alice")
polyglot = media_save(owner=alice, content=samples.png_polyglot(), name="x.html")
page = media_save(owner=alice, content=samples.HTML, name="page.html")
print(json.dumps({"polyglot": str(polyglot.id), "page": str(page.id)}))
"""


@pytest.fixture(scope="module")
def files(live):
    return json.loads(live.shell(SAVE).strip().splitlines()[-1])


def test_a_polyglot_shown_inline_is_only_an_image(alice_page, files):
    page = alice_page
    response = page.goto(f"/media/{files['polyglot']}/?inline=1")
    assert response.status == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert page.evaluate("document.contentType") == "image/png"
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script").count() == 0


def test_an_html_document_is_downloaded_never_rendered(alice_page, files):
    page = alice_page
    with page.expect_download() as download:
        page.evaluate(f"location.href = '/media/{files['page']}/?inline=1'")
    assert download.value.suggested_filename == "page.html"
    assert page.evaluate("window.__pwned") is None
    assert "/media/" not in page.url


def test_bob_gets_404_for_alices_file(page, files):
    sign_in(page, "bob")
    for file_id in files.values():
        response = page.goto(f"/media/{file_id}/?inline=1")
        assert response.status == 404


def test_an_anonymous_browser_is_sent_to_sign_in(page, files):
    page.goto(f"/media/{files['polyglot']}/")
    assert "/accounts/login/" in page.url

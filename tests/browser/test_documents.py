"""A member attaches a long PDF in the browser, asks about one page, and the answer cites it.

The live server of tests/browser/conftest.py, plus an embedding model in its catalog and the
ingestion worker (``manage.py db_worker``) beside daphne, as ``manage.py serve`` runs it.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import embedding_worker, shot, sign_in
from tests.browser.test_chat import last_reply, open_new_chat, send, wait_reply_done
from tests.documents_support import long_pdf

pytestmark = pytest.mark.browser

FACT = "The launch code of project Heron is BLUE-FALCON-7, kept in the north vault."


@pytest.fixture(scope="module")
def documents(live, tmp_path_factory):
    """An embedding model in the catalog and an ingestion worker running; the PDF on disk."""
    folder = tmp_path_factory.mktemp("files")
    pdf = folder / "heron-report.pdf"
    pdf.write_bytes(long_pdf(60, {41: FACT}))
    with embedding_worker(live):
        yield {"pdf": pdf}


def attach(page, path):
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach files").click()
    chooser.value.set_files(str(path))


def test_alice_asks_about_page_41_of_a_60_page_pdf_and_the_answer_cites_it(alice_page, live, watch, documents, browser):
    page = alice_page
    open_new_chat(page)
    attach(page, documents["pdf"])

    files = page.get_by_role("list", name="Attached files")
    item = files.get_by_role("listitem").filter(has_text="heron-report.pdf")
    expect(item).to_be_visible()
    expect(item.get_by_role("status")).to_have_text("Ready", timeout=60_000)
    expect(item).to_contain_text("60 pages")
    shot(page, "document-ready")

    live.upstream.script({"reply": "The launch code is BLUE-FALCON-7 [1]."})
    send(page, "What is the launch code of project Heron?")
    wait_reply_done(page)

    expect(files).to_be_hidden()  # the files went with the message
    citation = last_reply(page).get_by_role("link", name="Source 1")
    expect(citation).to_have_text("[1]")
    href = citation.get_attribute("href")
    assert re.fullmatch(r"/sources/[0-9a-f-]{36}/1/", href), href
    # The model read the passage of page 41 as source 1.
    system = _sources_sent(live)
    assert '<source n="1" file="heron-report.pdf, page 41">' in system and "BLUE-FALCON-7" in system

    with page.expect_popup() as popup:
        citation.click()
    source = popup.value
    expect(source.get_by_role("heading", name="Source [1]")).to_be_visible()
    expect(source.locator(".passage-file")).to_have_text("heron-report.pdf")
    expect(source.locator(".passage-page")).to_have_text("41")
    expect(source.get_by_label("Quoted passage")).to_contain_text("BLUE-FALCON-7")
    shot(source, "document-citation")

    # Bob cannot open the file, its passages or its citation.
    document_id = (
        live.shell("from chat.models import Document; print(Document.objects.get(name='heron-report.pdf').id)")
        .strip()
        .splitlines()[-1]
    )
    bob_context = browser.new_context(base_url=live.base_url)
    bob = bob_context.new_page()
    sign_in(bob, "bob")
    assert bob.request.get(href).status == 404
    assert bob.request.get(f"/api/documents/{document_id}/").status == 404
    response = bob.goto(href)
    assert response.status == 404
    bob_context.close()
    assert page.request.get(f"/api/documents/{document_id}/").json()["document"]["status"] == "ready"
    watch.assert_clean()


def _sources_sent(live) -> str:
    """The system message of the completion that answered with sources (not the title's)."""
    for request in reversed(live.upstream.completions()):
        for message in request["body"]["messages"]:
            if message["role"] == "system" and "<sources>" in message["content"]:
                return message["content"]
    raise AssertionError("no sources reached the upstream")


def test_a_file_dropped_on_the_composer_is_uploaded_and_a_bad_one_says_why(alice_page, live, watch, documents):
    page = alice_page
    open_new_chat(page)
    page.evaluate(
        """() => {
        const drop = (name, text) => {
          const data = new DataTransfer();
          data.items.add(new File([text], name, {type: "text/plain"}));
          const event = new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true});
          document.getElementById("composer").dispatchEvent(event);
        };
        drop("notes.md", "# Notes\\n\\nHerons nest in tall trees.");
        drop("fake.pdf", "this is not a PDF");
      }"""
    )
    files = page.get_by_role("list", name="Attached files")
    expect(files.get_by_role("listitem").filter(has_text="notes.md").get_by_role("status")).to_have_text(
        "Ready", timeout=60_000
    )
    failed = files.get_by_role("listitem").filter(has_text="fake.pdf")
    expect(failed.get_by_role("status")).to_have_text("Failed: The file's content does not match its name.")
    failed.get_by_role("button", name="Remove fake.pdf").click()
    expect(failed).to_have_count(0)
    # The refused upload's 400 is the one error the browser logs, as it must.
    assert [e for e in watch.console_errors if "400" in e] == watch.console_errors != []
    watch.console_errors.clear()
    watch.assert_clean()


def test_a_file_pasted_into_the_message_box_is_attached(alice_page, live, watch, documents):
    page = alice_page
    open_new_chat(page)
    page.get_by_label("Message", exact=True).evaluate(
        """(box) => {
        const data = new DataTransfer();
        data.items.add(new File(["pasted text about herons"], "pasted.txt", {type: "text/plain"}));
        box.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
      }"""
    )
    item = page.get_by_role("list", name="Attached files").get_by_role("listitem").filter(has_text="pasted.txt")
    expect(item.get_by_role("status")).to_have_text("Ready", timeout=60_000)
    watch.assert_clean()

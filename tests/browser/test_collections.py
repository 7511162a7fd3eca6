"""Collections and images in the browser (issue 14): a member makes a collection on the
Collections page, uploads a file into it and watches it become ready, picks the collection in
the composer, asks, and the answer cites the file; the passage reached the fake upstream. Another
member neither sees it nor opens its URLs. An image attached for a vision model goes as an image
part; for a model without vision the refusal shows and nothing reaches the upstream.

The live server of tests/browser/conftest.py, plus an embedding model and the ingestion worker
(``manage.py db_worker``) beside daphne, as tests/browser/test_documents.py runs them.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import embedding_worker, shot, sign_in, wait_for
from tests.browser.test_chat import current_conversation_id, last_reply, open_new_chat, send, wait_reply_done
from tests.chat.media.samples import png

pytestmark = pytest.mark.browser

FACT = "The heron colony on Marsh Island counts 412 nests, counted by Ada Lovelace Rangers."
NOTES = f"# Heron survey\n\nThe survey ran in spring.\n\n## Nests\n\n{FACT}\n\n## Weather\n\nMostly rain.\n"
CHANGED = NOTES.replace("412 nests", "530 nests")


@pytest.fixture(scope="module")
def worker(live, tmp_path_factory):
    """An embedding model in the catalog and an ingestion worker running; the files on disk."""
    folder = tmp_path_factory.mktemp("collection-files")
    (folder / "heron-survey.md").write_text(NOTES)
    (folder / "changed").mkdir()
    (folder / "changed" / "heron-survey.md").write_text(CHANGED)
    (folder / "fake.pdf").write_text("this is not a PDF")
    (folder / "dot.png").write_bytes(png(3, 3))
    (folder / "square.png").write_bytes(png(5, 5))
    # GPT-4o reads images; GPT-4o mini (the default) does not, as the fixtures made it.
    with embedding_worker(live, "ChatModel.objects.filter(model_id='gpt-4o').update(vision=True)"):
        yield folder


def make_collection(page, name: str):
    page.goto("/collections/")
    expect(page.get_by_role("heading", name="Collections", level=1)).to_be_visible()
    page.get_by_label("Collection name").fill(name)
    page.get_by_role("button", name="Create collection").click()
    expect(page.get_by_role("heading", name=name, level=2)).to_be_visible()
    return re.search(r"/collections/([0-9a-f-]{36})/$", page.url).group(1)


def upload(page, path, button="Upload files"):
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name=button).click()
    chooser.value.set_files(str(path))


def document_row(page, name: str):
    return page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=name))


def expect_picked(page, names: list[str]):
    """The chips above the message box name these collections, each with its remove button."""
    chips = page.get_by_role("list", name="Collections in this chat").get_by_role("listitem")
    expect(chips.locator(".attachment-name")).to_have_text(names)
    for name in names:
        expect(chips.get_by_role("button", name=f"Stop searching {name}")).to_be_visible()


def pick(page, name: str):
    button = page.get_by_role("button", name="Collections", exact=True)
    button.click()
    page.get_by_role("checkbox", name=name).check()
    expect_picked(page, [name])
    button.click()  # closes the panel


def sources_sent(live, question: str) -> str:
    """The system message of the completion that answered ``question``, with its sources."""
    for request in reversed(live.upstream.completions()):
        if question not in json.dumps(request["body"]):
            continue
        for message in request["body"]["messages"]:
            if message["role"] == "system" and "<sources>" in message["content"]:
                return message["content"]
    raise AssertionError(f"no sources reached the upstream for {question!r}")


def test_alice_picks_her_collection_in_the_composer_and_the_answer_cites_it(alice_page, live, watch, worker, browser):
    page = alice_page
    collection_id = make_collection(page, "Heron field notes")
    upload(page, worker / "heron-survey.md")
    row = document_row(page, "heron-survey.md")
    expect(row.get_by_role("status")).to_have_text("Ready", timeout=60_000)
    expect(row).to_contain_text("KB")
    expect(page.get_by_role("listitem").filter(has_text="Heron field notes")).to_contain_text("Files: 1")
    shot(page, "collections-page")

    # A conversation that exists already: the pick is saved on it at once.
    page.goto("/new/")
    send(page, 'Hello [[fake reply="Hi." tokens=1]]')
    wait_reply_done(page)
    pick(page, "Heron field notes")
    question = "How many heron nests are on Marsh Island?"
    send(page, f'{question} [[fake reply="There are 412 nests [1]." tokens=4]]')
    wait_reply_done(page)
    system = sources_sent(live, question)
    assert '<source n="1" file="heron-survey.md' in system and "412 nests" in system

    citation = last_reply(page).get_by_role("link", name="Source 1")
    expect(citation).to_have_text("[1]")
    href = citation.get_attribute("href")
    with page.expect_popup() as popup:
        citation.click()
    source = popup.value
    expect(source.get_by_role("heading", name="Source [1]")).to_be_visible()
    expect(source.locator(".passage-file")).to_have_text("heron-survey.md")
    expect(source.get_by_label("Quoted passage")).to_contain_text("412 nests")
    source.close()
    shot(page, "collection-cited")

    # Saved on the conversation: a reload shows it, and the next turn retrieves again.
    page.reload()
    expect_picked(page, ["Heron field notes"])
    follow_up = "Who counted the heron nests?"
    send(page, f'{follow_up} [[fake reply="The rangers [1]." tokens=2]]')
    wait_reply_done(page)
    assert "Ada Lovelace Rangers" in sources_sent(live, follow_up)

    # A new chat with the collection picked before its first message.
    open_new_chat(page)
    expect(page.get_by_role("list", name="Collections in this chat")).to_be_hidden()
    pick(page, "Heron field notes")
    first = "Tell me the heron nest count on Marsh Island"
    send(page, first)
    wait_reply_done(page)
    assert "412 nests" in sources_sent(live, first)
    conversation_id = current_conversation_id(page)
    count = live.shell(
        "from chat.models import Conversation; "
        f"print(Conversation.objects.get(pk='{conversation_id}').collections.count())"
    )
    assert count.strip().splitlines()[-1] == "1"

    # Bob does not see it in his picker, and its URLs and its citation are 404 to him.
    bob_context = browser.new_context(base_url=live.base_url)
    bob_context.on("page", watch.attach)
    bob = bob_context.new_page()
    sign_in(bob, "bob")
    bob.goto("/new/")
    bob.get_by_role("button", name="Collections", exact=True).click()
    expect(bob.get_by_role("status").filter(has_text="You have no collections yet.")).to_be_visible()
    expect(bob.get_by_role("checkbox")).to_have_count(0)
    assert bob.request.get(f"/api/collections/{collection_id}/").status == 404
    assert bob.request.get(href).status == 404
    assert bob.goto(f"/collections/{collection_id}/").status == 404
    bob.goto("/collections/")
    expect(bob.get_by_role("status").filter(has_text="You have no collections yet.")).to_be_visible()
    bob_context.close()
    # The 404 pages bob opened on purpose are the browser's only errors.
    assert all("404" in e for e in watch.console_errors)
    watch.console_errors.clear()
    watch.assert_clean()


def test_alice_renames_replaces_removes_and_deletes_and_a_bad_file_says_why(alice_page, live, watch, worker):
    page = alice_page
    collection_id = make_collection(page, "Survey drafts")
    upload(page, worker / "heron-survey.md")
    row = document_row(page, "heron-survey.md")
    expect(row.get_by_role("status")).to_have_text("Ready", timeout=60_000)
    expect(row).to_contain_text("1 KB")

    # A changed file under the same name replaces the earlier one once it is read.
    def documents():
        return page.request.get(f"/api/collections/{collection_id}/").json()["documents"]

    (original,) = documents()
    with page.expect_file_chooser() as chooser:
        row.get_by_role("button", name="Replace heron-survey.md").click()
    chooser.value.set_files(str(worker / "changed" / "heron-survey.md"))
    wait_for(
        lambda: [(d["id"] != original["id"], d["status"]) for d in documents()] == [(True, "ready")],
        60,
        what="the changed file to replace the earlier one",
    )
    expect(document_row(page, "heron-survey.md")).to_have_count(1)
    expect(document_row(page, "heron-survey.md").get_by_role("status")).to_have_text("Ready")
    text = live.shell(
        "from chat.models import Chunk; print('|'.join(Chunk.objects.filter("
        "document__collection__name='Survey drafts').values_list('text', flat=True)))"
    )
    assert "530 nests" in text and "412 nests" not in text

    # A file whose content does not match its name: the same words as in the composer.
    upload(page, worker / "fake.pdf")
    failed = document_row(page, "fake.pdf")
    expect(failed.get_by_role("status")).to_have_text("Failed: The file's content does not match its name.")
    failed.get_by_role("button", name="Remove fake.pdf").click()
    expect(failed).to_have_count(0)
    watch.console_errors[:] = [e for e in watch.console_errors if "400" not in e]  # the refused upload

    document_row(page, "heron-survey.md").get_by_role("button", name="Remove heron-survey.md").click()
    expect(document_row(page, "heron-survey.md")).to_have_count(0)
    expect(page.get_by_text("No files yet.")).to_be_visible()

    page.get_by_role("button", name="Rename").click()
    page.get_by_label("New name").fill("Survey archive")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Survey archive", level=2)).to_be_visible()
    expect(page.get_by_role("link", name="Survey archive")).to_be_visible()

    page.get_by_role("button", name="Delete collection").click()
    page.get_by_role("dialog", name="Delete collection?").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("link", name="Survey archive")).to_have_count(0)
    assert (
        "0"
        == live.shell(
            "from chat.models import Collection; print(Collection.objects.filter(name='Survey archive').count())"
        )
        .strip()
        .splitlines()[-1]
    )
    watch.assert_clean()


def test_an_image_goes_to_a_vision_model_as_an_image_part_and_is_refused_to_one_without(
    alice_page, live, watch, worker
):
    page = alice_page
    open_new_chat(page)
    page.get_by_role("button", name="Chat settings").click()
    dialog = page.get_by_role("dialog", name="Chat settings")
    dialog.get_by_label("Model").select_option(label="GPT-4o · Fake upstream")
    dialog.get_by_role("button", name="Save", exact=True).click()
    expect(dialog).to_be_hidden()

    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach files").click()
    chooser.value.set_files(str(worker / "dot.png"))
    files = page.get_by_role("list", name="Attached files")
    expect(files.get_by_role("listitem").filter(has_text="dot.png")).to_be_visible()  # first, then the drop
    square = base64.b64encode(png(5, 5)).decode()
    page.evaluate(
        """(data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const files = new DataTransfer();
        files.items.add(new File([bytes], "square.png", {type: "image/png"}));
        const event = new DragEvent("drop", {dataTransfer: files, bubbles: true, cancelable: true});
        document.getElementById("composer").dispatchEvent(event);
      }""",
        square,
    )
    for name in ("dot.png", "square.png"):
        expect(files.get_by_role("listitem").filter(has_text=name).get_by_role("status")).to_have_text("Ready")
    before = len(live.upstream.completions())
    question = "What colour is this picture?"
    send(page, question)
    wait_reply_done(page)
    expect(files).to_be_hidden()
    request = next(r for r in live.upstream.completions()[before:] if question in json.dumps(r["body"]))
    content = request["body"]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": question}
    urls = [part["image_url"]["url"] for part in content[1:]]
    assert urls == [
        "data:image/png;base64," + base64.b64encode(png(3, 3)).decode(),
        "data:image/png;base64," + square,
    ]
    mine = page.get_by_role("article", name="You said").last
    expect(mine.get_by_role("img", name="dot.png")).to_be_visible()
    expect(mine.get_by_role("img", name="square.png")).to_be_visible()
    shot(page, "vision-image")

    # GPT-4o mini (the default) cannot read images: refused before anything is sent.
    open_new_chat(page)
    page.get_by_label("Message", exact=True).evaluate(
        """(box, data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const files = new DataTransfer();
        files.items.add(new File([bytes], "pasted.png", {type: "image/png"}));
        box.dispatchEvent(new ClipboardEvent("paste", {clipboardData: files, bubbles: true, cancelable: true}));
      }""",
        square,
    )
    refusal = "GPT-4o mini cannot read images. Pick a model that accepts images, or send the message without them."
    item = page.get_by_role("list", name="Attached files").get_by_role("listitem").filter(has_text="pasted.png")
    expect(item.get_by_role("status")).to_have_text("Ready")
    before = len(live.upstream.requests())
    box = page.get_by_label("Message", exact=True)
    box.fill("Describe the pasted picture")
    box.press("Enter")
    expect(page.get_by_role("alert").filter(has_text=refusal)).to_be_visible()
    expect(box).to_have_value("Describe the pasted picture")  # nothing sent, nothing lost
    expect(page.get_by_role("heading", name="New chat", level=1)).to_be_visible()
    page.wait_for_timeout(500)
    # Neither the model, nor moderation, nor anything else heard of it.
    assert not [r for r in live.upstream.requests()[before:] if "pasted picture" in json.dumps(r.get("body"))]
    count = live.shell(
        "from chat.models import Message; print(Message.objects.filter(content__contains='pasted picture').count())"
    )
    assert count.strip().splitlines()[-1] == "0"
    shot(page, "vision-refused")
    watch.assert_clean()

"""Images in a real browser (issue 15): create one from the composer's Image mode, edit it with
a mask painted on the canvas, see both shown, with no CSP violation, console error or request
to another origin (the ``watch`` fixture asserts all three after the test)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import wait_for

pytestmark = pytest.mark.browser

ADD_MODEL = """
from chat.models import ChatModel, ModelKind, Provider
provider = Provider.objects.get(name="Fake upstream")
ChatModel.objects.get_or_create(
    provider=provider, model_id="dall-e-2",
    defaults={"kind": ModelKind.IMAGE, "image_prices": {"256x256": "0.016", "1024x1024": "0.02"}},
)
"""


@pytest.fixture(scope="module")
def image_model(live):
    live.shell(ADD_MODEL)


def test_an_image_is_created_then_edited_with_a_mask_and_both_are_shown(alice_page, live, watch, image_model):
    page = alice_page
    page.goto("/new/")
    mode = page.get_by_role("button", name="Create image")
    mode.click()
    assert mode.get_attribute("aria-pressed") == "true"
    page.get_by_label("Image model").select_option(label="dall-e-2")
    page.get_by_label("Size").select_option("256x256")
    page.get_by_role("textbox", name="Message").fill("a red kite")
    page.keyboard.press("Enter")

    first = page.get_by_role("img", name="A picture of a red kite")
    first.wait_for(timeout=15_000)
    wait_for(lambda: first.evaluate("img => img.complete && img.naturalWidth") == 256, 10, what="the image")
    assert page.get_by_text("Revised prompt: A picture of a red kite").is_visible()

    page.get_by_role("button", name="Edit image").first.click()
    dialog = page.get_by_role("dialog", name="Edit image")
    dialog.wait_for()
    canvas = dialog.get_by_label("Paint the area to change")
    wait_for(lambda: canvas.evaluate("c => c.width") == 256, 10, what="the mask canvas")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=8)
    page.mouse.up()
    dialog.get_by_label("Describe the change").fill("add a sun")
    dialog.get_by_role("button", name="Edit image").click()

    edited = page.get_by_role("img", name="A picture of add a sun")
    edited.wait_for(timeout=15_000)
    wait_for(lambda: edited.evaluate("img => img.complete && img.naturalWidth") > 0, 10, what="the edited image")

    edits = [r for r in live.upstream.requests() if r["path"].endswith("/images/edits")]
    assert len(edits) == 1
    assert set(edits[0]["files"]) == {"image", "mask"}
    assert edits[0]["form"]["prompt"] == "add a sun"

    # A reload shows both images again, from the database.
    page.reload()
    page.get_by_role("img", name="A picture of add a sun").wait_for(timeout=15_000)
    assert page.get_by_role("img", name="A picture of a red kite").count() >= 1
    watch.assert_clean()

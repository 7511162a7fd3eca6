"""A member marks a conversation for training from its menu in the sidebar, takes it back, and
is told clearly when it can no longer be taken back (it left in an uploaded dataset)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

MAKE = """
from accounts.models import User
from chat.models import ChatModel
from tests.finetuning_support import make_thread
alice = User.objects.get(username="alice")
model = ChatModel.objects.get(model_id="gpt-4o-mini")
make_thread(alice, model, [("Consent question", "Consent answer")], title={title!r}, consent=False)
"""


def item(page, title):
    sidebar = page.get_by_role("navigation", name="Conversation list")
    found = sidebar.get_by_role("listitem").filter(has=page.get_by_role("link", name=title))
    found.hover()
    return found


def state(live, title) -> str:
    code = f"from chat.models import Conversation; print(Conversation.objects.get(title={title!r}).training_state)"
    return live.shell(code).strip().splitlines()[-1]


def test_a_member_marks_and_takes_back_a_conversation_and_is_refused_once_it_was_sent(alice_page, live, watch):
    page = alice_page
    live.shell(MAKE.format(title="Training consent walk"))
    page.goto("/")
    allow = item(page, "Training consent walk").get_by_role("button", name="Allow use for training")
    expect(allow).to_have_attribute("aria-pressed", "false")
    allow.click()
    expect(page.get_by_text("This conversation may now be used to fine-tune a model.")).to_be_visible()
    assert state(live, "Training consent walk") == "on"

    page.reload()
    take_back = item(page, "Training consent walk").get_by_role("button", name="Allowed for training: take back")
    expect(take_back).to_have_attribute("aria-pressed", "true")
    take_back.click()
    expect(page.get_by_text("This conversation will not be used for training.")).to_be_visible()
    assert state(live, "Training consent walk") == "off"

    # Once a dataset holding it was uploaded, the toggle says so and taking it back is refused.
    live.shell(
        "from django.utils import timezone; from chat.models import Conversation; "
        "Conversation.objects.filter(title='Training consent walk')"
        ".update(training_consent_at=timezone.now(), training_locked_at=timezone.now())"
    )
    page.reload()
    locked = item(page, "Training consent walk").get_by_role("button", name="Used for training: sent to the provider")
    locked.click()
    expect(page.get_by_text("can no longer be taken back")).to_be_visible()
    assert state(live, "Training consent walk") == "locked"
    # The refusal is a 409 the page reports; nothing else may have gone wrong.
    watch.console_errors = [e for e in watch.console_errors if "409" not in e]
    watch.assert_clean()

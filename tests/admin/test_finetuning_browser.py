"""The fine-tuning walk in a real browser: build a dataset from marked conversations, check it,
download it, upload it, start a job, see it succeed (the poll job run as the worker runs it)
and the fine-tuned model appear in the catalog, disabled; under the real CSP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from chat.jobs.finetuning import finetune_poll_job
from chat.models import ChatModel, FineTuneJob, Provider
from tests.admin.conftest import SECRET_KEY, assert_no_key
from tests.admin.test_admin_browser import admin_page, browser, plain_static  # noqa: F401  (fixtures)
from tests.finetuning_support import make_base_model, make_thread

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def run_as_worker(function, *args):
    """Run ``function`` in a thread of its own, as the worker process would: this thread has
    Playwright's event loop running, where the poll's async_to_sync may not run."""

    def run():
        try:
            return function(*args)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def marked(upstream, alice, bob, settings):
    settings.PARLEY_FINETUNE_MIN_EXAMPLES = 2
    provider = Provider(name="Fake OpenAI", base_url=upstream.base_url)
    provider.api_key = SECRET_KEY
    provider.save()
    base = make_base_model(provider)
    make_thread(alice, base, [("How do refunds work?", "Within 30 days.")], title="Refunds")
    make_thread(bob, base, [("Reset my password", "Use the link.")], title="Passwords")
    make_thread(alice, base, [("PRIVATE-UNMARKED", "PRIVATE-UNMARKED")], title="Private notes", consent=False)
    return base


def test_the_admin_builds_uploads_and_sees_the_job_succeed_and_the_model_appear(admin_page, marked, upstream):  # noqa: F811
    page, watch = admin_page
    watch.visit("/admin/chat/finetunedataset/add/")
    assert page.get_by_text("Refunds").is_visible() and page.get_by_text("Passwords").is_visible()
    assert "Private notes" not in page.content() and "PRIVATE-UNMARKED" not in page.content()
    assert page.get_by_role("checkbox", name="Include Refunds").is_checked()

    page.get_by_label("Name:", exact=True).fill("Support answers")
    page.get_by_label("Base model:").select_option(label="GPT-4o mini")
    page.get_by_label("Epochs:").fill("2")
    page.get_by_role("button", name="Create dataset").click()
    page.wait_for_load_state()
    watch.check("dataset page")
    assert page.locator('[data-fact="examples"]').inner_text() == "2"
    assert page.get_by_text("Within 30 days.").is_visible()

    with page.expect_download() as download:
        page.get_by_role("link", name="Download JSONL").click()
    shown = open(download.value.path(), "rb").read()
    assert b"Within 30 days." in shown and b"PRIVATE-UNMARKED" not in shown

    page.get_by_role("button", name="Upload to the provider").click()
    page.wait_for_load_state()
    watch.check("after upload")
    assert page.get_by_text("Uploaded as file-").is_visible()
    assert next(iter(upstream.finetuning.contents.values())) == shown  # exactly what was downloaded

    page.get_by_label("Suffix:").fill("support")
    page.get_by_role("button", name="Start fine-tuning job").click()
    page.wait_for_load_state()
    watch.check("job page")
    assert page.locator('[data-fact="status"]').inner_text() == "validating files"

    job = FineTuneJob.objects.get()
    for _ in range(3):  # what the worker does, one poll at a time
        run_as_worker(finetune_poll_job.call, job.pk)
    page.reload()
    watch.check("job page after polls")
    assert page.locator('[data-fact="status"]').inner_text() == "succeeded"
    assert page.get_by_text("The job has successfully completed.").is_visible()
    model_link = page.locator('[data-fact="model"] a')
    assert model_link.inner_text().startswith("ft:gpt-4o-mini:support::")
    assert page.get_by_text("disabled: grant it to groups and enable it").is_visible()

    model_link.click()
    page.wait_for_load_state()
    watch.check("the new model's page")
    assert not page.get_by_label("Enabled").is_checked()
    assert ChatModel.objects.get(model_id__startswith="ft:").context_window == marked.context_window
    for body in [*watch.bodies, page.content()]:
        assert_no_key(body)

"""Fine-tuning in the console: marked conversations only, the checks before upload, the job's
page as the poll job leaves it, cancel, failure, provider files (docs/security.md T49, T11)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.jobs.finetuning import finetune_poll_job, finetune_polls_enqueue
from chat.models import Conversation, FileStatus, FineTuneDataset, FineTuneFile, FineTuneJob, JobStatus
from chat.services import datasets
from tests.admin.conftest import assert_no_key
from tests.finetuning_support import make_base_model, make_thread

pytestmark = pytest.mark.django_db(transaction=True)
UNMARKED = "UNMARKED-PRIVATE-WORDS"


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.PARLEY_FINETUNE_MIN_EXAMPLES = 2
    settings.PARLEY_ADMIN_CAN_READ_CONVERSATIONS = True  # even so, unmarked never shows
    settings.PARLEY_UPSTREAM_MAX_RETRIES = 0


@pytest.fixture
def base(provider):
    return make_base_model(provider)


@pytest.fixture
def threads(alice, bob, base):
    return [
        make_thread(alice, base, [("How do refunds work?", "Within 30 days.")], title="Refunds"),
        make_thread(bob, base, [("Reset my password", "Use the link.")], title="Passwords"),
        make_thread(alice, base, [(UNMARKED, UNMARKED)], title=f"{UNMARKED} title", consent=False),
    ]


def build(admin_client, base, threads, **fields):
    data = {
        "name": "Support answers",
        "base_model": base.pk,
        "system_prompt": "",
        "kept_only": "on",
        "format": "chat",
        "n_epochs": 3,
        "conversation": [str(c.pk) for c in threads],  # the unmarked id too: it is ignored
        **fields,
    }
    response = admin_client.post(reverse("admin:chat_finetunedataset_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return FineTuneDataset.objects.get()


def test_the_builder_lists_only_marked_conversations_even_for_an_admin_who_may_read(admin_client, threads):
    body = admin_client.get(reverse("admin:chat_finetunedataset_add")).content.decode()
    assert "Refunds" in body and "Passwords" in body
    assert UNMARKED not in body and str(threads[2].pk) not in body


def test_the_builder_filters_by_member(admin_client, alice, threads):
    body = admin_client.get(reverse("admin:chat_finetunedataset_add"), {"member": alice.pk}).content.decode()
    assert "Refunds" in body and "Passwords" not in body


def test_the_builder_offers_no_unmarked_member(admin_client, django_user_model, base, threads):
    carol = django_user_model.objects.create_user("carol-unmarked")
    make_thread(carol, base, [("x", "y")], consent=False)
    body = admin_client.get(reverse("admin:chat_finetunedataset_add")).content.decode()
    assert "carol-unmarked" not in body


def test_the_dataset_page_shows_the_checks_and_the_examples_and_the_download_is_what_it_shows(
    admin_client, base, threads
):
    dataset = build(admin_client, base, threads)
    page = admin_client.get(reverse("admin:chat_finetunedataset_change", args=[dataset.pk])).content.decode()
    validation = datasets.dataset_validate(dataset)
    assert f'data-fact="examples">{validation.count}<' in page and validation.count == 2
    assert f'data-fact="tokens">{validation.total_tokens}<' in page
    assert validation.sha256 in page and "Within 30 days." in page
    assert UNMARKED not in page
    download = admin_client.get(reverse("admin:chat_finetunedataset_download", args=[dataset.pk]))
    assert download.content == validation.jsonl
    assert download["Content-Disposition"].startswith("attachment")
    assert [json.loads(line)["messages"][0]["content"] for line in download.content.decode().splitlines()] == [
        "How do refunds work?",
        "Reset my password",
    ]


def test_a_dataset_with_errors_cannot_be_uploaded(admin_client, fake_upstream, base, threads, settings):
    settings.PARLEY_FINETUNE_MIN_EXAMPLES = 5
    dataset = build(admin_client, base, threads)
    page = admin_client.get(reverse("admin:chat_finetunedataset_change", args=[dataset.pk])).content.decode()
    assert "fine-tuning needs at least 5" in page and "disabled" in page
    sha = datasets.dataset_validate(dataset).sha256
    response = admin_client.post(
        reverse("admin:chat_finetunedataset_upload", args=[dataset.pk]), {"sha256": sha}, follow=True
    )
    assert "dataset_invalid" in response.content.decode()
    assert not fake_upstream.requests and not FineTuneFile.objects.exists()


def test_the_admin_uploads_starts_and_sees_the_job_succeed_and_the_model_appear(
    admin_client, fake_upstream, base, threads
):
    dataset = build(admin_client, base, threads)
    sha = datasets.dataset_validate(dataset).sha256
    admin_client.post(reverse("admin:chat_finetunedataset_upload", args=[dataset.pk]), {"sha256": sha})
    upload = FineTuneFile.objects.get()
    assert upload.status == FileStatus.UPLOADED
    assert next(iter(fake_upstream.finetuning.contents.values())) == datasets.dataset_validate(dataset).jsonl
    response = admin_client.post(
        reverse("admin:chat_finetunedataset_start", args=[dataset.pk]),
        {"file": upload.pk, "base_model": base.pk, "n_epochs": 2, "suffix": "support"},
    )
    job = FineTuneJob.objects.get()
    assert response["Location"] == reverse("admin:chat_finetunejob_change", args=[job.pk])
    from django_tasks_db.models import DBTaskResult

    assert DBTaskResult.objects.filter(args_kwargs__args=[job.pk]).exists()  # the poll is the worker's
    page = admin_client.get(response["Location"]).content.decode()
    assert 'data-fact="status">validating files<' in page
    requests_before = len(fake_upstream.requests)
    admin_client.get(response["Location"])
    assert len(fake_upstream.requests) == requests_before  # the page never asks the provider
    for _ in range(3):
        finetune_poll_job.call(job.pk)
    page = admin_client.get(response["Location"]).content.decode()
    job.refresh_from_db()
    assert 'data-fact="status">succeeded<' in page
    assert f'data-fact="trained-tokens">{job.trained_tokens}<' in page
    assert job.fine_tuned_model in page and "disabled: grant it to groups and enable it" in page
    assert "The job has successfully completed." in page
    assert_no_key(page)
    # The training is in the usage dashboard, by kind, with its trained tokens.
    dashboard = admin_client.get(reverse("admin:chat_usagerecord_dashboard")).content.decode()
    row = dashboard[dashboard.index('id="usage-by-kind"') :]
    row = row[row.index('<th scope="row">training</th>') :]
    assert f'<td class="num">{job.trained_tokens}</td>' in row[: row.index("</tr>")].replace(",", "")


def test_a_failed_job_shows_its_error(admin_client, fake_upstream, admin_user, base, threads):
    fake_upstream.finetuning.outcome = "failed"
    dataset = build(admin_client, base, threads)
    admin_client.post(
        reverse("admin:chat_finetunedataset_upload", args=[dataset.pk]),
        {"sha256": datasets.dataset_validate(dataset).sha256},
    )
    upload = FineTuneFile.objects.get()
    admin_client.post(
        reverse("admin:chat_finetunedataset_start", args=[dataset.pk]),
        {"file": upload.pk, "base_model": base.pk, "n_epochs": 1},
    )
    job = FineTuneJob.objects.get()
    for _ in range(3):
        finetune_poll_job.call(job.pk)
    page = admin_client.get(reverse("admin:chat_finetunejob_change", args=[job.pk])).content.decode()
    assert 'data-fact="status">failed<' in page and "too few examples" in page


def test_cancel_shows_in_the_admin(admin_client, fake_upstream, base, threads):
    dataset = build(admin_client, base, threads)
    admin_client.post(
        reverse("admin:chat_finetunedataset_upload", args=[dataset.pk]),
        {"sha256": datasets.dataset_validate(dataset).sha256},
    )
    upload = FineTuneFile.objects.get()
    admin_client.post(
        reverse("admin:chat_finetunedataset_start", args=[dataset.pk]),
        {"file": upload.pk, "base_model": base.pk, "n_epochs": 1},
    )
    job = FineTuneJob.objects.get()
    page = admin_client.get(reverse("admin:chat_finetunejob_change", args=[job.pk])).content.decode()
    assert "Cancel job" in page
    response = admin_client.post(reverse("admin:chat_finetunejob_cancel", args=[job.pk]), follow=True)
    body = response.content.decode()
    assert 'data-fact="status">cancelled<' in body and "Cancel job" not in body
    assert FineTuneJob.objects.get().status == JobStatus.CANCELLED


def test_a_provider_error_on_start_is_shown_and_the_file_is_gone(admin_client, fake_upstream, base, threads):
    dataset = build(admin_client, base, threads)
    admin_client.post(
        reverse("admin:chat_finetunedataset_upload", args=[dataset.pk]),
        {"sha256": datasets.dataset_validate(dataset).sha256},
    )
    upload = FineTuneFile.objects.get()
    fake_upstream.script(endpoint="job_create", status=400, error_message="base model cannot be fine-tuned")
    response = admin_client.post(
        reverse("admin:chat_finetunedataset_start", args=[dataset.pk]),
        {"file": upload.pk, "base_model": base.pk, "n_epochs": 1},
        follow=True,
    )
    body = response.content.decode()
    assert "base model cannot be fine-tuned" in body
    assert FineTuneJob.objects.get().status == JobStatus.NOT_STARTED
    assert not fake_upstream.finetuning.files


def test_the_housekeeping_round_enqueues_a_poll_of_each_running_job(admin_client, fake_upstream, base, threads):
    dataset = build(admin_client, base, threads)
    admin_client.post(
        reverse("admin:chat_finetunedataset_upload", args=[dataset.pk]),
        {"sha256": datasets.dataset_validate(dataset).sha256},
    )
    upload = FineTuneFile.objects.get()
    admin_client.post(
        reverse("admin:chat_finetunedataset_start", args=[dataset.pk]),
        {"file": upload.pk, "base_model": base.pk, "n_epochs": 1},
    )
    assert finetune_polls_enqueue() == 0  # its start's answer was its first poll
    FineTuneJob.objects.update(polled_at=timezone.now() - timezone.timedelta(seconds=61))
    assert finetune_polls_enqueue() == 1
    finetune_poll_job.call(FineTuneJob.objects.get().pk)
    assert finetune_polls_enqueue() == 0  # polled within the interval


def test_the_provider_files_page_lists_and_deletes_files(admin_client, fake_upstream, base, provider):
    fake_upstream.finetuning.files["file-stray"] = {
        "id": "file-stray",
        "object": "file",
        "bytes": 3,
        "filename": "old.jsonl",
        "purpose": "fine-tune",
        "created_at": 1,
    }
    url = reverse("admin:chat_finetunefile_provider")
    body = admin_client.get(url, {"provider": provider.pk}).content.decode()
    assert "file-stray" in body and "unknown to Parley" in body
    assert_no_key(body)
    admin_client.post(url, {"provider": provider.pk, "file_id": "file-stray"})
    assert "file-stray" not in fake_upstream.finetuning.files


def test_members_cannot_reach_the_fine_tuning_pages(alice_client, base, threads, admin_user):
    dataset = datasets.dataset_create(
        admin=admin_user, name="d", base_model_id=base.pk, conversation_ids=[threads[0].pk]
    )
    for url in (
        reverse("admin:chat_finetunedataset_add"),
        reverse("admin:chat_finetunedataset_change", args=[dataset.pk]),
        reverse("admin:chat_finetunedataset_download", args=[dataset.pk]),
    ):
        response = alice_client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_member_withdrawing_consent_leaves_the_dataset_page(admin_client, alice_client, base, threads):
    dataset = build(admin_client, base, threads)
    alice_client.delete(f"/api/conversations/{threads[0].pk}/training/")
    page = admin_client.get(reverse("admin:chat_finetunedataset_change", args=[dataset.pk])).content.decode()
    assert "Refunds" not in page and "Within 30 days." not in page
    assert Conversation.objects.get(pk=threads[0].pk).training_state == "off"


def test_a_providers_fine_tuning_api_is_set_in_its_form_and_defaults_to_automatic(admin_client, fake_upstream):
    from chat.models import Provider

    add = reverse("admin:chat_provider_add")
    admin_client.post(add, {"name": "A", "base_url": fake_upstream.base_url, "timeout": "30"})
    admin_client.post(
        add, {"name": "B", "base_url": fake_upstream.base_url, "timeout": "30", "fine_tuning_api": "legacy"}
    )
    assert dict(Provider.objects.values_list("name", "fine_tuning_api")) == {"A": "auto", "B": "legacy"}

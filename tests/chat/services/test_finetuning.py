"""Fine-tuning against the fake upstream (a real HTTP server): the file sent is exactly the
validated JSONL of marked conversations, jobs move to their end over polls, a succeeded job
adds a disabled model, every step's provider error leaves a clear state and no orphan file."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from chat.core.calls import Units, call_admit, calls_sweep_orphans
from chat.core.grants import models_granted
from chat.errors import (
    DatasetChanged,
    DatasetInvalid,
    FineTuneRefused,
    ModelUnavailable,
    TrainingConsentLocked,
    UpstreamError,
)
from chat.models import (
    ChatModel,
    Conversation,
    FileStatus,
    FineTuneFile,
    FineTuneJob,
    JobStatus,
    Provider,
    Reservation,
    UsageKind,
    UsageRecord,
)
from chat.services import datasets, finetuning
from chat.services.training import training_consent_set
from tests.finetuning_support import make_base_model, make_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.PARLEY_FINETUNE_MIN_EXAMPLES = 2
    settings.PARLEY_ADMIN_CAN_READ_CONVERSATIONS = True  # consent decides, not this
    settings.PARLEY_UPSTREAM_MAX_RETRIES = 0  # one scripted error is one failed call


@pytest.fixture
def provider(fake_upstream):
    provider = Provider(name="Fake", base_url=fake_upstream.base_url)
    provider.api_key = "sk-test-KEY0123456789abcd"
    provider.save()
    return provider


@pytest.fixture
def base(provider):
    return make_base_model(provider)


@pytest.fixture
def dataset(alice, bob, admin_user, base):
    make_thread(alice, base, [("How do refunds work?", "Within 30 days."), ("Thanks", "Anytime.")], title="refunds")
    make_thread(bob, base, [("Reset my password", "Use the link on the sign-in page.")], title="password")
    make_thread(alice, base, [("UNMARKED-SECRET question", "UNMARKED-SECRET answer")], consent=False)
    stopped = make_thread(bob, base, [("long question", "half an answ", "stopped"), ("retry", "Full answer.")])
    ids = [c.pk for c in Conversation.objects.all()]  # every conversation, the unmarked one too
    made = datasets.dataset_create(admin=admin_user, name="support", base_model_id=base.pk, conversation_ids=ids)
    assert stopped.pk in {c.pk for c in made.conversations.all()}
    return made


def upload(admin_user, dataset):
    return finetuning.dataset_upload(
        admin=admin_user, dataset=dataset, sha256=datasets.dataset_validate(dataset).sha256
    )


def uploaded_bytes(fake_upstream) -> bytes:
    return next(iter(fake_upstream.finetuning.contents.values()))


def test_the_uploaded_file_is_exactly_the_marked_conversations_kept_messages(fake_upstream, admin_user, dataset):
    shown = datasets.dataset_validate(dataset)
    sent = upload(admin_user, dataset)
    body = uploaded_bytes(fake_upstream)
    assert body == shown.jsonl
    examples = [json.loads(line)["messages"] for line in body.decode().splitlines()]
    texts = [[m["content"] for m in example] for example in examples]
    assert texts == [
        ["How do refunds work?", "Within 30 days.", "Thanks", "Anytime."],
        ["Reset my password", "Use the link on the sign-in page."],
        ["retry", "Full answer."],  # the stopped reply and its question are not "kept"
    ]
    assert b"UNMARKED-SECRET" not in body
    request = next(r for r in fake_upstream.requests if r.path == "/v1/files")
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert b'name="purpose"' in request.raw_body and b"fine-tune" in request.raw_body
    assert sent.status == FileStatus.UPLOADED and sent.file_id.startswith("file-")
    assert sent.sha256 == shown.sha256 and sent.tokens == shown.total_tokens


def test_after_upload_the_members_cannot_take_their_conversations_back(alice, admin_user, dataset):
    upload(admin_user, dataset)
    refunds = Conversation.objects.get(title="refunds")
    assert refunds.training_state == "locked"
    with pytest.raises(TrainingConsentLocked):
        training_consent_set(user=alice, conversation_id=refunds.pk, allowed=False)


def test_validation_errors_block_the_upload(fake_upstream, admin_user, dataset, settings):
    settings.PARLEY_FINETUNE_MIN_EXAMPLES = 50
    with pytest.raises(DatasetInvalid):
        upload(admin_user, dataset)
    assert not fake_upstream.requests and not FineTuneFile.objects.exists()
    assert not Conversation.objects.filter(training_locked_at__isnull=False).exists()


def test_a_consent_withdrawn_after_checking_stops_the_upload(fake_upstream, alice, admin_user, dataset):
    digest = datasets.dataset_validate(dataset).sha256
    training_consent_set(user=alice, conversation_id=Conversation.objects.get(title="refunds").pk, allowed=False)
    with pytest.raises(DatasetChanged):
        finetuning.dataset_upload(admin=admin_user, dataset=dataset, sha256=digest)
    assert not fake_upstream.requests and not FineTuneFile.objects.exists()


def test_an_upload_the_provider_refuses_unlocks_and_leaves_no_file(fake_upstream, admin_user, dataset):
    fake_upstream.script(endpoint="file_upload", status=400, error_message="bad file")
    with pytest.raises(UpstreamError):
        upload(admin_user, dataset)
    row = FineTuneFile.objects.get()
    assert row.status == FileStatus.FAILED and "bad file" in row.error
    assert not fake_upstream.finetuning.files
    assert not Conversation.objects.filter(training_locked_at__isnull=False).exists()
    assert dataset.__class__.objects.get(pk=dataset.pk).uploaded_at is None


def test_an_upload_whose_answer_is_lost_finds_and_deletes_the_file_the_provider_kept(
    fake_upstream, admin_user, dataset
):
    # The provider stores the file, then the connection drops before the answer: Parley looks it up by name.
    original = fake_upstream.finetuning.answer

    def keep_then_fail(op, *args):
        status, body = original(op, *args)
        if op == "file_upload":
            return 500, {"error": {"message": "lost", "type": "server_error"}}
        return status, body

    fake_upstream.finetuning.answer = keep_then_fail
    with pytest.raises(UpstreamError):
        upload(admin_user, dataset)
    assert not fake_upstream.finetuning.files  # found by its name and deleted
    assert FineTuneFile.objects.get().status == FileStatus.FAILED


def test_a_stray_file_that_cannot_be_looked_for_is_listed_for_deletion_and_cleaned_later(
    fake_upstream, admin_user, dataset
):
    original = fake_upstream.finetuning.answer

    def keep_then_fail(op, *args):
        status, body = original(op, *args)
        if op == "file_upload":
            return 500, {"error": {"message": "lost", "type": "server_error"}}
        return status, body

    fake_upstream.finetuning.answer = keep_then_fail
    fake_upstream.script(endpoint="file_list", status=503, times=1)
    with pytest.raises(UpstreamError):
        upload(admin_user, dataset)
    assert len(fake_upstream.finetuning.files) == 1
    assert FineTuneFile.objects.get().status == FileStatus.DELETE_PENDING
    assert finetuning.files_cleanup() == 1
    assert not fake_upstream.finetuning.files
    assert FineTuneFile.objects.get().status == FileStatus.DELETED


def start(admin_user, sent, base, **hyper):
    return finetuning.job_start(
        admin=admin_user, upload=sent, base_model=base, n_epochs=hyper.pop("n_epochs", 2), **hyper
    )


def poll_until_done(job, limit=10):
    for _ in range(limit):
        job = finetuning.job_poll(job.pk) or FineTuneJob.objects.get(pk=job.pk)
        if not job.active:
            return job
    raise AssertionError(f"job still {job.status}: {job.error}")


def test_a_job_moves_to_success_and_adds_a_disabled_model_with_the_base_window(
    fake_upstream, admin_user, dataset, base
):
    sent = upload(admin_user, dataset)
    job = start(admin_user, sent, base, batch_size=4, learning_rate_multiplier=0.5, suffix="support")
    assert job.status == JobStatus.VALIDATING and job.api == "current" and job.job_id.startswith("ftjob-")
    created = fake_upstream.finetuning.jobs[job.job_id]
    assert (created["n_epochs"], created["batch_size"], created["learning_rate_multiplier"]) == (2, 4, 0.5)
    seen = []
    for _ in range(3):
        job = finetuning.job_poll(job.pk)
        seen.append(job.status)
    assert seen == ["queued", "running", "succeeded"]
    job.refresh_from_db()
    words = len(uploaded_bytes(fake_upstream).split())
    assert job.trained_tokens == words * 2
    assert [e["message"] for e in job.events][-1] == "The job has successfully completed."
    model = job.result_model
    assert model.model_id == job.fine_tuned_model and model.model_id.startswith("ft:gpt-4o-mini:support::")
    assert not model.enabled and model.kind == "chat"
    assert (model.context_window, model.max_output_tokens) == (base.context_window, base.max_output_tokens)
    assert (model.input_price_per_million, model.output_price_per_million) == (Decimal("0.3000"), Decimal("1.2000"))
    # The training usage: kind training, the trained tokens, priced at the training price.
    record = UsageRecord.objects.get(kind=UsageKind.TRAINING)
    assert record.user == admin_user and record.prompt_tokens == job.trained_tokens
    assert record.cost == (Decimal("3.00") * job.trained_tokens / 1_000_000).quantize(Decimal("0.000001"))
    assert not Reservation.objects.exists() and job.reservation_id is None
    assert finetuning.job_poll(job.pk) is None  # a finished job is not asked again


def test_the_new_model_is_usable_only_by_granted_groups_after_it_is_enabled(
    alice, bob, fake_upstream, admin_user, dataset, base
):
    job = poll_until_done(start(admin_user, upload(admin_user, dataset), base))
    model = ChatModel.objects.get(pk=job.result_model_id)
    assert model not in models_granted(user=alice) and model not in models_granted(user=bob)
    team = Group.objects.create(name="support")
    alice.groups.add(team)
    model.groups.add(team)
    assert model not in models_granted(user=alice)  # granted but still disabled
    model.enabled = True
    model.save()
    assert model in models_granted(user=alice)
    assert model not in models_granted(user=bob)
    with pytest.raises(ModelUnavailable):
        call_admit(user=bob, kind="chat", estimate=Units(input_tokens=1), purpose="reply", model_id=model.pk)


def test_a_failed_job_shows_its_error_and_bills_nothing(fake_upstream, admin_user, dataset, base):
    fake_upstream.finetuning.outcome = "failed"
    job = poll_until_done(start(admin_user, upload(admin_user, dataset), base))
    assert job.status == JobStatus.FAILED and "too few examples" in job.error
    assert job.result_model is None and not ChatModel.objects.filter(model_id__startswith="ft:").exists()
    assert not Reservation.objects.exists() and not UsageRecord.objects.filter(kind=UsageKind.TRAINING).exists()


def test_a_cancelled_job_stops_and_releases_its_hold(fake_upstream, admin_user, dataset, base):
    job = start(admin_user, upload(admin_user, dataset), base)
    finetuning.job_poll(job.pk)
    job = finetuning.job_cancel(admin=admin_user, job=FineTuneJob.objects.get(pk=job.pk))
    assert job.status == JobStatus.CANCELLED
    assert fake_upstream.finetuning.jobs[job.job_id]["status"] == "cancelled"
    assert any(r.path == f"/v1/fine_tuning/jobs/{job.job_id}/cancel" for r in fake_upstream.requests)
    assert not Reservation.objects.exists()
    assert finetuning.job_poll(job.pk) is None


def test_the_legacy_api_is_used_when_the_provider_answers_404_to_the_current_one(
    fake_upstream, admin_user, dataset, base
):
    fake_upstream.finetuning.apis = {"legacy"}
    job = start(admin_user, upload(admin_user, dataset), base, n_epochs=1)
    assert job.api == "legacy" and job.job_id.startswith("ft-")
    paths = [r.path for r in fake_upstream.requests]
    assert paths.count("/v1/fine_tuning/jobs") == 1 and paths.count("/v1/fine-tunes") == 1
    job = poll_until_done(job)
    assert job.status == JobStatus.SUCCEEDED and job.result_model is not None
    # The legacy API reports no trained tokens: the estimate is billed, flagged.
    record = UsageRecord.objects.get(kind=UsageKind.TRAINING)
    assert record.prompt_tokens == job.estimated_tokens and record.estimated
    assert all(not p.startswith("/v1/fine_tuning/jobs/") for p in paths)


def test_a_provider_set_to_legacy_never_asks_the_current_api(fake_upstream, provider, admin_user, dataset, base):
    provider.fine_tuning_api = "legacy"
    provider.save()
    job = start(admin_user, upload(admin_user, dataset), base)
    assert job.api == "legacy"
    assert not any(r.path.startswith("/v1/fine_tuning") for r in fake_upstream.requests)


def test_a_provider_set_to_current_does_not_fall_back(fake_upstream, provider, admin_user, dataset, base):
    provider.fine_tuning_api = "current"
    provider.save()
    fake_upstream.finetuning.apis = {"legacy"}
    sent = upload(admin_user, dataset)
    with pytest.raises(UpstreamError):
        start(admin_user, sent, base)
    assert not any(r.path.startswith("/v1/fine-tunes") for r in fake_upstream.requests)


def test_a_job_that_cannot_start_leaves_no_file_and_no_hold(fake_upstream, admin_user, dataset, base):
    sent = upload(admin_user, dataset)
    fake_upstream.script(endpoint="job_create", status=400, error_message="model not available for fine-tuning")
    with pytest.raises(UpstreamError):
        start(admin_user, sent, base)
    job = FineTuneJob.objects.get()
    assert job.status == JobStatus.NOT_STARTED and "not available for fine-tuning" in job.error
    assert not fake_upstream.finetuning.files
    assert FineTuneFile.objects.get().status == FileStatus.DELETED
    assert not Reservation.objects.exists() and not UsageRecord.objects.filter(kind=UsageKind.TRAINING).exists()


def test_a_job_that_cannot_start_and_whose_file_cannot_be_deleted_lists_it_for_deletion(
    fake_upstream, admin_user, dataset, base
):
    sent = upload(admin_user, dataset)
    fake_upstream.script(endpoint="job_create", status=500)
    fake_upstream.script(endpoint="file_delete", status=503, times=1)
    with pytest.raises(UpstreamError):
        start(admin_user, sent, base)
    assert FineTuneFile.objects.get().status == FileStatus.DELETE_PENDING
    assert len(fake_upstream.finetuning.files) == 1
    finetuning.files_cleanup()
    assert not fake_upstream.finetuning.files


def test_a_poll_error_is_shown_and_the_next_poll_goes_on(fake_upstream, admin_user, dataset, base):
    job = start(admin_user, upload(admin_user, dataset), base)
    fake_upstream.script(endpoint="job_retrieve", status=503, times=1)
    job = finetuning.job_poll(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.VALIDATING and "last poll failed" in job.error
    assert finetuning.job_poll(job.pk).status == JobStatus.QUEUED
    assert FineTuneJob.objects.get(pk=job.pk).error == ""


def test_a_job_the_provider_no_longer_knows_has_failed(fake_upstream, admin_user, dataset, base):
    job = start(admin_user, upload(admin_user, dataset), base)
    fake_upstream.finetuning.jobs.clear()
    job = finetuning.job_poll(job.pk)
    assert job.status == JobStatus.FAILED and not Reservation.objects.exists()


def test_a_cancel_the_provider_refuses_changes_nothing(fake_upstream, admin_user, dataset, base):
    job = start(admin_user, upload(admin_user, dataset), base)
    fake_upstream.script(endpoint="job_cancel", status=500, times=1)
    with pytest.raises(UpstreamError):
        finetuning.job_cancel(admin=admin_user, job=job)
    assert FineTuneJob.objects.get(pk=job.pk).status == JobStatus.VALIDATING


def test_the_jobs_hold_survives_the_sweep_of_dead_calls(fake_upstream, admin_user, dataset, base):
    job = start(admin_user, upload(admin_user, dataset), base)
    Reservation.objects.update(created_at=timezone.now() - timezone.timedelta(days=3))
    assert calls_sweep_orphans(older_than=timezone.timedelta(hours=2)) == 0
    assert Reservation.objects.filter(pk=job.reservation_id).exists()


def test_a_fine_tuned_model_is_deleted_on_the_provider_and_from_the_catalog(fake_upstream, admin_user, dataset, base):
    job = poll_until_done(start(admin_user, upload(admin_user, dataset), base))
    model_id = job.fine_tuned_model
    finetuning.model_delete(admin=admin_user, model=job.result_model)
    assert fake_upstream.finetuning.deleted_models == [model_id]
    assert not ChatModel.objects.filter(model_id=model_id).exists()
    assert FineTuneJob.objects.get(pk=job.pk).result_model is None


def test_a_model_the_provider_refuses_to_delete_stays_in_the_catalog(fake_upstream, admin_user, dataset, base):
    job = poll_until_done(start(admin_user, upload(admin_user, dataset), base))
    fake_upstream.script(endpoint="model_delete", status=403, error_message="not the owner")
    with pytest.raises(UpstreamError):
        finetuning.model_delete(admin=admin_user, model=job.result_model)
    assert ChatModel.objects.filter(pk=job.result_model_id).exists()


def test_a_base_model_the_admin_is_not_granted_is_refused_before_anything_leaves(
    fake_upstream, admin_user, dataset, base
):
    base.groups.add(Group.objects.create(name="others"))
    with pytest.raises(ModelUnavailable):
        upload(admin_user, dataset)
    assert not fake_upstream.requests
    assert not Conversation.objects.filter(training_locked_at__isnull=False).exists()


def test_a_fine_tuned_model_another_dataset_builds_on_is_not_deleted(fake_upstream, alice, admin_user, dataset, base):
    job = poll_until_done(start(admin_user, upload(admin_user, dataset), base))
    conversation = make_thread(alice, base, [("q", "a")])
    datasets.dataset_create(
        admin=admin_user, name="next", base_model_id=job.result_model_id, conversation_ids=[conversation.pk]
    )
    with pytest.raises(FineTuneRefused):
        finetuning.model_delete(admin=admin_user, model=job.result_model)
    assert not fake_upstream.finetuning.deleted_models
    assert ChatModel.objects.filter(pk=job.result_model_id).exists()

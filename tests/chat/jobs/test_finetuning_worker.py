"""The fine-tuning poll as it runs for real: enqueued by the start and by housekeeping, run by
``manage.py db_worker`` processes against the fake upstream, until the model is in the catalog."""

from __future__ import annotations

import pytest
from django.utils import timezone

from chat.jobs.finetuning import finetune_poll_enqueue, finetune_polls_enqueue
from chat.models import ChatModel, FineTuneJob, JobStatus, Provider, UsageRecord
from chat.services import datasets, finetuning
from tests.chat.jobs.test_documents_worker import worker
from tests.finetuning_support import make_base_model, make_thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def run_worker():
    process = worker("--batch")
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 0, errors.decode()


def test_the_worker_polls_a_job_to_success_and_the_model_appears_disabled(alice, admin_user, fake_upstream, settings):
    settings.PARLEY_FINETUNE_MIN_EXAMPLES = 1
    provider = Provider(name="Fake", base_url=fake_upstream.base_url)
    provider.api_key = "sk-test-KEY0123456789abcd"
    provider.save()
    base = make_base_model(provider)
    conversation = make_thread(alice, base, [("Where is the invoice?", "Under Billing.")])
    dataset = datasets.dataset_create(
        admin=admin_user, name="d", base_model_id=base.pk, conversation_ids=[conversation.pk]
    )
    upload = finetuning.dataset_upload(
        admin=admin_user, dataset=dataset, sha256=datasets.dataset_validate(dataset).sha256
    )
    job = finetuning.job_start(admin=admin_user, upload=upload, base_model=base, n_epochs=1)
    finetune_poll_enqueue(job.pk)  # as the admin's start does

    statuses = []
    for _ in range(3):
        run_worker()
        job.refresh_from_db()
        statuses.append(job.status)
        # Housekeeping's next round: the job's last poll is an interval old.
        FineTuneJob.objects.filter(pk=job.pk).update(polled_at=timezone.now() - timezone.timedelta(hours=1))
        finetune_polls_enqueue()
    assert statuses == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED]
    model = ChatModel.objects.get(model_id=job.fine_tuned_model)
    assert not model.enabled and job.result_model_id == model.pk
    assert UsageRecord.objects.get(kind="training").prompt_tokens == job.trained_tokens
    assert finetune_polls_enqueue() == 0  # nothing running is left to poll

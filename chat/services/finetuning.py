"""Fine-tuning on a provider: the training file, the job, its polls, and the model it makes.

Every call goes through the model-call core (chat.core.calls) on the dataset's base model, as
the admin who asked: uploads, starts, polls, cancels and deletions are admitted (grant, rate)
and settled with nothing used; the job itself holds a reservation of its estimated training
tokens on that admin's budget for its whole life, settled when it ends with the tokens the
provider reports (``trained_tokens``; estimated, and flagged, when the legacy API does not say).
That reservation is exempt from the sweep of dead calls (calls_sweep_orphans): the poll job
settles it.

Failure at each step leaves a clear state (docs/fine-tuning.md, "When something fails"):
an upload that fails marks its file row failed and unlocks the conversations; a file that may
have reached the provider anyway, or whose job could not start, is deleted there or, if that
fails too, marked "to be deleted", which housekeeping retries (:func:`files_cleanup`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.catalog import families
from chat.core.calls import Units, call_admit, call_settle, model_call
from chat.core.grants import model_granted
from chat.errors import BadRequest, DatasetChanged, DatasetInvalid, FineTuneRefused, ParleyError, UpstreamError
from chat.models import (
    ACTIVE_JOB_STATUSES,
    ChatModel,
    Conversation,
    FileStatus,
    FineTuneDataset,
    FineTuneExample,
    FineTuneFile,
    FineTuneJob,
    JobStatus,
    ModelKind,
    UsageKind,
)
from chat.services.datasets import dataset_validate
from chat.upstream import training
from chat.upstream.wire import JobState

logger = logging.getLogger(__name__)

MAX_EVENTS = 500  # the newest kept on a job's page


def _call(*, user, model: ChatModel, purpose: str, work, rate: bool = False):
    """Run ``work(endpoint)`` (a coroutine function) as a call of the core that uses nothing
    billable itself: admitted on ``model`` for ``user``, settled whatever happens."""

    async def run():
        async with model_call(
            user=user, kind=UsageKind.TRAINING, estimate=Units(), purpose=purpose, model=model, granted=True, rate=rate
        ) as call:
            return await work(call.endpoint)

    return async_to_sync(run)()


# --- the training file ----------------------------------------------------------------------
def dataset_upload(*, admin, dataset: FineTuneDataset, sha256: str) -> FineTuneFile:
    """Send the dataset's JSONL, exactly as validated and shown (its digest is ``sha256``).

    Locks the conversations first, in the statement that checks their consent: from here on
    their owners cannot take them back. A failure unlocks them and leaves no file behind.
    """
    validation = dataset_validate(dataset)
    if not validation.ok:
        raise DatasetInvalid()
    if validation.sha256 != sha256:
        raise DatasetChanged()
    base = dataset.base_model
    # Admission before anything is locked: a refusal (grant, rate) changes nothing.
    _check_granted(user=admin, model=base)
    ids = [example.conversation_id for example in validation.examples if example.usable]
    now = timezone.now()
    filename = f"parley-dataset-{dataset.pk}-{validation.sha256[:12]}.jsonl"
    with transaction.atomic():
        locked = Conversation.objects.filter(pk__in=ids, training_consent_at__isnull=False).update(
            training_locked_at=Coalesce(F("training_locked_at"), now)
        )
        if locked != len(ids):
            transaction.set_rollback(True)
            raise DatasetChanged()
        upload = FineTuneFile.objects.create(
            provider=base.provider,
            dataset=dataset,
            filename=filename,
            bytes=len(validation.jsonl),
            sha256=validation.sha256,
            tokens=validation.total_tokens,
            created_by=admin,
        )
    content = validation.jsonl

    async def send(endpoint):
        return await training.file_upload(endpoint, filename=filename, content=content)

    try:
        info = _call(user=admin, model=base, purpose="training-file", work=send, rate=True)
    except ParleyError as exc:
        upload.status = FileStatus.FAILED
        upload.error = exc.message
        upload.save(update_fields=["status", "error"])
        _unlock(ids)
        # A lost answer may hide a file the provider did keep: look for it by name.
        _remove_stray(upload, admin=admin, model=base)
        raise
    upload.file_id = info.id
    upload.status = FileStatus.UPLOADED
    upload.save(update_fields=["file_id", "status"])
    FineTuneDataset.objects.filter(pk=dataset.pk, uploaded_at__isnull=True).update(uploaded_at=timezone.now())
    return upload


def _check_granted(*, user, model: ChatModel) -> None:
    """Refuse early what admission would refuse (the model is not granted to this admin)."""
    model_granted(user=user, model_id=model.pk, kind=ModelKind.CHAT)


def _unlock(ids) -> None:
    """Undo the lock of a failed upload, except where another uploaded dataset holds the conversation."""
    held = FineTuneExample.objects.filter(dataset__uploaded_at__isnull=False).values("conversation_id")
    Conversation.objects.filter(pk__in=ids).exclude(pk__in=held).update(training_locked_at=None)


def _remove_stray(upload: FineTuneFile, *, admin, model: ChatModel) -> bool:
    """Delete any file of ``upload``'s name on the provider; False (and the row marked "to be
    deleted") when the provider could not be asked."""

    async def sweep(endpoint):
        for info in await training.file_list_all(endpoint):
            if info.filename == upload.filename:
                await training.file_delete(endpoint, info.id)

    try:
        _call(user=admin, model=model, purpose="training-file", work=sweep)
    except ParleyError as exc:
        logger.warning("could not check the provider for a stray training file %s: %s", upload.filename, exc.message)
        upload.status = FileStatus.DELETE_PENDING
        upload.save(update_fields=["status"])
        return False
    return True


def file_delete(*, admin, upload: FineTuneFile) -> FineTuneFile:
    """Delete a training file on the provider; if that fails it stays listed "to be deleted"."""
    if upload.status in (FileStatus.DELETED, FileStatus.UPLOADING):
        raise FineTuneRefused(_("This file cannot be deleted now."))
    if upload.jobs.filter(status__in=[JobStatus.CREATING, *ACTIVE_JOB_STATUSES]).exists():
        raise FineTuneRefused(_("A running job uses this file; cancel the job first."))
    model = _file_model(upload, admin)
    try:
        if upload.file_id:
            _call(
                user=admin, model=model, purpose="training-file", work=lambda e: training.file_delete(e, upload.file_id)
            )
        elif not _remove_stray(upload, admin=admin, model=model):
            raise UpstreamError(_("The provider could not be reached to look for the file."))
    except ParleyError as exc:
        upload.status = FileStatus.DELETE_PENDING
        upload.error = exc.message
        upload.save(update_fields=["status", "error"])
        raise
    upload.status = FileStatus.DELETED
    upload.save(update_fields=["status"])
    return upload


def _file_model(upload: FineTuneFile, admin) -> ChatModel:
    """The model a call about a file is admitted on: its dataset's base model, else any of its provider's."""
    if upload.dataset_id and upload.dataset is not None:
        return upload.dataset.base_model
    model = ChatModel.objects.filter(provider=upload.provider, kind=ModelKind.CHAT).order_by("pk").first()
    if model is None:
        raise FineTuneRefused(_("The provider has no chat model to make the call on."))
    return model


def files_cleanup() -> int:
    """Retry the deletions of files marked "to be deleted" (housekeeping); returns how many went."""
    done = 0
    for upload in FineTuneFile.objects.filter(status=FileStatus.DELETE_PENDING).select_related("dataset"):
        if upload.created_by is None:
            continue
        try:
            file_delete(admin=upload.created_by, upload=upload)
            done += 1
        except ParleyError as exc:
            logger.info("training file %s still not deleted: %s", upload.pk, exc.message)
    return done


def provider_files(*, admin, model: ChatModel) -> list:
    """The files the provider holds (``GET /files``), for the admin's list."""
    return _call(user=admin, model=model, purpose="training-file", work=training.file_list_all)


def provider_file_delete(*, admin, model: ChatModel, file_id: str) -> None:
    """Delete a file on the provider by its id (one Parley may not know); its row, if any, follows."""
    _call(user=admin, model=model, purpose="training-file", work=lambda e: training.file_delete(e, file_id))
    FineTuneFile.objects.filter(provider=model.provider, file_id=file_id).update(status=FileStatus.DELETED)


# --- the job ----------------------------------------------------------------------------------
def job_start(
    *,
    admin,
    upload: FineTuneFile,
    base_model: ChatModel,
    n_epochs: int,
    batch_size: int | None = None,
    learning_rate_multiplier: float | None = None,
    suffix: str = "",
) -> FineTuneJob:
    """Start a fine-tuning job on an uploaded file; its estimated tokens are held on the admin's budget."""
    if upload.status != FileStatus.UPLOADED or not upload.file_id:
        raise FineTuneRefused(_("Only an uploaded file can be trained on."))
    if base_model.kind != ModelKind.CHAT or base_model.provider_id != upload.provider_id:
        raise BadRequest(_("The base model must be a chat model of the provider the file is on."))
    if not 1 <= n_epochs <= 50:
        raise BadRequest(_("Epochs must be between 1 and 50."))
    if batch_size is not None and not 1 <= batch_size <= 256:
        raise BadRequest(_("The batch size must be between 1 and 256."))
    if learning_rate_multiplier is not None and not 0 < learning_rate_multiplier <= 10:
        raise BadRequest(_("The learning rate multiplier must be above 0 and at most 10."))
    suffix = (suffix or "").strip()
    if len(suffix) > 40 or not all(c.isalnum() or c in "-_" for c in suffix):
        raise BadRequest(_("The suffix may have up to 40 letters, digits, - and _."))
    estimate = upload.tokens * n_epochs
    # The hold on the admin's budget for the whole job (refused here if the budget cannot cover it).
    admission = call_admit(
        user=admin,
        kind=UsageKind.TRAINING,
        estimate=Units(input_tokens=estimate),
        purpose="training",
        model_id=base_model.pk,
    )
    job = FineTuneJob.objects.create(
        provider=upload.provider,
        dataset=upload.dataset,
        file=upload,
        base_model=base_model,
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate_multiplier=learning_rate_multiplier,
        suffix=suffix,
        estimated_tokens=estimate,
        reservation_id=admission.reservation_id,
        created_by=admin,
    )
    hyperparameters = {
        "n_epochs": n_epochs,
        "batch_size": batch_size,
        "learning_rate_multiplier": learning_rate_multiplier,
    }

    async def create():
        return await training.job_create(
            admission.endpoint,
            api=upload.provider.fine_tuning_api,
            model=base_model.model_id,
            training_file=upload.file_id,
            hyperparameters=hyperparameters,
            suffix=suffix,
        )

    try:
        api, state = async_to_sync(create)()
    except ParleyError as exc:
        call_settle(reservation_id=admission.reservation_id, units=Units())
        job.status = JobStatus.NOT_STARTED
        job.error = exc.message
        job.reservation_id = None
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "reservation_id", "finished_at"])
        # No job will read the file: it goes, or is listed to go.
        try:
            file_delete(admin=admin, upload=upload)
        except ParleyError:
            logger.warning("training file %s of a job that did not start is left to be deleted", upload.pk)
        raise
    job.api = api
    job.job_id = state.id
    _apply(job, state, events=list(state.events))
    return job


def _apply(job: FineTuneJob, state: JobState, *, events) -> None:
    """Write what the provider said about ``job``; settle and publish the model when it ended."""
    known = {event["id"] for event in job.events}
    job.events = (job.events + [_event_dict(e) for e in events if e.id not in known])[-MAX_EVENTS:]
    job.status = state.status
    job.polled_at = timezone.now()
    if state.trained_tokens is not None:
        job.trained_tokens = state.trained_tokens
    if state.fine_tuned_model:
        job.fine_tuned_model = state.fine_tuned_model
    if state.error:
        job.error = state.error
    elif state.status != JobStatus.FAILED:
        job.error = ""
    job.save()
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        _finish(job)


def _event_dict(event) -> dict:
    return {"id": event.id, "created_at": event.created_at, "level": event.level, "message": event.message}


def _finish(job: FineTuneJob) -> None:
    if job.finished_at is None:
        job.finished_at = timezone.now()
        job.save(update_fields=["finished_at"])
    if job.reservation_id is not None:
        trained = job.trained_tokens
        estimated = trained is None and job.status == JobStatus.SUCCEEDED
        if trained is None:
            # The legacy API does not report trained tokens: a finished job is billed its estimate.
            trained = job.estimated_tokens if job.status == JobStatus.SUCCEEDED else 0
        call_settle(reservation_id=job.reservation_id, units=Units(input_tokens=trained), estimated=estimated)
        FineTuneJob.objects.filter(pk=job.pk).update(reservation_id=None)
        job.reservation_id = None
    if job.status == JobStatus.SUCCEEDED and job.fine_tuned_model and job.result_model_id is None:
        job.result_model = catalog_add(job)
        job.save(update_fields=["result_model"])


def catalog_add(job: FineTuneJob) -> ChatModel:
    """The fine-tuned model in the catalog: a chat model, disabled, with the base model's window
    and the fine-tuned prices (OpenAI's list, else the base model's); an admin grants and enables it."""
    base = job.base_model
    tuning = families.fine_tuning_of(base.model_id)
    model, _created = ChatModel.objects.get_or_create(
        provider=job.provider,
        model_id=job.fine_tuned_model,
        defaults={
            "display_name": _("%(base)s, fine-tuned %(suffix)s")
            % {"base": base.label, "suffix": job.suffix or job.job_id},
            "kind": ModelKind.CHAT,
            "enabled": False,
            "context_window": base.context_window,
            "max_output_tokens": base.max_output_tokens,
            "input_price_per_million": tuning.input_price if tuning else base.input_price_per_million,
            "output_price_per_million": tuning.output_price if tuning else base.output_price_per_million,
        },
    )
    return model


def job_poll(job_id) -> FineTuneJob | None:
    """Ask the provider about one running job (the background job's body); None if it is not running.

    A provider error is kept on the job (``error``) and the next poll tries again; a job the
    provider no longer knows (404) has failed.
    """
    job = FineTuneJob.objects.select_related("base_model", "provider", "created_by").filter(pk=job_id).first()
    if job is None or job.status not in ACTIVE_JOB_STATUSES or not job.job_id or job.created_by is None:
        return None

    async def ask(endpoint):
        state = await training.job_retrieve(endpoint, api=job.api, job_id=job.job_id)
        events = list(state.events)
        if job.api == training.CURRENT:
            events = await training.job_events_list(endpoint, api=job.api, job_id=job.job_id)
        return state, events

    try:
        state, events = _call(user=job.created_by, model=job.base_model, purpose="training-poll", work=ask)
    except ParleyError as exc:
        if isinstance(exc, UpstreamError) and exc.status == 404:
            state, events = (
                JobState(id=job.job_id, status=JobStatus.FAILED, error=_("The provider no longer knows this job.")),
                [],
            )
        else:
            FineTuneJob.objects.filter(pk=job.pk).update(
                polled_at=timezone.now(), error=_("The last poll failed: %(error)s") % {"error": exc.message}
            )
            return job
    _apply(job, state, events=events)
    return job


def jobs_due() -> list[int]:
    """Running jobs not polled for PARLEY_FINETUNE_POLL_INTERVAL (housekeeping enqueues their polls)."""
    cutoff = timezone.now() - timedelta(seconds=settings.PARLEY_FINETUNE_POLL_INTERVAL)
    due = Q(polled_at__isnull=True) | Q(polled_at__lt=cutoff)
    return list(FineTuneJob.objects.filter(due, status__in=ACTIVE_JOB_STATUSES).values_list("pk", flat=True)[:100])


def job_cancel(*, admin, job: FineTuneJob) -> FineTuneJob:
    """Cancel a running job on the provider; what it trained until then is billed."""
    if job.status not in ACTIVE_JOB_STATUSES:
        raise FineTuneRefused(_("Only a running job can be cancelled."))
    state = _call(
        user=admin,
        model=job.base_model,
        purpose="training-cancel",
        work=lambda e: training.job_cancel(e, api=job.api, job_id=job.job_id),
    )
    _apply(job, state, events=list(state.events))
    return job


def model_delete(*, admin, model: ChatModel, on_provider: bool = True) -> None:
    """Delete a fine-tuned model on its provider (``DELETE /models/{id}``) and from the catalog.

    If the provider refuses, the catalog keeps it (and the error says why)."""
    if not model.model_id.startswith("ft:") and not FineTuneJob.objects.filter(result_model=model).exists():
        raise FineTuneRefused(_("Only a fine-tuned model can be deleted on the provider."))
    if (
        FineTuneJob.objects.filter(base_model=model).exists()
        or FineTuneDataset.objects.filter(base_model=model).exists()
    ):
        raise FineTuneRefused(_("Datasets or jobs use this model as their base; it cannot be deleted."))
    if on_provider:
        base = FineTuneJob.objects.filter(result_model=model).select_related("base_model").first()
        call_model = base.base_model if base is not None else model
        _call(
            user=admin,
            model=call_model,
            purpose="training-model",
            work=lambda e: training.model_delete(e, model.model_id),
        )
    model.delete()

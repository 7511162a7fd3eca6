"""Fine-tuning from the team's own conversations: datasets, provider files and jobs.

A conversation is a candidate only once its owner has marked it "may be used for training"
(``Conversation.training_consent_at``); it is locked (``training_locked_at``) from the moment
a dataset holding it starts leaving Parley, after which consent can no longer be withdrawn
(docs/fine-tuning.md, docs/security.md T49).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models.catalog import ChatModel, Provider
from chat.models.conversations import Conversation


class DatasetFormat(models.TextChoices):
    CHAT = "chat", _('chat ({"messages": [...]})')
    PROMPT = "prompt", _("legacy prompt/completion")


class FineTuneDataset(models.Model):
    """Conversations picked for training, and how they become examples."""

    name = models.CharField(_("name"), max_length=200)
    base_model = models.ForeignKey(ChatModel, verbose_name=_("base model"), on_delete=models.PROTECT, related_name="+")
    system_prompt = models.TextField(_("system prompt"), blank=True)
    kept_only = models.BooleanField(
        _("only replies the member kept"), default=True, help_text=_("Leave out stopped or interrupted replies.")
    )
    format = models.CharField(_("format"), max_length=8, choices=DatasetFormat.choices, default=DatasetFormat.CHAT)
    n_epochs = models.PositiveSmallIntegerField(_("epochs"), default=3)
    conversations = models.ManyToManyField(Conversation, through="FineTuneExample", related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    # When a file of this dataset reached the provider: its conversations are locked from then on.
    uploaded_at = models.DateTimeField(_("uploaded"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("fine-tuning dataset")
        verbose_name_plural = _("fine-tuning datasets")

    def __str__(self) -> str:
        return self.name


class FineTuneExample(models.Model):
    """One conversation picked for a dataset (its current branch becomes one example)."""

    dataset = models.ForeignKey(FineTuneDataset, on_delete=models.CASCADE, related_name="examples")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "conversation"], name="ftexample_unique")]


class FileStatus(models.TextChoices):
    UPLOADING = "uploading", _("uploading")
    UPLOADED = "uploaded", _("uploaded")
    FAILED = "failed", _("upload failed")
    # The file exists on the provider and must go: a delete failed, or was asked for and not done yet.
    DELETE_PENDING = "delete_pending", _("to be deleted")
    DELETED = "deleted", _("deleted")


class FineTuneFile(models.Model):
    """A training file sent to a provider (``POST /files``), and what became of it there."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey(FineTuneDataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="files")
    file_id = models.CharField(_("file id"), max_length=200, blank=True)
    filename = models.CharField(_("file name"), max_length=200)
    bytes = models.PositiveBigIntegerField(_("bytes"), default=0)
    sha256 = models.CharField(max_length=64)
    tokens = models.PositiveBigIntegerField(_("tokens"), default=0)  # one epoch's, as validated
    status = models.CharField(_("status"), max_length=16, choices=FileStatus.choices, default=FileStatus.UPLOADING)
    error = models.TextField(_("error"), blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("training file")
        verbose_name_plural = _("training files")

    def __str__(self) -> str:
        return self.file_id or self.filename


class FineTuneApi(models.TextChoices):
    CURRENT = "current", _("/fine_tuning/jobs")
    LEGACY = "legacy", _("/fine-tunes (legacy)")


class JobStatus(models.TextChoices):
    CREATING = "creating", _("starting")
    NOT_STARTED = "not_started", _("could not start")
    VALIDATING = "validating_files", _("validating files")
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")
    CANCELLED = "cancelled", _("cancelled")


ACTIVE_JOB_STATUSES = (JobStatus.VALIDATING, JobStatus.QUEUED, JobStatus.RUNNING)
FINAL_JOB_STATUSES = (JobStatus.NOT_STARTED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class FineTuneJob(models.Model):
    """A fine-tuning job on a provider, as last polled."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey(FineTuneDataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    file = models.ForeignKey(FineTuneFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    # PROTECT: every call about the job is admitted through the core on its base model.
    base_model = models.ForeignKey(ChatModel, verbose_name=_("base model"), on_delete=models.PROTECT, related_name="+")
    api = models.CharField(_("API"), max_length=8, choices=FineTuneApi.choices, default=FineTuneApi.CURRENT)
    job_id = models.CharField(_("job id"), max_length=200, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=JobStatus.choices, default=JobStatus.CREATING)
    n_epochs = models.PositiveSmallIntegerField(_("epochs"), default=3)
    batch_size = models.PositiveIntegerField(_("batch size"), null=True, blank=True)
    learning_rate_multiplier = models.FloatField(_("learning rate multiplier"), null=True, blank=True)
    suffix = models.CharField(_("suffix"), max_length=40, blank=True)
    fine_tuned_model = models.CharField(_("fine-tuned model"), max_length=200, blank=True)
    result_model = models.ForeignKey(
        ChatModel, verbose_name=_("catalog model"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    estimated_tokens = models.PositiveBigIntegerField(_("estimated training tokens"), default=0)
    trained_tokens = models.PositiveBigIntegerField(_("trained tokens"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    events = models.JSONField(_("events"), default=list, blank=True)
    # The core's hold on the admin's budget for the whole job, settled when it ends (chat.core.calls).
    reservation_id = models.BigIntegerField(null=True, blank=True, editable=False)
    # PROTECT: the job's polls are calls of the core made as this admin, and its usage is theirs.
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    polled_at = models.DateTimeField(_("last polled"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "polled_at"], name="ftjob_status_polled")]
        verbose_name = _("fine-tuning job")
        verbose_name_plural = _("fine-tuning jobs")

    def __str__(self) -> str:
        return self.job_id or f"#{self.pk}"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_JOB_STATUSES

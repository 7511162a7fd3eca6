"""Fine-tuning in the console: the dataset builder, the validation page, training files and jobs.

Only conversations their owners marked for training appear on any of these pages, with their
text (the members agreed to their use), whatever PARLEY_ADMIN_CAN_READ_CONVERSATIONS says;
an unmarked one is never listed, counted or shown (docs/security.md T49). Job pages read the
database only: the background poll (chat.jobs.finetuning) asks the provider.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from chat.errors import ParleyError
from chat.jobs.finetuning import finetune_poll_enqueue
from chat.models import (
    ChatModel,
    DatasetFormat,
    FileStatus,
    FineTuneDataset,
    FineTuneFile,
    FineTuneJob,
    ModelKind,
)
from chat.services import datasets, finetuning


def _chat_models():
    return (
        ChatModel.objects.filter(kind=ModelKind.CHAT).select_related("provider").order_by("provider__name", "model_id")
    )


class CandidateFilter(forms.Form):
    member = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(), required=False, label=gettext_lazy("Member")
    )
    group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"), required=False, label=gettext_lazy("Group"))
    model = forms.ModelChoiceField(queryset=ChatModel.objects.none(), required=False, label=gettext_lazy("Model"))
    date_from = forms.DateField(
        required=False, label=gettext_lazy("From"), widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(required=False, label=gettext_lazy("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Only members who marked a conversation: the list names nobody else.
        owners = datasets.candidates().values("owner_id")
        self.fields["member"].queryset = get_user_model().objects.filter(pk__in=owners).order_by("username")
        self.fields["model"].queryset = _chat_models()

    def filters(self) -> dict:
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        return {
            "member_id": data["member"].pk if data.get("member") else None,
            "group_id": data["group"].pk if data.get("group") else None,
            "model_id": data["model"].pk if data.get("model") else None,
            "date_from": data.get("date_from"),
            "date_to": data.get("date_to"),
        }


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=200, label=gettext_lazy("Name"))
    base_model = forms.ModelChoiceField(queryset=ChatModel.objects.none(), label=gettext_lazy("Base model"))
    system_prompt = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label=gettext_lazy("System prompt"),
        help_text=gettext_lazy("Put in front of every example instead of the conversation's own."),
    )
    kept_only = forms.BooleanField(
        required=False,
        initial=True,
        label=gettext_lazy("Only replies the member kept"),
        help_text=gettext_lazy(
            "Leave out stopped or interrupted replies (blocked, failed and empty ones never go in)."
        ),
    )
    format = forms.ChoiceField(choices=DatasetFormat.choices, initial=DatasetFormat.CHAT, label=gettext_lazy("Format"))
    n_epochs = forms.IntegerField(min_value=1, max_value=50, initial=3, label=gettext_lazy("Epochs"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base_model"].queryset = _chat_models()


class JobForm(forms.Form):
    base_model = forms.ModelChoiceField(queryset=ChatModel.objects.none(), label=gettext_lazy("Base model"))
    n_epochs = forms.IntegerField(min_value=1, max_value=50, label=gettext_lazy("Epochs"))
    batch_size = forms.IntegerField(
        min_value=1,
        max_value=256,
        required=False,
        label=gettext_lazy("Batch size"),
        help_text=gettext_lazy("Empty: auto."),
    )
    learning_rate_multiplier = forms.FloatField(
        min_value=0.0001,
        max_value=10,
        required=False,
        label=gettext_lazy("Learning rate multiplier"),
        help_text=gettext_lazy("Empty: auto."),
    )
    suffix = forms.CharField(max_length=40, required=False, label=gettext_lazy("Suffix"))

    def __init__(self, *args, provider=None, **kwargs):
        super().__init__(*args, **kwargs)
        models = _chat_models()
        self.fields["base_model"].queryset = models.filter(provider=provider) if provider is not None else models


def _int(value) -> int:
    """An id from a URL or a form; anything else matches no row (404)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _post_only(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return None


def _fail(request, exc: ParleyError) -> None:
    messages.error(request, f"{exc.message} ({exc.code})")


@admin.register(FineTuneDataset)
class FineTuneDatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "base_model", "format", "example_count", "uploaded_at", "created_at")
    list_select_related = ("base_model",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_examples=Count("examples"))

    @admin.display(description=gettext_lazy("conversations"), ordering="_examples")
    def example_count(self, obj) -> int:
        return obj._examples

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/download/", view(self.download_view), name="chat_finetunedataset_download"),
            path("<path:object_id>/exclude/", view(self.exclude_view), name="chat_finetunedataset_exclude"),
            path("<path:object_id>/upload/", view(self.upload_view), name="chat_finetunedataset_upload"),
            path("<path:object_id>/start/", view(self.start_view), name="chat_finetunedataset_start"),
        ] + super().get_urls()

    def _dataset(self, request, object_id, *, change: bool) -> FineTuneDataset:
        allowed = self.has_change_permission(request) if change else self.has_view_permission(request)
        if not allowed:
            raise PermissionDenied
        return get_object_or_404(FineTuneDataset.objects.select_related("base_model__provider"), pk=_int(object_id))

    # The builder: marked conversations only, filtered, picked.
    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        filters = CandidateFilter(request.GET or None)
        found = list(datasets.candidates(**filters.filters()).annotate(message_count=Count("messages"))[:500])
        form = DatasetForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                dataset = datasets.dataset_create(
                    admin=request.user,
                    name=data["name"],
                    base_model_id=data["base_model"].pk,
                    conversation_ids=request.POST.getlist("conversation"),
                    system_prompt=data["system_prompt"],
                    kept_only=data["kept_only"],
                    format=data["format"],
                    n_epochs=data["n_epochs"],
                )
            except ParleyError as exc:
                _fail(request, exc)
            else:
                messages.success(request, _("The dataset was created. Check it before uploading."))
                return HttpResponseRedirect(reverse("admin:chat_finetunedataset_change", args=[dataset.pk]))
        picked = set(request.POST.getlist("conversation")) if request.method == "POST" else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Build a fine-tuning dataset"),
            "filters": filters,
            "candidates": [(c, picked is None or str(c.pk) in picked) for c in found],
            "form": form,
        }
        return TemplateResponse(request, "admin/chat/finetunedataset/builder.html", context)

    # The dataset's page: every example as it will be sent, the checks, the file, the jobs.
    def change_view(self, request, object_id, form_url="", extra_context=None):
        dataset = self._dataset(request, object_id, change=False)
        validation = datasets.dataset_validate(dataset)
        files = list(dataset.files.select_related("provider").order_by("-created_at"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": dataset.name,
            "dataset": dataset,
            "validation": validation,
            "files": files,
            "job_forms": {
                f.pk: JobForm(
                    provider=f.provider, initial={"base_model": dataset.base_model_id, "n_epochs": dataset.n_epochs}
                )
                for f in files
                if f.status == FileStatus.UPLOADED
            },
            "jobs": list(dataset.jobs.order_by("-created_at")),
            "can_change": self.has_change_permission(request),
        }
        return TemplateResponse(request, "admin/chat/finetunedataset/dataset.html", context)

    def download_view(self, request, object_id):
        dataset = self._dataset(request, object_id, change=False)
        validation = datasets.dataset_validate(dataset)
        response = HttpResponse(validation.jsonl, content_type="application/jsonl")
        response["Content-Disposition"] = f'attachment; filename="parley-dataset-{dataset.pk}.jsonl"'
        response["X-Content-SHA256"] = validation.sha256
        return response

    def exclude_view(self, request, object_id):
        if (refused := _post_only(request)) is not None:
            return refused
        dataset = self._dataset(request, object_id, change=True)
        try:
            datasets.dataset_exclude(dataset=dataset, conversation_id=request.POST.get("conversation"))
        except ParleyError as exc:
            _fail(request, exc)
        return HttpResponseRedirect(reverse("admin:chat_finetunedataset_change", args=[dataset.pk]))

    def upload_view(self, request, object_id):
        if (refused := _post_only(request)) is not None:
            return refused
        dataset = self._dataset(request, object_id, change=True)
        try:
            upload = finetuning.dataset_upload(
                admin=request.user, dataset=dataset, sha256=request.POST.get("sha256", "")
            )
        except ParleyError as exc:
            _fail(request, exc)
        else:
            messages.success(request, _("Uploaded as %(file)s.") % {"file": upload.file_id})
        return HttpResponseRedirect(reverse("admin:chat_finetunedataset_change", args=[dataset.pk]))

    def start_view(self, request, object_id):
        if (refused := _post_only(request)) is not None:
            return refused
        dataset = self._dataset(request, object_id, change=True)
        upload = get_object_or_404(
            FineTuneFile.objects.select_related("provider"), pk=_int(request.POST.get("file")), dataset=dataset
        )
        form = JobForm(request.POST, provider=upload.provider)
        if not form.is_valid():
            messages.error(request, _("Check the job's settings: %(errors)s") % {"errors": form.errors.as_text()})
            return HttpResponseRedirect(reverse("admin:chat_finetunedataset_change", args=[dataset.pk]))
        data = form.cleaned_data
        try:
            job = finetuning.job_start(
                admin=request.user,
                upload=upload,
                base_model=data["base_model"],
                n_epochs=data["n_epochs"],
                batch_size=data.get("batch_size"),
                learning_rate_multiplier=data.get("learning_rate_multiplier"),
                suffix=data.get("suffix") or "",
            )
        except ParleyError as exc:
            _fail(request, exc)
            return HttpResponseRedirect(reverse("admin:chat_finetunedataset_change", args=[dataset.pk]))
        finetune_poll_enqueue(job.pk)
        messages.success(request, _("The job %(job)s started.") % {"job": job.job_id})
        return HttpResponseRedirect(reverse("admin:chat_finetunejob_change", args=[job.pk]))


@admin.register(FineTuneJob)
class FineTuneJobAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "base_model", "fine_tuned_model", "trained_tokens", "api", "created_at")
    list_filter = ("status", "api")
    list_select_related = ("base_model",)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a job is a record of what was trained on whose data; cancel it instead

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/cancel/", view(self.cancel_view), name="chat_finetunejob_cancel"),
            path("<path:object_id>/delete-model/", view(self.delete_model_view), name="chat_finetunejob_delete_model"),
        ] + super().get_urls()

    def _job(self, request, object_id, *, change: bool) -> FineTuneJob:
        allowed = self.has_change_permission(request) if change else self.has_view_permission(request)
        if not allowed:
            raise PermissionDenied
        return get_object_or_404(
            FineTuneJob.objects.select_related("base_model", "provider", "result_model", "dataset", "file"),
            pk=_int(object_id),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self._job(request, object_id, change=False)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Fine-tuning job %(job)s") % {"job": job},
            "job": job,
            "events": [
                {**event, "at": dt.datetime.fromtimestamp(event.get("created_at") or 0, tz=dt.UTC)}
                for event in job.events
            ],
            "can_change": self.has_change_permission(request),
        }
        return TemplateResponse(request, "admin/chat/finetunejob/job.html", context)

    def cancel_view(self, request, object_id):
        if (refused := _post_only(request)) is not None:
            return refused
        job = self._job(request, object_id, change=True)
        try:
            finetuning.job_cancel(admin=request.user, job=job)
        except ParleyError as exc:
            _fail(request, exc)
        else:
            messages.success(request, _("The job was cancelled."))
        return HttpResponseRedirect(reverse("admin:chat_finetunejob_change", args=[job.pk]))

    def delete_model_view(self, request, object_id):
        if (refused := _post_only(request)) is not None:
            return refused
        job = self._job(request, object_id, change=True)
        if job.result_model is None:
            messages.error(request, _("This job has no model in the catalog."))
        else:
            try:
                finetuning.model_delete(admin=request.user, model=job.result_model)
            except ParleyError as exc:
                _fail(request, exc)
            else:
                messages.success(request, _("The fine-tuned model was deleted on the provider and from the catalog."))
        return HttpResponseRedirect(reverse("admin:chat_finetunejob_change", args=[job.pk]))


@admin.register(FineTuneFile)
class FineTuneFileAdmin(admin.ModelAdmin):
    list_display = ("filename", "file_id", "provider", "status", "bytes", "tokens", "created_at")
    list_filter = ("status", "provider")
    readonly_fields = (
        "provider",
        "dataset",
        "file_id",
        "filename",
        "bytes",
        "sha256",
        "tokens",
        "status",
        "error",
        "created_by",
        "created_at",
    )
    actions = ["delete_on_provider"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a row goes only with its file: "delete on the provider"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("provider/", view(self.provider_files_view), name="chat_finetunefile_provider"),
        ] + super().get_urls()

    @admin.action(description=gettext_lazy("Delete on the provider"))
    def delete_on_provider(self, request, queryset):
        for upload in queryset.select_related("dataset"):
            try:
                finetuning.file_delete(admin=request.user, upload=upload)
            except ParleyError as exc:
                messages.error(request, f"{upload}: {exc.message} ({exc.code})")
            else:
                messages.success(request, _("%(file)s was deleted on the provider.") % {"file": upload})

    def provider_files_view(self, request):
        """The files a provider holds (asked when the admin opens this page), with a delete button each."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        models = _chat_models().filter(provider__enabled=True)
        providers = {}
        for model in models:
            providers.setdefault(model.provider_id, model)
        chosen = providers.get(_int(request.POST.get("provider") or request.GET.get("provider")))
        if request.method == "POST" and chosen is not None:
            try:
                finetuning.provider_file_delete(
                    admin=request.user, model=chosen, file_id=request.POST.get("file_id", "")
                )
            except ParleyError as exc:
                _fail(request, exc)
            else:
                messages.success(request, _("The file was deleted on the provider."))
            return HttpResponseRedirect(f"{reverse('admin:chat_finetunefile_provider')}?provider={chosen.provider_id}")
        files, error = [], None
        if chosen is not None:
            try:
                files = finetuning.provider_files(admin=request.user, model=chosen)
            except ParleyError as exc:
                error = f"{exc.message} ({exc.code})"
        known = (
            {f.file_id: f for f in FineTuneFile.objects.filter(provider_id=chosen.provider_id) if f.file_id}
            if chosen is not None
            else {}
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Files on the provider"),
            "providers": [m.provider for m in providers.values()],
            "chosen": chosen,
            "files": [(f, known.get(f.id)) for f in files],
            "error": error,
        }
        return TemplateResponse(request, "admin/chat/finetunefile/provider.html", context)

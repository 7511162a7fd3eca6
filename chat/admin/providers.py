"""Providers (write-only API keys, test connection, sync models) and the model catalog."""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_post_parameters

from chat import crypto
from chat.catalog.providers import provider_sync_models
from chat.core import grants
from chat.errors import ParleyError
from chat.models import ChatModel, Provider
from chat.upstream import client, redact, wire

logger = logging.getLogger(__name__)


def validate_base_url(value: str) -> str:
    """The form's face of :func:`chat.upstream.wire.validate_base_url`, the one rule for base URLs.

    Userinfo (``https://api.openai.com@evil``), a query (``https://evil/?api.openai.com``) or a
    fragment can make a URL look like one host while pointing at another (T25), and a key is
    sent to whatever this URL names, so they are refused outright.
    """
    try:
        return wire.validate_base_url(value)
    except wire.InvalidEndpoint as exc:
        raise ValidationError(str(exc)) from None


def validate_api_key(key: str) -> None:
    """Refuse a key the HTTP client could not send (its error would quote the header, key included)."""
    try:
        wire.Endpoint(base_url="https://example.invalid", api_key=key)
    except wire.InvalidEndpoint:
        raise ValidationError(_("The API key contains spaces or characters an API key cannot have.")) from None


def _secrets(provider: Provider) -> list[str]:
    # The upstream text in an error was redacted where it was read (chat.upstream.wire); this
    # is the same rule again at the page, for errors raised on paths that had no endpoint.
    try:
        return [provider.api_key]
    except crypto.KeyDecryptionError:
        return []


class ProviderForm(forms.ModelForm):
    api_key = forms.CharField(
        label=_("New API key"),
        required=False,
        strip=True,
        # render_value=False: the key never travels back to the browser, not even after a
        # validation error on another field.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Write-only: a saved key is never shown again. Leave blank to keep the current key."),
    )
    clear_api_key = forms.BooleanField(
        label=_("Remove the saved key"),
        required=False,
        help_text=_("For providers that need no key, such as a local server."),
    )

    class Meta:
        model = Provider
        fields = [
            "name",
            "base_url",
            "organization",
            "enabled",
            "timeout",
            "use_moderation",
            "moderation_provider",
            "fine_tuning_api",
        ]
        # A plain text field: validate_base_url decides, and a URL without a scheme is refused
        # rather than silently given one.
        field_classes = {"base_url": forms.CharField}
        widgets = {"base_url": forms.URLInput}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "fine_tuning_api" in self.fields:
            self.fields["fine_tuning_api"].required = False  # left out: automatic
        field = self.fields.get("moderation_provider")
        if field is not None and self.instance.pk:
            field.queryset = field.queryset.exclude(pk=self.instance.pk)

    def clean_fine_tuning_api(self):
        return self.cleaned_data.get("fine_tuning_api") or "auto"

    def clean_base_url(self):
        return validate_base_url(self.cleaned_data.get("base_url", ""))

    def clean(self):
        data = super().clean()
        if data.get("clear_api_key") and data.get("api_key"):
            raise ValidationError(_("Either enter a new key or remove the saved one, not both."))
        if data.get("api_key"):
            try:
                validate_api_key(data["api_key"])
            except ValidationError as error:
                self.add_error("api_key", error)
        return data

    def save(self, commit=True):
        provider = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            provider.api_key = ""
        elif self.cleaned_data.get("api_key"):
            provider.api_key = self.cleaned_data["api_key"]
        if commit:
            provider.save()
            self.save_m2m()
        return provider


def provider_test_connection(provider: Provider) -> int:
    """The number of models the provider lists at /models; raises ParleyError on failure.

    Under daphne this view runs in a worker thread and async_to_sync hands the call to the
    server's event loop, so it shares that loop's connection pool.
    """
    return len(async_to_sync(client.list_models)(client.Endpoint.for_provider(provider)))


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ("name", "base_url", "enabled", "masked_key", "model_count", "models_synced_at")
    list_filter = ("enabled",)
    search_fields = ("name", "base_url")
    readonly_fields = ("masked_key", "from_environment", "models_synced_at")
    actions = ["test_connection", "sync_models"]
    fieldsets = (
        (None, {"fields": ("name", "base_url", "organization", "enabled", "timeout")}),
        (_("API key"), {"fields": ("masked_key", "api_key", "clear_api_key")}),
        (_("Moderation"), {"fields": ("use_moderation", "moderation_provider")}),
        (_("Fine-tuning"), {"fields": ("fine_tuning_api",)}),
        (_("Status"), {"fields": ("from_environment", "models_synced_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_model_count=Count("chat_models"))

    @admin.display(description=_("API key"))
    def masked_key(self, obj: Provider) -> str:
        return obj.api_key_masked or _("(none)")

    @admin.display(description=_("models"), ordering="_model_count")
    def model_count(self, obj: Provider) -> int:
        return obj._model_count

    # The key must not appear in a technical 500 page or an error report (T27).
    @method_decorator(sensitive_post_parameters("api_key"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="chat_provider_test_connection",
            ),
            path(
                "<path:object_id>/sync-models/",
                self.admin_site.admin_view(self.sync_models_view),
                name="chat_provider_sync_models",
            ),
        ] + super().get_urls()

    # --- actions -------------------------------------------------------------------------------

    def _run(self, request, provider: Provider, call, *, failed, unexpected, log_message):
        """Run ``call(provider)``: ``(True, result)``, or ``(False, None)`` once the admin is told why.

        ``failed`` and ``unexpected`` are the messages for a ParleyError (its text with the key
        redacted, and its code) and for anything else (logged with ``log_message``).
        """
        try:
            return True, call(provider)
        except crypto.KeyDecryptionError:
            self.message_user(
                request, _("%(name)s: the saved key cannot be decrypted.") % {"name": provider.name}, messages.ERROR
            )
        except ParleyError as exc:
            detail = redact.clean(exc.message, _secrets(provider), limit=1000)
            self.message_user(
                request,
                failed % {"name": provider.name, "error": detail, "code": exc.code},
                messages.ERROR,
            )
        except Exception:  # noqa: BLE001 - the outermost boundary of an admin action
            logger.exception(log_message, provider.pk)
            self.message_user(request, unexpected % {"name": provider.name}, messages.ERROR)
        return False, None

    def _test_one(self, request, provider: Provider) -> None:
        ok, count = self._run(
            request,
            provider,
            provider_test_connection,
            failed=_("%(name)s: connection failed: %(error)s (%(code)s)"),
            unexpected=_("%(name)s: connection failed with an unexpected error (internal_error); see the server log."),
            log_message="Unexpected error testing provider %s",
        )
        if ok:
            self.message_user(
                request,
                ngettext(
                    "%(name)s: connected, %(count)d model available.",
                    "%(name)s: connected, %(count)d models available.",
                    count,
                )
                % {"name": provider.name, "count": count},
                messages.SUCCESS,
            )

    def _sync_one(self, request, provider: Provider) -> None:
        ok, result = self._run(
            request,
            provider,
            provider_sync_models,
            failed=_("%(name)s: model sync failed: %(error)s (%(code)s)"),
            unexpected=_("%(name)s: model sync failed with an unexpected error (internal_error); see the server log."),
            log_message="Unexpected error syncing models of provider %s",
        )
        if ok:
            message = _(
                "%(name)s: models synced: %(listed)d listed, %(added)d new models added, "
                "%(skipped)d that Parley cannot call skipped."
            ) % {"name": provider.name, **{k: result.get(k, 0) for k in ("listed", "added", "skipped")}}
            if result.get("default"):
                message += " " + _("%(model)s is now the default model.") % {"model": result["default"]}
            self.message_user(request, message, messages.SUCCESS)

    @admin.action(description=_("Test connection (list models)"), permissions=["change"])
    def test_connection(self, request, queryset):
        for provider in queryset:
            self._test_one(request, provider)

    @admin.action(description=_("Sync models from the provider"), permissions=["change"])
    def sync_models(self, request, queryset):
        for provider in queryset:
            self._sync_one(request, provider)

    def _object_action(self, request, object_id, run):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        provider = get_object_or_404(Provider, pk=object_id)
        if not self.has_change_permission(request, provider):
            raise PermissionDenied
        run(request, provider)
        return HttpResponseRedirect(reverse("admin:chat_provider_change", args=[provider.pk]))

    def test_connection_view(self, request, object_id):
        return self._object_action(request, object_id, self._test_one)

    def sync_models_view(self, request, object_id):
        return self._object_action(request, object_id, self._sync_one)


class ChatModelForm(forms.ModelForm):
    class Meta:
        model = ChatModel
        fields = [
            "provider",
            "model_id",
            "display_name",
            "kind",
            "vision",
            "enabled",
            "is_default",
            "context_window",
            "max_output_tokens",
            "input_price_per_million",
            "output_price_per_million",
            "image_prices",
            "audio_price_per_minute",
            "speech_price_per_million_characters",
            "training_price_per_million",
            "dimensions",
            "groups",
        ]

    def clean_image_prices(self):
        prices = self.cleaned_data.get("image_prices") or {}
        if not isinstance(prices, dict):
            raise forms.ValidationError(_('Prices per image are an object such as {"1024x1024": "0.04"}.'))
        cleaned = {}
        for key, value in prices.items():
            try:
                price = Decimal(str(value))
            except (InvalidOperation, ValueError):
                price = Decimal(-1)
            if not isinstance(key, str) or not key or len(key) > 40 or not price.is_finite() or price < 0:
                raise forms.ValidationError(
                    _("%(key)s: a price per image is a size (and quality) with a price of zero or more.")
                    % {"key": str(key)[:40]}
                )
            cleaned[key] = str(price)
        return cleaned

    def clean(self):
        data = super().clean()
        if data.get("is_default") and data.get("kind", "chat") != "chat":
            self.add_error("is_default", _("Only a chat model can be the default for new chats."))
        window, out = data.get("context_window"), data.get("max_output_tokens")
        if window and out and out >= window:
            self.add_error("max_output_tokens", _("The maximum output must be smaller than the context window."))
        return data


@admin.register(ChatModel)
class ChatModelAdmin(admin.ModelAdmin):
    form = ChatModelForm
    list_display = (
        "label",
        "provider",
        "model_id",
        "kind",
        "vision",
        "enabled",
        "is_default",
        "context_window",
        "max_output_tokens",
        "input_price_per_million",
        "output_price_per_million",
        "allowed_groups",
    )
    list_filter = ("kind", "vision", "enabled", "is_default", "provider")
    list_select_related = ("provider",)
    search_fields = ("model_id", "display_name", "provider__name")
    filter_horizontal = ("groups",)
    actions = ["make_default", "enable", "disable"]
    fieldsets = (
        (None, {"fields": ("provider", "model_id", "display_name", "kind", "vision", "enabled", "is_default")}),
        (_("Limits"), {"fields": ("context_window", "max_output_tokens", "dimensions")}),
        (
            _("Prices"),
            {
                "fields": (
                    "input_price_per_million",
                    "output_price_per_million",
                    "image_prices",
                    "audio_price_per_minute",
                    "speech_price_per_million_characters",
                    "training_price_per_million",
                ),
                "description": _("In each kind's own units; leave a price empty when the model is free."),
            },
        ),
        (_("Who may use it"), {"fields": ("groups",)}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description=_("name"), ordering="display_name")
    def label(self, obj: ChatModel) -> str:
        return obj.label

    @admin.display(description=_("allowed groups"))
    def allowed_groups(self, obj: ChatModel) -> str:
        names = [g.name for g in obj.groups.all()]
        return ", ".join(names) if names else _("everyone")

    @admin.action(description=_("Make the selected model the default"), permissions=["change"])
    def make_default(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one model to make it the default."), messages.WARNING)
            return
        model = queryset.get()
        model.is_default = True  # ChatModel.save() takes the flag from the previous default
        model.save(update_fields=["is_default", "updated_at"])
        self.message_user(request, _("%(name)s is now the default model.") % {"name": model.label})

    @admin.action(description=_("Enable the selected models"), permissions=["change"])
    def enable(self, request, queryset):
        n = queryset.update(enabled=True)
        grants.catalog_changed()  # QuerySet.update sends no signal
        self.message_user(request, ngettext("%(n)d model enabled.", "%(n)d models enabled.", n) % {"n": n})

    @admin.action(description=_("Disable the selected models"), permissions=["change"])
    def disable(self, request, queryset):
        n = queryset.update(enabled=False)
        grants.catalog_changed()  # QuerySet.update sends no signal: the workers' copies must go
        self.message_user(request, ngettext("%(n)d model disabled.", "%(n)d models disabled.", n) % {"n": n})

"""Presets and prompts an admin publishes to groups.

Only the admin-made ones (no owner) are listed here: a member's own presets and prompts are
theirs, like their conversations. What an admin saves is checked by the same rules as a
member's (chat/services/library.py): the settings a conversation takes, well-formed {{variables}}.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.errors import ParleyError
from chat.models import ChatModel, Collection, ModelKind, Preset, Prompt
from chat.services.conversations import _clean_settings
from chat.services.library import prompt_variables


class PresetForm(forms.ModelForm):
    class Meta:
        model = Preset
        fields = ("name", "system_prompt", "model", "settings", "collections", "groups")
        help_texts = {
            "settings": _(
                'Conversation settings as JSON, for example {"temperature": 0.2, "max_tokens": 800}. '
                "The names are those of the chat settings: temperature, top_p, max_tokens, presence_penalty, "
                "frequency_penalty, stop, n, logit_bias, seed, response_format."
            )
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = ChatModel.objects.filter(kind=ModelKind.CHAT).select_related("provider")
        # Only collections shared with groups: a published preset is used by members of groups,
        # and a member who may not read one of its collections is told it is skipped.
        self.fields["collections"].queryset = (
            Collection.objects.filter(groups__isnull=False).distinct().select_related("owner").order_by("name")
        )
        self.fields["collections"].help_text = _(
            "Collections shared with groups. A member who may not read one of them is told it is skipped."
        )

    def clean_collections(self):
        chosen = self.cleaned_data.get("collections")
        limit = settings.PARLEY_COLLECTIONS_PER_CONVERSATION
        if chosen is not None and len(chosen) > limit:
            raise ValidationError(_("A preset searches at most %(limit)s collections.") % {"limit": limit})
        return chosen

    def clean_name(self):
        name = " ".join((self.cleaned_data.get("name") or "").split())
        if not name:
            raise ValidationError(_("A name is required."))
        return name

    def clean_settings(self):
        value = self.cleaned_data.get("settings") or {}
        try:
            cleaned = _clean_settings(value)
        except ParleyError as exc:
            raise ValidationError(exc.message) from None
        cleaned.pop("system_prompt", None)
        return cleaned


@admin.register(Preset)
class PresetAdmin(admin.ModelAdmin):
    form = PresetForm
    list_display = ("name", "model", "published_to", "updated_at")
    search_fields = ("name",)
    filter_horizontal = ("collections", "groups")

    def get_queryset(self, request):
        return (
            super().get_queryset(request).filter(owner__isnull=True).select_related("model").prefetch_related("groups")
        )

    @admin.display(description=_("published to groups"))
    def published_to(self, obj):
        return ", ".join(group.name for group in obj.groups.all()) or "—"

    def save_model(self, request, obj, form, change):
        obj.owner = None
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)


class PromptForm(forms.ModelForm):
    class Meta:
        model = Prompt
        fields = ("title", "body", "groups")

    def clean_body(self):
        body = self.cleaned_data.get("body") or ""
        if not body.strip():
            raise ValidationError(_("A prompt needs some text."))
        try:
            prompt_variables(body)
        except ParleyError as exc:
            raise ValidationError(exc.message) from None
        return body


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    form = PromptForm
    list_display = ("title", "shared_with", "updated_at")
    search_fields = ("title",)
    filter_horizontal = ("groups",)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(owner__isnull=True).prefetch_related("groups")

    @admin.display(description=_("shared with groups"))
    def shared_with(self, obj):
        return ", ".join(group.name for group in obj.groups.all()) or "—"

    def save_model(self, request, obj, form, change):
        obj.owner = None
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)

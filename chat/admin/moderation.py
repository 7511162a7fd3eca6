"""Moderation: the audit trail of checked messages (read-only) and the editable blocklist."""

from __future__ import annotations

import re

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from chat.admin.privacy import admins_can_read_conversations
from chat.models import BlocklistEntry, ModerationEvent


class BlocklistEntryForm(forms.ModelForm):
    class Meta:
        model = BlocklistEntry
        fields = ["pattern", "is_regex", "category", "enabled", "note"]

    def clean(self):
        data = super().clean()
        pattern = data.get("pattern")
        if pattern and data.get("is_regex"):
            try:
                re.compile(pattern)
            except re.error as exc:
                self.add_error("pattern", ValidationError(_("Not a valid regular expression: %(e)s") % {"e": exc}))
        return data


@admin.register(BlocklistEntry)
class BlocklistEntryAdmin(admin.ModelAdmin):
    form = BlocklistEntryForm
    list_display = ("pattern", "is_regex", "category", "enabled", "note", "created_at")
    list_filter = ("enabled", "is_regex", "category")
    search_fields = ("pattern", "note", "category")


# Events whose text was flagged: the audit trail shows what was blocked and why. Other events
# (moderation unavailable) hold an ordinary message, which stays as private as the conversation.
FLAGGED_SOURCES = {ModerationEvent.Source.BLOCKLIST, ModerationEvent.Source.PROVIDER}


def _visible_text(obj: ModerationEvent) -> str | None:
    if obj.source in FLAGGED_SOURCES or admins_can_read_conversations():
        return obj.text
    return None


@admin.register(ModerationEvent)
class ModerationEventAdmin(admin.ModelAdmin):
    """An audit trail: nobody edits or deletes it from the console."""

    list_display = ("created_at", "user", "source", "category_list", "excerpt")
    list_filter = ("source", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    # ``message`` is left out: its string form carries the message text.
    fields = ("created_at", "user", "source", "categories", "message_text", "detail")
    readonly_fields = fields

    def get_search_fields(self, request):
        # Searching the text of unflagged messages would reveal it one guess at a time.
        if admins_can_read_conversations():
            return ("user__username", "text", "detail")
        return ("user__username", "detail")

    @admin.display(description=_("categories"))
    def category_list(self, obj: ModerationEvent) -> str:
        return ", ".join(str(c) for c in obj.categories or [])

    @admin.display(description=_("text"))
    def excerpt(self, obj: ModerationEvent) -> str:
        text = _visible_text(obj)
        return _HIDDEN if text is None else Truncator(text).chars(80)

    @admin.display(description=_("text"))
    def message_text(self, obj: ModerationEvent) -> str:
        text = _visible_text(obj)
        return _HIDDEN if text is None else text

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


_HIDDEN = _("(private: the message was not flagged)")

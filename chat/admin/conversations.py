"""Conversations: metadata for admins; message text only when the deployment allows it."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, DecimalField, F, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from chat.admin.privacy import PrivateDeletionSummaryMixin, admins_can_read_conversations
from chat.models import Conversation, Message, UsageRecord


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("created_at", "role", "status", "content", "prompt_tokens", "completion_tokens", "cost")
    readonly_fields = fields
    ordering = ("created_at",)
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _usage_total(expression, output_field):
    usage = (
        UsageRecord.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(total=Sum(expression))
        .values("total")
    )
    return Coalesce(Subquery(usage, output_field=output_field), Value(0), output_field=output_field)


@admin.register(Conversation)
class ConversationAdmin(PrivateDeletionSummaryMixin, admin.ModelAdmin):
    list_display = ("display_title", "owner", "model", "message_count", "tokens", "cost", "pinned", "updated_at")
    list_filter = ("pinned", ("updated_at", admin.DateFieldListFilter))
    list_select_related = ("owner", "model")
    search_fields = ("title", "owner__username", "owner__email")
    date_hierarchy = "updated_at"
    metadata_fields = (
        "id",
        "owner",
        "title",
        "model",
        "pinned",
        "message_count",
        "tokens",
        "cost",
        "created_at",
        "updated_at",
    )

    def get_queryset(self, request):
        # One query for the whole changelist: counts and usage sums are annotations, and the
        # usage sums are subqueries so that they are not multiplied by the message join.
        return (
            super()
            .get_queryset(request)
            .annotate(
                _message_count=Count("messages"),
                _tokens=_usage_total(F("prompt_tokens") + F("completion_tokens"), IntegerField()),
                _cost=_usage_total(F("cost"), DecimalField(max_digits=14, decimal_places=6)),
            )
        )

    def get_fields(self, request, obj=None):
        if admins_can_read_conversations():
            return (*self.metadata_fields, "system_prompt")
        return self.metadata_fields

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def get_inlines(self, request, obj):
        return [MessageInline] if admins_can_read_conversations() else []

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("title"), ordering="title")
    def display_title(self, obj: Conversation) -> str:
        return obj.title or _("(untitled)")

    @admin.display(description=_("messages"), ordering="_message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj._message_count

    @admin.display(description=_("tokens"), ordering="_tokens")
    def tokens(self, obj: Conversation) -> int:
        return obj._tokens

    @admin.display(description=_("cost (USD)"), ordering="_cost")
    def cost(self, obj: Conversation):
        return obj._cost

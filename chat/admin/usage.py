"""Usage: the per-reply records with filters and totals, CSV export, and the 30-day dashboard."""

from __future__ import annotations

import csv
import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import dateformat, timezone
from django.utils.formats import number_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from chat.admin import charts, reports
from chat.models import UsageKind, UsageRecord
from chat.selectors import usage_units_text


class DateRangeFilter(admin.ListFilter):
    """From and to dates (both included, in the site's time zone) typed into the sidebar."""

    title = _("date range")
    template = "admin/parley/date_range_filter.html"
    param_from = "created_from"
    param_to = "created_to"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        for name in self.expected_parameters():
            if name in params:
                value = params.pop(name)
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value

    def has_output(self):
        return True

    def expected_parameters(self):
        return [self.param_from, self.param_to]

    def _date(self, name) -> datetime.date | None:
        raw = (self.used_parameters.get(name) or "").strip()
        if not raw:
            return None
        try:
            return datetime.date.fromisoformat(raw)
        except ValueError as exc:
            raise IncorrectLookupParameters(exc) from None

    def queryset(self, request, queryset):
        start, end = self._date(self.param_from), self._date(self.param_to)
        if start:
            queryset = queryset.filter(created_at__gte=_midnight(start))
        if end:
            queryset = queryset.filter(created_at__lt=_midnight(end + datetime.timedelta(days=1)))
        return queryset

    def choices(self, changelist):
        # One "choice": the form itself, carrying the changelist's other filters along.
        keep = [(k, v) for k, v in changelist.params.items() if k not in self.expected_parameters()]
        yield {
            "from_name": self.param_from,
            "to_name": self.param_to,
            "from_value": self.used_parameters.get(self.param_from, ""),
            "to_value": self.used_parameters.get(self.param_to, ""),
            "hidden": keep,
            "clear_query_string": changelist.get_query_string(remove=self.expected_parameters()),
            "selected": bool(self.used_parameters),
        }


def _midnight(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


class _Echo:
    """A write-only file for csv.writer whose rows are streamed instead of buffered."""

    def write(self, value):
        return value


def csv_cell(value) -> str:
    """Neutralise spreadsheet formulas: a member name like ``=HYPERLINK(…)`` stays text."""
    text = "" if value is None else str(value)
    if text and text[0] in "=+-@\t\r":
        return "'" + text
    return text


CSV_HEADER = (
    "created_at",
    "member",
    "conversation_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "estimated",
    "kind",
    "purpose",
    "images",
    "audio_seconds",
    "characters",
    "api_token",
)


def usage_csv_rows(queryset):
    yield CSV_HEADER
    rows = queryset.order_by("created_at", "id").values_list(
        "created_at",
        "user__username",
        "conversation_id",
        "model_name",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "estimated",
        "kind",
        "purpose",
        "images",
        "audio_seconds",
        "characters",
        "api_token__name",
    )
    for row in rows.iterator(chunk_size=2000):
        created, member, conversation, model, prompt, completion, cost, estimated, *units = row
        kind, purpose, images, audio_seconds, characters, token_name = units
        yield (
            created.isoformat(),
            csv_cell(member),
            conversation or "",
            csv_cell(model),
            prompt,
            completion,
            prompt + completion,
            f"{cost:.6f}",
            "yes" if estimated else "no",
            kind,
            csv_cell(purpose),
            images,
            f"{audio_seconds:.3f}",
            characters,
            csv_cell(token_name or ""),
        )


def usage_csv_response(queryset) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in usage_csv_rows(queryset)), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="parley-usage-{stamp}.csv"'
    return response


def _fmt_tokens(value) -> str:
    return number_format(int(value), force_grouping=True)


def _fmt_cost(value) -> str:
    # str() first: SQLite may hand back a float sum, whose binary expansion would round down.
    amount = Decimal(str(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return "$" + number_format(amount, decimal_pos=4, force_grouping=True)


def _fmt_axis_cost(value) -> str:
    return "$" + number_format(value, decimal_pos=2 if value >= 1 or value == 0 else 4, force_grouping=True)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "user",
        "model_name",
        "kind",
        "purpose",
        "prompt_tokens",
        "completion_tokens",
        "total",
        "units",
        "cost",
        "estimated",
        "api_token",
    )
    list_filter = (
        DateRangeFilter,
        "kind",
        "purpose",
        ("user", admin.RelatedOnlyFieldListFilter),
        "model_name",
        "estimated",
        ("api_token", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("user", "api_token")
    search_fields = ("user__username", "model_name")
    date_hierarchy = "created_at"
    # ``message`` is left out: its string form carries the message text.
    fields = (
        "created_at",
        "user",
        "conversation",
        "model",
        "model_name",
        "kind",
        "purpose",
        "prompt_tokens",
        "completion_tokens",
        "images",
        "audio_seconds",
        "characters",
        "cost",
        "estimated",
        "api_token",
    )
    readonly_fields = fields
    actions = ["export_selected"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_total=F("prompt_tokens") + F("completion_tokens"))

    @admin.display(description=_("total tokens"), ordering="_total")
    def total(self, obj):
        return obj._total

    @admin.display(description=_("other units"))
    def units(self, obj):
        return usage_units_text(
            {"images": obj.images, "audio_seconds": obj.audio_seconds, "characters": obj.characters}
        )

    # Usage is the accounting record: read-only in the console.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path("export/", self.admin_site.admin_view(self.export_view), name="chat_usagerecord_export"),
            path("dashboard/", self.admin_site.admin_view(self.dashboard_view), name="chat_usagerecord_dashboard"),
        ] + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            context["usage_totals"] = reports.usage_totals(context["cl"].queryset)
        return response

    @admin.action(description=_("Export the selected records as CSV"), permissions=["view"])
    def export_selected(self, request, queryset):
        return usage_csv_response(queryset)

    def export_view(self, request):
        """The CSV of exactly what the changelist shows with the same query string (all pages)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest(gettext("Those filters are not valid."))
        return usage_csv_response(changelist.queryset)

    def dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        other = gettext("other models")
        data = reports.dashboard(days=30, top=10, other_label=other)
        colors = charts.series_colors([s for s in data.series if s != other], other_label=other)
        day_labels = [dateformat.format(d, "M j") for d in data.days]
        tokens_chart = charts.stacked_columns(
            categories=data.days,
            category_labels=day_labels,
            series=data.series,
            values=data.tokens,
            colors=colors,
            fmt=_fmt_tokens,
        )
        cost_chart = charts.stacked_columns(
            categories=data.days,
            category_labels=day_labels,
            series=data.series,
            values=data.cost,
            colors=colors,
            fmt=_fmt_axis_cost,
        )
        # Members are ranked by spend; without prices (a local model) every cost is zero, so
        # the bars show tokens instead.
        by_cost = any(m["cost"] for m in data.top_members)
        members_chart = charts.horizontal_bars(
            rows=[(m["user__username"], (m["cost"] or 0) if by_cost else (m["tokens"] or 0)) for m in data.top_members],
            fmt=_fmt_cost if by_cost else _fmt_tokens,
        )
        table = [
            {
                "day": day,
                "tokens": [_fmt_tokens(data.tokens.get((day, s), 0)) for s in data.series],
                "total_tokens": _fmt_tokens(data.day_tokens[day]),
                "total_cost": _fmt_cost(data.day_cost[day]),
            }
            for day in data.days
        ]
        members = [
            {
                "username": m["user__username"],
                "tokens": _fmt_tokens(m["tokens"] or 0),
                "cost": _fmt_cost(m["cost"] or 0),
                "replies": m["replies"],
            }
            for m in data.top_members
        ]
        kinds = dict(UsageKind.choices)
        by_kind = [
            {
                "kind": kinds.get(row["kind"], row["kind"]),
                "calls": _fmt_tokens(row["calls"]),
                "tokens": _fmt_tokens(row["tokens"] or 0),
                "units": usage_units_text(row),
                "cost": _fmt_cost(row["cost"] or 0),
            }
            for row in data.by_kind
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Usage dashboard: the last 30 days"),
            "by_kind": by_kind,
            "opts": self.opts,
            "first_day": data.days[0],
            "last_day": data.days[-1],
            "total_tokens": _fmt_tokens(data.total_tokens),
            "total_cost": _fmt_cost(data.total_cost),
            "series": data.series,
            "tokens_chart": tokens_chart,
            "cost_chart": cost_chart,
            "members_chart": members_chart,
            "members_by_cost": by_cost,
            "table": table,
            "members": members,
        }
        return TemplateResponse(request, "admin/chat/usagerecord/dashboard.html", context)

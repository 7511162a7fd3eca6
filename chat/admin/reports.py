"""Usage reads for the console: totals of a filtered set and the 30-day dashboard.

Every function here is a handful of aggregate queries, whatever the number of records:
the database sums, Python only arranges the sums for the charts.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from chat.models import UsageRecord

MAX_SERIES = 8  # models drawn in their own colour; the rest are summed as "other"


def usage_totals(queryset: QuerySet[UsageRecord]) -> dict:
    totals = queryset.order_by().aggregate(
        records=Count("id"),
        prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
        completion_tokens=Coalesce(Sum("completion_tokens"), 0),
        cost=Coalesce(Sum("cost"), Decimal(0)),
        estimated=Count("id", filter=Q(estimated=True)),
    )
    totals["total_tokens"] = totals["prompt_tokens"] + totals["completion_tokens"]
    return totals


def window(*, days: int = 30, now: datetime.datetime | None = None) -> tuple[list[datetime.date], datetime.datetime]:
    """The last ``days`` calendar days in the current time zone, today included, and their start."""
    today = timezone.localdate(now or timezone.now())
    first = today - datetime.timedelta(days=days - 1)
    start = timezone.make_aware(datetime.datetime.combine(first, datetime.time.min))
    return [first + datetime.timedelta(days=i) for i in range(days)], start


@dataclass
class Dashboard:
    days: list[datetime.date]
    series: list[str]  # model names, biggest first, possibly ending with the "other" label
    tokens: dict[tuple[datetime.date, str], int]
    cost: dict[tuple[datetime.date, str], Decimal]
    day_tokens: dict[datetime.date, int]
    day_cost: dict[datetime.date, Decimal]
    top_members: list[dict]
    by_kind: list[dict]  # calls, tokens, other units and cost per kind of call
    total_tokens: int
    total_cost: Decimal


def dashboard(*, days: int = 30, top: int = 10, other_label: str = "other", now=None) -> Dashboard:
    day_list, start = window(days=days, now=now)
    recent = UsageRecord.objects.filter(created_at__gte=start).order_by()
    per_day = (
        recent.annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("day", "model_name", "kind")
        .annotate(
            tokens=Sum(F("prompt_tokens") + F("completion_tokens")),
            cost=Sum("cost"),
            calls=Count("id"),
            images=Sum("images"),
            audio_seconds=Sum("audio_seconds"),
            characters=Sum("characters"),
        )
    )
    wanted = set(day_list)
    rows = [r for r in per_day if r["day"] in wanted]

    by_model: dict[str, int] = {}
    for r in rows:
        by_model[r["model_name"]] = by_model.get(r["model_name"], 0) + (r["tokens"] or 0)
    ranked = sorted(by_model, key=lambda name: (-by_model[name], name))
    kept = set(ranked[:MAX_SERIES])
    series = ranked[:MAX_SERIES] + ([other_label] if len(ranked) > MAX_SERIES else [])

    tokens: dict = {}
    cost: dict = {}
    day_tokens = dict.fromkeys(day_list, 0)
    day_cost = dict.fromkeys(day_list, Decimal(0))
    for r in rows:
        name = r["model_name"] if r["model_name"] in kept else other_label
        key = (r["day"], name)
        tokens[key] = tokens.get(key, 0) + (r["tokens"] or 0)
        cost[key] = cost.get(key, Decimal(0)) + (r["cost"] or Decimal(0))
        day_tokens[r["day"]] += r["tokens"] or 0
        day_cost[r["day"]] += r["cost"] or Decimal(0)

    top_members = list(
        recent.values("user_id", "user__username")
        .annotate(
            tokens=Sum(F("prompt_tokens") + F("completion_tokens")),
            cost=Sum("cost"),
            replies=Count("id"),
        )
        .order_by("-cost", "-tokens", "user__username")[:top]
    )
    # Totals per kind of call from the same rows: no query of their own.
    kinds: dict[str, dict] = {}
    for r in rows:
        total = kinds.setdefault(
            r["kind"],
            {"kind": r["kind"], "calls": 0, "tokens": 0, "images": 0, "audio_seconds": 0, "characters": 0, "cost": 0},
        )
        for field in ("calls", "tokens", "images", "audio_seconds", "characters", "cost"):
            total[field] += r[field] or 0
    by_kind = sorted(kinds.values(), key=lambda k: (-Decimal(str(k["cost"])), k["kind"]))
    return Dashboard(
        days=day_list,
        series=series,
        tokens=tokens,
        cost=cost,
        day_tokens=day_tokens,
        day_cost=day_cost,
        top_members=top_members,
        by_kind=by_kind,
        total_tokens=sum(day_tokens.values()),
        total_cost=sum(day_cost.values(), Decimal(0)),
    )

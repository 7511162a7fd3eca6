"""Budgets, enforced: monthly token and cost budgets, reserved before a call and settled after it.

Every model call reserves its worst case (for a reply: the prompt plus the most the reply can
cost) before it reaches a provider, under a lock on the member's UsageMonth row, and settles
to the real usage after it (chat.core.calls holds the ledger). Concurrent calls therefore see
each other's reservations and cannot overspend together (docs/security.md T34c): the check
and the increment happen while no other call of that member can check.

Months are calendar months in UTC; a budget resets at 00:00 UTC on the first of the month.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import DecimalField, F, PositiveBigIntegerField, Value
from django.db.models.functions import Greatest
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from chat import tokens
from chat.errors import QuotaExceeded
from chat.models import UsageMonth
from chat.prepared import PreparedRead, PreparedUpdate

# Money is stored with 6 decimal places (UsageMonth, Message, UsageRecord).
MONEY = Decimal("0.000001")


@dataclass(frozen=True)
class Reservation:
    """What one call holds against a member's month (the amounts of a chat.models.Reservation row)."""

    tokens: int
    cost: Decimal
    month: dt.date


def month_start(moment: dt.datetime | None = None) -> dt.date:
    """The first day of the UTC month ``moment`` (default: now) falls in."""
    moment = (moment or timezone.now()).astimezone(dt.UTC)
    return dt.date(moment.year, moment.month, 1)


def month_begins(month: dt.date) -> dt.datetime:
    """When the budget of ``month`` starts counting: 00:00 UTC on its first day."""
    return dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)


def month_reset(month: dt.date) -> dt.datetime:
    """When the budget of ``month`` resets: 00:00 UTC on the first day of the next month."""
    year, number = (month.year + 1, 1) if month.month == 12 else (month.year, month.month + 1)
    return dt.datetime(year, number, 1, tzinfo=dt.UTC)


def _money(value, rounding=ROUND_HALF_UP) -> Decimal:
    return Decimal(value).quantize(MONEY, rounding=rounding)


def _dollars(amount) -> str:
    amount = Decimal(amount)
    if amount == 0 or abs(amount) >= Decimal("0.01"):
        return f"{amount:.2f}"
    return f"{amount.normalize():f}"  # a fraction of a cent shows its digits, not 0.00


def _count(number) -> str:
    return formats.number_format(number, force_grouping=True)  # 10,000 rather than 10000


def _month_rows(p, *, budgets: bool):
    rows = UsageMonth.objects.select_for_update(of=("self",)) if budgets else UsageMonth.objects.select_for_update()
    if budgets:
        rows = rows.annotate(token_budget=F("user__monthly_token_budget"), cost_budget=F("user__monthly_cost_budget"))
    return rows.filter(user_id=p.user_id, month=p.month)


# Read at every reply's start and end: composed once (chat/prepared.py). One row per member
# and month, so get() (first()'s ORDER BY would only cost).
_MONTH_FIELDS: dict[str, Any] = {
    "user_id": UsageMonth._meta.get_field("user"),
    "month": UsageMonth._meta.get_field("month"),
}
_MONTH_ROW = PreparedRead(lambda p: _month_rows(p, budgets=False), **_MONTH_FIELDS)
_MONTH_ROW_BUDGETS = PreparedRead(lambda p: _month_rows(p, budgets=True), **_MONTH_FIELDS)


def _field(name: str):
    return UsageMonth._meta.get_field(name)


# Written at every reply's start (the hold) and end (the settlement): composed once.
_RESERVE = PreparedUpdate(
    lambda p: (
        UsageMonth.objects.filter(pk=p.pk),
        {"tokens_reserved": F("tokens_reserved") + p.tokens, "cost_reserved": F("cost_reserved") + p.cost},
    ),
    pk=UsageMonth._meta.pk,
    tokens=_field("tokens_reserved"),
    cost=_field("cost_reserved"),
)


def _released(held_tokens, held_cost) -> dict:
    return {
        "tokens_reserved": Greatest(
            F("tokens_reserved") - held_tokens, Value(0), output_field=PositiveBigIntegerField()
        ),
        "cost_reserved": Greatest(
            F("cost_reserved") - held_cost,
            Value(Decimal(0)),
            output_field=DecimalField(max_digits=14, decimal_places=6),
        ),
    }


def _added(used_tokens, used_cost) -> dict:
    return {"tokens_used": F("tokens_used") + used_tokens, "cost_used": F("cost_used") + used_cost}


_SETTLE = PreparedUpdate(
    lambda p: (
        UsageMonth.objects.filter(user_id=p.user_id, month=p.month),
        {**_released(p.held_tokens, p.held_cost), **_added(p.used_tokens, p.used_cost)},
    ),
    **_MONTH_FIELDS,
    held_tokens=_field("tokens_reserved"),
    held_cost=_field("cost_reserved"),
    used_tokens=_field("tokens_used"),
    used_cost=_field("cost_used"),
)


def _month_row(user_id, month: dt.date, *, budgets: bool = False) -> UsageMonth:
    """The member's UsageMonth row for ``month``, created if missing, locked until the transaction ends.

    ``budgets``: also read the member's budgets in the same query, as ``token_budget`` and
    ``cost_budget`` on the row (only the UsageMonth row is locked); a row created here has none.
    """
    read = _MONTH_ROW_BUDGETS if budgets else _MONTH_ROW
    try:
        return read.get(user_id=user_id, month=month)
    except UsageMonth.DoesNotExist:
        pass
    # The month's first call: create the row unless another call just did (INSERT ... ON
    # CONFLICT DO NOTHING, which waits for a racing creator's transaction and never breaks the
    # caller's, so no savepoint), then lock it with the same query.
    UsageMonth.objects.bulk_create([UsageMonth(user_id=user_id, month=month)], ignore_conflicts=True)
    return read.get(user_id=user_id, month=month)


def _refuse(*, kind: str, budget, used, needed, month: dt.date, purpose: str = "reply") -> QuotaExceeded:
    resets_at = month_reset(month)
    when = formats.date_format(resets_at.date(), "DATE_FORMAT")
    remaining = max(budget - used, 0)
    shown = _dollars if kind == "cost" else _count
    values = {"budget": shown(budget), "remaining": shown(remaining), "needed": shown(needed), "when": when}
    if kind == "tokens":
        if remaining <= 0:
            message = _("Your monthly budget of %(budget)s tokens is used up. It resets on %(when)s (UTC).") % values
        else:
            message = (
                _(
                    "This reply could use up to %(needed)s tokens, but only %(remaining)s of your monthly "
                    "budget are left. Lower the maximum reply length or start a shorter conversation; "
                    "the budget resets on %(when)s (UTC)."
                )
                if purpose == "reply"
                else _(
                    "This request could use up to %(needed)s tokens, but only %(remaining)s of your monthly "
                    "budget are left. The budget resets on %(when)s (UTC)."
                )
            ) % values
    elif remaining <= 0:
        message = _("Your monthly budget of $%(budget)s is used up. It resets on %(when)s (UTC).") % values
    else:
        message = (
            _(
                "This reply could cost up to $%(needed)s, but only $%(remaining)s of your monthly budget "
                "are left. Lower the maximum reply length or start a shorter conversation; the budget "
                "resets on %(when)s (UTC)."
            )
            if purpose == "reply"
            else _(
                "This request could cost up to $%(needed)s, but only $%(remaining)s of your monthly budget "
                "are left. The budget resets on %(when)s (UTC)."
            )
        ) % values
    return QuotaExceeded(
        message,
        kind=kind,
        budget=str(budget),
        remaining=str(remaining),
        needed=str(needed),
        resets_at=resets_at.isoformat(),
    )


def budget_reserve(*, user, tokens: int, cost: Decimal, purpose: str = "reply") -> Reservation:
    """Hold ``tokens`` and ``cost`` (a call's worst case) against the member's monthly budget.

    Call inside the caller's ``transaction.atomic()``, which must also record the hold (a
    ``chat.models.Reservation`` row, chat.core.calls) so that settlement releases it once. The
    member's UsageMonth row stays locked until that transaction ends: keep it short, and never
    call a provider inside it.

    Raises QuotaExceeded (``detail.resets_at``, ISO 8601) when the token or the cost budget
    cannot cover it. Unlimited budgets (null) still record the hold.
    """
    needed_tokens = max(int(tokens), 0)
    # Rounded up: the reservation must never be smaller than what the call can cost.
    needed_cost = _money(max(Decimal(cost), Decimal(0)), ROUND_CEILING)
    month = month_start()
    # Budgets are read again with the lock, in the same query: an admin may have changed them
    # since ``user`` was loaded.
    row = _month_row(user.pk, month, budgets=True)
    # Annotated by _month_row's query (budgets=True), not fields of the model.
    token_budget, cost_budget = row.token_budget, row.cost_budget  # type: ignore[attr-defined]
    tokens_held = row.tokens_used + row.tokens_reserved
    if token_budget is not None and needed_tokens and tokens_held + needed_tokens > token_budget:
        raise _refuse(
            kind="tokens", budget=token_budget, used=tokens_held, needed=needed_tokens, month=month, purpose=purpose
        )
    cost_held = row.cost_used + row.cost_reserved
    if cost_budget is not None and needed_cost and cost_held + needed_cost > cost_budget:
        raise _refuse(
            kind="cost", budget=cost_budget, used=_money(cost_held), needed=needed_cost, month=month, purpose=purpose
        )
    if needed_tokens or needed_cost:
        _RESERVE.run(pk=row.pk, tokens=needed_tokens, cost=needed_cost)
    return Reservation(tokens=needed_tokens, cost=needed_cost, month=month)


def budget_settle(*, owner_id, held: Reservation, used_tokens: int, used_cost: Decimal) -> None:
    """Release ``held`` from the month it was reserved in and add what was used to this month.

    Call inside the transaction that deletes the call's Reservation row (chat.core.calls), so
    a hold is released exactly once.
    """
    used_tokens = max(int(used_tokens or 0), 0)
    used_cost = _money(used_cost or 0)
    this_month = month_start()
    used = bool(used_tokens or used_cost)
    held_cost = _money(held.cost)
    releases = bool(held.tokens or held.cost)
    if used and releases and held.month == this_month:
        # The usual case, a call settled in the month it began: one UPDATE does both. The
        # reservation made the row, so it exists unless an admin deleted it meanwhile.
        settled = _SETTLE.run(
            user_id=owner_id,
            month=this_month,
            held_tokens=held.tokens,
            held_cost=held_cost,
            used_tokens=used_tokens,
            used_cost=used_cost,
        )
        if not settled:
            UsageMonth.objects.filter(pk=_month_row(owner_id, this_month).pk).update(**_added(used_tokens, used_cost))
        return
    if releases:
        UsageMonth.objects.filter(user_id=owner_id, month=held.month).update(**_released(held.tokens, held_cost))
    if used:
        UsageMonth.objects.filter(pk=_month_row(owner_id, this_month).pk).update(**_added(used_tokens, used_cost))


def usage_estimate(*, prompt_tokens: int, text: str, encoding_name: str) -> tuple[int, int]:
    """Usage of a reply whose stream was cut before the upstream reported it.

    The prompt is counted as it was built; the completion is counted from the text that
    arrived. Record it with ``estimated=True`` (T34b).
    """
    return max(int(prompt_tokens), 0), tokens.count_tokens(text, encoding_name)


def budget_status(*, user) -> dict:
    """The member's month so far, ready for JSON: money as strings, ``None`` for unlimited."""
    month = month_start()
    row = UsageMonth.objects.filter(user_id=user.pk, month=month).first() or UsageMonth(month=month)
    token_budget, cost_budget = (
        get_user_model().objects.filter(pk=user.pk).values_list("monthly_token_budget", "monthly_cost_budget").get()
    )
    tokens_held = row.tokens_used + row.tokens_reserved
    cost_held = _money(row.cost_used) + _money(row.cost_reserved)
    return {
        "month": month.strftime("%Y-%m"),
        "tokens_used": row.tokens_used,
        "tokens_reserved": row.tokens_reserved,
        "token_budget": token_budget,
        "tokens_remaining": None if token_budget is None else max(token_budget - tokens_held, 0),
        "cost_used": str(_money(row.cost_used)),
        "cost_reserved": str(_money(row.cost_reserved)),
        "cost_budget": None if cost_budget is None else str(cost_budget),
        "cost_remaining": None if cost_budget is None else str(_money(max(cost_budget - cost_held, Decimal(0)))),
        "resets_at": month_reset(month).isoformat(),
    }

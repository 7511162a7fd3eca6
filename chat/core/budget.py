"""Budgets, enforced: monthly token and cost budgets, reserved before a call and settled after it.

A reply reserves its worst case (prompt plus the most the reply can cost) before its
upstream call, under a lock on the member's UsageMonth row, and settles to the real usage
after it. Concurrent replies therefore see each other's reservations and cannot overspend
together (SECURITY.md T34c): the check and the increment happen while no other reply of that
member can check.

Months are calendar months in UTC; a budget resets at 00:00 UTC on the first of the month.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import DecimalField, F, PositiveBigIntegerField, Value
from django.db.models.functions import Greatest
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from chat import tokens
from chat.errors import QuotaExceeded
from chat.models import ChatModel, Conversation, Message, UsageMonth, UsageRecord

# Money is stored with 6 decimal places (UsageMonth, Message, UsageRecord).
MONEY = Decimal("0.000001")


@dataclass(frozen=True)
class Reservation:
    tokens: int
    cost: Decimal


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


def _month_row(user_id, month: dt.date) -> UsageMonth:
    """The member's UsageMonth row for ``month``, created if missing, locked until the transaction ends."""
    row = UsageMonth.objects.select_for_update().filter(user_id=user_id, month=month).first()
    if row is not None:
        return row
    try:
        # A savepoint, so losing the creation race does not break the caller's transaction.
        with transaction.atomic():
            return UsageMonth.objects.create(user_id=user_id, month=month)
    except IntegrityError:
        # Another reply created it first; its transaction has committed, so lock that row.
        return UsageMonth.objects.select_for_update().get(user_id=user_id, month=month)


def _refuse(*, kind: str, budget, used, needed, month: dt.date) -> QuotaExceeded:
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
                % values
            )
    elif remaining <= 0:
        message = _("Your monthly budget of $%(budget)s is used up. It resets on %(when)s (UTC).") % values
    else:
        message = (
            _(
                "This reply could cost up to $%(needed)s, but only $%(remaining)s of your monthly budget "
                "are left. Lower the maximum reply length or start a shorter conversation; the budget "
                "resets on %(when)s (UTC)."
            )
            % values
        )
    return QuotaExceeded(
        message,
        kind=kind,
        budget=str(budget),
        remaining=str(remaining),
        needed=str(needed),
        resets_at=resets_at.isoformat(),
    )


def budget_reserve(*, user, model: ChatModel, prompt_tokens: int, reply_tokens: int) -> Reservation:
    """Hold the worst case of a reply against the member's monthly budget.

    Call inside the caller's ``transaction.atomic()`` and store the returned reservation on
    the reply (``Message.reserved_tokens``/``reserved_cost``) in that same transaction, so
    ``usage_settle`` can release it. The member's UsageMonth row stays locked until that
    transaction ends: keep it short, and never open the upstream stream inside it.

    Raises QuotaExceeded (``detail.resets_at``, ISO 8601) when the token or the cost budget
    cannot cover it. Unlimited budgets (null) still record the reservation.
    """
    needed_tokens = max(int(prompt_tokens), 0) + max(int(reply_tokens), 0)
    # Rounded up: the reservation must never be smaller than what the reply can cost.
    needed_cost = _money(model.cost(max(int(prompt_tokens), 0), max(int(reply_tokens), 0)), ROUND_CEILING)
    month = month_start()
    row = _month_row(user.pk, month)
    # Budgets are read again under the lock: an admin may have changed them since ``user`` was loaded.
    token_budget, cost_budget = (
        get_user_model().objects.filter(pk=user.pk).values_list("monthly_token_budget", "monthly_cost_budget").get()
    )
    tokens_held = row.tokens_used + row.tokens_reserved
    if token_budget is not None and tokens_held + needed_tokens > token_budget:
        raise _refuse(kind="tokens", budget=token_budget, used=tokens_held, needed=needed_tokens, month=month)
    cost_held = row.cost_used + row.cost_reserved
    if cost_budget is not None and cost_held + needed_cost > cost_budget:
        raise _refuse(kind="cost", budget=cost_budget, used=_money(cost_held), needed=needed_cost, month=month)
    UsageMonth.objects.filter(pk=row.pk).update(
        tokens_reserved=F("tokens_reserved") + needed_tokens,
        cost_reserved=F("cost_reserved") + needed_cost,
    )
    return Reservation(tokens=needed_tokens, cost=needed_cost)


def usage_settle(*, message: Message, prompt_tokens: int, completion_tokens: int, estimated: bool):
    """Replace a reply's reservation with its real usage, once.

    In one transaction: release ``message.reserved_*`` from the month it was reserved in,
    add the real tokens and their cost (the model's prices now) to the current month, create
    the UsageRecord and write the usage onto the message. A second call for the same message
    does nothing and returns None; so does a call with no tokens (the reservation is still
    released). If the message row is gone (its conversation was deleted mid-reply) the
    in-memory ``message`` says what to release, and the usage is still recorded.
    """
    if getattr(message, "_usage_settled", False):
        return None  # this very instance was settled already (its row may be gone)
    with transaction.atomic():
        # Locking the message makes a racing second settle wait here and then see the first's work.
        current = (
            Message.objects.select_for_update()
            .filter(pk=message.pk)
            .only("id", "conversation_id", "model_id", "model_name", "reserved_tokens", "reserved_cost", "created_at")
            .first()
        )
        source = current if current is not None else message
        if current is not None and UsageRecord.objects.filter(message_id=current.pk).exists():
            return None
        owner_id = _owner_id(message, current)
        if owner_id is None:
            return None

        model = None
        if (prompt_tokens or completion_tokens) and source.model_id:  # only priced when used
            model = ChatModel.objects.filter(pk=source.model_id).first()
        outcome = _settle(
            owner_id=owner_id,
            source=source,
            model=model,
            record_message=current,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            estimated=estimated,
        )
        if outcome is None:
            return None
        record, changes = outcome
        if current is not None:
            Message.objects.filter(pk=current.pk).update(**changes)
    # Keep the caller's instance truthful, so a later save() of it does not write old values back.
    _mark_settled(message, changes)
    return record


def usage_settle_locked(
    *, message: Message, owner_id, prompt_tokens: int, completion_tokens: int, estimated: bool
) -> UsageRecord | None:
    """``usage_settle`` for a caller that holds the reply's row lock and is ending it now.

    The caller has just seen the reply ``streaming`` under that lock, so it cannot have been
    settled, and it loaded ``message.model``. The usage fields are set on ``message`` for the
    caller to save with the rest of its changes (one UPDATE, not two).
    """
    outcome = _settle(
        owner_id=owner_id,
        source=message,
        model=message.model if message.model_id else None,
        record_message=message,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        estimated=estimated,
    )
    if outcome is None:
        return None
    record, changes = outcome
    _mark_settled(message, changes)
    return record


def _mark_settled(message: Message, changes: dict) -> None:
    for name, value in changes.items():
        setattr(message, name, value)
    message._usage_settled = True


def _settle(*, owner_id, source, model, record_message, prompt_tokens, completion_tokens, estimated):
    """Release ``source``'s reservation, add the real usage to this month and record it.

    Returns (the UsageRecord or None, the fields to write on the message), or None when
    there was neither a reservation nor any usage.
    """
    prompt_tokens = max(int(prompt_tokens or 0), 0)
    completion_tokens = max(int(completion_tokens or 0), 0)
    reserved_tokens, reserved_cost = source.reserved_tokens, _money(source.reserved_cost)
    reserved_month = month_start(source.created_at)
    this_month = month_start()
    used = bool(prompt_tokens or completion_tokens)
    if not used and not (reserved_tokens or reserved_cost):
        return None
    cost = _money(model.cost(prompt_tokens, completion_tokens)) if used and model else Decimal(0)
    release = {}
    if reserved_tokens or reserved_cost:
        release = {
            "tokens_reserved": Greatest(
                F("tokens_reserved") - reserved_tokens, Value(0), output_field=PositiveBigIntegerField()
            ),
            "cost_reserved": Greatest(
                F("cost_reserved") - reserved_cost,
                Value(Decimal(0)),
                output_field=DecimalField(max_digits=14, decimal_places=6),
            ),
        }
    add = {"tokens_used": F("tokens_used") + prompt_tokens + completion_tokens, "cost_used": F("cost_used") + cost}
    if used and release and reserved_month == this_month:
        # The usual case, a reply settled in the month it began: one UPDATE does both. The
        # reservation made the row, so it exists unless an admin deleted it meanwhile.
        if not UsageMonth.objects.filter(user_id=owner_id, month=this_month).update(**release, **add):
            UsageMonth.objects.filter(pk=_month_row(owner_id, this_month).pk).update(**add)
    else:
        if release:
            UsageMonth.objects.filter(user_id=owner_id, month=reserved_month).update(**release)
        if used:
            UsageMonth.objects.filter(pk=_month_row(owner_id, this_month).pk).update(**add)

    record = None
    if used:
        record = UsageRecord.objects.create(
            user_id=owner_id,
            conversation_id=source.conversation_id if record_message is not None else None,
            message=record_message,
            model=model,
            model_name=(source.model_name or (model.model_id if model else ""))[:200] or "unknown",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost,
            estimated=estimated,
        )
    changes = {"reserved_tokens": 0, "reserved_cost": Decimal(0)}
    if record is not None:
        changes.update(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, usage_estimated=estimated, cost=cost
        )
    return record, changes


def _owner_id(message: Message, current: Message | None):
    conversation_id = (current or message).conversation_id
    owner_id = Conversation.objects.filter(pk=conversation_id).values_list("owner_id", flat=True).first()
    if owner_id is None and Message.conversation.is_cached(message):
        # The conversation was deleted with the reply; the caller's instance still knows whose it was.
        owner_id = message.conversation.owner_id
    return owner_id


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

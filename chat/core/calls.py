"""The model-call core: every call Parley makes to a provider is admitted here first and settled here after.

Admission (:func:`call_admit`) answers, in one place and in this order: is the model granted
to this member and of the right kind (T07), is the member within the request rate (T32),
and does the budget cover the call's worst case in its own units (T34). It records the hold
as a :class:`chat.models.Reservation` row in the same transaction that adds it to the
member's month. The moderation gate on the text a model will read is the other half of
admission; it calls a provider itself, so it runs outside the transaction
(:func:`chat.core.moderation.moderation_check`) before the call it protects.

Settlement (:func:`call_settle`) deletes the reservation, releases its hold, adds the real
usage and writes the usage record with its kind, units and cost, all in one transaction: a
call is settled exactly once, whoever tries (the call itself, the sweep after a crash).

Neither needs a conversation or a message: a chat reply passes its message so that the usage
shows on it, an embedding or image call passes nothing. See docs/architecture.md, "Where to
add a new kind of model call".
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from chat.core import budget
from chat.core.grants import model_granted
from chat.core.rate import rate_limit_hit
from chat.errors import ModelUnavailable
from chat.models import ChatModel, FineTuneJob, Message, ModelKind, Reservation, UsageKind, UsageRecord
from chat.prepared import PreparedInsert, PreparedRead
from chat.upstream import client

PSEUDONYM_LENGTH = 32
MILLION = Decimal(1_000_000)

# Kinds whose tokens count against a member's monthly token budget. Moderation protects the
# member's own input and is never refused for budget (it is recorded, with its cost if priced).
TOKEN_BUDGET_KINDS = {UsageKind.CHAT, UsageKind.EMBEDDING, UsageKind.TRAINING}


@dataclass(frozen=True)
class Units:
    """A call's size in its kind's own units: an estimate at admission, the real usage at settlement."""

    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    audio_seconds: Decimal = Decimal(0)
    characters: int = 0
    # What an image is priced by (ChatModel.image_prices).
    image_size: str = ""
    image_quality: str = ""

    @property
    def tokens(self) -> int:
        return max(int(self.input_tokens), 0) + max(int(self.output_tokens), 0)

    @property
    def empty(self) -> bool:
        return not (self.tokens or self.images or self.audio_seconds or self.characters)


def units_cost(model: ChatModel | None, kind: str, units: Units) -> Decimal:
    """What ``units`` cost at ``model``'s prices now (USD, unrounded); nothing for an unpriced model."""
    if model is None:
        return Decimal(0)
    if kind == UsageKind.TRAINING:
        return Decimal(units.tokens) * (model.training_price_per_million or Decimal(0)) / MILLION
    cost = model.cost(max(int(units.input_tokens), 0), max(int(units.output_tokens), 0))
    if units.images:
        cost += units.images * model.image_price(units.image_size, units.image_quality)
    if units.audio_seconds:
        cost += Decimal(units.audio_seconds) / 60 * (model.audio_price_per_minute or Decimal(0))
    if units.characters:
        cost += Decimal(units.characters) * (model.speech_price_per_million_characters or Decimal(0)) / MILLION
    return cost


def _budget_tokens(kind: str, units: Units) -> int:
    return units.tokens if kind in TOKEN_BUDGET_KINDS else 0


def caller_pseudonym(user_id) -> str:
    """A stable id for the member that reveals nothing about them: the API's ``user`` field.

    HMAC-SHA256 keyed by SECRET_KEY (through Django's salted_hmac, so this value is useless
    for anything else signed with the same key), hex, truncated.
    """
    return salted_hmac("parley.upstream-user", str(user_id), algorithm="sha256").hexdigest()[:PSEUDONYM_LENGTH]


@dataclass(frozen=True)
class Admission:
    """An admitted call: what to call, for whom, and the reservation its settlement releases."""

    reservation_id: int
    user_id: int
    model: ChatModel | None  # None only for moderation, whose model the checking provider picks
    kind: str
    purpose: str
    held: budget.Reservation
    pseudonym: str
    endpoint: client.Endpoint = field(repr=False)


def call_admit(
    *,
    user,
    kind: str,
    estimate: Units,
    purpose: str,
    model: ChatModel | None = None,
    model_id=None,
    granted: bool = False,
    rate: bool = True,
    conversation_id=None,
    message: Message | None = None,
    endpoint: client.Endpoint | None = None,
    api_token_id: int | None = None,
) -> Admission:
    """Admit one model call for ``user`` or raise a ParleyError that says why not.

    ``model`` with ``granted=True``: the caller checked the grant in this same database trip
    (the chat path does, when it creates a conversation). ``rate=False`` for calls that are
    part of a request already counted (a title after a reply, the moderation of a message).
    Joins the caller's transaction if there is one (without a savepoint): the chat path reserves
    in the transaction that creates the reply, so a refused reply leaves no row behind. A
    refusal must leave that transaction with the exception, which rolls it back.

    Moderation is Parley's own gate, not a model the member picks: it is admitted with the
    checking provider's ``endpoint`` and no catalog model, is never refused, and is recorded.
    ``api_token_id``: the member's API token the call comes through; its usage is tagged with it.
    """
    if kind == UsageKind.MODERATION and model is None:
        return _admit_moderation(
            user=user,
            endpoint=endpoint,
            purpose=purpose,
            conversation_id=conversation_id,
            api_token_id=api_token_id,
        )
    if model is None or not granted:
        wanted = model_id if model is None else model.pk
        model = model_granted(user=user, model_id=wanted, kind=_model_kind(kind))
    elif model.kind != _model_kind(kind):
        raise ModelUnavailable(_("This model cannot be used for that."))
    if rate:
        rate_limit_hit(user=user)
    if conversation_id is None and message is not None:
        conversation_id = message.conversation_id
    cost = units_cost(model, kind, estimate)
    # No savepoint inside the caller's transaction (two statements fewer at a reply's start): a
    # refusal raised here leaves the caller's whole transaction, which rolls back with it.
    with transaction.atomic(savepoint=False):
        held = budget.budget_reserve(user=user, tokens=_budget_tokens(kind, estimate), cost=cost, purpose=purpose)
        reservation = _NEW_RESERVATION.insert(
            Reservation(
                user_id=user.pk,
                model=model,
                model_name=model.model_id[:200],
                kind=kind,
                purpose=purpose,
                conversation_id=conversation_id,
                message=message,
                month=held.month,
                tokens=held.tokens,
                cost=held.cost,
                api_token_id=api_token_id,
            )
        )
    return Admission(
        reservation_id=reservation.pk,
        user_id=user.pk,
        model=model,
        kind=kind,
        purpose=purpose,
        held=held,
        pseudonym=caller_pseudonym(user.pk),
        endpoint=client.Endpoint.for_provider(model.provider),
    )


def _admit_moderation(
    *, user, endpoint: client.Endpoint | None, purpose: str, conversation_id, api_token_id=None
) -> Admission:
    if endpoint is None:
        raise ValueError("a moderation call needs the endpoint that checks")
    held = budget.Reservation(tokens=0, cost=Decimal(0), month=budget.month_start())
    reservation = Reservation.objects.create(
        user_id=user.pk,
        model_name="moderation",
        kind=UsageKind.MODERATION,
        purpose=purpose,
        conversation_id=conversation_id,
        month=held.month,
        api_token_id=api_token_id,
    )
    return Admission(
        reservation_id=reservation.pk,
        user_id=user.pk,
        model=None,
        kind=UsageKind.MODERATION,
        purpose=purpose,
        held=held,
        pseudonym=caller_pseudonym(user.pk),
        endpoint=endpoint,
    )


def _model_kind(kind: str) -> str:
    # Training is a call on a chat model (the base model of a fine-tuning job).
    return ModelKind.CHAT if kind == UsageKind.TRAINING else kind


# What a settled call writes on its reply's row (set on the instance when the caller passes it).
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "usage_estimated", "cost")

# A reservation made, and a model call's usage recorded: on every reply's start and end.
_NEW_RESERVATION = PreparedInsert(Reservation)
_NEW_RECORD = PreparedInsert(UsageRecord)
# Read at every reply's end: composed once (chat/prepared.py); get(), not first(), whose ORDER
# BY costs more than the query. One reservation per message at most.
_RESERVATION = PreparedRead(lambda p: Reservation.objects.select_for_update().filter(pk=p.pk), pk=Reservation._meta.pk)
_RESERVATION_OF_MESSAGE = PreparedRead(
    lambda p: Reservation.objects.select_for_update().filter(message_id=p.message_id),
    message_id=Reservation._meta.get_field("message"),
)


def call_settle(
    *,
    units: Units,
    estimated: bool = False,
    reservation_id: int | None = None,
    message: Message | None = None,
) -> UsageRecord | None:
    """Settle one call: release its reservation and record ``units`` (nothing, if empty).

    The reservation is found by id, or by the reply ``message`` it belongs to. A call already
    settled (by itself or by the sweep) is left alone and None is returned, as it is when
    nothing was used. A reply's usage fields are written on its row; when the caller passes
    the reply's ``message`` instance (it holds the row's lock and is ending the reply), they
    are set on the instance instead, for the caller to save with its other changes.
    """
    # No savepoint inside the caller's transaction (a reply's end settles inside the one that
    # saves it): an error here leaves that whole transaction, which rolls back with it.
    with transaction.atomic(savepoint=False):
        try:
            if reservation_id is not None:
                reservation = _RESERVATION.get(pk=reservation_id)
            elif message is not None:
                reservation = _RESERVATION_OF_MESSAGE.get(message_id=message.pk)
            else:
                raise ValueError("call_settle needs the reservation or its message")
        except Reservation.DoesNotExist:
            return None
        return _settle(reservation, units=units, estimated=estimated, message=message)


def _settle(
    reservation: Reservation,
    *,
    units: Units,
    estimated: bool,
    message: Message | None,
    cost: Decimal | None = None,
) -> UsageRecord | None:
    """Release ``reservation`` and record ``units`` at today's prices (or at ``cost``, given)."""
    model = None
    if reservation.model_id and (cost is not None or not units.empty):  # only priced when used
        if message is not None and message.model_id == reservation.model_id and message.model is not None:
            model = message.model  # the reply's model, read with its row (no second query)
        else:
            model = ChatModel.objects.filter(pk=reservation.model_id).first()
    if cost is None:
        cost = units_cost(model, reservation.kind, units)
    cost = budget._money(cost)
    used_tokens = _budget_tokens(reservation.kind, units)
    held = budget.Reservation(tokens=reservation.tokens, cost=reservation.cost, month=reservation.month)
    budget.budget_settle(owner_id=reservation.user_id, held=held, used_tokens=used_tokens, used_cost=cost)
    # The reply's message, if it still exists (SET_NULL when its conversation was deleted mid-call).
    message_id = reservation.message_id
    reservation.delete()
    if units.empty and not cost:
        return None
    record = _NEW_RECORD.insert(
        UsageRecord(
            user_id=reservation.user_id,
            conversation_id=reservation.conversation_id,
            message_id=message_id,
            model=model,
            model_name=reservation.model_name or "unknown",
            kind=reservation.kind,
            purpose=reservation.purpose,
            prompt_tokens=max(int(units.input_tokens), 0),
            completion_tokens=max(int(units.output_tokens), 0),
            images=units.images,
            audio_seconds=Decimal(units.audio_seconds),
            characters=units.characters,
            cost=cost,
            estimated=estimated,
            api_token_id=reservation.api_token_id,
        )
    )
    if message_id is not None:
        changes = dict(
            zip(USAGE_FIELDS, (record.prompt_tokens, record.completion_tokens, estimated, cost), strict=True)
        )
        if message is not None:
            # The caller holds the reply's row and saves it with the rest of its changes: one UPDATE.
            for name, value in changes.items():
                setattr(message, name, value)
        else:
            Message.objects.filter(pk=message_id).update(**changes)
    return record


def calls_sweep_orphans(*, older_than: dt.timedelta) -> int:
    """Settle reservations whose call died with its worker (no reply message follows them).

    A call that is not a streaming reply lasts at most its provider's timeout; one still
    reserved long after that belongs to a process that is gone. Its real usage is unknown,
    so the worst case it reserved is recorded, flagged as an estimate.
    """
    cutoff = timezone.now() - older_than
    settled = 0
    # A fine-tuning job holds its reservation for as long as it trains (days): its poll settles it.
    held_by_jobs = FineTuneJob.objects.filter(reservation_id__isnull=False).values("reservation_id")
    stale = Reservation.objects.filter(message__isnull=True, created_at__lt=cutoff).exclude(pk__in=held_by_jobs)
    for reservation_id in list(stale.values_list("pk", flat=True)[:1000]):
        with transaction.atomic():
            reservation = stale.select_for_update().filter(pk=reservation_id).first()
            if reservation is None:
                continue  # settled meanwhile by its own call
            worst = Units(input_tokens=reservation.tokens)
            _settle(reservation, units=worst, estimated=True, message=None, cost=reservation.cost)
            settled += 1
    return settled


# --- the async face, for callers on the event loop ------------------------------------------


class Call:
    """One admitted call in progress: set ``usage`` when the provider reports it (or an
    estimate, with ``estimated=True``) before the block ends."""

    def __init__(self, admission: Admission):
        self.admission = admission
        self.usage = Units()
        self.estimated = False
        self.record: UsageRecord | None = None

    @property
    def endpoint(self) -> client.Endpoint:
        return self.admission.endpoint

    @property
    def model(self) -> ChatModel | None:
        return self.admission.model


@contextlib.asynccontextmanager
async def model_call(*, user, kind: str, estimate: Units, purpose: str, **admit) -> AsyncIterator[Call]:
    """``async with model_call(...) as call:`` admit, run the block, settle — whatever happens.

    The block makes the provider call through ``call.endpoint`` and sets ``call.usage``. If it
    fails or is cancelled (a client that hung up), whatever usage it had set is still billed.
    """
    admission = await sync_to_async(call_admit)(user=user, kind=kind, estimate=estimate, purpose=purpose, **admit)
    async with call_running(admission) as call:
        yield call


@contextlib.asynccontextmanager
async def call_running(admission: Admission) -> AsyncIterator[Call]:
    """The block of a call already admitted by :func:`call_admit` (a caller that admits on the
    database thread together with other work, saving a trip there): settled whatever happens."""
    call = Call(admission)
    try:
        yield call
    finally:
        # Shielded: a cancelled caller must still release what it reserved.
        call.record = await _shielded_settle(call)


async def _shielded_settle(call: Call) -> UsageRecord | None:
    settle = sync_to_async(call_settle)(
        units=call.usage, estimated=call.estimated, reservation_id=call.admission.reservation_id
    )
    return await asyncio.shield(asyncio.ensure_future(settle))

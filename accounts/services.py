"""The rules for joining Parley: sign-up modes, invites and the budgets new members start with.

Views call these and translate the outcome into pages; nothing here knows about HTTP.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.errors import InviteRequired, InviteUsedUp, SignupClosed, SignupPasswordOff, SignupRateLimited
from accounts.models import Invite, SignupCount, User
from accounts.selectors import invite_usable, sign_in_policy, signup_mode


def default_budgets() -> dict:
    """The monthly budgets a new member starts with (None means unlimited)."""
    cost = str(settings.PARLEY_DEFAULT_MONTHLY_COST_BUDGET or "").strip()
    try:
        cost_budget = Decimal(cost) if cost else None
    except InvalidOperation:
        raise ImproperlyConfigured(f"PARLEY_DEFAULT_MONTHLY_COST_BUDGET is not a number: {cost!r}")
    return {
        "monthly_token_budget": settings.PARLEY_DEFAULT_MONTHLY_TOKEN_BUDGET,
        "monthly_cost_budget": cost_budget,
    }


@transaction.atomic
def invite_redeem(*, code: str) -> Invite:
    """Take one use of an invite, or raise why it cannot be used.

    The use is taken by one conditional UPDATE (``uses < max_uses`` and not expired, with an
    ``F()`` increment), so the database, not Python, decides who gets the last use: two
    concurrent sign-ups can never push ``uses`` past ``max_uses``. Call it inside the
    transaction that creates the user, so a sign-up that fails afterwards gives the use back.
    """
    taken = Invite.objects.filter(code=code, uses__lt=F("max_uses"), expires_at__gt=timezone.now()).update(
        uses=F("uses") + 1
    )
    if not taken:
        invite_usable(code=code)  # raises the precise reason: unknown, expired or used up
        # It looks usable now only if an admin changed it since our UPDATE: still no use taken.
        raise InviteUsedUp()
    return Invite.objects.get(code=code)


def signup_count_take(*, address: str | None) -> None:
    """Count one new account for ``address`` this clock hour, or raise :class:`SignupRateLimited`.

    Like :func:`invite_redeem`, one conditional UPDATE (``count < limit``) takes the place, so
    the database decides who gets the last one: reading the count and adding to it after the
    account existed let 30 concurrent sign-ups through a limit of 10. Call it inside the
    transaction that creates the user, so a sign-up that fails afterwards gives it back; on
    PostgreSQL the row stays locked until then, so sign-ups from one address queue here.
    """
    limit = settings.PARLEY_SIGNUP_RATE_PER_HOUR
    if limit <= 0 or address is None:  # no limit, or not a sign-up from the web
        return
    address = address[:64]
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    # Earlier hours of this address are spent: one row per address and hour with sign-ups.
    SignupCount.objects.filter(address=address, hour__lt=hour).delete()
    SignupCount.objects.bulk_create([SignupCount(address=address, hour=hour)], ignore_conflicts=True)
    taken = SignupCount.objects.filter(address=address, hour=hour, count__lt=limit).update(count=F("count") + 1)
    if not taken:
        raise SignupRateLimited()


def _validate_new_account(*, username: str, password: str) -> None:
    errors: dict[str, list] = {}
    try:
        User.username_validator(username)
    except ValidationError as error:
        errors["username"] = error.error_list
    if not username:
        errors["username"] = [ValidationError(_("Choose a username."), code="required")]
    elif User.objects.filter(username__iexact=username).exists():
        errors["username"] = [ValidationError(_("That username is taken. Choose another one."), code="unique")]
    try:
        validate_password(password, user=User(username=username))
    except ValidationError as error:
        errors["password"] = error.error_list
    if errors:
        raise ValidationError(errors)


def user_signup(*, username: str, password: str, invite_code: str | None = None, address: str | None = None) -> User:
    """Create a member account under the configured sign-up mode.

    Raises :class:`accounts.errors.SignupRefused` (closed, invite missing, expired, used up,
    too many accounts from ``address`` this hour: ``PARLEY_SIGNUP_RATE_PER_HOUR``)
    or ``ValidationError`` (username taken, weak password). A sign-up never makes anyone staff
    or superuser: admins come only from ``ensure_admin`` / ``createsuperuser`` (T08).
    In ``open`` mode an invite code is ignored.
    """
    mode = signup_mode()
    if mode == "closed":
        raise SignupClosed()
    if not sign_in_policy().password_for_members:
        # A password account nobody may sign in with would still be signed in right here.
        raise SignupPasswordOff()
    if mode == "invite" and not invite_code:
        raise InviteRequired()
    username = User.normalize_username(username or "").strip()
    _validate_new_account(username=username, password=password)

    try:
        with transaction.atomic():
            signup_count_take(address=address)
            invite = invite_redeem(code=invite_code) if mode == "invite" else None
            user = User(username=username, is_staff=False, is_superuser=False, invite=invite, **default_budgets())
            user.set_password(password)
            user.save(force_insert=True)
    except IntegrityError:
        # Two people chose the same name at the same moment; the unique index decided.
        raise ValidationError({"username": [_("That username is taken. Choose another one.")]}, code="unique")
    return user

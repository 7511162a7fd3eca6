"""Two-factor sign-in: a time-based one-time password (TOTP, RFC 6238) and recovery codes.

The devices are django-otp's (a TOTP device and a static device holding the recovery codes,
each code deleted when used); the QR code is drawn here as SVG by segno, so the secret never
leaves the server for a QR service and the page needs no script. Wrong codes are counted as
failed sign-ins by django-axes (accounts/views.py), like wrong passwords.
"""

from __future__ import annotations

from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import errors
from accounts.models import User

RECOVERY_CODES = 10
RECOVERY_DEVICE = "recovery codes"
TOTP_DEVICE = "authenticator app"


def totp_device(*, user: User) -> TOTPDevice | None:
    """The member's confirmed authenticator, if they set one up."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def two_factor_enabled(*, user: User) -> bool:
    return user.pk is not None and totp_device(user=user) is not None


def recovery_codes_left(*, user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__name=RECOVERY_DEVICE).count()


def totp_enrol_start(*, user: User) -> TOTPDevice:
    """A new, unconfirmed authenticator secret (replacing any unconfirmed one)."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=TOTP_DEVICE, confirmed=False)


def totp_pending(*, user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()


def qr_svg(device: TOTPDevice) -> str:
    """The device's otpauth:// address as an inline SVG QR code (no script, no style)."""
    import segno  # here, not at start-up: drawn only on the enrolment page

    return segno.make(device.config_url, error="m").svg_inline(scale=4, dark="#111", light="#fff", border=2)


def secret_text(device: TOTPDevice) -> str:
    """The secret in base32 groups of four, for typing into an app by hand."""
    from base64 import b32encode

    text = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


@transaction.atomic
def totp_enrol_confirm(*, user: User, code: str) -> list[str]:
    """Confirm the pending authenticator with a code from it; the new recovery codes (shown
    once). Raises TwoFactorCodeWrong."""
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None or not device.verify_token(_digits(code)):
        raise errors.TwoFactorCodeWrong()
    TOTPDevice.objects.filter(user=user, confirmed=True).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return recovery_codes_regenerate(user=user)


@transaction.atomic
def recovery_codes_regenerate(*, user: User) -> list[str]:
    """New recovery codes; the old ones stop working."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name=RECOVERY_DEVICE, defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def _digits(code: str) -> str:
    return "".join(ch for ch in str(code or "") if not ch.isspace())


@transaction.atomic
def two_factor_verify(*, user: User, code: str) -> bool:
    """Whether ``code`` is the authenticator's current code (not used before) or an unused
    recovery code, which is then used up. Rows are locked, so one code signs in once."""
    code = _digits(code)
    if not code:
        return False
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
    if device is not None and code.isdigit() and device.verify_token(code):
        return True
    recovery = StaticDevice.objects.select_for_update().filter(user=user, name=RECOVERY_DEVICE).first()
    return recovery is not None and recovery.verify_token(code.lower())


@transaction.atomic
def two_factor_disable(*, user: User, code: str, required: bool) -> None:
    if required:
        raise errors.TwoFactorRequired()
    if not two_factor_verify(user=user, code=code):
        raise errors.TwoFactorCodeWrong()
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()

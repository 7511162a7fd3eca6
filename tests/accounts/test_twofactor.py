"""Two-factor sign-in with a clock the test controls: enrolment with a QR code drawn in the
page, sign-in with a code, wrong and reused codes refused, recovery codes used once, the
admin sign-in and the policy that requires it; wrong codes are throttled like passwords."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import twofactor
from accounts.models import REQUIRE_2FA_ADMINS, REQUIRE_2FA_EVERYONE, SignInPolicy
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

START = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    """Time stands still unless the test moves it (``clock.shift(seconds)``)."""
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def code_now(device: TOTPDevice, at_offset: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = datetime.now(UTC).timestamp() + at_offset
    return f"{totp.token():0{device.digits}d}"


def _signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def _enrol(client, user) -> tuple[TOTPDevice, list[str]]:
    client.get(reverse("two_factor_setup"))
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    page = client.post(reverse("two_factor_setup"), {"code": code_now(device)}).content.decode()
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", page)
    device.refresh_from_db()
    return device, codes


def _password(client, username="alice", url="/accounts/login/"):
    return client.post(url, {"username": username, "password": PASSWORD})


# --- enrolment -------------------------------------------------------------------------------


def test_enrolment_draws_the_qr_code_in_the_page(alice_client, alice, clock):
    page = alice_client.get(reverse("two_factor_setup")).content.decode()
    device = TOTPDevice.objects.get(user=alice, confirmed=False)
    svg = page.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert "<path" in svg
    # Drawn by the server: no script, no inline style (CSP), no image from elsewhere.
    assert "script" not in svg and "style=" not in svg and "http" not in svg.replace("http://www.w3.org", "")
    assert twofactor.secret_text(device) in page
    assert alice_client.get(reverse("two_factor")).content.decode().count("Set up two-factor sign-in") == 1


def test_a_wrong_code_does_not_turn_two_factor_on(alice_client, alice, clock):
    alice_client.get(reverse("two_factor_setup"))
    response = alice_client.post(reverse("two_factor_setup"), {"code": "000000"})
    assert "That code is not right" in response.content.decode()
    assert not twofactor.two_factor_enabled(user=alice)


def test_enrolment_turns_two_factor_on_and_shows_ten_recovery_codes_once(alice_client, alice, clock):
    device, codes = _enrol(alice_client, alice)
    assert device.confirmed
    assert len(codes) == 10 and len(set(codes)) == 10
    page = alice_client.get(reverse("two_factor")).content.decode()
    assert "Two-factor sign-in is on" in page
    assert "You have 10 recovery codes left" in page
    assert not any(code in page for code in codes)


# --- signing in ------------------------------------------------------------------------------


@pytest.fixture
def alice_with_2fa(alice, clock):
    client = Client()
    client.force_login(alice)
    device, codes = _enrol(client, alice)
    clock.shift(60)  # the enrolment code is spent; later tests use fresh ones
    return device, codes


def test_the_password_alone_does_not_sign_in(client, alice_with_2fa):
    response = _password(client)
    assert response["Location"] == reverse("two_factor_verify")
    assert not _signed_in(client)
    assert client.get(reverse("chat:home"))["Location"].startswith(reverse("login"))


def test_the_current_code_signs_in(client, alice_with_2fa):
    device, _ = alice_with_2fa
    _password(client)
    response = client.post(reverse("two_factor_verify"), {"code": code_now(device)})
    assert response["Location"] == reverse("chat:home")
    assert _signed_in(client)


def test_a_wrong_code_is_refused(client, alice_with_2fa):
    device, _ = alice_with_2fa
    _password(client)
    response = client.post(reverse("two_factor_verify"), {"code": code_now(device, at_offset=600)})
    assert response.status_code == 200
    assert "That code is not right" in response.content.decode()
    assert not _signed_in(client)


def test_a_code_is_accepted_once(client, alice_with_2fa, clock):
    device, _ = alice_with_2fa
    code = code_now(device)
    _password(client)
    client.post(reverse("two_factor_verify"), {"code": code})
    assert _signed_in(client)
    other = Client()
    _password(other)
    response = other.post(reverse("two_factor_verify"), {"code": code})
    assert "That code is not right, or it was already used" in response.content.decode()
    assert not _signed_in(other)
    clock.shift(30)  # the next code, a time step later, works
    other.post(reverse("two_factor_verify"), {"code": code_now(device)})
    assert _signed_in(other)


def test_a_recovery_code_signs_in_once(client, alice_with_2fa):
    _, codes = alice_with_2fa
    _password(client)
    client.post(reverse("two_factor_verify"), {"code": codes[0].upper()})
    assert _signed_in(client)
    again = Client()
    _password(again)
    response = again.post(reverse("two_factor_verify"), {"code": codes[0]})
    assert "That code is not right" in response.content.decode()
    assert not _signed_in(again)
    again.post(reverse("two_factor_verify"), {"code": codes[1]})
    assert _signed_in(again)


def test_new_recovery_codes_replace_the_old_ones(alice_client, alice_with_2fa):
    _, old = alice_with_2fa
    page = alice_client.post(reverse("recovery_codes_new")).content.decode()
    new = re.findall(r"<li><code>([a-z0-9]+)</code></li>", page)
    assert len(new) == 10 and not set(new) & set(old)
    client = Client()
    _password(client)
    client.post(reverse("two_factor_verify"), {"code": old[2]})
    assert not _signed_in(client)


def test_a_pending_sign_in_expires(client, alice_with_2fa, clock):
    device, _ = alice_with_2fa
    _password(client)
    clock.shift(301)
    response = client.post(reverse("two_factor_verify"), {"code": code_now(device)})
    assert response["Location"] == reverse("login")
    assert not _signed_in(client)


def test_wrong_codes_are_throttled_like_passwords(client, alice_with_2fa, settings):
    settings.AXES_FAILURE_LIMIT = 3
    device, _ = alice_with_2fa
    _password(client)
    for _ in range(2):
        client.post(reverse("two_factor_verify"), {"code": "123456"})
    response = client.post(reverse("two_factor_verify"), {"code": "654321"})
    assert response.status_code == 429
    # Locked: the right code and even the right password are refused now.
    assert client.post(reverse("two_factor_verify"), {"code": code_now(device)}).status_code == 429
    assert _password(Client()).status_code == 429
    assert not _signed_in(client)


def test_two_factor_can_be_turned_off_with_a_code(alice_client, alice, alice_with_2fa):
    device, _ = alice_with_2fa
    alice_client.post(reverse("two_factor_off"), {"code": "000000"})
    assert twofactor.two_factor_enabled(user=alice)
    alice_client.post(reverse("two_factor_off"), {"code": code_now(device)})
    assert not twofactor.two_factor_enabled(user=alice)
    client = Client()
    assert _password(client)["Location"] == reverse("chat:home")


# --- the policy and the admin sign-in --------------------------------------------------------


def _policy(**fields):
    policy = SignInPolicy(**fields)
    policy.save()
    return policy


def test_the_admin_sign_in_asks_for_the_code(client, admin_user, clock):
    helper = Client()
    helper.force_login(admin_user)
    device, _ = _enrol(helper, admin_user)
    clock.shift(60)
    response = _password(client, "root", "/admin/login/?next=/admin/")
    assert response["Location"] == reverse("two_factor_verify")
    assert client.get("/admin/").status_code == 302
    response = client.post(reverse("two_factor_verify"), {"code": code_now(device)})
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_when_required_for_admins_an_admin_must_set_it_up_to_sign_in(client, admin_user, alice, clock):
    _policy(require_two_factor=REQUIRE_2FA_ADMINS)
    response = _password(client, "root", "/admin/login/?next=/admin/")
    assert response["Location"] == reverse("two_factor_setup")
    assert not _signed_in(client)
    assert client.get("/admin/").status_code == 302
    page = client.get(reverse("two_factor_setup")).content.decode()
    assert "Your admin requires two-factor sign-in" in page
    device = TOTPDevice.objects.get(user=admin_user, confirmed=False)
    page = client.post(reverse("two_factor_setup"), {"code": code_now(device)}).content.decode()
    assert "Your recovery codes" in page
    assert _signed_in(client)
    assert client.get("/admin/").status_code == 200
    # Members are not asked.
    member = Client()
    assert _password(member)["Location"] == reverse("chat:home")


def test_when_required_for_everyone_members_set_it_up_too(client, alice, clock):
    _policy(require_two_factor=REQUIRE_2FA_EVERYONE)
    assert _password(client)["Location"] == reverse("two_factor_setup")
    assert not _signed_in(client)


def test_a_required_second_factor_cannot_be_turned_off(alice_client, alice, alice_with_2fa):
    device, _ = alice_with_2fa
    _policy(require_two_factor=REQUIRE_2FA_EVERYONE)
    response = alice_client.post(reverse("two_factor_off"), {"code": code_now(device)}, follow=True)
    assert "required for this account" in response.content.decode()
    assert twofactor.two_factor_enabled(user=alice)


def test_clock_drift_of_one_step_is_tolerated(client, alice_with_2fa):
    device, _ = alice_with_2fa
    _password(client)
    client.post(reverse("two_factor_verify"), {"code": code_now(device, at_offset=-30)})
    assert _signed_in(client)


def test_the_setup_page_sends_strangers_to_sign_in(client, db):
    response = client.get(reverse("two_factor_setup"))
    assert response["Location"].startswith(reverse("login"))
    assert not TOTPDevice.objects.exists()


def test_an_admin_turns_off_a_members_second_factor_when_they_lost_it(alice_with_2fa, admin_user):
    console = Client()
    console.force_login(admin_user)
    console.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "reset_two_factor", "_selected_action": [alice_with_2fa[0].user_id]},
    )
    client = Client()
    assert _password(client)["Location"] == reverse("chat:home")
    assert _signed_in(client)


def test_the_admin_never_shows_a_members_authenticator_secret(alice, alice_with_2fa, admin_user):
    device, codes = alice_with_2fa
    console = Client()
    console.force_login(admin_user)
    pages = [console.get(reverse("admin:index")), console.get(reverse("admin:accounts_user_change", args=[alice.pk]))]
    for page in pages:
        body = page.content.decode()
        assert twofactor.secret_text(device) not in body and device.key not in body
        assert not any(code in body for code in codes)

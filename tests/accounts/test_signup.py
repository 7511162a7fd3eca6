"""Sign-up modes: closed, invite and open; invite expiry, exhaustion and atomic redemption."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.errors import InviteExpired, InviteInvalid, InviteRequired, InviteUsedUp, SignupClosed
from accounts.models import Invite, User

GOOD_PASSWORD = "plum-orbit-lantern-73"


def _form(username="carol", password=GOOD_PASSWORD, **extra):
    return {"username": username, "password1": password, "password2": password, **extra}


def _invite(**fields):
    fields.setdefault("expires_at", timezone.now() + timedelta(days=7))
    return Invite.objects.create(**fields)


@pytest.fixture
def mode(settings):
    def set_mode(value):
        settings.PARLEY_SIGNUP_MODE = value

    return set_mode


# --- closed -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_closed_sign_up_says_so_and_creates_nobody(client, mode):
    mode("closed")
    page = client.get(reverse("signup"))
    assert page.status_code == 404
    assert "Sign-up is closed" in page.content.decode()
    response = client.post(reverse("signup"), _form())
    assert response.status_code == 404
    assert not User.objects.filter(username="carol").exists()


@pytest.mark.django_db
def test_closed_sign_up_ignores_an_invite(client, mode):
    mode("closed")
    invite = _invite()
    response = client.post(reverse("join", args=[invite.code]), _form())
    assert response.status_code == 404
    assert not User.objects.exists()
    invite.refresh_from_db()
    assert invite.uses == 0


@pytest.mark.django_db
def test_an_unknown_mode_counts_as_closed(client, mode):
    mode("opne")
    assert client.get(reverse("signup")).status_code == 404
    with pytest.raises(SignupClosed):
        services.user_signup(username="carol", password=GOOD_PASSWORD)


def test_an_unknown_mode_is_reported_by_the_system_check(settings):
    from accounts.checks import signup_mode_check

    settings.PARLEY_SIGNUP_MODE = "opne"
    assert [error.id for error in signup_mode_check(None)] == ["parley.E001"]
    settings.PARLEY_SIGNUP_MODE = "invite"
    assert signup_mode_check(None) == []


# --- open -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_open_sign_up_creates_a_member_and_signs_them_in(client, mode):
    mode("open")
    page = client.get(reverse("signup"))
    assert page.status_code == 200
    assert '<label for="id_username">' in page.content.decode()
    response = client.post(reverse("signup"), _form())
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    assert client.get(reverse("chat:home")).status_code == 200
    carol = User.objects.get(username="carol")
    assert carol.check_password(GOOD_PASSWORD)
    assert not carol.is_staff and not carol.is_superuser
    assert carol.invite is None


@pytest.mark.django_db
def test_the_sign_in_page_links_to_open_sign_up_only(client, mode):
    mode("open")
    assert reverse("signup") in client.get(reverse("login")).content.decode()
    mode("closed")
    assert reverse("signup") not in client.get(reverse("login")).content.decode()


@pytest.mark.django_db
def test_new_members_get_the_default_monthly_budgets(client, mode, settings):
    mode("open")
    settings.PARLEY_DEFAULT_MONTHLY_TOKEN_BUDGET = 250_000
    settings.PARLEY_DEFAULT_MONTHLY_COST_BUDGET = "12.50"
    client.post(reverse("signup"), _form())
    carol = User.objects.get(username="carol")
    assert carol.monthly_token_budget == 250_000
    assert carol.monthly_cost_budget == Decimal("12.50")


@pytest.mark.django_db
def test_without_default_budgets_new_members_are_unlimited(mode, settings):
    mode("open")
    settings.PARLEY_DEFAULT_MONTHLY_TOKEN_BUDGET = None
    settings.PARLEY_DEFAULT_MONTHLY_COST_BUDGET = ""
    carol = services.user_signup(username="carol", password=GOOD_PASSWORD)
    assert carol.monthly_token_budget is None
    assert carol.monthly_cost_budget is None


@pytest.mark.django_db
def test_sign_up_ignores_fields_that_would_make_an_admin(client, mode):
    mode("open")
    client.post(
        reverse("signup"),
        _form(is_staff="on", is_superuser="on", monthly_token_budget="999999999", invite="x"),
    )
    carol = User.objects.get(username="carol")
    assert not carol.is_staff
    assert not carol.is_superuser
    assert carol.monthly_token_budget is None


@pytest.mark.django_db
def test_a_taken_username_is_refused_whatever_its_case(client, mode, alice):
    mode("open")
    response = client.post(reverse("signup"), _form(username="ALICE"))
    assert response.status_code == 200
    assert "That username is taken" in response.content.decode()
    assert User.objects.filter(username__iexact="alice").count() == 1


@pytest.mark.django_db
def test_a_weak_password_is_refused_with_the_reason(client, mode):
    mode("open")
    response = client.post(reverse("signup"), _form(password="12345678"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "too common" in body or "entirely numeric" in body
    assert not User.objects.filter(username="carol").exists()


@pytest.mark.django_db
def test_two_different_passwords_are_refused(client, mode):
    mode("open")
    response = client.post(reverse("signup"), {**_form(), "password2": "something-else-entirely-9"})
    assert "The two passwords are different." in response.content.decode()
    assert not User.objects.exists()


@pytest.mark.django_db
def test_a_signed_in_member_visiting_sign_up_goes_to_the_chat(alice_client, mode):
    mode("open")
    response = alice_client.get(reverse("signup"))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")


# --- invite -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_invite_mode_without_an_invite_asks_for_one(client, mode):
    mode("invite")
    page = client.get(reverse("signup"))
    assert page.status_code == 403
    assert "needs an invite link" in page.content.decode()
    client.post(reverse("signup"), _form())
    assert not User.objects.exists()
    with pytest.raises(InviteRequired):
        services.user_signup(username="carol", password=GOOD_PASSWORD)


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["join-link", "query-string"])
def test_an_invite_lets_a_person_join_and_takes_one_use(client, mode, how):
    mode("invite")
    invite = _invite(max_uses=2)
    url = reverse("join", args=[invite.code]) if how == "join-link" else f"{reverse('signup')}?invite={invite.code}"
    page = client.get(url)
    assert page.status_code == 200
    assert "You were invited" in page.content.decode()
    response = client.post(url, _form())
    assert response.status_code == 302
    invite.refresh_from_db()
    assert invite.uses == 1
    carol = User.objects.get(username="carol")
    assert carol.invite == invite
    assert not carol.is_staff


@pytest.mark.django_db
def test_the_sign_up_form_carries_the_invite_it_was_opened_with(client, mode):
    mode("invite")
    invite = _invite()
    page = client.get(f"{reverse('signup')}?invite={invite.code}").content.decode()
    assert f'name="invite" value="{invite.code}"' in page
    # The form posts to the bare sign-up URL with the code in a hidden field.
    assert client.post(reverse("signup"), _form(invite=invite.code)).status_code == 302


@pytest.mark.django_db
def test_an_expired_invite_says_it_has_expired(client, mode):
    mode("invite")
    invite = _invite(expires_at=timezone.now() - timedelta(minutes=1))
    page = client.get(reverse("join", args=[invite.code]))
    assert page.status_code == 410
    assert "This invite link has expired" in page.content.decode()
    client.post(reverse("join", args=[invite.code]), _form())
    assert not User.objects.exists()
    invite.refresh_from_db()
    assert invite.uses == 0


@pytest.mark.django_db
def test_a_used_up_invite_says_it_has_been_used_up(client, mode):
    mode("invite")
    invite = _invite(max_uses=1)
    client.post(reverse("join", args=[invite.code]), _form(username="carol"))
    client.logout()
    page = client.get(reverse("join", args=[invite.code]))
    assert page.status_code == 410
    assert "already been used as many times as allowed" in page.content.decode()
    client.post(reverse("join", args=[invite.code]), _form(username="dave"))
    assert list(User.objects.values_list("username", flat=True)) == ["carol"]


@pytest.mark.django_db
def test_an_unknown_invite_code_is_not_valid(client, mode):
    mode("invite")
    page = client.get(reverse("join", args=["no-such-code"]))
    assert page.status_code == 404
    assert "This invite link is not valid" in page.content.decode()


@pytest.mark.django_db
def test_a_refused_sign_up_gives_the_invite_use_back(mode):
    mode("invite")
    invite = _invite(max_uses=1)
    with pytest.raises(ValidationError):
        services.user_signup(username="carol", password="123", invite_code=invite.code)
    invite.refresh_from_db()
    assert invite.uses == 0


@pytest.mark.django_db
def test_invite_redeem_names_the_reason_it_refuses(mode):
    expired = _invite(expires_at=timezone.now() - timedelta(seconds=1))
    used_up = _invite(max_uses=1)
    Invite.objects.filter(pk=used_up.pk).update(uses=1)
    with pytest.raises(InviteExpired):
        services.invite_redeem(code=expired.code)
    with pytest.raises(InviteUsedUp):
        services.invite_redeem(code=used_up.code)
    with pytest.raises(InviteInvalid):
        services.invite_redeem(code="nope")


# --- concurrency (real threads, real transactions) --------------------------------------


def _run_concurrently(count, target):
    """Start ``count`` threads at one barrier and collect what each returned or raised."""
    barrier = threading.Barrier(count)
    outcomes = [None] * count

    def run(index):
        try:
            barrier.wait()
            outcomes[index] = target(index)
        except Exception as error:  # noqa: BLE001 - the outcome is what the test inspects
            outcomes[index] = error
        finally:
            # Each thread opened its own connection; close it so the test database can be dropped.
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_sign_ups_on_an_empty_database_make_no_admin(mode):
    mode("open")
    assert not User.objects.exists()
    outcomes = _run_concurrently(
        20, lambda index: services.user_signup(username=f"member{index}", password=GOOD_PASSWORD)
    )
    assert all(isinstance(outcome, User) for outcome in outcomes), outcomes
    assert User.objects.count() == 20
    assert not User.objects.filter(is_superuser=True).exists()
    assert not User.objects.filter(is_staff=True).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_sign_ups_never_use_an_invite_more_than_allowed(mode):
    mode("invite")
    invite = _invite(max_uses=3)
    outcomes = _run_concurrently(
        10,
        lambda index: services.user_signup(username=f"member{index}", password=GOOD_PASSWORD, invite_code=invite.code),
    )
    joined = [outcome for outcome in outcomes if isinstance(outcome, User)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, InviteUsedUp)]
    assert len(joined) == 3, outcomes
    assert len(refused) == 7, outcomes
    invite.refresh_from_db()
    assert invite.uses == 3
    assert User.objects.filter(invite=invite).count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_sign_ups_with_one_name_make_one_account(mode):
    mode("open")
    outcomes = _run_concurrently(8, lambda index: services.user_signup(username="carol", password=GOOD_PASSWORD))
    assert sum(isinstance(outcome, User) for outcome in outcomes) == 1, outcomes
    assert all(isinstance(outcome, (User, ValidationError)) for outcome in outcomes), outcomes
    assert User.objects.filter(username="carol").count() == 1


# --- how many, from one address --------------------------------------------------------------


@pytest.mark.django_db
def test_open_sign_up_is_limited_per_address_and_hour(client, mode, settings):
    mode("open")
    settings.PARLEY_SIGNUP_RATE_PER_HOUR = 2
    for name in ("carol", "dave"):
        assert client.post(reverse("signup"), _form(username=name)).status_code == 302
        client.logout()
    refused = client.post(reverse("signup"), _form(username="erin"))
    assert refused.status_code == 429
    assert "Too many accounts were created from your network" in refused.content.decode()
    assert not User.objects.filter(username="erin").exists()
    # A forged X-Forwarded-For is not another address; another address is counted on its own.
    forged = client.post(reverse("signup"), _form(username="erin"), headers={"x-forwarded-for": "203.0.113.9"})
    assert forged.status_code == 429
    other = Client(REMOTE_ADDR="198.51.100.7").post(reverse("signup"), _form(username="erin"))
    assert other.status_code == 302
    assert User.objects.filter(username="erin").exists()


@pytest.mark.django_db
def test_a_sign_up_that_failed_does_not_count(client, mode, settings):
    mode("open")
    settings.PARLEY_SIGNUP_RATE_PER_HOUR = 1
    weak = client.post(reverse("signup"), _form(username="carol", password="123"))
    assert weak.status_code == 200  # the form says why; nothing was created
    assert client.post(reverse("signup"), _form(username="carol")).status_code == 302


class HoldUntilAllArrive:
    """A password validator that holds every sign-up until all of them have reached it.

    Password checks run after the sign-up page has looked at the address's count and before
    the account is created, so every request is then in flight at that point at once: the
    interleaving a burst of real requests may produce, made certain.
    """

    barrier: threading.Barrier | None = None

    def validate(self, password, user=None):
        if self.barrier is not None:
            self.barrier.wait(timeout=60)

    def get_help_text(self):
        return ""


@pytest.mark.django_db(transaction=True)
def test_thirty_concurrent_sign_ups_from_one_address_make_only_as_many_accounts_as_allowed(mode, settings, monkeypatch):
    mode("open")
    settings.PARLEY_SIGNUP_RATE_PER_HOUR = 10
    settings.AUTH_PASSWORD_VALIDATORS = [{"NAME": f"{__name__}.HoldUntilAllArrive"}]
    monkeypatch.setattr(HoldUntilAllArrive, "barrier", threading.Barrier(30))

    def sign_up(index):
        return Client(REMOTE_ADDR="203.0.113.5").post(reverse("signup"), _form(username=f"member{index}")).status_code

    outcomes = _run_concurrently(30, sign_up)
    assert sorted(outcomes) == [302] * 10 + [429] * 20, outcomes
    assert User.objects.count() == 10
    monkeypatch.setattr(HoldUntilAllArrive, "barrier", None)
    # Another address still has its own ten.
    assert Client(REMOTE_ADDR="198.51.100.7").post(reverse("signup"), _form(username="erin")).status_code == 302

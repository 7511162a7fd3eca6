"""The admin's sign-in policy: password sign-in off for members, and for admins only when
turned off too (their break-glass way in), on the app's and the admin's sign-in pages."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import SignInPolicy
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _policy(**fields):
    SignInPolicy(**fields).save()


def _password(client, username, url="/accounts/login/"):
    return client.post(url, {"username": username, "password": PASSWORD})


def test_by_default_members_and_admins_sign_in_with_a_password(client, alice, admin_user):
    assert _password(client, "alice")["Location"] == reverse("chat:home")
    assert _password(Client(), "root", "/admin/login/?next=/admin/")["Location"] == "/admin/"


def test_with_password_sign_in_off_for_members_a_member_is_refused_clearly(client, alice):
    _policy(password_for_members=False)
    response = _password(client, "alice")
    assert response.status_code == 200
    assert "Signing in with a password is turned off for this account" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_admins_keep_their_break_glass_password(client, alice, admin_user):
    _policy(password_for_members=False)
    assert _password(client, "root")["Location"] == reverse("chat:home")
    page = Client().get(reverse("login")).content.decode()
    assert 'name="password"' in page


def test_admin_passwords_can_be_turned_off_too(client, admin_user):
    _policy(password_for_members=False, password_for_admins=False)
    for url in ("/accounts/login/", "/admin/login/?next=/admin/"):
        response = _password(Client(), "root", url)
        assert response.status_code == 200
        assert "Signing in with a password is turned off" in response.content.decode()
    assert 'name="password"' not in client.get(reverse("login")).content.decode()


def test_the_policy_is_one_row_edited_in_the_admin(admin_user):
    console = Client()
    console.force_login(admin_user)
    response = console.get(reverse("admin:accounts_signinpolicy_changelist"))
    assert response["Location"] == reverse("admin:accounts_signinpolicy_change", args=[1])
    console.post(
        reverse("admin:accounts_signinpolicy_change", args=[1]),
        {"password_for_admins": "on", "require_two_factor": "admins"},
    )
    policy = SignInPolicy.objects.get()
    assert policy.password_for_members is False and policy.require_two_factor == "admins"


def test_with_password_sign_in_off_for_members_nobody_signs_up_with_a_password(client, settings):
    settings.PARLEY_SIGNUP_MODE = "open"
    _policy(password_for_members=False)
    response = client.post(
        reverse("signup"),
        {"username": "carol", "password1": "a-long-pass-phrase-7", "password2": "a-long-pass-phrase-7"},
    )
    assert response.status_code == 403
    assert "sign in through single sign-on" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_when_two_factor_is_required_for_everyone_a_new_member_sets_it_up_first(client, settings):
    settings.PARLEY_SIGNUP_MODE = "open"
    _policy(require_two_factor="everyone")
    response = client.post(
        reverse("signup"),
        {"username": "carol", "password1": "a-long-pass-phrase-7", "password2": "a-long-pass-phrase-7"},
    )
    assert response["Location"] == reverse("two_factor_setup")
    assert "_auth_user_id" not in client.session

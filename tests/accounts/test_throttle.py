"""Failed sign-ins are throttled per account and address, the admin login included (docs/security.md T33)."""

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.throttle import client_ip_address
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN_PAGES = [pytest.param("/accounts/login/", id="app-login"), pytest.param("/admin/login/", id="admin-login")]


@pytest.fixture(autouse=True)
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def _attempt(client, url, username, password, **headers):
    return client.post(url, {"username": username, "password": password}, headers=headers)


def _signed_in(client):
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("url", LOGIN_PAGES)
def test_repeated_failures_lock_the_account_with_a_clear_page(client, admin_user, url, limit):
    for _ in range(limit - 1):
        assert _attempt(client, url, "root", "wrong").status_code == 200
    response = _attempt(client, url, "root", "wrong")
    assert response.status_code == 429
    body = response.content.decode()
    assert "Too many failed sign-ins" in body
    assert "locked after 3 failed attempts" in body
    assert "Wait 15 minutes" in body


@pytest.mark.parametrize("url", LOGIN_PAGES)
def test_the_right_password_is_refused_during_a_lockout(client, admin_user, url, limit):
    for _ in range(limit):
        _attempt(client, url, "root", "wrong")
    response = _attempt(client, url, "root", PASSWORD)
    assert response.status_code == 429
    assert not _signed_in(client)


def test_a_lockout_on_the_app_login_also_holds_on_the_admin_login(client, admin_user, limit):
    for _ in range(limit):
        _attempt(client, "/accounts/login/", "root", "wrong")
    assert _attempt(client, "/admin/login/", "root", PASSWORD).status_code == 429
    assert not _signed_in(client)


def test_a_spoofed_forwarded_for_header_does_not_reset_the_count(client, alice, limit):
    for index in range(limit):
        _attempt(client, "/accounts/login/", "alice", "wrong", x_forwarded_for=f"203.0.113.{index}")
    response = _attempt(client, "/accounts/login/", "alice", PASSWORD, x_forwarded_for="198.51.100.77")
    assert response.status_code == 429
    assert not _signed_in(client)


def test_behind_a_trusted_proxy_left_hand_hops_cannot_reset_the_count(client, alice, limit, settings):
    settings.PARLEY_TRUSTED_PROXY_COUNT = 1
    for index in range(limit):
        # The client writes the first hop; our proxy appends the address it really saw.
        _attempt(client, "/accounts/login/", "alice", "wrong", x_forwarded_for=f"203.0.113.{index}, 192.0.2.10")
    response = _attempt(client, "/accounts/login/", "alice", PASSWORD, x_forwarded_for="1.2.3.4, 192.0.2.10")
    assert response.status_code == 429
    # Another person behind the same proxy, at another address, is not locked out.
    other = Client()
    response = _attempt(other, "/accounts/login/", "alice", PASSWORD, x_forwarded_for="192.0.2.99")
    assert response.status_code == 302


def test_the_lock_is_per_account_and_address(client, alice, bob, limit):
    for _ in range(limit):
        _attempt(client, "/accounts/login/", "alice", "wrong")
    assert _attempt(client, "/accounts/login/", "bob", PASSWORD).status_code == 302
    elsewhere = Client(REMOTE_ADDR="192.0.2.50")
    assert _attempt(elsewhere, "/accounts/login/", "alice", PASSWORD).status_code == 302


def test_a_successful_sign_in_resets_the_count(client, alice, limit):
    for _ in range(limit - 1):
        _attempt(client, "/accounts/login/", "alice", "wrong")
    assert _attempt(client, "/accounts/login/", "alice", PASSWORD).status_code == 302
    client.post(reverse("logout"))
    for _ in range(limit - 1):
        _attempt(client, "/accounts/login/", "alice", "wrong")
    assert _attempt(client, "/accounts/login/", "alice", PASSWORD).status_code == 302


def test_the_lockout_answer_never_allows_other_origins(client, alice, limit):
    for _ in range(limit):
        _attempt(client, "/accounts/login/", "alice", "wrong", x_requested_with="XMLHttpRequest")
    response = _attempt(client, "/accounts/login/", "alice", "wrong", x_requested_with="XMLHttpRequest")
    assert response.status_code == 429
    assert not response.has_header("Access-Control-Allow-Origin")


def test_the_lockout_page_speaks_chinese(client, alice, limit):
    for _ in range(limit):
        _attempt(client, "/accounts/login/", "alice", "wrong", accept_language="zh-Hans")
    response = _attempt(client, "/accounts/login/", "alice", "wrong", accept_language="zh-Hans")
    assert response.status_code == 429
    assert "登录失败次数过多" in response.content.decode()


# --- the address axes counts ----------------------------------------------------------------


def _request(remote="10.0.0.1", forwarded=None):
    headers = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **headers)


def test_without_a_trusted_proxy_only_the_connecting_address_counts(settings):
    settings.PARLEY_TRUSTED_PROXY_COUNT = 0
    assert client_ip_address(_request(forwarded="203.0.113.9")) == "10.0.0.1"


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (1, "192.0.2.7", "192.0.2.7"),
        (1, "203.0.113.9, 192.0.2.7", "192.0.2.7"),
        (2, "203.0.113.9, 192.0.2.7, 198.51.100.1", "192.0.2.7"),
        (2, "192.0.2.7", "10.0.0.1"),  # fewer hops than proxies: the header proves nothing
        (1, "not-an-address", "10.0.0.1"),
        (1, "", "10.0.0.1"),
    ],
)
def test_behind_trusted_proxies_the_client_is_counted_from_the_right(settings, proxies, forwarded, expected):
    settings.PARLEY_TRUSTED_PROXY_COUNT = proxies
    assert client_ip_address(_request(forwarded=forwarded)) == expected


# --- password spraying: failures per address, across accounts --------------------------------


@pytest.fixture
def thirty_members(django_user_model):
    return [django_user_model.objects.create_user(f"member{index}", password=PASSWORD) for index in range(30)]


@pytest.fixture
def address_limit(settings):
    settings.PARLEY_LOGIN_ADDRESS_FAILURE_LIMIT = 10
    return 10


def _spray(client, url, **headers):
    """One wrong guess against each of the thirty members, as a password sprayer does."""
    return [_attempt(client, url, f"member{index}", "wrong", **headers).status_code for index in range(30)]


@pytest.mark.parametrize("url", LOGIN_PAGES)
def test_one_guess_at_each_of_thirty_accounts_from_one_address_is_refused_after_the_limit(
    client, thirty_members, address_limit, url
):
    assert _spray(client, url) == [200] * (address_limit - 1) + [429] * (30 - address_limit + 1)


def test_guesses_on_the_app_and_admin_sign_in_count_together(client, thirty_members, address_limit):
    for index in range(address_limit - 1):
        page = "/accounts/login/" if index % 2 else "/admin/login/"
        assert _attempt(client, page, f"member{index}", "wrong").status_code == 200
    assert _attempt(client, "/admin/login/", "member29", "wrong").status_code == 429


@pytest.mark.parametrize("url", LOGIN_PAGES)
def test_the_right_password_is_refused_while_the_address_is_blocked_with_a_clear_page(
    client, alice, thirty_members, address_limit, url
):
    _spray(client, url)
    response = _attempt(client, url, "alice", PASSWORD)
    assert response.status_code == 429
    assert not _signed_in(client)
    body = response.content.decode()
    assert "Too many failed sign-ins from your network" in body
    assert "paused after 10 failed attempts" in body
    assert "Wait 15 minutes" in body


def test_another_address_is_not_blocked_by_a_sprayer(client, alice, thirty_members, address_limit):
    _spray(client, "/accounts/login/")
    elsewhere = Client(REMOTE_ADDR="192.0.2.50")
    assert _attempt(elsewhere, "/accounts/login/", "alice", PASSWORD).status_code == 302
    assert _attempt(Client(REMOTE_ADDR="192.0.2.51"), "/admin/login/", "member3", "wrong").status_code == 200


def test_a_spoofed_forwarded_for_header_does_not_give_a_sprayer_a_fresh_address(client, thirty_members, address_limit):
    answers = [
        _attempt(client, "/accounts/login/", f"member{index}", "wrong", x_forwarded_for=f"203.0.113.{index}")
        for index in range(address_limit)
    ]
    assert answers[-1].status_code == 429


def test_behind_a_trusted_proxy_the_sprayers_own_address_is_counted(
    client, alice, thirty_members, address_limit, settings
):
    settings.PARLEY_TRUSTED_PROXY_COUNT = 1
    answers = [
        _attempt(client, "/accounts/login/", f"member{index}", "wrong", x_forwarded_for=f"1.2.3.{index}, 192.0.2.10")
        for index in range(address_limit)
    ]
    assert answers[-1].status_code == 429
    # Another person behind the same proxy, at another address, signs in.
    other = _attempt(client, "/accounts/login/", "alice", PASSWORD, x_forwarded_for="192.0.2.99")
    assert other.status_code == 302


def test_the_address_limit_is_off_at_zero(client, thirty_members, settings):
    settings.PARLEY_LOGIN_ADDRESS_FAILURE_LIMIT = 0
    assert _spray(client, "/accounts/login/") == [200] * 30

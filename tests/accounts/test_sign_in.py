"""Sign in, sign out and password change through Parley's own pages."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-new-and-longer-passphrase-42"


def test_the_sign_in_page_has_labelled_fields(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    body = response.content.decode()
    assert '<label for="id_username">' in body
    assert '<label for="id_password">' in body
    assert 'type="password"' in body


def test_it_signs_a_member_in_and_sends_them_to_the_chat(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    assert client.get(reverse("chat:home")).status_code == 200


def test_it_follows_next_after_sign_in(client, alice):
    response = client.post(
        reverse("login"), {"username": "alice", "password": PASSWORD, "next": reverse("password_change")}
    )
    assert response["Location"] == reverse("password_change")


def test_it_refuses_a_wrong_password_with_a_message(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_signed_in_member_visiting_sign_in_goes_to_the_chat(alice_client):
    response = alice_client.get(reverse("login"))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")


def test_sign_out_needs_a_post(alice_client):
    assert alice_client.get(reverse("logout")).status_code == 405
    assert alice_client.get(reverse("chat:home")).status_code == 200


def test_sign_out_ends_the_session(alice_client):
    response = alice_client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    home = alice_client.get(reverse("chat:home"))
    assert home.status_code == 302
    assert home["Location"].startswith(reverse("login"))


def test_sign_out_without_a_csrf_token_is_refused():
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("logout"))
    assert response.status_code == 403


def test_the_password_change_page_needs_a_signed_in_member(client):
    response = client.get(reverse("password_change"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_password_change_keeps_this_session_signed_in(client, alice):
    client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    page = client.get(reverse("password_change"))
    assert page.status_code == 200
    response = client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("password_change_done")
    assert client.get(reverse("password_change_done")).status_code == 200
    assert client.get(reverse("chat:home")).status_code == 200


def test_after_a_password_change_only_the_new_password_signs_in(client, alice):
    client.force_login(alice)
    client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    other = Client()
    assert other.post(reverse("login"), {"username": "alice", "password": PASSWORD}).status_code == 200
    assert other.post(reverse("login"), {"username": "alice", "password": NEW_PASSWORD}).status_code == 302


def test_a_password_change_signs_out_the_members_other_sessions(client, alice):
    other_device = Client()
    other_device.force_login(alice)
    client.force_login(alice)
    client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    response = other_device.get(reverse("chat:home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_wrong_current_password_changes_nothing(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("password_change"),
        {"old_password": "not-it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)

"""Members never reach the admin; admins do. (Every admin URL is walked in
tests/config/test_route_inventory.py; these are the readable cases.)"""

import pytest
from django.test import AsyncClient
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_a_member_is_sent_to_the_admin_login_and_told_why(alice_client):
    response = alice_client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    page = alice_client.get(response["Location"])
    assert "not authorized to access this page" in page.content.decode()


def test_a_member_cannot_sign_in_to_the_admin(client, alice):
    response = client.post(reverse("admin:login"), {"username": "alice", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 200
    assert "staff account" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_member_cannot_read_the_member_list(alice_client, bob):
    response = alice_client.get(reverse("admin:accounts_user_changelist"))
    assert response.status_code == 302
    assert "bob" not in response.content.decode()


def test_an_admin_reaches_the_admin(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/admin/").status_code == 200
    assert client.get(reverse("admin:accounts_user_changelist")).status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_the_lockout_page_is_served_under_asgi_too(settings):
    # Under daphne, axes' middleware takes its async path, which calls the lockout view with
    # different arguments than the sync path does. (A real transaction: AsyncClient works on
    # another thread, which must see the committed user.)
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    settings.AXES_FAILURE_LIMIT = 2
    await sync_to_async(get_user_model().objects.create_user)("carol", password=PASSWORD)
    client = AsyncClient()
    for _ in range(2):
        await client.post(reverse("login"), {"username": "carol", "password": "wrong"})
    response = await client.post(reverse("login"), {"username": "carol", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()

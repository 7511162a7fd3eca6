"""A member's sessions: listed with device, address and last seen; signed out one by one or
all at once; an admin signs a member out everywhere; deactivation ends sessions and open
sockets at once (T23)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from accounts.models import MemberSession
from tests.chat.wsclient import Tab
from tests.conftest import PASSWORD

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)


def _browser(user_agent: str, address: str) -> Client:
    return Client(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=address)


def _sign_in(client: Client, username: str = "alice") -> Client:
    response = client.post(reverse("login"), {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    return client


def _signed_in(client: Client) -> bool:
    return client.get(reverse("chat:home")).status_code == 200


@pytest.fixture
def laptop(alice):
    return _sign_in(_browser(FIREFOX, "192.0.2.10"))


@pytest.fixture
def phone(alice):
    return _sign_in(_browser(IPHONE, "198.51.100.7"))


@pytest.mark.django_db
def test_the_sessions_page_lists_each_browser_with_device_and_address(laptop, phone):
    page = laptop.get(reverse("member_sessions")).content.decode()
    assert "Firefox · Linux" in page
    assert "Safari · iOS" in page
    assert "192.0.2.10" in page and "198.51.100.7" in page
    assert page.count("(this browser)") == 1


@pytest.mark.django_db
def test_a_member_signs_out_another_of_their_sessions(laptop, phone, alice):
    phone_session = MemberSession.objects.get(session_key=phone.session.session_key)
    laptop.post(reverse("member_session_end", args=[phone_session.pk]))
    assert not _signed_in(phone)
    assert _signed_in(laptop)
    assert "Safari · iOS" not in laptop.get(reverse("member_sessions")).content.decode()


@pytest.mark.django_db
def test_a_member_cannot_end_someone_elses_session(laptop, bob):
    bobs = _sign_in(_browser(FIREFOX, "203.0.113.5"), "bob")
    bobs_session = MemberSession.objects.get(user=bob)
    response = laptop.post(reverse("member_session_end", args=[bobs_session.pk]))
    assert response.status_code == 404
    assert _signed_in(bobs)


@pytest.mark.django_db
def test_signing_out_all_other_sessions_keeps_this_one(laptop, phone, alice):
    forced = Client()
    forced.force_login(alice)  # a session that was never recorded ends too
    laptop.post(reverse("member_sessions_end_others"))
    assert _signed_in(laptop)
    assert not _signed_in(phone)
    assert not _signed_in(forced)


@pytest.mark.django_db
def test_signing_out_removes_the_session_from_the_list(laptop, phone):
    phone.post(reverse("logout"))
    assert "Safari · iOS" not in laptop.get(reverse("member_sessions")).content.decode()


@pytest.mark.django_db
def test_an_admin_signs_a_member_out_everywhere(laptop, phone, alice, admin_user):
    console = Client()
    console.force_login(admin_user)
    response = console.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "sign_out_everywhere", "_selected_action": [alice.pk]},
        follow=True,
    )
    assert "1 member signed out everywhere" in response.content.decode()
    assert not _signed_in(laptop)
    assert not _signed_in(phone)
    assert console.get(reverse("admin:index")).status_code == 200


@pytest.mark.django_db
def test_deactivating_a_member_in_the_admin_ends_their_sessions(laptop, alice, admin_user):
    alice.is_active = False
    alice.save()
    assert not _signed_in(laptop)
    assert not MemberSession.objects.filter(user=alice).exists()


@pytest.mark.django_db(transaction=True)
async def test_deactivation_closes_open_sockets_at_once(alice):
    tab = await Tab.open(alice)
    assert tab.connected

    def deactivate():
        alice.is_active = False
        alice.save()

    await database_sync_to_async(deactivate)()
    # Pushed to the socket; nothing was sent on it, and its periodic check is 30 s away.
    assert (await tab.until_type("error", timeout=5))["code"] == "session_ended"
    assert (await tab.ws.receive_output(timeout=2))["type"] == "websocket.close"


@pytest.mark.django_db(transaction=True)
async def test_ending_a_session_closes_its_open_sockets_at_once(alice):
    laptop = await database_sync_to_async(lambda: _sign_in(_browser(FIREFOX, "192.0.2.10")))()
    phone = await database_sync_to_async(lambda: _sign_in(_browser(IPHONE, "198.51.100.7")))()
    phone_tab = await Tab.open(cookie=phone.cookies["sessionid"].value)
    laptop_tab = await Tab.open(cookie=laptop.cookies["sessionid"].value)

    def end_phone():
        row = MemberSession.objects.get(session_key=phone.cookies["sessionid"].value)
        laptop.post(reverse("member_session_end", args=[row.pk]))

    await database_sync_to_async(end_phone)()
    assert (await phone_tab.until_type("error", timeout=5))["code"] == "session_ended"
    await laptop_tab.send({"type": "ping"})
    assert (await laptop_tab.until_type("pong"))["type"] == "pong"
    await laptop_tab.ws.disconnect()

"""Security headers on the sign-in page, the admin login and the chat page (docs/security.md T18)."""

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


@pytest.fixture
def pages(client, alice):
    member = type(client)()
    member.force_login(alice)
    return {
        "sign-in": client.get(reverse("login")),
        "admin login": client.get(reverse("admin:login")),
        "chat": member.get(reverse("chat:home")),
    }


def test_every_page_has_a_strict_content_security_policy(pages):
    for name, response in pages.items():
        assert response.status_code == 200, name
        policy = _policy(response)
        assert "script-src" in policy or "default-src" in policy, name
        scripts = policy.get("script-src", policy.get("default-src"))
        assert "'unsafe-inline'" not in scripts, name
        assert "'unsafe-eval'" not in scripts, name
        assert policy["frame-ancestors"] == ["'none'"], name
        assert policy["object-src"] == ["'none'"], name
        assert not any(source.startswith(("http:", "https:", "*")) for source in scripts), name


def test_every_page_refuses_framing_and_sniffing(pages):
    for name, response in pages.items():
        assert response["X-Frame-Options"] == "DENY", name
        assert response["X-Content-Type-Options"] == "nosniff", name
        assert response["Referrer-Policy"] == "same-origin", name
        assert response["Cross-Origin-Opener-Policy"] == "same-origin", name


@pytest.mark.parametrize("url", ["/accounts/login/", "/accounts/password/", "/accounts/signup/"])
def test_the_account_pages_have_no_inline_script(alice_client, url):
    body = alice_client.get(url, follow=True).content.decode()
    for tag in re.findall(r"<script\b[^>]*>", body):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", body), "inline event handler"


def test_a_signed_in_members_pages_are_never_stored_by_a_shared_cache(pages):
    assert "no-store" in pages["chat"]["Cache-Control"]
    assert "private" in pages["chat"]["Cache-Control"]

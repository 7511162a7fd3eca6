"""Single sign-on providers in the admin: the secret is stored encrypted and never shown, the
redirect URI to register is (T11, T50)."""

import pytest
from django.urls import reverse

from accounts.models import OIDCProvider

pytestmark = pytest.mark.django_db

SECRET = "idp-client-secret-0123456789"


@pytest.fixture
def console(client, admin_user):
    client.force_login(admin_user)
    return client


def _form(**changes):
    data = {
        "label": "Acme SSO",
        "slug": "acme",
        "enabled": "on",
        "issuer": "https://login.acme.test/realms/staff",
        "client_id": "parley",
        "client_secret": SECRET,
        "scopes": "openid email profile",
        "allowed_domains": "acme.test",
        "groups_claim": "groups",
        "group_mapping": "",
        "admin_values": "",
    }
    data.update(changes)
    return data


def test_an_admin_adds_a_provider_and_sees_the_redirect_uri_but_never_the_secret(console):
    response = console.post(reverse("admin:accounts_oidcprovider_add"), _form())
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = OIDCProvider.objects.get()
    assert provider.client_secret == SECRET
    assert SECRET not in provider.client_secret_encrypted
    page = console.get(reverse("admin:accounts_oidcprovider_change", args=[provider.pk])).content.decode()
    assert "http://testserver/accounts/oidc/acme/callback/" in page
    assert SECRET not in page
    listing = console.get(reverse("admin:accounts_oidcprovider_changelist")).content.decode()
    assert "http://testserver/accounts/oidc/acme/callback/" in listing
    assert SECRET not in listing


def test_an_empty_secret_keeps_the_stored_one(console):
    console.post(reverse("admin:accounts_oidcprovider_add"), _form())
    provider = OIDCProvider.objects.get()
    response = console.post(
        reverse("admin:accounts_oidcprovider_change", args=[provider.pk]), _form(client_secret="", label="Acme")
    )
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.label == "Acme" and provider.client_secret == SECRET


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scopes": "email profile"}, "must include “openid”"),
        ({"slug": "sso"}, "kept for the provider set in the environment"),
        ({"client_secret": ""}, "Enter the client secret"),
        ({"group_mapping": "engineering"}, "claim value = Parley group"),
    ],
)
def test_a_provider_with_a_mistake_is_refused_with_a_reason(console, changes, message):
    response = console.post(reverse("admin:accounts_oidcprovider_add"), _form(**changes))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not OIDCProvider.objects.exists()


def test_the_provider_from_the_environment_is_named_with_its_redirect_uri(console, settings):
    settings.PARLEY_OIDC_ISSUER = "https://corp.example.test"
    settings.PARLEY_OIDC_CLIENT_ID = "parley"
    settings.PARLEY_OIDC_CLIENT_SECRET = SECRET
    settings.PARLEY_OIDC_NAME = "Corp Login"
    page = console.get(reverse("admin:accounts_oidcprovider_changelist")).content.decode()
    assert "Corp Login" in page
    assert "http://testserver/accounts/oidc/sso/callback/" in page
    assert SECRET not in page


def test_the_admin_sign_in_page_offers_each_provider(client):
    provider = OIDCProvider(slug="acme", label="Acme SSO", issuer="https://login.acme.test", client_id="parley")
    provider.client_secret = SECRET
    provider.save()
    page = client.get("/admin/login/?next=/admin/").content.decode()
    assert "Sign in with Acme SSO" in page
    assert 'href="/accounts/oidc/acme/start/?next=/admin/"' in page
    assert 'name="password"' in page


def test_an_admin_sees_and_unlinks_a_members_single_sign_on_identity(console, alice):
    from accounts.models import OIDCIdentity

    identity = OIDCIdentity.objects.create(
        user=alice, issuer="https://login.acme.test", subject="alice-at-acme", provider_slug="acme"
    )
    page = console.get(reverse("admin:accounts_user_change", args=[alice.pk])).content.decode()
    assert "alice-at-acme" in page and "https://login.acme.test" in page
    response = console.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "unlink_identities", "_selected_action": [alice.pk]},
        follow=True,
    )
    assert "1 identity unlinked" in response.content.decode()
    assert not OIDCIdentity.objects.filter(pk=identity.pk).exists()

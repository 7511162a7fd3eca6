"""The identity provider the single sign-on tests sign in at (tests/accounts/idp.py)."""

import pytest

from tests.accounts.idp import CLIENT_ID, CLIENT_SECRET, start_idp, stop_idp

TESTSERVER = "http://testserver"


@pytest.fixture(scope="session")
def idp():
    server = start_idp(
        [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [
                    f"{TESTSERVER}/accounts/oidc/acme/callback/",
                    f"{TESTSERVER}/accounts/oidc/sso/callback/",
                ],
                "post_logout_redirect_uris": [f"{TESTSERVER}/accounts/login/"],
            }
        ]
    )
    yield server
    stop_idp(server)


@pytest.fixture
def honest_idp(idp):
    idp.tamper("none")
    yield idp
    idp.tamper("none")


@pytest.fixture
def acme(db, honest_idp):
    """Acme's identity provider, set up in the admin: creates members from acme.test, maps groups."""
    from accounts.models import OIDCProvider

    provider = OIDCProvider(
        slug="acme",
        label="Acme SSO",
        issuer=honest_idp.issuer,
        client_id=CLIENT_ID,
        scopes="openid email profile groups",
        allowed_domains="acme.test",
        create_members=True,
        groups_claim="groups",
    )
    provider.client_secret = CLIENT_SECRET
    provider.save()
    return provider

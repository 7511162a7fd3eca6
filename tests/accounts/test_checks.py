"""Start-up checks name a half-configured single sign-on provider from the environment."""

from accounts.checks import oidc_environment_check


def test_no_provider_in_the_environment_is_fine(settings):
    settings.PARLEY_OIDC_ISSUER = ""
    assert oidc_environment_check(None) == []


def test_an_issuer_without_client_credentials_is_an_error(settings):
    settings.PARLEY_OIDC_ISSUER = "https://login.acme.test"
    settings.PARLEY_OIDC_CLIENT_ID = "parley"
    settings.PARLEY_OIDC_CLIENT_SECRET = ""
    [error] = oidc_environment_check(None)
    assert error.id == "parley.E002"
    assert "PARLEY_OIDC_CLIENT_SECRET is not" in error.msg


def test_a_plain_http_issuer_is_refused_in_production(settings):
    settings.PARLEY_OIDC_ISSUER = "http://login.acme.test"
    settings.PARLEY_OIDC_CLIENT_ID = "parley"
    settings.PARLEY_OIDC_CLIENT_SECRET = "s"
    settings.PRODUCTION = True
    assert [e.id for e in oidc_environment_check(None)] == ["parley.E003"]
    settings.PRODUCTION = False
    assert oidc_environment_check(None) == []

"""Single sign-on through OpenID Connect against a real provider (oidc-provider under node):
the code flow with PKCE, state and nonce, and every falsified answer refused with a clear
message (T50). The browser walk-through is in test_sign_in_browser.py."""

from __future__ import annotations

import html
import urllib.parse

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from accounts.models import OIDCIdentity, User
from chat.models import ChatModel
from tests.accounts.conftest import TESTSERVER
from tests.accounts.idp import CLIENT_ID, CLIENT_SECRET

pytestmark = pytest.mark.django_db


def _start(client: Client, slug: str = "acme", next_url: str | None = None):
    response = client.get(reverse("oidc_start", args=[slug]), {"next": next_url} if next_url else {})
    assert response.status_code == 302, response.content[:500]
    return response["Location"]


def _provider_answer(client: Client, idp, login: str, slug: str = "acme", next_url: str | None = None) -> str:
    """The URL the provider sends the browser back to after ``login`` signs in there."""
    return idp.sign_in_at_provider(_start(client, slug, next_url), login, TESTSERVER)


def _sign_in(client: Client, idp, login: str, slug: str = "acme", next_url: str | None = None):
    return client.get(_provider_answer(client, idp, login, slug, next_url))


def _signed_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).username if user_id else None


def _refusal(response) -> tuple[str, str]:
    body = response.content.decode()
    code = body.split('data-code="', 1)[1].split('"', 1)[0] if 'data-code="' in body else ""
    return code, body


def _with_param(url: str, **changes) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(changes)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _carol(idp, **claims):
    defaults = {"email": "carol@acme.test", "email_verified": True, "name": "Carol", "groups": []}
    idp.person("carol", **{**defaults, **claims})


# --- the sign-in page ------------------------------------------------------------------------


def test_the_sign_in_page_has_a_button_per_provider_and_the_redirect_uris(client, acme, settings, idp):
    settings.PARLEY_OIDC_ISSUER = idp.issuer
    settings.PARLEY_OIDC_CLIENT_ID = CLIENT_ID
    settings.PARLEY_OIDC_NAME = "Corp Login"
    body = client.get(reverse("login")).content.decode()
    assert "Sign in with Acme SSO" in body
    assert "Sign in with Corp Login" in body
    assert f"{TESTSERVER}/accounts/oidc/acme/callback/" in body
    assert f"{TESTSERVER}/accounts/oidc/sso/callback/" in body
    assert CLIENT_SECRET not in body


def test_the_client_secret_is_stored_encrypted(acme):
    assert CLIENT_SECRET not in acme.client_secret_encrypted
    assert acme.client_secret == CLIENT_SECRET


# --- the code flow ---------------------------------------------------------------------------


def test_the_provider_is_asked_for_a_code_with_pkce_state_and_nonce(client, acme):
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(_start(client)).query))
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) >= 43
    assert query["state"] and query["nonce"]
    assert query["redirect_uri"] == f"{TESTSERVER}/accounts/oidc/acme/callback/"


def test_a_first_sign_in_creates_a_member_from_a_verified_email(client, acme, honest_idp):
    _carol(honest_idp)
    response = _sign_in(client, honest_idp, "carol")
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    carol = User.objects.get(email="carol@acme.test")
    assert _signed_in_as(client) == carol.username
    assert not carol.has_usable_password()
    assert not carol.is_staff and not carol.is_superuser
    assert OIDCIdentity.objects.get(user=carol).subject == "carol"


def test_a_sign_in_returns_to_the_page_that_asked_for_it(client, acme, honest_idp):
    _carol(honest_idp)
    response = _sign_in(client, honest_idp, "carol", next_url=reverse("chat:usage"))
    assert response["Location"] == reverse("chat:usage")


def test_a_first_sign_in_links_the_member_with_the_same_verified_email(client, acme, honest_idp, alice):
    alice.email = "alice@acme.test"
    alice.save()
    honest_idp.person("alice-at-acme", email="ALICE@acme.test", email_verified=True)
    _sign_in(client, honest_idp, "alice-at-acme")
    assert _signed_in_as(client) == "alice"
    assert User.objects.filter(email__iexact="alice@acme.test").count() == 1
    # Later sign-ins follow the provider's subject, even when the email there changes.
    honest_idp.person("alice-at-acme", email="alice.smith@acme.test", email_verified=True)
    other = Client()
    _sign_in(other, honest_idp, "alice-at-acme")
    assert _signed_in_as(other) == "alice"


def test_an_unverified_email_is_refused(client, acme, honest_idp, alice):
    alice.email = "alice@acme.test"
    alice.save()
    honest_idp.person("mallory", email="alice@acme.test", email_verified=False)
    response = _sign_in(client, honest_idp, "mallory")
    code, body = _refusal(response)
    assert response.status_code == 403
    assert code == "oidc_email_unverified"
    assert "does not confirm that your email address is verified" in body
    assert _signed_in_as(client) is None
    assert not OIDCIdentity.objects.exists()


def test_a_disallowed_email_domain_is_refused(client, acme, honest_idp):
    honest_idp.person("dave", email="dave@elsewhere.test", email_verified=True)
    response = _sign_in(client, honest_idp, "dave")
    code, body = _refusal(response)
    assert code == "oidc_domain_not_allowed"
    assert "“elsewhere.test” may not sign in here" in body
    assert _signed_in_as(client) is None
    assert not User.objects.filter(email="dave@elsewhere.test").exists()


def test_a_provider_that_may_not_create_members_refuses_strangers(client, acme, honest_idp):
    acme.create_members = False
    acme.save()
    _carol(honest_idp)
    code, body = _refusal(_sign_in(client, honest_idp, "carol"))
    assert code == "oidc_no_account"
    assert "There is no Parley account for carol@acme.test" in body
    assert not User.objects.filter(email="carol@acme.test").exists()


def test_a_deactivated_member_cannot_sign_in(client, acme, honest_idp, alice):
    alice.email = "alice@acme.test"
    alice.is_active = False
    alice.save()
    honest_idp.person("alice", email="alice@acme.test", email_verified=True)
    code, _ = _refusal(_sign_in(client, honest_idp, "alice"))
    assert code == "account_disabled"
    assert _signed_in_as(client) is None


# --- falsified answers -----------------------------------------------------------------------


def test_a_tampered_state_is_refused(client, acme, honest_idp):
    _carol(honest_idp)
    answer = _provider_answer(client, honest_idp, "carol")
    response = client.get(_with_param(answer, state="forged-state-value"))
    code, body = _refusal(response)
    assert response.status_code == 400
    assert code == "oidc_state_invalid"
    assert "does not belong to a sign-in started in this browser" in body
    assert _signed_in_as(client) is None


def test_an_answer_is_refused_in_another_browser(client, acme, honest_idp):
    # Login CSRF: an attacker's own code and state, planted in the victim's browser.
    _carol(honest_idp)
    answer = _provider_answer(client, honest_idp, "carol")
    victim = Client()
    code, _ = _refusal(victim.get(answer))
    assert code == "oidc_state_invalid"
    assert _signed_in_as(victim) is None


def test_a_replayed_answer_is_refused(client, acme, honest_idp):
    _carol(honest_idp)
    answer = _provider_answer(client, honest_idp, "carol")
    assert client.get(answer).status_code == 302
    client.post(reverse("logout"))
    code, _ = _refusal(client.get(answer))
    assert code == "oidc_state_invalid"
    assert _signed_in_as(client) is None


def test_a_replayed_code_is_refused_by_the_provider(client, acme, honest_idp):
    _carol(honest_idp)
    first = _provider_answer(client, honest_idp, "carol")
    assert client.get(first).status_code == 302
    client.post(reverse("logout"))
    # A new sign-in started in this browser (so its state is valid), answered with the old code.
    second = _provider_answer(client, honest_idp, "carol")
    old_code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(first).query))["code"]
    response = client.get(_with_param(second, code=old_code))
    code, body = _refusal(response)
    assert code == "oidc_code_refused"
    assert "refused to confirm this sign-in" in body
    assert _signed_in_as(client) is None


def test_an_answer_naming_another_issuer_is_refused(client, acme, honest_idp):
    _carol(honest_idp)
    answer = _provider_answer(client, honest_idp, "carol")
    code, _ = _refusal(client.get(_with_param(answer, iss="http://127.0.0.1:1/evil")))
    assert code == "oidc_issuer_mismatch"
    assert _signed_in_as(client) is None


def test_an_answer_without_the_issuer_the_provider_promised_is_refused(client, acme, honest_idp):
    _carol(honest_idp)
    answer = _provider_answer(client, honest_idp, "carol")
    parts = urllib.parse.urlsplit(answer)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "iss"]
    code, _ = _refusal(client.get(urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))))
    assert code == "oidc_issuer_mismatch"
    assert _signed_in_as(client) is None


@pytest.mark.parametrize(
    ("mode", "expected_code", "message"),
    [
        ("expired", "oidc_token_expired", "The identity token has expired"),
        ("bad_signature", "oidc_token_signature", "is not signed by your identity provider"),
        ("wrong_audience", "oidc_token_audience", "was issued to another application"),
        ("wrong_nonce", "oidc_token_nonce", "belongs to another sign-in attempt"),
        ("wrong_issuer", "oidc_token_issuer", "comes from another issuer"),
    ],
)
def test_a_falsified_id_token_is_refused(client, acme, honest_idp, mode, expected_code, message):
    _carol(honest_idp)
    honest_idp.tamper(mode)
    response = _sign_in(client, honest_idp, "carol")
    code, body = _refusal(response)
    assert response.status_code == 400
    assert code == expected_code
    assert message in body
    assert _signed_in_as(client) is None
    assert not User.objects.filter(email="carol@acme.test").exists()


def test_an_honest_token_after_a_falsified_one_signs_in(client, acme, honest_idp):
    # Guards the test above: the refusals come from the falsification, not the set-up.
    _carol(honest_idp)
    honest_idp.tamper("wrong_nonce")
    _sign_in(client, honest_idp, "carol")
    honest_idp.tamper("none")
    _sign_in(client, honest_idp, "carol")
    assert _signed_in_as(client) is not None


def test_failed_answers_are_throttled_per_address(client, acme, honest_idp, settings):
    settings.AXES_FAILURE_LIMIT = 3
    _carol(honest_idp)
    for _ in range(3):
        answer = _provider_answer(client, honest_idp, "carol")
        client.get(_with_param(answer, state="guess"))
    # Locked: even a genuine answer from this address is refused for now.
    response = _sign_in(client, honest_idp, "carol")
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert _signed_in_as(client) is None


# --- groups and admins -----------------------------------------------------------------------


@pytest.fixture
def engineering_model(upstream_model):
    """A model only the "engineering" group may use."""
    group = Group.objects.create(name="engineering")
    model = ChatModel.objects.create(provider=upstream_model.provider, model_id="gpt-4o", display_name="GPT-4o")
    model.groups.add(group)
    return model


def _model_ids(client) -> set[str]:
    return {m["model_id"] for m in client.get(reverse("chat:api_models")).json()["models"]}


def test_the_groups_claim_grants_and_removes_a_model_at_each_sign_in(client, acme, honest_idp, engineering_model):
    _carol(honest_idp, groups=["engineering", "not-a-parley-group"])
    _sign_in(client, honest_idp, "carol")
    carol = User.objects.get(email="carol@acme.test")
    assert list(carol.groups.values_list("name", flat=True)) == ["engineering"]
    assert engineering_model.model_id in _model_ids(client)

    _carol(honest_idp, groups=[])
    client.post(reverse("logout"))
    _sign_in(client, honest_idp, "carol")
    assert not carol.groups.exists()
    assert engineering_model.model_id not in _model_ids(client)


def test_an_explicit_mapping_manages_only_the_mapped_groups(client, acme, honest_idp, engineering_model):
    acme.group_mapping = "eng-team = engineering"
    acme.save()
    Group.objects.create(name="beta-testers")
    _carol(honest_idp, groups=["eng-team"])
    _sign_in(client, honest_idp, "carol")
    carol = User.objects.get(email="carol@acme.test")
    carol.groups.add(Group.objects.get(name="beta-testers"))  # given by an admin in Parley
    _carol(honest_idp, groups=[])
    _sign_in(Client(), honest_idp, "carol")
    assert list(carol.groups.values_list("name", flat=True)) == ["beta-testers"]


def test_an_admin_claim_makes_an_admin_only_when_the_deployment_allows(client, acme, honest_idp, settings):
    acme.admin_values = "parley-admins"
    acme.save()
    _carol(honest_idp, groups=["parley-admins"])
    settings.PARLEY_OIDC_ALLOW_ADMIN_MAPPING = False
    _sign_in(client, honest_idp, "carol")
    carol = User.objects.get(email="carol@acme.test")
    assert not carol.is_staff

    settings.PARLEY_OIDC_ALLOW_ADMIN_MAPPING = True
    _sign_in(Client(), honest_idp, "carol")
    carol.refresh_from_db()
    assert carol.is_staff and carol.is_superuser

    _carol(honest_idp, groups=[])
    User.objects.create_superuser("root", password="x", email="root@example.test")
    _sign_in(Client(), honest_idp, "carol")
    carol.refresh_from_db()
    assert not carol.is_staff and not carol.is_superuser


# --- signing out, and the provider from the environment --------------------------------------


def test_signing_out_ends_the_session_and_the_providers_session(client, acme, honest_idp):
    _carol(honest_idp)
    _sign_in(client, honest_idp, "carol")
    response = client.post(reverse("logout"))
    assert _signed_in_as(client) is None
    assert response.status_code == 200
    body = response.content.decode()
    assert "You are signed out of Parley" in body
    url = html.unescape(body.split('<meta http-equiv="refresh" content="0;url=', 1)[1].split('"', 1)[0])
    assert f'href="{html.escape(url)}"' in body.replace("&#x27;", "'")
    end_session = urllib.parse.urlsplit(url)
    assert f"{end_session.scheme}://{end_session.netloc}{end_session.path}" == f"{honest_idp.issuer}/session/end"
    query = dict(urllib.parse.parse_qsl(end_session.query))
    assert query["post_logout_redirect_uri"] == f"{TESTSERVER}/accounts/login/"
    assert query["id_token_hint"].count(".") == 2


def test_a_password_sign_out_stays_in_parley(client, alice):
    client.force_login(alice)
    response = client.post(reverse("logout"))
    assert response["Location"] == reverse("login")
    assert _signed_in_as(client) is None


def test_the_provider_from_the_environment_signs_in(client, db, honest_idp, settings):
    settings.PARLEY_OIDC_ISSUER = honest_idp.issuer
    settings.PARLEY_OIDC_CLIENT_ID = CLIENT_ID
    settings.PARLEY_OIDC_CLIENT_SECRET = CLIENT_SECRET
    settings.PARLEY_OIDC_NAME = "Corp Login"
    settings.PARLEY_OIDC_ALLOWED_DOMAINS = ["corp.test"]
    settings.PARLEY_OIDC_GROUPS_CLAIM = "groups"
    settings.PARLEY_OIDC_SCOPES = "openid email groups"
    Group.objects.create(name="staff")
    honest_idp.person("erin", email="erin@corp.test", email_verified=True, groups=["staff"])
    response = _sign_in(client, honest_idp, "erin", slug="sso")
    assert response.status_code == 302
    erin = User.objects.get(email="erin@corp.test")
    assert _signed_in_as(client) == erin.username
    assert list(erin.groups.values_list("name", flat=True)) == ["staff"]
    honest_idp.person("frank", email="frank@acme.test", email_verified=True)
    code, _ = _refusal(_sign_in(Client(), honest_idp, "frank", slug="sso"))
    assert code == "oidc_domain_not_allowed"


def test_an_unknown_provider_is_a_clear_404(client, db):
    response = client.get(reverse("oidc_start", args=["nobody"]))
    assert response.status_code == 404
    assert _refusal(response)[0] == "oidc_unknown_provider"


def test_an_unreachable_provider_is_a_clear_error(client, db):
    from accounts.models import OIDCProvider

    provider = OIDCProvider(slug="down", label="Down", issuer="http://127.0.0.1:9/", client_id="x")
    provider.client_secret = "y"
    provider.save()
    response = client.get(reverse("oidc_start", args=["down"]))
    assert response.status_code == 502
    assert _refusal(response)[0] == "oidc_unavailable"


def test_a_provider_that_never_answers_is_a_clear_error_within_the_timeout(client, db, settings):
    import socket

    from accounts.models import OIDCProvider

    settings.PARLEY_OIDC_TIMEOUT = 0.5
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        provider = OIDCProvider(slug="silent", label="Silent", issuer=f"http://127.0.0.1:{port}", client_id="x")
        provider.client_secret = "y"
        provider.save()
        response = client.get(reverse("oidc_start", args=["silent"]))
    assert response.status_code == 502
    assert _refusal(response)[0] == "oidc_unavailable"


def test_a_secret_no_key_can_open_keeps_the_sign_in_page_up(client, acme, settings):
    from cryptography.fernet import Fernet

    settings.PARLEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the secret's key is gone
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert "Sign in with Acme SSO" in page.content.decode()
    response = client.get(reverse("oidc_start", args=["acme"]))
    assert response.status_code == 502
    assert _refusal(response)[0] == "oidc_unavailable"


def test_the_sessions_page_says_which_provider_signed_a_session_in(client, acme, honest_idp):
    _carol(honest_idp)
    _sign_in(client, honest_idp, "carol")
    assert "through Acme SSO" in client.get(reverse("member_sessions")).content.decode()

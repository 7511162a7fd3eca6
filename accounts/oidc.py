"""OpenID Connect: which providers people may sign in with, and the protocol with them.

The protocol is Authlib's (authorization code flow with PKCE S256, state and nonce kept in
the browser's session and used once, the ID token's signature checked against the provider's
published keys, and its issuer, audience, expiry and nonce checked). This module only builds
an Authlib client per provider, adds the checks Authlib leaves to the application (the
discovery document's issuer, RFC 9207's ``iss`` answer parameter, an ID token being present
at all) and turns every failure into one of the errors in accounts/errors.py (T50).

Providers come from two places: the admin (:class:`accounts.models.OIDCProvider`) and the
environment (``PARLEY_OIDC_*``, short name :data:`ENV_SLUG`).

Why Authlib: its client takes a provider's settings per call, so any number of providers an
admin adds while Parley runs need no restart and no global settings; mozilla-django-oidc reads
one provider from settings, and django-allauth brings its own account, sign-in and session
views and keeps client secrets in plain text in its own table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.urls import reverse

from accounts import errors
from accounts.models import OIDCProvider
from chat import crypto
from chat.crypto import KeyDecryptionError

logger = logging.getLogger(__name__)

ENV_SLUG = "sso"
METADATA_TTL = 3600  # seconds a provider's discovery document and keys are kept in the cache
LEEWAY = 60  # seconds of clock difference allowed on the ID token's times


@dataclass(frozen=True)
class ProviderConfig:
    slug: str
    label: str
    issuer: str
    client_id: str
    # The encrypted secret of an admin-configured provider, or the environment's plain one:
    # opened only when a sign-in needs it, so listing the buttons never decrypts anything.
    secret_encrypted: str = field(default="", repr=False)
    secret_plain: str = field(default="", repr=False)
    scopes: str = "openid email profile"
    allowed_domains: tuple[str, ...] = ()
    create_members: bool = False
    groups_claim: str = ""
    mapping: dict = field(default_factory=dict)
    admin_values: tuple[str, ...] = ()

    @property
    def client_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else self.secret_plain

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


def _from_environment() -> ProviderConfig | None:
    if not (settings.PARLEY_OIDC_ISSUER and settings.PARLEY_OIDC_CLIENT_ID):
        return None
    return ProviderConfig(
        slug=ENV_SLUG,
        label=settings.PARLEY_OIDC_NAME,
        issuer=settings.PARLEY_OIDC_ISSUER,
        client_id=settings.PARLEY_OIDC_CLIENT_ID,
        secret_plain=settings.PARLEY_OIDC_CLIENT_SECRET,
        scopes=settings.PARLEY_OIDC_SCOPES,
        allowed_domains=tuple(d.strip().lower().lstrip("@") for d in settings.PARLEY_OIDC_ALLOWED_DOMAINS if d.strip()),
        create_members=settings.PARLEY_OIDC_CREATE_MEMBERS,
        groups_claim=settings.PARLEY_OIDC_GROUPS_CLAIM,
        admin_values=tuple(settings.PARLEY_OIDC_ADMIN_VALUES),
    )


def _from_row(row: OIDCProvider) -> ProviderConfig:
    return ProviderConfig(
        slug=row.slug,
        label=row.label,
        issuer=row.issuer,
        client_id=row.client_id,
        secret_encrypted=row.client_secret_encrypted,
        scopes=row.scopes,
        allowed_domains=tuple(row.domain_list),
        create_members=row.create_members,
        groups_claim=row.groups_claim,
        mapping=row.mapping,
        admin_values=tuple(v.strip() for v in row.admin_values.replace(",", " ").split() if v.strip()),
    )


def providers() -> list[ProviderConfig]:
    """Every provider people can sign in with: the environment's first, then the admin's."""
    configs = [_from_environment()]
    configs += [_from_row(row) for row in OIDCProvider.objects.filter(enabled=True)]
    return [config for config in configs if config is not None]


def provider(slug: str) -> ProviderConfig:
    for config in providers():
        if config.slug == slug:
            return config
    raise errors.OIDCUnknownProvider()


def redirect_uri(request, slug: str) -> str:
    """The address the provider sends people back to; register it with the provider."""
    return request.build_absolute_uri(reverse("oidc_callback", kwargs={"slug": slug}))


# --- the Authlib client ------------------------------------------------------------------------


def _metadata_key(config: ProviderConfig) -> str:
    return f"parley:oidc:metadata:{config.discovery_url}"


def _client(config: ProviderConfig):
    """A fresh Authlib client for one request, with the provider's discovery document cached.

    Built per request because providers change in the admin while the server runs; Authlib's
    registry is meant for clients fixed at start-up.
    """
    try:
        secret = config.client_secret
    except KeyDecryptionError:
        logger.error("The client secret of sign-on provider %r cannot be decrypted; enter it again", config.slug)
        raise errors.OIDCUnavailable() from None
    # Authlib (and requests under it) is imported by the first sign-on, not at start-up: a
    # deployment without single sign-on never loads it (docs/performance.md, idle memory).
    from authlib.integrations.django_client import OAuth

    oauth = OAuth()
    cached = cache.get(_metadata_key(config)) or {}
    client = oauth.register(
        name=f"parley_{config.slug}",
        client_id=config.client_id,
        client_secret=secret,
        server_metadata_url=config.discovery_url,
        client_kwargs={
            "scope": config.scopes,
            "code_challenge_method": "S256",
            "default_timeout": settings.PARLEY_OIDC_TIMEOUT,
            "token_endpoint_auth_method": "client_secret_basic",
        },
        **cached,
    )
    if not cached:
        try:
            metadata = client.load_server_metadata()
        except (OSError, ValueError) as exc:  # requests' errors are OSErrors
            logger.warning("OpenID Connect discovery failed for %s: %s", config.issuer, exc)
            raise errors.OIDCUnavailable() from None
        # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was read
        # from, or one provider could speak for another.
        if str(metadata.get("issuer", "")).rstrip("/") != config.issuer.rstrip("/"):
            logger.warning("OpenID Connect discovery for %s names issuer %r", config.issuer, metadata.get("issuer"))
            raise errors.OIDCIssuerMismatch()
        cache.set(_metadata_key(config), dict(client.server_metadata), METADATA_TTL)
    return client


def authorize_redirect(request, config: ProviderConfig):
    """The redirect to the provider's sign-in page; state, nonce and the PKCE verifier are
    kept in this browser's session for the answer."""
    return _client(config).authorize_redirect(request, redirect_uri(request, config.slug))


def _token_error(exc: Exception) -> errors.SignInRefused:
    from joserfc import errors as jose_errors

    if isinstance(exc, jose_errors.BadSignatureError):
        return errors.OIDCTokenSignature()
    if isinstance(exc, jose_errors.ExpiredTokenError):
        return errors.OIDCTokenExpired()
    if isinstance(exc, jose_errors.ClaimError):
        claim = getattr(exc, "claim", "")
        return {
            "aud": errors.OIDCTokenAudience,
            "nonce": errors.OIDCTokenNonce,
            "iss": errors.OIDCTokenIssuer,
            "exp": errors.OIDCTokenExpired,
        }.get(claim, errors.OIDCTokenInvalid)()
    return errors.OIDCTokenInvalid()


def complete(request, config: ProviderConfig) -> tuple[dict, str]:
    """Check the provider's answer on the redirect URI; the verified ID token's claims and the
    raw ID token (kept for signing out at the provider)."""
    from authlib.integrations.base_client import MismatchingStateError, OAuthError
    from joserfc import errors as jose_errors

    client = _client(config)
    issuer = client.server_metadata["issuer"]
    # RFC 9207: an answer that names its issuer must name ours, and a provider that says it
    # names itself must have (mix-up attacks, RFC 9700 §4.4).
    answered = request.GET.get("iss")
    promised = client.server_metadata.get("authorization_response_iss_parameter_supported") is True
    if (answered is not None and answered != issuer) or (answered is None and promised):
        raise errors.OIDCIssuerMismatch()
    if request.GET.get("error"):
        reason = request.GET.get("error_description") or request.GET["error"]
        raise errors.OIDCDenied(errors.OIDCDenied.default_message % {"reason": reason[:200]})
    claims_options = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": config.client_id},
        "exp": {"essential": True},
        "nonce": {"essential": True},
    }
    try:
        token = client.authorize_access_token(request, claims_options=claims_options, leeway=LEEWAY)
    except MismatchingStateError:
        raise errors.OIDCStateInvalid() from None
    except OAuthError as exc:
        logger.info("OpenID Connect token exchange refused by %s: %s", config.issuer, exc.error)
        raise errors.OIDCCodeRefused() from None
    except OSError as exc:  # connection refused, timed out, TLS: requests' errors are OSErrors
        logger.warning("OpenID Connect token exchange with %s failed: %s", config.issuer, exc)
        raise errors.OIDCUnavailable() from None
    except jose_errors.JoseError as exc:
        logger.info("OpenID Connect ID token from %s refused: %r", config.issuer, exc)
        raise _token_error(exc) from None
    # Authlib checks an ID token only when one came back; a sign-in needs one.
    if not token.get("id_token") or not token.get("userinfo"):
        raise errors.OIDCTokenInvalid()
    claims = dict(token["userinfo"])
    missing = "email" not in claims or (config.groups_claim and config.groups_claim not in claims)
    if missing and client.server_metadata.get("userinfo_endpoint"):
        claims = _with_userinfo(client, token, claims)
    return claims, token["id_token"]


def _with_userinfo(client, token, claims: dict) -> dict:
    """Claims the ID token left out (some providers send the email only from userinfo)."""
    from authlib.integrations.base_client import OAuthError

    try:
        extra = dict(client.userinfo(token=token))
    except (OSError, OAuthError, ValueError) as exc:
        logger.warning("OpenID Connect userinfo failed: %s", exc)
        raise errors.OIDCUnavailable() from None
    if extra.get("sub") != claims.get("sub"):  # OpenID Connect Core §5.3.2
        raise errors.OIDCTokenInvalid()
    return {**extra, **claims}


def end_session_url(request, config: ProviderConfig, id_token: str) -> str | None:
    """Where to send someone who signs out, so the provider signs them out too (RP-initiated
    logout); None when the provider has no end-session endpoint."""
    try:
        client = _client(config)
    except errors.SignInRefused:
        return None
    if not client.server_metadata.get("end_session_endpoint"):
        return None
    return client.create_logout_url(
        post_logout_redirect_uri=request.build_absolute_uri(reverse("login")),
        id_token_hint=id_token,
        client_id=config.client_id,
    )["url"]

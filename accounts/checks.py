"""Start-up checks for account settings."""

from django.conf import settings
from django.core.checks import Error, Tags, register

from accounts.selectors import SIGNUP_MODES


@register(Tags.security)
def signup_mode_check(app_configs, **kwargs):
    mode = str(settings.PARLEY_SIGNUP_MODE).strip().lower()
    if mode in SIGNUP_MODES:
        return []
    return [
        Error(
            f"PARLEY_SIGNUP_MODE is {settings.PARLEY_SIGNUP_MODE!r}; Parley treats it as 'closed'.",
            hint=f"Use one of: {', '.join(SIGNUP_MODES)}.",
            id="parley.E001",
        )
    ]


@register(Tags.security)
def oidc_environment_check(app_configs, **kwargs):
    """The single sign-on provider from the environment is complete, and over HTTPS in production."""
    if not settings.PARLEY_OIDC_ISSUER:
        return []
    problems = []
    required = {
        "PARLEY_OIDC_CLIENT_ID": settings.PARLEY_OIDC_CLIENT_ID,
        "PARLEY_OIDC_CLIENT_SECRET": settings.PARLEY_OIDC_CLIENT_SECRET,
    }
    missing = [name for name, value in required.items() if not value]
    if missing:
        problems.append(
            Error(
                f"PARLEY_OIDC_ISSUER is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not.",
                hint="Copy them from the client you registered at the identity provider (docs/deployment.md).",
                id="parley.E002",
            )
        )
    if settings.PRODUCTION and not settings.PARLEY_OIDC_ISSUER.startswith("https://"):
        problems.append(
            Error(
                "PARLEY_OIDC_ISSUER must be an https:// URL in production.",
                hint="Sign-in answers and keys must not travel in the clear.",
                id="parley.E003",
            )
        )
    return problems

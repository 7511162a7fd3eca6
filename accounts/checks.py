"""Start-up checks for account settings."""

from django.conf import settings
from django.core.checks import Error, Tags, register

from accounts.selectors import SIGNUP_MODES


@register(Tags.security)
def signup_mode_check(app_configs, **kwargs):
    mode = str(getattr(settings, "PARLEY_SIGNUP_MODE", "closed")).strip().lower()
    if mode in SIGNUP_MODES:
        return []
    return [
        Error(
            f"PARLEY_SIGNUP_MODE is {settings.PARLEY_SIGNUP_MODE!r}; Parley treats it as 'closed'.",
            hint=f"Use one of: {', '.join(SIGNUP_MODES)}.",
            id="parley.E001",
        )
    ]

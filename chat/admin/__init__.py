"""Parley's operations console: the Django admin for providers, models, usage and moderation.

Django imports ``chat.admin`` at start-up (admin autodiscovery); importing the submodules here
registers their ModelAdmins. Members and invites live in ``accounts/admin.py``.
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from chat.admin import (  # noqa: F401  (registers)
    api,
    collections,
    conversations,
    finetuning,
    library,
    moderation,
    providers,
    usage,
)

admin.site.site_header = _("Parley administration")
admin.site.site_title = _("Parley administration")
admin.site.index_title = _("Operations console")

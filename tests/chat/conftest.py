"""Fixtures of the chat tests: the real llama.cpp server with the bundled SmolLM2 model.

``local_llama_server`` (session) starts llama.cpp's server (chat/local/llama_server.py) once on a free
loopback port and yields its base URL (``http://127.0.0.1:PORT/v1``, no key needed);
``local_model`` registers it as the provider "Local" for a test with database access, the way
``manage.py serve`` does. Tests using them are marked ``local_model``: ``make test`` installs
the group first (requirements-local.txt), so there they run; elsewhere they are skipped,
except under CI, where a missing install is a failure.
"""

from __future__ import annotations

import os

import pytest

from chat.upstream import client as upstream_client


def _require_local_group():
    from chat.local import install
    from chat.local.provider import server_installed

    if server_installed() and install.bundled_model_path() is not None:
        return
    message = "the local model group is not installed: run `.venv/bin/python -m chat.local.install`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def local_llama(tmp_path_factory):
    """The running llama.cpp server (a chat.local.server.LocalServer)."""
    _require_local_group()
    from chat.local import gguf, install
    from chat.local.server import LocalServer, free_port

    server = LocalServer(
        model=gguf.model_info(install.bundled_model_path()),
        port=free_port(),
        log_path=tmp_path_factory.mktemp("llama") / "llama-server.log",
    )
    server.start()
    try:
        server.startup_seconds = server.wait_ready(timeout=120)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def local_llama_server(local_llama):
    """Base URL of the real llama.cpp server, e.g. ``http://127.0.0.1:41234/v1``."""
    return local_llama.base_url


@pytest.fixture
def local_model(db, local_llama):
    """The provider "Local" pointing at the real server, with SmolLM2 as the default model."""
    from chat.local.provider import local_provider_register
    from chat.local.server import context_window, max_output_tokens

    return local_provider_register(
        base_url=local_llama.base_url,
        api_key="",
        model=local_llama.model,
        context_window=context_window(local_llama.model),
        max_output_tokens=max_output_tokens(local_llama.model),
    )


@pytest.fixture
async def close_llm_clients():
    """The upstream client keeps pooled connections per event loop; each async test has a
    loop of its own, so its pools are closed with it."""
    yield
    await upstream_client.close_clients()


@pytest.fixture
def no_sleep(monkeypatch):
    """Retries back off without waiting."""

    async def skip(_seconds):
        return None

    monkeypatch.setattr(upstream_client, "_sleep", skip)

"""Fixtures of the chat tests: the real llama.cpp server with the bundled SmolLM2 model, and the media stores.

``local_llama_server`` (session) starts llama.cpp's server (chat/local/llama_server.py) once on a free
loopback port and yields its base URL (``http://127.0.0.1:PORT/v1``, no key needed);
``local_model`` registers it as the provider "Local" for a test with database access, the way
``manage.py serve`` does. Tests using them are marked ``local_model``: ``make test`` installs
the group first (requirements-local.txt), so there they run; elsewhere they are skipped,
except under CI, where a missing install is a failure.

``media_store`` runs a test twice, with ``STORAGES["media"]`` on a temporary data folder and on
a real S3-compatible server (``s3_server``: moto's server mode, started once per run).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chat.upstream import client as upstream_client


def _require_local_group():
    from chat.local import install
    from chat.local.provider import server_installed

    if server_installed() and install.bundled_model_path() is not None and install.embedding_model_path() is not None:
        return
    message = "the local model group is not installed: run `.venv/bin/python -m chat.local.install`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def local_llama(tmp_path_factory):
    """The running llama.cpp server (a chat.local.server.LocalServer), with SmolLM2 and the
    embedding model all-MiniLM-L6-v2, as ``manage.py serve`` starts it."""
    _require_local_group()
    from chat.local import gguf, install
    from chat.local.server import LocalServer, free_port

    server = LocalServer(
        model=gguf.model_info(install.bundled_model_path()),
        embedding=gguf.model_info(install.embedding_model_path()),
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
    """The provider "Local" pointing at the real server, with SmolLM2 as the default model and
    all-MiniLM-L6-v2 as its embedding model."""
    from chat.local.provider import local_provider_register
    from chat.local.server import context_window, max_output_tokens

    return local_provider_register(
        base_url=local_llama.base_url,
        api_key="",
        model=local_llama.model,
        context_window=context_window(local_llama.model),
        max_output_tokens=max_output_tokens(local_llama.model),
        embedding=local_llama.embedding,
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


# --- private media storage: the same tests on a folder and on a real S3-compatible server ---


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on a free loopback port (tests/s3server.py), once per test run."""
    from tests.s3server import S3Server

    server = S3Server(tmp_path_factory.mktemp("moto") / "moto_server.log").start()
    server.client().create_bucket(Bucket="parley-media")
    yield server
    server.stop()


class MediaStore:
    """What a test needs to know about the store under test: is a file there, what is stored."""

    def __init__(self, backend: str, *, root: Path | None = None, s3=None, prefix: str = ""):
        self.backend = backend
        self.root = root
        self.s3 = s3
        self.prefix = prefix

    def names(self) -> set[str]:
        """Every stored name, as the store spells it (relative to its folder or prefix)."""
        if self.backend == "filesystem":
            if not self.root.exists():
                return set()
            return {str(path.relative_to(self.root)) for path in self.root.rglob("*") if path.is_file()}
        listing = self.s3.client().list_objects_v2(Bucket="parley-media", Prefix=self.prefix + "/")
        return {item["Key"].removeprefix(self.prefix + "/") for item in listing.get("Contents", [])}

    def keys(self) -> set[str]:
        """Every object in the whole bucket, or every file under the test's folder."""
        if self.backend == "filesystem":
            return {str(path) for path in self.root.parent.rglob("*") if path.is_file()}
        listing = self.s3.client().list_objects_v2(Bucket="parley-media")
        return {item["Key"] for item in listing.get("Contents", [])}


@pytest.fixture(params=["filesystem", "s3"])
def media_store(request, settings, tmp_path):
    """STORAGES["media"] as config/settings.py builds it: a folder under a temporary data
    directory, or a bucket on the real S3-compatible server (a fresh prefix per test)."""
    import uuid

    from config.settings import media_storage
    from tests import s3server

    s3 = {
        "bucket": "",
        "endpoint_url": "",
        "region": "",
        "access_key_id": "",
        "secret_access_key": "",
        "addressing_style": "auto",
        "prefix": "",
        "verify": True,
    }
    root = tmp_path / "data" / "media"
    if request.param == "filesystem":
        store = MediaStore("filesystem", root=root)
    else:
        server = request.getfixturevalue("s3_server")
        prefix = f"test-{uuid.uuid4().hex}"
        s3.update(
            bucket="parley-media",
            endpoint_url=server.endpoint_url,
            region=s3server.REGION,
            access_key_id=s3server.ACCESS_KEY_ID,
            secret_access_key=s3server.SECRET_ACCESS_KEY,
            addressing_style="path",
            prefix=prefix,
        )
        store = MediaStore("s3", s3=server, prefix=prefix)
    settings.STORAGES = {**settings.STORAGES, "media": media_storage(request.param, root=root, s3=s3)}
    return store


@pytest.fixture
def capture(django_capture_on_commit_callbacks):
    """``with capture(execute=True):`` runs what a commit would run, at the end of the block."""
    return django_capture_on_commit_callbacks

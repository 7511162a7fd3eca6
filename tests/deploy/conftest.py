"""A team deployment on this machine, outside Docker: the same commands, settings and files.

PostgreSQL (a fresh database, created and dropped here) and Redis (a database index of its
own) are the machine's real servers. The fake upstream, two Parley workers started by
deploy/entrypoint.sh, and Debian's nginx with deploy/nginx.conf are real processes. The
workers run in production mode, as in the image; clients send ``X-Forwarded-Proto: https``
as nginx does behind TLS.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.deploy import nginx as nginx_proc
from tests.deploy.processes import BASE_DIR, ServerProcess, daphne, fake_upstream, run_manage
from tests.services_up import _answers

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
# Short on purpose: the idle-socket test waits a few of these, not minutes. Workers ping every
# second (PARLEY_WS_PING_INTERVAL), well inside it, as 20 s is inside compose's 120 s.
PROXY_TIMEOUT_SECONDS = 3
# Variables of the machine or of `make test` that must not leak into the deployment.
_CLEARED_PREFIXES = ("DJANGO_", "PARLEY_", "OPENAI_", "DATABASE_", "REDIS_")


def services_available() -> bool:
    return _answers(5432) and _answers(6379)


def _static_root(tmp: Path, env: dict[str, str]) -> Path:
    # `make test` runs collectstatic into data/staticfiles just before pytest; reuse it when
    # it is there (a fresh collect with compression takes a minute on a busy machine).
    collected = BASE_DIR / "data" / "staticfiles"
    if (collected / "staticfiles.json").exists():
        return collected
    target = tmp / "static"
    run_manage(["collectstatic", "--noinput", "-v", "0"], env={**env, "PARLEY_STATIC_ROOT": str(target)}, timeout=600)
    return target


class Deployment:
    """What the tests reach: the workers, the fake upstream, the database, the members."""

    def __init__(self, *, env, database_url, log_dir, stack: ExitStack):
        self.env = env
        self.database_url = database_url
        self.log_dir = log_dir
        self._stack = stack
        self.workers: list[ServerProcess] = []
        self.started: list[ServerProcess] = []  # every worker, the tests' own included
        self.upstream: ServerProcess | None = None
        self.sessions: dict[str, str] = {}
        self.password = ""
        self.static_dir: Path | None = None

    def start_worker(self, name: str, **extra_env: str) -> ServerProcess:
        worker = daphne(name, env=self.env, log_dir=self.log_dir, **extra_env)
        self._stack.callback(worker.stop)
        self.started.append(worker)
        return worker.start()

    def manage(self, *args: str) -> str:
        return run_manage(list(args), env=self.env)

    def query(self, sql: str, params=()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def upstream_requests(self) -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.upstream.port}/_fake/requests", timeout=10) as response:
            return [r for r in json.load(response) if r["path"].endswith("/chat/completions")]

    def logs(self) -> str:
        parts = [f"--- {p.name} ---\n{p.log_tail()}" for p in [self.upstream, *self.started] if p is not None]
        return "\n".join(parts)


@pytest.fixture(scope="session")
def deployment(tmp_path_factory):
    if not services_available():
        pytest.skip("PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are needed")
    import psycopg

    tmp = tmp_path_factory.mktemp("deploy")
    name = f"parley_mp_{secrets.token_hex(4)}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED_PREFIXES)}
    database_url = f"postgres://postgres@127.0.0.1:5432/{name}"
    env = {
        **base,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONUNBUFFERED": "1",
        "PARLEY_PRODUCTION": "true",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PARLEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": database_url,
        # A Redis database of its own: group names like user.1 must not meet another run's.
        "REDIS_URL": f"redis://127.0.0.1:6379/{secrets.choice(range(3, 16))}",
        "PARLEY_TRUSTED_PROXY_COUNT": "1",
        "PARLEY_DATA_DIR": str(tmp / "data"),
        "PARLEY_SAVE_INTERVAL": "0.5",
        "PARLEY_AUTO_TITLE": "false",
        "PARLEY_RATE_LIMIT_PER_MINUTE": "1000",
        "PARLEY_MAX_CONCURRENT_REPLIES": "20",
        "PARLEY_BACKGROUND_TASKS": "false",
        "PARLEY_WS_PING_INTERVAL": "1",
        "PARLEY_UPSTREAM_MAX_RETRIES": "0",
    }
    with ExitStack() as stack:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True)
        stack.callback(admin.close)
        admin.execute(f'CREATE DATABASE "{name}"')
        stack.callback(admin.execute, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        deployment = Deployment(env=env, database_url=database_url, log_dir=tmp, stack=stack)

        upstream = fake_upstream(env=base, log_dir=tmp)
        stack.callback(upstream.stop)
        deployment.upstream = upstream.start()

        # The deploy step the compose file runs once (deploy/entrypoint.sh setup), minus static
        # files, which are shared below.
        migrate = subprocess.Popen(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        static_dir = _static_root(tmp, env)
        output, _ = migrate.communicate(timeout=300)
        assert migrate.returncode == 0, output
        env["PARLEY_STATIC_ROOT"] = str(static_dir)
        deployment.static_dir = static_dir

        seeded = subprocess.run(
            [sys.executable, "-m", "tests.deploy.seed", "--base-url", f"http://127.0.0.1:{upstream.port}/v1"],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert seeded.returncode == 0, seeded.stderr
        data = json.loads(seeded.stdout.strip().splitlines()[-1])
        deployment.sessions = data["sessions"]
        deployment.password = data["password"]

        for worker_name in ("worker-a", "worker-b"):
            deployment.workers.append(deployment.start_worker(worker_name))
        try:
            yield deployment
        finally:
            # Give the log of every process to a failing run before they are stopped.
            (tmp / "summary.log").write_text(deployment.logs())


@pytest.fixture(scope="session")
def proxy(deployment, tmp_path_factory):
    """nginx with the shipped configuration in front of both workers."""
    if nginx_proc.nginx_binary() is None:
        pytest.skip("nginx is not installed (.ci/run installs Debian's nginx)")
    server = nginx_proc.nginx(
        "nginx",
        upstream_ports=[w.port for w in deployment.workers],
        static_dir=deployment.static_dir,
        proxy_timeout=f"{PROXY_TIMEOUT_SECONDS}s",
        work_dir=tmp_path_factory.mktemp("nginx"),
    )
    server.start(timeout=20)
    yield server
    server.stop()


def wait_for(predicate, *, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout}s")
        time.sleep(interval)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # A failure in CI shows only pytest's output: add the tail of every process's log to it.
    outcome = yield
    report = outcome.get_result()
    deployment = item.funcargs.get("deployment") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(deployment, Deployment):
        report.sections.append(("deployment logs", deployment.logs()))

"""docker-compose.yml, the Dockerfile and .env.example, checked without a Docker engine.

When Debian's docker-compose is installed (.ci/run installs it) the compose file is also
parsed and interpolated by compose itself (`docker-compose config` needs no engine).
"""

from __future__ import annotations

import fnmatch
import os
import re
import secrets
import shutil
import subprocess
import sys

import pytest
import yaml
from cryptography.fernet import Fernet

from tests.deploy import compose
from tests.deploy import nginx as nginx_conf
from tests.deploy.processes import BASE_DIR

REQUIRED = ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "PARLEY_ENCRYPTION_KEYS", "POSTGRES_PASSWORD")
PARLEY_SERVICES = ("migrate", "web1", "web2", "housekeeping", "worker")
WEB_SERVICES = ("web1", "web2")


def required_values() -> dict[str, str]:
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "chat.example.com",
        "PARLEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "POSTGRES_PASSWORD": secrets.token_hex(24),
    }


def names_read_by_parley() -> set[str]:
    """Environment variables that settings, the entry point and the admin command read."""
    settings = (BASE_DIR / "config" / "settings.py").read_text()
    names = set(re.findall(r"env(?:\.[a-z]+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", settings))
    names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (BASE_DIR / "deploy" / "entrypoint.sh").read_text()))
    for path in BASE_DIR.glob("*/management/commands/*.py"):
        names |= set(re.findall(r"os\.environ(?:\.get)?[\[(]\"([A-Z][A-Z0-9_]*)\"", path.read_text()))
    return names


@pytest.fixture
def config():
    return compose.load(required_values())


# --- structure ---------------------------------------------------------------------------------


def test_it_runs_postgres_16_with_pgvector_redis_7_two_workers_housekeeping_the_document_worker_and_nginx(config):
    services = config["services"]
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"
    assert services["redis"]["image"].startswith("redis:7")
    assert services["nginx"]["image"].startswith("nginx:")
    for name in PARLEY_SERVICES:
        assert services[name]["build"] == {"context": ".", "target": "app"}
    assert [services[name]["command"] for name in PARLEY_SERVICES] == [
        ["setup"],
        ["web"],
        ["web"],
        ["housekeeping"],
        ["worker"],
    ]
    assert services["llm"]["profiles"] == ["local"]
    assert services["llm"]["build"]["target"] == "llm"
    # Only nginx is published: the workers trust X-Forwarded-For from whoever reaches them.
    assert [name for name, service in services.items() if service.get("ports")] == ["nginx"]


def test_workers_start_after_the_one_shot_setup_and_healthy_services(config):
    services = config["services"]
    for name in (*WEB_SERVICES, "housekeeping", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    assert services["nginx"]["depends_on"] == {name: {"condition": "service_healthy"} for name in WEB_SERVICES}


def test_every_long_running_server_has_a_health_check(config):
    services = config["services"]
    for name in WEB_SERVICES:
        assert services[name]["healthcheck"]["test"] == ["CMD", "python", "/app/deploy/healthcheck.py"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "/v1/models" in " ".join(services["llm"]["healthcheck"]["test"])
    # The image's own HEALTHCHECK probes HTTP: off where no web server runs.
    for name in ("migrate", "housekeeping"):
        assert services[name]["healthcheck"] == {"disable": True}


def test_data_lives_in_named_volumes(config):
    assert set(config["volumes"]) == {"pgdata", "static", "media"}
    services = config["services"]
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "static:/srv/parley/static" in services["migrate"]["volumes"]
    assert "static:/srv/parley/static:ro" in services["nginx"]["volumes"]
    assert compose.environment(services["migrate"])["PARLEY_SETUP_STATIC_ROOT"] == "/srv/parley/static"
    assert compose.environment(services["nginx"])["PARLEY_STATIC_DIR"] == "/srv/parley/static"


def test_every_worker_shares_the_private_media_volume_and_nginx_never_sees_it(config):
    """T10: files are served by Parley after its ownership check, never by nginx from a folder."""
    services = config["services"]
    for name in (*WEB_SERVICES, "housekeeping"):
        assert "media:/data/media" in services[name]["volumes"]
        assert compose.environment(services[name])["PARLEY_MEDIA_BACKEND"] == "filesystem"
    assert not any(volume.split(":")[0] == "media" for volume in services["nginx"]["volumes"])
    assert "/media" not in (BASE_DIR / "deploy" / "nginx.conf").read_text()


def test_nginx_fills_every_placeholder_of_the_shipped_template_and_proxies_every_worker(config):
    nginx = config["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/templates/default.conf.template:ro" in nginx["volumes"]
    env = compose.environment(nginx)
    placeholders = nginx_conf.placeholders()
    assert placeholders and all(re.match(env["NGINX_ENVSUBST_FILTER"], name) for name in placeholders)
    rendered = nginx_conf.render({name: env[name] for name in placeholders})
    directives = "\n".join(line.split("#", 1)[0] for line in rendered.splitlines())
    assert "${" not in directives
    workers = sorted(name for name in config["services"] if re.fullmatch(r"web\d+", name))
    assert re.findall(r"server (\S+);", env["PARLEY_UPSTREAM_SERVERS"]) == [f"{name}:8000" for name in workers]


def test_the_proxy_timeout_is_longer_than_the_websocket_ping_interval(config):
    timeout = compose.environment(config["services"]["nginx"])["PARLEY_PROXY_TIMEOUT"]
    seconds = int(re.fullmatch(r"(\d+)s", timeout).group(1))
    entrypoint = (BASE_DIR / "deploy" / "entrypoint.sh").read_text()
    ping = int(re.search(r"\$\{PARLEY_WS_PING_INTERVAL:-(\d+)\}", entrypoint).group(1))
    for name in WEB_SERVICES:
        ping = max(ping, int(compose.environment(config["services"][name]).get("PARLEY_WS_PING_INTERVAL", ping)))
    assert seconds > 2 * ping


def test_parley_services_pass_only_variables_parley_reads(config):
    read = names_read_by_parley()
    for name in PARLEY_SERVICES:
        passed = set(compose.environment(config["services"][name]))
        assert passed <= read, f"{name} passes variables nothing reads: {sorted(passed - read)}"


def test_every_variable_is_documented_in_env_example():
    documented = compose.documented_variables()
    assert names_read_by_parley() - documented == set()
    assert compose.variables_used() - documented == set()
    assert set(REQUIRED) <= documented


def test_env_example_sets_nothing_but_the_required_secrets():
    # Every other line is commented out, so copying the file changes no default.
    active = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", compose.ENV_EXAMPLE.read_text(), flags=re.M)
    assert active == [(name, "") for name in REQUIRED]


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_missing_secret_stops_compose_with_a_message_naming_it(missing):
    values = required_values()
    del values[missing]
    with pytest.raises(compose.MissingVariable, match=f"^{missing}: Set {missing} in .env"):
        compose.load(values)
    values[missing] = ""
    with pytest.raises(compose.MissingVariable, match=f"^{missing}: "):
        compose.load(values)


def test_the_production_values_pass_the_deploy_checks(config, tmp_path):
    """T44 for this deployment: web1's environment, exactly, passes check --deploy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PARLEY_", "OPENAI_", "DATABASE_"))}
    env.update(compose.environment(config["services"]["web1"]))
    env["PARLEY_DATA_DIR"] = str(tmp_path)  # /data exists only in the image
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


# --- compose itself, when installed ------------------------------------------------------------

docker_compose = shutil.which("docker-compose")


def _compose_config(values: dict[str, str], tmp_path, *args: str):
    # An empty --env-file: a developer's own .env must not fill in what the test left out.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED and not k.startswith("PARLEY_")}
    env.update(values, DOCKER_HOST="unix:///nonexistent/docker.sock")
    return subprocess.run(
        [docker_compose, "--env-file", str(empty), "-f", str(compose.COMPOSE_FILE), *args, "config"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(docker_compose is None, reason="docker-compose is not installed (.ci/run installs it)")
def test_docker_compose_parses_the_file_as_written(tmp_path):
    values = required_values()
    result = _compose_config(values, tmp_path, "--profile", "local")
    assert result.returncode == 0, result.stderr
    parsed = yaml.safe_load(result.stdout)
    assert set(parsed["services"]) == {
        "postgres",
        "redis",
        "migrate",
        "web1",
        "web2",
        "housekeeping",
        "worker",
        "nginx",
        "llm",
    }
    web = compose.environment(parsed["services"]["web1"])
    assert web["DJANGO_SECRET_KEY"] == values["DJANGO_SECRET_KEY"]
    assert web["DATABASE_URL"] == f"postgres://parley:{values['POSTGRES_PASSWORD']}@postgres:5432/parley"
    # Our own reading agrees with compose's.
    assert compose.environment(compose.load(values)["services"]["web1"]) == web


@pytest.mark.skipif(docker_compose is None, reason="docker-compose is not installed (.ci/run installs it)")
def test_docker_compose_refuses_to_start_without_a_secret(tmp_path):
    values = required_values()
    del values["PARLEY_ENCRYPTION_KEYS"]
    result = _compose_config(values, tmp_path)
    assert result.returncode != 0
    assert "Set PARLEY_ENCRYPTION_KEYS in .env" in result.stderr


# --- the image ---------------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    text = (BASE_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, flags=re.I)
        if match:
            current = match.group(2) or match.group(1)
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def test_the_image_installs_exactly_the_pinned_requirements_on_python_3_11_slim():
    stages = dockerfile_stages()
    text = (BASE_DIR / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert all(lines[0].split()[1] == "${PYTHON_IMAGE}" or lines[0].split()[1] in stages for lines in stages.values())
    deps = " ".join(stages["deps"])
    assert "COPY requirements.txt" in deps and "pip install -r /tmp/requirements.txt" in deps
    assert "COPY --from=deps /opt/venv /opt/venv" in stages["app"]
    requirements = (BASE_DIR / "requirements.txt").read_text().splitlines()
    pins = [line for line in requirements if line and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line) for line in pins)


def test_the_image_runs_daphne_as_a_non_root_user_with_static_files_built_in():
    stages = dockerfile_stages()
    assert list(stages)[-1] == "app"  # `docker build .` builds the application
    app = stages["app"]
    users = [line.split()[1] for line in app if line.startswith("USER ")]
    assert users == ["parley"]
    assert app.index("USER parley") < app.index('ENTRYPOINT ["/app/deploy/entrypoint.sh"]')
    assert 'CMD ["web"]' in app
    assert any("HEALTHCHECK" in line and "deploy/healthcheck.py" in line for line in app)
    assert "collectstatic --noinput" in " ".join(stages["build"])
    assert "compilemessages" in " ".join(stages["build"])
    assert "COPY --from=build /app /app" in app
    entrypoint = (BASE_DIR / "deploy" / "entrypoint.sh").read_text()
    assert "exec daphne" in entrypoint and "--proxy-headers" in entrypoint
    assert os.access(BASE_DIR / "deploy" / "entrypoint.sh", os.X_OK)
    # Every script the image and compose run from /app is in the repository.
    for source in (BASE_DIR / "Dockerfile", compose.COMPOSE_FILE):
        for path in re.findall(r"/app/([\w./-]+\.(?:py|sh))", source.read_text()):
            assert (BASE_DIR / path).is_file(), path


def test_the_build_context_leaves_out_secrets_and_local_state_but_not_the_app():
    ignored = [
        line.strip()
        for line in (BASE_DIR / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for secret in (".env", ".git", ".venv", "data", "node_modules", "deploy/certs"):
        assert secret in ignored
    needed = ["manage.py", "config", "chat", "accounts", "templates", "static", "locale", "deploy/entrypoint.sh"]
    needed += ["deploy/healthcheck.py", "requirements.txt", "requirements-local.txt"]
    for path in needed:
        assert not any(path == pattern or path.startswith(pattern + "/") for pattern in ignored), path


def build_context_files() -> list[str]:
    """The files `docker build .` sends from this checkout: git's files minus .dockerignore."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    patterns = [
        line.strip()
        for line in (BASE_DIR / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        result = False
        for pattern in patterns:  # the last matching pattern wins, as in Docker
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!")
            parts = path.split("/")
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            if any(
                fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.removeprefix("**/")) for p in prefixes
            ):
                result = not negate
        return result

    return [path for path in listed if (BASE_DIR / path).is_file() and not ignored(path)]


def test_the_build_context_holds_everything_parley_needs_to_start(tmp_path, config):
    """Parley, copied as the image gets it, imports its ASGI application with web1's settings."""
    files = build_context_files()
    assert ".env" not in files and not any(f.startswith(("tests/", ".git/", "data/")) for f in files)
    app = tmp_path / "app"
    for path in files:
        target = app / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(BASE_DIR / path, target)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PARLEY_", "OPENAI_", "DATABASE_"))}
    env.update(compose.environment(config["services"]["web1"]))
    env.update(PARLEY_DATA_DIR=str(tmp_path / "data"), PYTHONDONTWRITEBYTECODE="1")
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; import config.asgi; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=app, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")

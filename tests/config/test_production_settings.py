"""Production settings: `check --deploy` passes (docs/security.md T44), secrets have no default, ALLOWED_HOSTS
never holds "*", and the websocket stack checks origin and session (T21)."""

import os
import secrets
import subprocess
import sys

from cryptography.fernet import Fernet
from django.conf import settings

MANAGE = str(settings.BASE_DIR / "manage.py")


def _environment(tmp_path, **values):
    # Start from a clean slate: nothing from the developer's shell or `make test`'s Postgres run.
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PARLEY_", "DATABASE_", "REDIS_"))}
    keep.pop("OPENAI_API_KEY", None)
    return {**keep, "PARLEY_DATA_DIR": str(tmp_path), "DJANGO_DEBUG": "false", **values}


def _production(tmp_path, **overrides):
    values = {
        "PARLEY_PRODUCTION": "true",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "chat.example.com",
        "PARLEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        **overrides,
    }
    return _environment(tmp_path, **{k: v for k, v in values.items() if v is not None})


def _manage(env, *args):
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=env, capture_output=True, text=True, timeout=120, cwd=settings.BASE_DIR
    )


def test_check_deploy_passes_with_the_production_values_from_the_readme(tmp_path):
    result = _manage(_production(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_on_the_development_defaults(tmp_path):
    # Proves the check above can fail: DEBUG-free but no HTTPS settings and a generated key.
    result = _manage(_environment(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS


def test_production_without_a_secret_key_refuses_to_start(tmp_path):
    result = _manage(_production(tmp_path, DJANGO_SECRET_KEY=None), "check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr
    assert not (tmp_path / "secret_key").exists(), "production must never generate its own key"


def test_production_refuses_a_wildcard_allowed_host(tmp_path):
    result = _manage(_production(tmp_path, DJANGO_ALLOWED_HOSTS="chat.example.com,*"), "check")
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS must name Parley's hosts" in result.stderr


def test_production_allowed_hosts_default_is_never_a_wildcard(tmp_path):
    code = "from django.conf import settings; print(settings.ALLOWED_HOSTS)"
    env = _production(tmp_path, DJANGO_ALLOWED_HOSTS=None)
    result = _manage(env, "shell", "--no-imports", "-c", code)
    assert result.returncode == 0, result.stderr
    assert "*" not in result.stdout


def test_production_cookies_and_transport_are_locked_down(tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS >= 31536000, s.SESSION_COOKIE_HTTPONLY, s.SECURE_PROXY_SSL_HEADER)"
    )
    result = _manage(_production(tmp_path), "shell", "--no-imports", "-c", code)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip().splitlines()[-1] == "False True True True True True ('HTTP_X_FORWARDED_PROTO', 'https')"
    )


def test_the_websocket_branch_checks_origin_then_loads_the_session_and_user():
    from channels.auth import AuthMiddleware
    from channels.routing import URLRouter
    from channels.sessions import CookieMiddleware, SessionMiddleware

    from config.asgi import application
    from config.websocket import SameOriginValidator

    # What the origin check accepts: tests/config/test_websocket_origin.py.
    websocket = application.application_mapping["websocket"]
    assert isinstance(websocket, SameOriginValidator)
    chain = []
    layer = websocket.application
    while not isinstance(layer, URLRouter):
        chain.append(type(layer))
        layer = getattr(layer, "inner", None)
        assert layer is not None, f"the websocket stack ends before the URLRouter: {chain}"
    # AuthMiddlewareStack = CookieMiddleware(SessionMiddleware(AuthMiddleware(inner))).
    assert chain == [CookieMiddleware, SessionMiddleware, AuthMiddleware]
    from chat.transport.routing import websocket_urlpatterns

    assert layer.routes == websocket_urlpatterns


def test_http_goes_to_django():
    from django.core.handlers.asgi import ASGIHandler

    from config.asgi import application

    assert isinstance(application.application_mapping["http"], ASGIHandler)

"""The middleware chain works in Django's async mode from end to end.

Under daphne one sync-only middleware makes Django run everything below it, async views
included, on the one thread-sensitive thread, so every streaming API request waited for the
one before it to reach its first token (docs/performance.md, "The member API").
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import AsyncClient
from django.utils.module_loading import import_string


def test_every_middleware_can_run_in_async_mode():
    sync_only = [path for path in settings.MIDDLEWARE if not getattr(import_string(path), "async_capable", False)]

    assert sync_only == []


@pytest.mark.django_db(transaction=True)
async def test_pages_and_the_private_cache_header_still_work_in_async_mode(alice):
    client = AsyncClient()
    await client.aforce_login(alice)

    page = await client.get("/usage/")
    health = await client.get("/healthz")

    assert page.status_code == 200 and page["Cache-Control"] == "private, no-store"
    assert health.status_code == 200


# --- the handler daphne serves ---------------------------------------------------------------
# config.asgi's handler loads Django's security, CSRF and clickjacking middleware as
# config.middleware's inline subclasses (settings.MIDDLEWARE keeps Django's names for its
# deployment checks). Django's hooks are wrapped to note the thread they run on.


@pytest.fixture
def hook_threads(monkeypatch):
    import threading

    from django.middleware import clickjacking, csrf, security

    seen: dict[str, int] = {}

    def noted(cls, name):
        original = getattr(cls, name)

        def hook(self, *args, **kwargs):
            seen[f"{cls.__name__}.{name}"] = threading.get_ident()
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, hook)

    for cls, names in (
        (security.SecurityMiddleware, ("process_request", "process_response")),
        (csrf.CsrfViewMiddleware, ("process_request", "process_view", "process_response")),
        (clickjacking.XFrameOptionsMiddleware, ("process_response",)),
    ):
        for name in names:
            noted(cls, name)
    return seen


async def served(method: str, path: str, body: bytes = b"", content_type: str = ""):
    from channels.testing import HttpCommunicator

    from config.asgi import django_asgi_app

    headers = [(b"host", b"testserver")] + ([(b"content-type", content_type.encode())] if content_type else [])
    answer = await HttpCommunicator(django_asgi_app, method, path, body=body, headers=headers).get_response(timeout=10)
    return answer["status"], {k.decode().lower(): v.decode() for k, v in answer["headers"]}


def test_the_deployment_checks_still_find_djangos_middleware_by_name():
    assert "django.middleware.security.SecurityMiddleware" in settings.MIDDLEWARE
    assert "django.middleware.csrf.CsrfViewMiddleware" in settings.MIDDLEWARE
    assert "django.middleware.clickjacking.XFrameOptionsMiddleware" in settings.MIDDLEWARE


@pytest.mark.django_db(transaction=True)
async def test_the_served_handler_runs_the_security_csrf_and_clickjacking_hooks_in_the_event_loop(hook_threads):
    import threading

    status, headers = await served("GET", "/healthz")

    assert status == 200
    assert headers["x-frame-options"] == "DENY"  # the hooks still do their work
    assert headers["x-content-type-options"] == "nosniff"
    assert set(hook_threads) == {
        "SecurityMiddleware.process_request",
        "SecurityMiddleware.process_response",
        "CsrfViewMiddleware.process_request",
        "CsrfViewMiddleware.process_view",
        "CsrfViewMiddleware.process_response",
        "XFrameOptionsMiddleware.process_response",
    }
    assert set(hook_threads.values()) == {threading.get_ident()}  # no hop to a thread


@pytest.mark.django_db(transaction=True)
async def test_the_served_handler_checks_a_form_post_on_the_thread_and_refuses_it_without_its_token(hook_threads):
    import threading

    form = b"username=alice&password=x"
    refused, _headers = await served("POST", "/accounts/login/", form, "application/x-www-form-urlencoded")
    assert refused == 403  # no CSRF cookie, no token
    assert hook_threads["CsrfViewMiddleware.process_view"] != threading.get_ident()  # the body is parsed there

    hook_threads.clear()
    api, _headers = await served("POST", "/v1/chat/completions", b'{"model": "x", "messages": []}', "application/json")
    assert api == 401  # exempt from CSRF: the key is what is checked
    assert hook_threads["CsrfViewMiddleware.process_view"] == threading.get_ident()

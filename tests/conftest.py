"""Shared fixtures: two members, alice and bob, so every ownership rule is tested from both sides."""

import subprocess
from pathlib import Path

import pytest
from django.conf import settings as django_settings

PASSWORD = "correct-horse-battery-9"


def pytest_sessionstart(session):
    # `make test` compiles the message catalogs first; a bare `pytest` compiles stale ones here,
    # before any translation is loaded, so Chinese pages are tested against the current .po.
    for locale_path in django_settings.LOCALE_PATHS:
        for po in Path(locale_path).glob("*/LC_MESSAGES/*.po"):
            mo = po.with_suffix(".mo")
            if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
                subprocess.run(["msgfmt", "--check-format", "-o", str(mo), str(po)], check=True)
    # Pages link their static files through the manifest (hashed names), as in production; on a
    # fresh clone there is none yet, so a bare `pytest` collects them once (`make test` did).
    _collect_static_if_stale()


def _collect_static_if_stale():
    manifest = Path(django_settings.STATIC_ROOT) / "staticfiles.json"
    sources = [p for d in django_settings.STATICFILES_DIRS for p in Path(d).rglob("*") if p.is_file()]
    newest = max((p.stat().st_mtime for p in sources), default=0)
    if manifest.exists() and manifest.stat().st_mtime >= newest:
        return
    import django
    from django.core.management import call_command

    django.setup()
    call_command("collectstatic", interactive=False, verbosity=0)


def pytest_collection_modifyitems(session, config, items):
    # Browser tests run last: Playwright's sync API keeps an event loop running in the main
    # thread while a session-scoped browser is open, and pytest-asyncio cannot start its own
    # loop there afterwards, so every async test after them would fail to set up.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def pytest_sessionfinish(session):
    # Django deletes the SQLite test database file (settings: one per test process) but not
    # the WAL and shared-memory files beside it.
    database = django_settings.DATABASES["default"]
    name = database.get("TEST", {}).get("NAME")
    if name and database["ENGINE"].endswith("sqlite3") and not Path(name).exists():
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    # Async tests reach the database from asgiref's executor thread, whose connection stays
    # open after the last test; PostgreSQL then refuses to drop the test database ("is being
    # accessed by other users") and the next run must clean up after this one. End those
    # sessions before the test database is dropped.
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def _default_language():
    """Every test starts in the default language: a request in Chinese (or a test that activated
    it) leaves the thread's translation active, and a later message check would read Chinese."""
    from django.utils import translation

    translation.activate(django_settings.LANGUAGE_CODE)
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness (~0.5 s a hash) is the point in production and pure cost in
    # tests: twenty concurrent sign-ups would take half a minute on a shared two-core machine.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache():
    # Django's cache outlives a test: in memory for the whole run, on Redis (the team-deployment
    # run) across runs. The reply rate limit counts in it, keyed by member id, which the next test
    # (or run) reuses: each test starts with it empty.
    from django.core.cache import cache

    from chat.core import grants

    cache.clear()
    # The process's copy of the catalog: a rolled-back database can reuse ids under it.
    grants.forget()


@pytest.fixture(autouse=True)
def _english_after_each_test():
    # LocaleMiddleware leaves the language of a test client's request active in the thread, and
    # async tests inherit it through asgiref's context: after a Chinese page, the next test's
    # error messages were Chinese. Each test starts in the default language.
    yield
    from django.utils import translation

    translation.activate(django_settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    # Channels keeps one layer object per process. The Redis layer's locks belong to the event
    # loop that first used them, and each async test runs on a loop of its own: in `make test`'s
    # run on Redis, the second consumer test failed with "Lock ... bound to a different event
    # loop". A layer per test also keeps one test's groups away from the next (in memory).
    yield
    from channels.layers import channel_layers

    channel_layers.backends.clear()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password=PASSWORD, email="alice@example.test")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password=PASSWORD, email="bob@example.test")


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", password=PASSWORD, email="root@example.test")


@pytest.fixture
def fake_upstream():
    """A real OpenAI-compatible HTTP server on 127.0.0.1 (knobs: tests/fakeupstream/__init__.py)."""
    from tests.fakeupstream import FakeUpstream

    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def upstream_model(db, fake_upstream):
    """A provider pointing at the fake upstream, with one default model."""
    from chat.models import Provider

    provider = Provider(name="Fake", base_url=fake_upstream.base_url, use_moderation=True)
    provider.api_key = "sk-test-KEY0123456789abcd"
    provider.save()
    return create_default_model(provider)


def create_default_model(provider):
    """GPT-4o mini at OpenAI's prices, the default model, on ``provider``."""
    from chat.models import ChatModel

    return ChatModel.objects.create(
        provider=provider,
        model_id="gpt-4o-mini",
        display_name="GPT-4o mini",
        context_window=128_000,
        max_output_tokens=4096,
        input_price_per_million="0.15",
        output_price_per_million="0.60",
        is_default=True,
    )

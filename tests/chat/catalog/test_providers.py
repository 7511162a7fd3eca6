"""Providers from the environment, and model catalog syncs against the real fake upstream."""

import io
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hsettings

from chat import crypto
from chat.catalog import families
from chat.catalog.providers import provider_sync_due, provider_sync_from_env, provider_sync_models
from chat.errors import UpstreamError
from chat.models import ChatModel, Provider
from chat.upstream import client
from tests.malformed_urls import base_urls

pytestmark = [pytest.mark.django_db]

KEY = "sk-test-PROVIDERKEY0123456789"


@pytest.fixture
def env(settings):
    settings.OPENAI_API_KEY = KEY
    settings.OPENAI_BASE_URL = "https://api.openai.com/v1"
    settings.OPENAI_ORGANIZATION = ""
    return settings


def fake_provider(fake_upstream, name="Fake", **fields):
    provider = Provider(name=name, base_url=fake_upstream.base_url, **fields)
    provider.api_key = KEY
    provider.save()
    return provider


def catalog(provider):
    return {
        m.model_id: (m.context_window, m.max_output_tokens, m.input_price_per_million, m.output_price_per_million)
        for m in ChatModel.objects.filter(provider=provider, kind="chat")
    }


def kinds(provider):
    return dict(ChatModel.objects.filter(provider=provider).exclude(kind="chat").values_list("model_id", "kind"))


# --- the provider from the environment ----------------------------------------------------
def test_without_a_key_no_provider_is_created(settings):
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = "https://api.openai.com/v1"
    assert provider_sync_from_env() is None
    assert not Provider.objects.exists()


def test_the_environment_creates_the_openai_provider_once(env):
    env.OPENAI_ORGANIZATION = "org-42"
    provider = provider_sync_from_env()
    first_update = provider.updated_at

    again = provider_sync_from_env()
    assert Provider.objects.count() == 1
    saved = Provider.objects.get()
    assert (saved.name, saved.base_url, saved.organization) == ("OpenAI", "https://api.openai.com/v1", "org-42")
    assert saved.from_environment and saved.use_moderation and saved.enabled
    assert saved.api_key == KEY and KEY not in saved.api_key_encrypted
    assert again.pk == provider.pk and saved.updated_at == first_update  # nothing rewritten


def test_a_changed_environment_updates_the_same_provider(env):
    provider = provider_sync_from_env()
    env.OPENAI_API_KEY = "sk-test-ROTATEDKEY987654321"
    env.OPENAI_BASE_URL = "https://gateway.example/v1/"
    provider_sync_from_env()
    saved = Provider.objects.get()
    assert saved.pk == provider.pk
    assert saved.api_key == "sk-test-ROTATEDKEY987654321"
    assert saved.base_url == "https://gateway.example/v1"
    assert saved.use_moderation  # an admin's choice is kept; only creation picks it


def test_a_compatible_server_without_a_key_gets_a_provider_without_moderation(settings):
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = "http://127.0.0.1:11434/v1"
    provider = provider_sync_from_env()
    assert provider.base_url == "http://127.0.0.1:11434/v1"
    assert provider.use_moderation is False and provider.api_key == ""


def test_a_provider_an_admin_named_openai_is_left_alone(env):
    manual = Provider.objects.create(name="OpenAI", base_url="https://other.example/v1")
    provider = provider_sync_from_env()
    assert provider.name == "OpenAI (environment)"
    manual.refresh_from_db()
    assert manual.base_url == "https://other.example/v1" and not manual.from_environment


def test_an_invalid_base_url_is_a_configuration_error(env):
    env.OPENAI_BASE_URL = "https://evil.example/?api.openai.com"
    with pytest.raises(ImproperlyConfigured):
        provider_sync_from_env()
    assert not Provider.objects.exists()


def test_a_key_stored_under_a_retired_encryption_key_is_re_encrypted(env):
    old = env.PARLEY_ENCRYPTION_KEYS[0]
    provider = provider_sync_from_env()
    env.PARLEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old]
    assert not crypto.is_current(Provider.objects.get().api_key_encrypted)
    provider_sync_from_env()
    saved = Provider.objects.get(pk=provider.pk)
    assert crypto.is_current(saved.api_key_encrypted) and saved.api_key == KEY


# --- model sync ---------------------------------------------------------------------------
def test_a_sync_adds_the_chat_models_with_their_real_windows_and_prices(fake_upstream):
    provider = fake_provider(fake_upstream)
    result = provider_sync_models(provider)

    assert result == {"listed": 11, "added": 11, "skipped": 0, "default": "gpt-4o-mini"}
    assert kinds(provider) == {
        "text-embedding-3-small": "embedding",
        "whisper-1": "transcription",
        "tts-1": "speech",
        "dall-e-3": "image",
        "omni-moderation-latest": "moderation",
    }
    embedding = ChatModel.objects.get(provider=provider, model_id="text-embedding-3-small")
    assert embedding.input_price_per_million == Decimal("0.02")  # priced in its own units
    assert ChatModel.objects.get(provider=provider, model_id="dall-e-3").image_prices["1024x1024/hd"] == "0.08"
    assert catalog(provider) == {
        "gpt-4o-mini": (128_000, 16_384, Decimal("0.15"), Decimal("0.60")),
        "gpt-4o": (128_000, 16_384, Decimal("2.50"), Decimal("10.00")),
        "gpt-4o-2024-08-06": (128_000, 16_384, Decimal("2.50"), Decimal("10.00")),
        "gpt-4.1-nano": (1_047_576, 32_768, Decimal("0.10"), Decimal("0.40")),
        "o3-mini": (200_000, 100_000, Decimal("1.10"), Decimal("4.40")),
        "gpt-3.5-turbo": (16_385, 4_096, Decimal("0.50"), Decimal("1.50")),
    }
    assert ChatModel.objects.get(is_default=True).model_id == "gpt-4o-mini"
    assert ChatModel.objects.get(model_id="gpt-4o-2024-08-06").display_name == "GPT-4o (2024-08-06)"
    provider.refresh_from_db()
    assert provider.models_synced_at is not None
    [request] = fake_upstream.requests
    assert (request.method, request.path, request.authorization) == ("GET", "/v1/models", f"Bearer {KEY}")


def test_an_unknown_model_gets_the_default_window_and_no_price(fake_upstream, settings):
    settings.PARLEY_DEFAULT_CONTEXT_WINDOW = 8192
    fake_upstream.models = ["my-llama-3-8b", "ft:gpt-4o-mini-2024-07-18:acme::abc123"]
    provider = fake_provider(fake_upstream)
    provider_sync_models(provider)
    # A fine-tuned model gets its family's window and OpenAI's fine-tuned prices, and is added
    # disabled: it learned from the team's data, so an admin grants and enables it (issue 17).
    assert catalog(provider) == {
        "my-llama-3-8b": (8192, 4096, None, None),
        "ft:gpt-4o-mini-2024-07-18:acme::abc123": (128_000, 16_384, Decimal("0.30"), Decimal("1.20")),
    }
    enabled = dict(ChatModel.objects.filter(provider=provider).values_list("model_id", "enabled"))
    assert enabled == {"my-llama-3-8b": True, "ft:gpt-4o-mini-2024-07-18:acme::abc123": False}


def test_a_sync_never_deletes_disables_or_overwrites_what_admins_set(fake_upstream):
    provider = fake_provider(fake_upstream)
    fake_upstream.models = ["gpt-4o", "gpt-4o-mini"]
    provider_sync_models(provider)
    ChatModel.objects.filter(model_id="gpt-4o").update(context_window=1000, display_name="Ours", enabled=False)

    fake_upstream.models = ["gpt-4o-mini", "o4-mini"]
    result = provider_sync_models(provider)

    assert result["added"] == 1 and "default" not in result
    gpt4o = ChatModel.objects.get(model_id="gpt-4o")
    assert (gpt4o.context_window, gpt4o.display_name, gpt4o.enabled) == (1000, "Ours", False)
    assert set(catalog(provider)) == {"gpt-4o", "gpt-4o-mini", "o4-mini"}
    assert ChatModel.objects.filter(is_default=True).count() == 1


def test_a_default_elsewhere_is_kept(fake_upstream):
    other = Provider.objects.create(name="Other", base_url="https://other.example/v1")
    ChatModel.objects.create(provider=other, model_id="theirs", is_default=True)
    provider_sync_models(fake_provider(fake_upstream))
    assert list(ChatModel.objects.filter(is_default=True).values_list("model_id", flat=True)) == ["theirs"]


def test_a_failed_sync_raises_and_leaves_the_catalog_as_it_was(fake_upstream, no_sleep):
    provider = fake_provider(fake_upstream)
    fake_upstream.script(status=503, endpoint="models", times=3)
    with pytest.raises(UpstreamError) as caught:
        provider_sync_models(provider)
    assert caught.value.code == "upstream_unavailable"
    provider.refresh_from_db()
    assert provider.models_synced_at is None and not ChatModel.objects.exists()


def test_the_periodic_sync_takes_only_enabled_providers_that_are_due(fake_upstream, settings, no_sleep):
    settings.PARLEY_MODEL_SYNC_INTERVAL = 3600
    stale = fake_provider(fake_upstream, "Stale", models_synced_at=timezone.now() - timedelta(hours=2))
    fake_provider(fake_upstream, "Fresh", models_synced_at=timezone.now() - timedelta(minutes=5))
    fake_provider(fake_upstream, "Off", enabled=False)
    Provider.objects.create(name="Down", base_url=f"http://127.0.0.1:{_closed_port()}/v1")

    results = provider_sync_due()

    assert results == {
        "Down": "upstream_unavailable",
        "Stale": {"listed": 11, "added": 11, "skipped": 0, "default": "gpt-4o-mini"},
    }
    stale.refresh_from_db()
    assert timezone.now() - stale.models_synced_at < timedelta(minutes=1)
    assert len(fake_upstream.requests) == 1


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the setup command --------------------------------------------------------------------
def test_setup_providers_creates_the_provider_and_its_models(env, fake_upstream):
    env.OPENAI_BASE_URL = fake_upstream.base_url
    out = io.StringIO()
    call_command("setup_providers", stdout=out)
    provider = Provider.objects.get(from_environment=True)
    assert provider.use_moderation is False  # not api.openai.com
    assert ChatModel.objects.filter(provider=provider).count() == 11
    assert "11 new models" in out.getvalue()

    call_command("setup_providers", stdout=io.StringIO())  # recent: no second fetch
    assert len(fake_upstream.requests) == 1


def test_setup_providers_succeeds_offline(env):
    env.OPENAI_BASE_URL = f"http://127.0.0.1:{_closed_port()}/v1"
    err = io.StringIO()
    call_command("setup_providers", stdout=io.StringIO(), stderr=err)
    assert Provider.objects.filter(from_environment=True).exists()
    assert "upstream_unavailable" in err.getvalue()


def test_setup_providers_gives_a_silent_provider_only_its_timeout(env, fake_upstream):
    env.OPENAI_BASE_URL = fake_upstream.base_url
    fake_upstream.script(silence=True, endpoint="models")
    started = time.monotonic()
    err = io.StringIO()
    call_command("setup_providers", "--timeout", "0.5", stdout=io.StringIO(), stderr=err)
    assert time.monotonic() - started < 5
    assert "upstream_timeout" in err.getvalue()


def test_setup_providers_refuses_an_invalid_base_url(env):
    from django.core.management.base import CommandError

    env.OPENAI_BASE_URL = "ftp://api.openai.com/v1"
    with pytest.raises(CommandError):
        call_command("setup_providers", stdout=io.StringIO())


# --- the catalog --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gpt-4o-2024-11-20", "gpt-4o"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o1-2024-12-17", "o1"),
        ("gpt-4ox", None),
        ("o10", None),
        ("llama3", None),
    ],
)
def test_dated_variants_match_their_family_by_prefix(model_id, family):
    found = families.family_of(model_id)
    assert (found[0] if found else None) == family


@pytest.mark.parametrize(
    ("model_id", "chat"),
    [
        ("gpt-4o", True),
        ("llama-3-8b-instruct", True),
        ("text-embedding-3-large", False),
        ("whisper-1", False),
        ("tts-1-hd", False),
        ("dall-e-3", False),
        ("omni-moderation-latest", False),
        ("gpt-4o-realtime-preview", False),
        ("gpt-3.5-turbo-instruct", False),
        ("o1-pro", False),
    ],
)
def test_non_chat_models_are_recognised(model_id, chat):
    assert families.is_chat_model(model_id) is chat


@pytest.mark.parametrize(
    ("model_id", "kind"),
    [
        ("gpt-4o", "chat"),
        ("llama-3-8b-instruct", "chat"),
        ("ft:gpt-4o-mini:acme::abc123", "chat"),
        ("text-embedding-3-large", "embedding"),
        ("nomic-embed-text-v1.5", "embedding"),
        ("whisper-1", "transcription"),
        ("gpt-4o-mini-transcribe", "transcription"),
        ("tts-1-hd", "speech"),
        ("gpt-4o-mini-tts", "speech"),
        ("dall-e-3", "image"),
        ("gpt-image-1", "image"),
        ("omni-moderation-latest", "moderation"),
        ("text-moderation-stable", "moderation"),
        ("gpt-4o-realtime-preview", None),
        ("gpt-3.5-turbo-instruct", None),
        ("o1-pro", None),
    ],
)
def test_the_sync_classifies_models_by_kind(model_id, kind):
    assert families.kind_of(model_id) == kind


# --- malformed base URLs from the environment (issue 20 item 11) ---------------------------------


@pytest.mark.parametrize("key", [KEY, ""])
@pytest.mark.parametrize("url", ["http://[::1", "http://a\uff03b/v1", "http://999.1.1.1/v1"])
def test_setup_providers_explains_a_malformed_base_url_without_a_traceback(env, key, url):
    from django.core.management.base import CommandError

    env.OPENAI_API_KEY = key
    env.OPENAI_BASE_URL = url
    with pytest.raises(CommandError) as refused:
        call_command("setup_providers", "--no-sync", stdout=io.StringIO())
    assert str(refused.value).startswith("OPENAI_BASE_URL: The base URL")
    assert not Provider.objects.exists()


@hsettings(max_examples=200, deadline=None)
@given(url=base_urls())
def test_every_base_url_from_the_environment_is_used_or_a_configuration_error(url):
    with override_settings(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=url, OPENAI_ORGANIZATION=""):
        try:
            provider = provider_sync_from_env()
        except ImproperlyConfigured as refused:
            assert str(refused).startswith("OPENAI_BASE_URL: ")
            return
    assert client.Endpoint(Provider.objects.get(pk=provider.pk).base_url)


def test_a_failed_periodic_sync_logs_no_part_of_the_key_a_hostile_upstream_echoes(fake_upstream, no_sleep, caplog):
    key = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # a hex key, no sk- prefix
    provider = fake_provider(fake_upstream, "Hex")
    provider.api_key = key
    provider.save()
    fake_upstream.script(
        endpoint="models", status=401, error_message=f"key …{key[5:40]}… is not valid for this organization"
    )
    with caplog.at_level("DEBUG"):
        results = provider_sync_due()
    assert results == {"Hex": "upstream_auth_failed"}
    assert "model sync failed" in caplog.text
    for start in range(len(key) - 7):
        assert key[start : start + 8] not in caplog.text

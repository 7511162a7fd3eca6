"""Providers in the console: the key is write-only, shown masked, and never leaves the server."""

import logging

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from chat.admin.providers import ProviderForm, validate_base_url
from chat.models import ChatModel, Provider
from chat.upstream import client
from tests.admin.conftest import MASKED, SECRET_KEY, SECRET_MIDDLE, assert_no_key
from tests.malformed_urls import base_urls

pytestmark = pytest.mark.django_db


def _form_data(provider, **overrides):
    data = {
        "name": provider.name,
        "base_url": provider.base_url,
        "organization": "",
        "enabled": "on",
        "timeout": "30",
        "moderation_provider": "",
        "api_key": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_changelist_shows_only_the_masked_key(admin_client, provider):
    response = admin_client.get(reverse("admin:chat_provider_changelist"))
    body = response.content.decode()
    assert response.status_code == 200
    assert MASKED in body
    assert_no_key(body)


def test_the_change_form_shows_the_masked_key_and_an_empty_password_box(admin_client, provider):
    response = admin_client.get(reverse("admin:chat_provider_change", args=[provider.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert MASKED in body
    assert_no_key(body)
    assert 'type="password" name="api_key"' in body
    assert 'name="api_key" value=' not in body  # render_value=False


def test_a_blank_key_on_edit_keeps_the_saved_key(admin_client, provider):
    response = admin_client.post(
        reverse("admin:chat_provider_change", args=[provider.pk]), _form_data(provider, name="Renamed")
    )
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.name == "Renamed"
    assert provider.api_key == SECRET_KEY


def test_a_new_key_replaces_the_saved_key_and_is_stored_encrypted(admin_client, provider):
    new_key = "sk-live-ANOTHERKEY99887766wxyz"
    admin_client.post(reverse("admin:chat_provider_change", args=[provider.pk]), _form_data(provider, api_key=new_key))
    provider.refresh_from_db()
    assert provider.api_key == new_key
    assert new_key not in provider.api_key_encrypted


def test_the_clear_box_removes_the_saved_key(admin_client, provider):
    admin_client.post(
        reverse("admin:chat_provider_change", args=[provider.pk]), _form_data(provider, clear_api_key="on")
    )
    provider.refresh_from_db()
    assert provider.api_key == ""
    assert provider.api_key_encrypted == ""


def test_a_form_error_never_echoes_a_typed_key(admin_client, provider):
    typed = "sk-typed-TYPEDKEY5555444433332222"
    response = admin_client.post(
        reverse("admin:chat_provider_change", args=[provider.pk]),
        _form_data(provider, base_url="ftp://example.test", api_key=typed),
    )
    body = response.content.decode()
    assert response.status_code == 200  # the form comes back with an error
    assert "http:// or https://" in body
    assert typed not in body
    assert "TYPEDKEY" not in body
    assert_no_key(body)


def test_adding_a_provider_stores_the_key_and_the_history_never_shows_it(admin_client, upstream):
    response = admin_client.post(
        reverse("admin:chat_provider_add"),
        {"name": "New", "base_url": upstream.base_url + "/", "timeout": "60", "api_key": SECRET_KEY},
    )
    assert response.status_code == 302
    provider = Provider.objects.get(name="New")
    assert provider.api_key == SECRET_KEY
    assert provider.base_url == upstream.base_url  # trailing slash trimmed
    history = admin_client.get(reverse("admin:chat_provider_history", args=[provider.pk]))
    assert history.status_code == 200
    assert_no_key(history.content)
    for entry in LogEntry.objects.all():
        assert_no_key(entry.change_message + entry.object_repr)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://api.example.test/v1",
        "file:///etc/passwd",
        "https://",
        "https://user:pass@api.example.test/v1",
        "https://api.openai.com@evil.example/v1",
        "https://evil.example/?api.openai.com",
        "https://evil.example/v1#api.openai.com",
        "https://api.example.test:99999/v1",
        "https://api.example.test/v1 x",
        "javascript:alert(1)",
    ],
)
def test_it_refuses_base_urls_that_could_point_a_key_elsewhere(url):
    with pytest.raises(Exception) as info:
        validate_base_url(url)
    assert info.type.__name__ == "ValidationError"


@pytest.mark.parametrize(
    ("url", "saved"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1"),
        ("https://[::1]:8443/openai/v1", "https://[::1]:8443/openai/v1"),
    ],
)
def test_it_accepts_plain_http_and_https_base_urls(url, saved):
    assert validate_base_url(url) == saved


def test_test_connection_reports_the_number_of_models(admin_client, provider, upstream):
    upstream.require_key = SECRET_KEY
    response = admin_client.post(
        reverse("admin:chat_provider_changelist"),
        {"action": "test_connection", "_selected_action": [provider.pk]},
        follow=True,
    )
    body = response.content.decode()
    assert f"connected, {len(upstream.models)} models available" in body
    assert_no_key(body)
    # The key went to the upstream, and only there.
    assert [r.path for r in upstream.requests] == ["/v1/models"]
    assert upstream.requests[0].authorization == f"Bearer {SECRET_KEY}"


def test_test_connection_explains_a_failure_in_words_without_the_key(admin_client, provider, upstream, caplog):
    # A hostile or careless upstream echoes the key back in its error message.
    upstream.script(
        endpoint="models",
        status=401,
        error_message=f"Incorrect API key provided: {SECRET_KEY}",
        error_code="invalid_api_key",
    )
    with caplog.at_level(logging.DEBUG):
        response = admin_client.post(reverse("admin:chat_provider_test_connection", args=[provider.pk]), follow=True)
    body = response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("admin:chat_provider_change", args=[provider.pk])
    assert "connection failed" in body
    assert_no_key(body)
    assert SECRET_MIDDLE not in caplog.text
    assert SECRET_KEY not in caplog.text


@pytest.mark.parametrize(
    "echo",
    [
        SECRET_KEY[3:],  # without its first characters
        SECRET_KEY[:-6],  # cut short
        "…" + SECRET_MIDDLE[2:12] + "…",  # ten characters of its middle
    ],
)
@pytest.mark.parametrize("action", ["test_connection", "sync_models"])
def test_connection_test_and_sync_hide_every_part_of_the_key_an_upstream_echoes(
    action, echo, admin_client, provider, upstream, caplog
):
    upstream.script(endpoint="models", status=401, error_message=f"Incorrect API key provided: {echo}")
    with caplog.at_level(logging.DEBUG):
        response = admin_client.post(
            reverse("admin:chat_provider_changelist"),
            {"action": action, "_selected_action": [provider.pk]},
            follow=True,
        )
    body = response.content.decode()
    assert "Incorrect API key provided" in body
    for start in range(len(SECRET_KEY) - 7):
        part = SECRET_KEY[start : start + 8]
        assert part not in body and part not in caplog.text


def test_test_connection_reports_an_unreachable_provider(admin_client, provider, upstream):
    upstream.stop()
    response = admin_client.post(reverse("admin:chat_provider_test_connection", args=[provider.pk]), follow=True)
    body = response.content.decode()
    assert "connection failed" in body
    assert_no_key(body)


def test_the_object_buttons_refuse_get(admin_client, provider, upstream):
    response = admin_client.get(reverse("admin:chat_provider_test_connection", args=[provider.pk]))
    assert response.status_code == 405
    assert upstream.requests == []


def test_sync_models_fills_the_catalog_from_the_provider(admin_client, provider, upstream):
    upstream.models = ["gpt-4o", "text-embedding-3-small", "gpt-4.1-mini"]
    response = admin_client.post(
        reverse("admin:chat_provider_changelist"),
        {"action": "sync_models", "_selected_action": [provider.pk]},
        follow=True,
    )
    body = response.content.decode()
    assert "models synced: 3 listed, 3 new models added, 0 that Parley cannot call skipped." in body
    assert "is now the default model" in body
    assert_no_key(body)
    assert set(ChatModel.objects.filter(provider=provider, kind="chat").values_list("model_id", flat=True)) == {
        "gpt-4o",
        "gpt-4.1-mini",
    }
    assert ChatModel.objects.get(provider=provider, model_id="text-embedding-3-small").kind == "embedding"
    assert ChatModel.objects.filter(is_default=True).count() == 1


def test_sync_models_reports_a_failure_without_the_key(admin_client, provider, upstream):
    upstream.script(endpoint="models", status=500, error_message=f"boom {SECRET_KEY}", times=5)
    response = admin_client.post(reverse("admin:chat_provider_sync_models", args=[provider.pk]), follow=True)
    body = response.content.decode()
    assert "model sync failed" in body
    assert_no_key(body)
    assert not ChatModel.objects.filter(provider=provider).exists()


def test_the_changelist_counts_models_without_a_query_per_provider(
    admin_client, provider, django_assert_max_num_queries
):
    for i in range(5):
        other = Provider.objects.create(name=f"P{i}", base_url=f"https://p{i}.example.test/v1")
        ChatModel.objects.create(provider=other, model_id=f"m{i}")
    admin_client.get(reverse("admin:chat_provider_changelist"))  # warm caches (content types, session)
    with django_assert_max_num_queries(8):
        response = admin_client.get(reverse("admin:chat_provider_changelist"))
    assert response.status_code == 200


def test_a_key_with_spaces_is_refused_without_being_echoed(admin_client, provider):
    bad = "sk-bad KEYWITHSPACE998877"
    response = admin_client.post(
        reverse("admin:chat_provider_change", args=[provider.pk]), _form_data(provider, api_key=bad)
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "characters an API key cannot have" in body
    assert "KEYWITHSPACE" not in body
    provider.refresh_from_db()
    assert provider.api_key == SECRET_KEY


# --- malformed base URLs (issue 20 item 11) -----------------------------------------------------


@pytest.mark.parametrize("url", ["http://[::1", "http://a\uff03b/v1", "http://999.1.1.1/v1"])
def test_a_malformed_base_url_is_a_form_error_not_a_server_error(admin_client, provider, url):
    response = admin_client.post(
        reverse("admin:chat_provider_change", args=[provider.pk]), _form_data(provider, base_url=url)
    )
    assert response.status_code == 200
    assert "The base URL" in response.context["adminform"].form.errors["base_url"][0]
    provider.refresh_from_db()
    assert provider.base_url != url


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=base_urls())
def test_every_base_url_in_the_provider_form_is_saved_or_a_form_error(url, provider):
    form = ProviderForm(data=_form_data(provider, base_url=url), instance=Provider(name="New"))
    if not form.is_valid():
        assert form.errors
        return
    assert client.Endpoint(form.cleaned_data["base_url"])

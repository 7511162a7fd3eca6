"""Where the provider key goes, and where it never appears (docs/security.md T25, T27)."""

import logging
import sys

import pytest
from django.views.debug import ExceptionReporter

from chat.errors import UpstreamError
from chat.models import Provider
from chat.upstream import client as upstream_client
from tests.fakeupstream import FakeUpstream

pytestmark = [pytest.mark.usefixtures("close_llm_clients")]

KEY = "sk-test-SECRETKEY1234567890abcd"
KEY_MIDDLE = "SECRETKEY1234567890"
PAYLOAD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def assert_no_key(text: str) -> None:
    assert KEY_MIDDLE not in text, "the provider key leaked"


@pytest.fixture
def endpoint(fake_upstream):
    return upstream_client.Endpoint(fake_upstream.base_url, api_key=KEY, connect_timeout=2.0)


@pytest.fixture
def attacker():
    server = FakeUpstream().start()
    yield server
    server.stop()


async def failure(endpoint, payload=PAYLOAD) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        async for _event in upstream_client.stream_chat(endpoint, payload):
            pass
    return caught.value


# --- T25: key scoping ---------------------------------------------------------------------
async def test_a_redirect_is_not_followed_and_the_key_never_reaches_its_target(endpoint, fake_upstream, attacker):
    fake_upstream.script(redirect=f"{attacker.base_url}/chat/completions", endpoint="any", times=3)
    error = await failure(endpoint)
    assert error.code == "upstream_bad_response"
    assert attacker.requests == []
    assert len(fake_upstream.requests) == 1

    with pytest.raises(UpstreamError):
        await upstream_client.list_models(endpoint)
    with pytest.raises(UpstreamError):
        await upstream_client.moderate(endpoint, "hello")
    assert attacker.requests == []


async def test_fields_in_the_payload_cannot_move_the_request_to_another_host(endpoint, fake_upstream, attacker):
    payload = {**PAYLOAD, "base_url": attacker.base_url, "api_base": attacker.base_url, "url": attacker.base_url}
    async for _event in upstream_client.stream_chat(endpoint, payload):
        pass
    assert attacker.requests == []
    assert fake_upstream.requests[0].authorization == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/?api.openai.com",
        "https://evil.example/v1?x=https://api.openai.com/v1",
        "https://evil.example/#api.openai.com",
        "https://api.openai.com@evil.example/v1",
        "https://user:pass@api.openai.com/v1",
        "ftp://api.openai.com/v1",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "api.openai.com/v1",
        "https:///v1",
        "https://api.openai.com:99999/v1",
        "https://api.openai.com\n.evil.example/v1",
        "https://api.open ai.com/v1",
        "https://evil.example\\@api.openai.com/v1",
        "",
    ],
)
def test_a_base_url_that_merely_contains_a_trusted_host_is_refused(url):
    with pytest.raises(upstream_client.InvalidEndpoint):
        upstream_client.Endpoint(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1/chat/completions"),
        ("http://127.0.0.1:8088/v1", "http://127.0.0.1:8088/v1/chat/completions"),
        ("https://gateway.example/openai/deploy/v1", "https://gateway.example/openai/deploy/v1/chat/completions"),
    ],
)
def test_the_request_url_is_the_base_url_plus_the_api_path(url, expected):
    assert upstream_client.Endpoint(url).url("chat/completions") == expected


@pytest.mark.parametrize("key", ["sk-abc\ndef", "sk-abc def", "sk-ключ", "sk-abc\r\nX-Evil: 1"])
def test_a_key_that_could_not_be_a_header_value_is_refused_without_echoing_it(key):
    with pytest.raises(upstream_client.InvalidEndpoint) as caught:
        upstream_client.Endpoint("https://api.openai.com/v1", api_key=key)
    assert "sk-abc" not in str(caught.value) and "ключ" not in str(caught.value)


@pytest.mark.django_db
def test_an_endpoint_for_a_provider_decrypts_its_key_and_takes_its_settings(settings):
    settings.PARLEY_UPSTREAM_CONNECT_TIMEOUT = 7.0
    provider = Provider(name="P", base_url="https://api.openai.com/v1/", organization="org-9", timeout=45)
    provider.api_key = KEY
    provider.save()
    endpoint = upstream_client.Endpoint.for_provider(Provider.objects.get(pk=provider.pk))
    assert endpoint.api_key == KEY and endpoint.organization == "org-9"
    assert (endpoint.base_url, endpoint.read_timeout, endpoint.connect_timeout) == (
        "https://api.openai.com/v1",
        45.0,
        7.0,
    )
    assert_no_key(repr(endpoint))


@pytest.mark.django_db
def test_a_provider_whose_key_cannot_be_decrypted_is_a_clear_error(settings):
    provider = Provider(name="P", base_url="https://api.openai.com/v1")
    provider.api_key = KEY
    provider.save()
    settings.PARLEY_ENCRYPTION_KEYS = ["x" * 43 + "="]  # another key: the token no longer opens
    with pytest.raises(UpstreamError) as caught:
        upstream_client.Endpoint.for_provider(provider)
    assert caught.value.code == "upstream_auth_failed"
    assert "gAAAA" not in caught.value.message


# --- T27: the key in errors, logs and error pages -----------------------------------------
async def test_an_upstream_error_that_echoes_the_key_is_scrubbed(endpoint, fake_upstream, caplog):
    caplog.set_level(logging.DEBUG)
    body = {"error": {"message": f"Incorrect API key provided: {KEY}. Header was Bearer {KEY}", "code": "bad"}}
    fake_upstream.script(status=401, body=body)
    error = await failure(endpoint)
    assert error.code == "upstream_auth_failed"
    assert "Incorrect API key provided" in error.message
    for text in (error.message, str(error), repr(error.as_frame()), caplog.text):
        assert_no_key(text)


async def test_no_failure_path_logs_the_key(endpoint, fake_upstream, caplog, no_sleep):
    caplog.set_level(logging.DEBUG)
    fake_upstream.script(status=500, times=3)
    await failure(endpoint)
    fake_upstream.script(drop=True, times=3)
    await failure(endpoint)
    fake_upstream.script(tokens=10, cut_after=3, cut="reset")
    await failure(endpoint)
    fake_upstream.script(status=429, error_code="insufficient_quota", error_message=f"quota for {KEY}")
    await failure(endpoint)
    assert caplog.records, "the failures above are logged"
    assert_no_key(caplog.text)


# Each transport under the client, crashed where it does the HTTP call (patched by path: tests
# do not import httpx or aiohttp themselves).
CRASH_POINTS = {
    "httpx": "chat.upstream.client.httpx.AsyncHTTPTransport.handle_async_request",
    "aiohttp": "httpx_aiohttp.transport.AiohttpTransport.handle_async_request",
}


@pytest.mark.parametrize("transport", sorted(CRASH_POINTS))
async def test_a_crash_inside_the_http_call_shows_no_key_on_the_debug_error_page(
    transport, endpoint, fake_upstream, monkeypatch, settings
):
    settings.DEBUG = True
    settings.PARLEY_UPSTREAM_TRANSPORT = transport

    async def crash(self, request):
        raise RuntimeError("the transport blew up")

    monkeypatch.setattr(CRASH_POINTS[transport], crash)
    try:
        async for _event in upstream_client.stream_chat(endpoint, PAYLOAD):
            pass
    except RuntimeError:
        exc_info = sys.exc_info()
    else:
        pytest.fail("the crash did not surface")

    # What technical_500_response renders, without a request: resolving one would import
    # every view (and their token tables) for nothing.
    reporter = ExceptionReporter(None, *exc_info)
    page = reporter.get_traceback_html()
    # The page does show the frames and their variables, the endpoint included.
    assert "the transport blew up" in page and "stream_chat" in page
    assert "Endpoint(base_url=" in page
    assert_no_key(page)
    assert_no_key(reporter.get_traceback_text())
    assert_no_key(logging.Formatter().formatException(exc_info))

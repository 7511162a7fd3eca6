"""The tests of test_client_security.py again, with httpx-aiohttp as the transport under the client
(PARLEY_UPSTREAM_TRANSPORT=aiohttp): the same timeouts, retries, rules and error codes."""

import pytest

from tests.chat.upstream.test_client_security import *  # noqa: F403 - the same tests, collected here too


@pytest.fixture(autouse=True)
def aiohttp_transport(settings):
    settings.PARLEY_UPSTREAM_TRANSPORT = "aiohttp"


# The test above patches httpx's own transport; over aiohttp the crash comes from aiohttp's.
del test_a_crash_inside_the_http_call_shows_no_key_on_the_debug_error_page  # noqa: F821


async def test_a_crash_inside_aiohttp_shows_no_key_on_the_debug_error_page(
    endpoint,  # noqa: F811
    fake_upstream,
    monkeypatch,
    settings,
):
    settings.DEBUG = True

    async def crash(self, request):
        raise RuntimeError("the transport blew up")

    monkeypatch.setattr("httpx_aiohttp.transport.AiohttpTransport.handle_async_request", crash)
    try:
        async for _event in upstream_client.stream_chat(endpoint, PAYLOAD):  # noqa: F405
            pass
    except RuntimeError:
        exc_info = sys.exc_info()  # noqa: F405
    else:
        pytest.fail("the crash did not surface")

    reporter = ExceptionReporter(None, *exc_info)  # noqa: F405
    page = reporter.get_traceback_html()
    assert "the transport blew up" in page and "stream_chat" in page
    assert "Endpoint(base_url=" in page
    assert_no_key(page)  # noqa: F405
    assert_no_key(reporter.get_traceback_text())  # noqa: F405
    assert_no_key(logging.Formatter().formatException(exc_info))  # noqa: F405

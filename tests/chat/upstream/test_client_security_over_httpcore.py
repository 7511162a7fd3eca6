"""The tests of test_client_security.py again, with httpcore (httpx's own transport) under the client
(PARLEY_UPSTREAM_TRANSPORT=httpx; the default is aiohttp): the same timeouts, retries, rules and error codes."""

import pytest

from tests.chat.upstream.test_client_security import *  # noqa: F403 - the same tests, collected here too


@pytest.fixture(autouse=True)
def httpcore_transport(settings):
    settings.PARLEY_UPSTREAM_TRANSPORT = "httpx"


# The crash test names each transport itself (test_client_security.py).
del test_a_crash_inside_the_http_call_shows_no_key_on_the_debug_error_page  # noqa: F821

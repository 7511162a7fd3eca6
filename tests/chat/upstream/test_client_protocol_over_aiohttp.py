"""The tests of test_client_protocol.py again, with httpx-aiohttp as the transport under the client
(PARLEY_UPSTREAM_TRANSPORT=aiohttp): the same timeouts, retries, rules and error codes."""

import pytest

from tests.chat.upstream.test_client_protocol import *  # noqa: F403 - the same tests, collected here too


@pytest.fixture(autouse=True)
def aiohttp_transport(settings):
    settings.PARLEY_UPSTREAM_TRANSPORT = "aiohttp"

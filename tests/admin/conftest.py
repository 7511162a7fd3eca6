"""Fixtures for the operations console: a provider with a distinctive key, and an upstream."""

import pytest

from chat.models import Provider
from tests.conftest import create_default_model

# Distinctive, so that any leak of it (or of its middle) is unmistakable (T11, T24, T27).
SECRET_KEY = "sk-test-SECRETKEY1234567890abcd"
SECRET_MIDDLE = "SECRETKEY1234567890"
MASKED = "sk-…abcd"
XSS = "<img src=x onerror=alert(1)>"


def assert_no_key(body: str | bytes) -> None:
    text = body.decode() if isinstance(body, bytes) else body
    assert SECRET_KEY not in text
    assert SECRET_MIDDLE not in text
    assert "SECRETKEY" not in text


@pytest.fixture
def upstream(fake_upstream):
    """The shared fake upstream (tests/conftest.py), under the name these tests use."""
    return fake_upstream


# Not tests/conftest.py's ``upstream_model``: this provider carries SECRET_KEY, which the leak
# tests look for, and leaves moderation off.
@pytest.fixture
def provider(db, upstream):
    provider = Provider(name="Fake OpenAI", base_url=upstream.base_url)
    provider.api_key = SECRET_KEY
    provider.save()
    return provider


@pytest.fixture
def chat_model(provider):
    return create_default_model(provider)

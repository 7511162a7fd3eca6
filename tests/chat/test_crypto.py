"""Provider keys at rest (docs/security.md T26)."""

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from chat import crypto
from chat.models import Provider

KEY = "sk-test-PLAINTEXT-0123456789abcd"


@pytest.fixture
def old_key(settings):
    key = Fernet.generate_key().decode()
    settings.PARLEY_ENCRYPTION_KEYS = [key]
    return key


def _raw(provider) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key_encrypted FROM chat_provider WHERE id = %s", [provider.pk])
        return cursor.fetchone()[0]


def _provider() -> Provider:
    provider = Provider(name="P", base_url="https://api.example.com/v1")
    provider.api_key = KEY
    provider.save()
    return provider


@pytest.mark.django_db
def test_the_stored_value_is_not_the_key_and_decrypts_back(old_key):
    provider = _provider()
    raw = _raw(provider)
    assert KEY not in raw and "PLAINTEXT" not in raw
    assert Provider.objects.get(pk=provider.pk).api_key == KEY


@pytest.mark.django_db
def test_after_rotation_old_rows_decrypt_and_a_save_re_encrypts_under_the_new_key(old_key, settings):
    provider = _provider()
    before = _raw(provider)
    new_key = Fernet.generate_key().decode()
    settings.PARLEY_ENCRYPTION_KEYS = [new_key, old_key]
    provider = Provider.objects.get(pk=provider.pk)
    assert provider.api_key == KEY
    provider.save()
    after = _raw(provider)
    assert after != before
    assert Fernet(new_key.encode()).decrypt(after.encode()).decode() == KEY


@pytest.mark.django_db
def test_with_the_old_key_removed_reading_raises_instead_of_passing_ciphertext(old_key, settings):
    provider = _provider()
    settings.PARLEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    provider = Provider.objects.get(pk=provider.pk)
    with pytest.raises(crypto.KeyDecryptionError):
        provider.api_key  # noqa: B018
    assert provider.api_key_masked == "(cannot decrypt)"


def test_the_mask_shows_only_a_prefix_and_the_last_four():
    assert crypto.mask(KEY) == "sk-…abcd"
    assert "PLAINTEXT" not in crypto.mask(KEY)

"""manage.py rotate_keys: provider keys move to the newest PARLEY_ENCRYPTION_KEYS key."""

import io

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command

from chat.models import Provider

pytestmark = pytest.mark.django_db


def make_provider(name: str, key: str) -> Provider:
    provider = Provider(name=name, base_url="https://api.example.test/v1")
    provider.api_key = key
    provider.save()
    return provider


def stored(provider: Provider) -> str:
    return Provider.objects.values_list("api_key_encrypted", flat=True).get(pk=provider.pk)


def rotate(*args) -> str:
    out = io.StringIO()
    call_command("rotate_keys", *args, stdout=out)
    return out.getvalue()


def test_it_re_encrypts_every_provider_key_under_the_newest_key(settings):
    old_key = Fernet.generate_key().decode()
    settings.PARLEY_ENCRYPTION_KEYS = [old_key]
    openai = make_provider("OpenAI", "sk-openai-0123456789abcd")
    azure = make_provider("Azure", "az-key-0123456789wxyz")
    keyless = make_provider("Local", "")

    new_key = Fernet.generate_key().decode()
    settings.PARLEY_ENCRYPTION_KEYS = [new_key, old_key]
    assert "Re-encrypted 2 provider keys under the newest key; 0 already were." in rotate()

    # The old key can be removed now: the newest key alone opens every stored key.
    for provider in (openai, azure):
        with pytest.raises(InvalidToken):
            Fernet(old_key.encode()).decrypt(stored(provider).encode())
    settings.PARLEY_ENCRYPTION_KEYS = [new_key]
    assert Provider.objects.get(pk=openai.pk).api_key == "sk-openai-0123456789abcd"
    assert Provider.objects.get(pk=azure.pk).api_key == "az-key-0123456789wxyz"
    assert stored(keyless) == ""


def test_a_second_run_changes_nothing(settings):
    settings.PARLEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    provider = make_provider("OpenAI", "sk-openai-0123456789abcd")
    before = stored(provider)
    assert "Re-encrypted 0 provider keys under the newest key; 1 already were." in rotate()
    assert stored(provider) == before


def test_check_fails_until_the_keys_are_rotated(settings):
    old_key = Fernet.generate_key().decode()
    settings.PARLEY_ENCRYPTION_KEYS = [old_key]
    provider = make_provider("OpenAI", "sk-openai-0123456789abcd")
    settings.PARLEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
    before = stored(provider)
    with pytest.raises(CommandError, match="Not yet rotated: OpenAI"):
        rotate("--check")
    assert stored(provider) == before  # --check changes nothing
    rotate()
    assert "1 provider keys under the newest key, 0 under an older one." in rotate("--check")


def test_a_key_no_configured_key_opens_is_reported_and_left_alone(settings):
    settings.PARLEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    lost = make_provider("Lost", "sk-lost-0123456789abcd")
    settings.PARLEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    before = stored(lost)
    with pytest.raises(CommandError, match="decrypts the stored key of: Lost"):
        rotate()
    assert stored(lost) == before


def test_single_sign_on_client_secrets_are_rotated_too(settings):
    from accounts.models import OIDCProvider

    old_key = Fernet.generate_key().decode()
    settings.PARLEY_ENCRYPTION_KEYS = [old_key]
    sso = OIDCProvider(slug="acme", label="Acme SSO", issuer="https://login.acme.test", client_id="parley")
    sso.client_secret = "idp-secret-0123456789"
    sso.save()
    new_key = Fernet.generate_key().decode()
    settings.PARLEY_ENCRYPTION_KEYS = [new_key, old_key]
    with pytest.raises(CommandError, match="Acme SSO"):
        rotate("--check")
    rotate()
    settings.PARLEY_ENCRYPTION_KEYS = [new_key]
    assert OIDCProvider.objects.get().client_secret == "idp-secret-0123456789"

"""Encryption of provider API keys at rest.

MultiFernet over ``PARLEY_ENCRYPTION_KEYS`` (newest first): the newest key encrypts, every
key decrypts, so keys can be rotated by prepending a new one. A token that no configured key
can decrypt raises :class:`KeyDecryptionError`; it is never passed through as if it were the
plaintext (the flaw of fields that ``except InvalidToken: pass``).
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class KeyDecryptionError(Exception):
    """Stored ciphertext that none of the configured encryption keys can open."""


def _fernet() -> MultiFernet:
    keys = settings.PARLEY_ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured("PARLEY_ENCRYPTION_KEYS is empty: provider keys cannot be stored.")
    try:
        return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(f"PARLEY_ENCRYPTION_KEYS holds an invalid key: {exc}") from None


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise KeyDecryptionError(
            "A stored provider key cannot be decrypted with any key in PARLEY_ENCRYPTION_KEYS."
        ) from None


def is_current(token: str) -> bool:
    """True when the newest encryption key can open ``token`` (no re-encryption needed)."""
    if not token:
        return True
    newest = settings.PARLEY_ENCRYPTION_KEYS[0]
    try:
        Fernet(newest.encode() if isinstance(newest, str) else newest).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def mask(secret: str) -> str:
    """``sk-…abcd``: enough to recognise a key, never enough to use it."""
    if not secret:
        return ""
    prefix = secret[:3] if len(secret) > 12 else ""
    return f"{prefix}…{secret[-4:]}" if len(secret) > 8 else "…"

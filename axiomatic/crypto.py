"""Encryption of secrets at rest for the core and apps that may not import the CRM (webhook secrets).

The same scheme as `crm.crypto` (the mailbox tokens): `FIELD_ENCRYPTION_KEYS` lists Fernet keys,
newest first; the newest encrypts, every key decrypts, so a new key can be put in front while old
ciphertexts still read. With DEBUG on and no keys configured, one key is derived from SECRET_KEY
(demo only; settings refuse to start without keys in production).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["InvalidToken", "decrypt", "encrypt", "reencrypt"]


def _configured_keys() -> tuple[str, ...]:
    keys = tuple(key for key in getattr(settings, "FIELD_ENCRYPTION_KEYS", []) if key)
    if keys:
        return keys
    if not settings.DEBUG:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is off")
    digest = hashlib.sha256(b"axiomatic.field-encryption:" + settings.SECRET_KEY.encode("utf-8")).digest()
    return (base64.urlsafe_b64encode(digest).decode("ascii"),)


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode("ascii")) for key in keys])
    except (ValueError, UnicodeEncodeError) as exc:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS holds a key that is not a Fernet key: {exc}") from None


def _fernet() -> MultiFernet:
    return _fernet_for(_configured_keys())


def encrypt(plaintext: str) -> str:
    """Ciphertext of `plaintext` under the newest key ("" stays "")."""
    if not plaintext:
        return ""
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(ciphertext: str) -> str:
    """Plaintext of a stored value; raises `InvalidToken` when no configured key opens it."""
    if not ciphertext:
        return ""
    return _fernet().decrypt(ciphertext.encode("ascii")).decode("utf-8")


def reencrypt(ciphertext: str) -> str:
    """The same plaintext re-encrypted under the newest key (MultiFernet.rotate)."""
    if not ciphertext:
        return ""
    return _fernet().rotate(ciphertext.encode("ascii")).decode("ascii")

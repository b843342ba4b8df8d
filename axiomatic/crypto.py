"""Encryption of secrets at rest (mailbox OAuth tokens, webhook signing secrets).

`FIELD_ENCRYPTION_KEYS` lists Fernet keys, newest first: the newest encrypts, every key decrypts,
so a new key can be put in front while old ciphertexts still read. `rotate_encryption_keys`
then re-encrypts every stored value with the newest key, after which old keys can be dropped.
With DEBUG on and no keys configured, one key is derived from SECRET_KEY (demo only; settings
refuse to start without keys in production).
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
    # Keyed on the current setting so tests (and a reloaded config) never see a stale key set.
    return _fernet_for(_configured_keys())


def encrypt(plaintext: str) -> str:
    """Ciphertext of `plaintext` under the newest key ("" stays "": nothing to protect)."""
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


# Models holding ciphertexts, so `rotate_encryption_keys` re-encrypts every one of them: each app
# registers its encrypted columns when it starts (`register_encrypted_fields`).
ENCRYPTED_FIELDS: dict[type, tuple[str, ...]] = {}


def register_encrypted_fields(model: type, *fields: str) -> None:
    """Declare `model`'s columns that hold ciphertexts of this module."""
    ENCRYPTED_FIELDS[model] = fields

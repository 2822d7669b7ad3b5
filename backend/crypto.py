"""Application-level encryption of secrets and of free text that can carry clinical detail.

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key ring from settings: `ENCRYPTION_KEYS` is a
comma-separated list of Fernet keys, the first one current (it encrypts), every one able to decrypt, so a key can be
rotated in without making old rows unreadable (see the README's "Security" section).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Dialect

from backend.settings import get_settings


class DecryptionError(Exception):
    """A stored value could not be decrypted with any configured key."""


def derive_key(secret: str) -> str:
    """A Fernet key derived from an arbitrary secret (the development default uses SECRET_KEY)."""
    return base64.urlsafe_b64encode(hashlib.sha256(b"waitwell-encryption:" + secret.encode()).digest()).decode()


def key_ring() -> list[str]:
    """The configured keys, current first; without ENCRYPTION_KEYS, one key derived from SECRET_KEY."""
    settings = get_settings()
    keys = [k.strip() for k in (settings.encryption_keys or "").split(",") if k.strip()]
    return keys or [derive_key(settings.secret_key)]


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(key_ring()))


def encrypt_text(plaintext: str) -> str:
    """Encrypt under the current key; the result is ASCII (a Fernet token)."""
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt_text(token: str) -> str:
    """Decrypt with whichever configured key encrypted it."""
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("a stored value could not be decrypted with the configured keys") from exc


def rotate_token(token: str) -> str:
    """Re-encrypt a stored value under the current key (MultiFernet.rotate)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("a stored value could not be decrypted with the configured keys") from exc


class EncryptedText(sa.types.TypeDecorator[str]):
    """A text column stored encrypted; Python sees the plaintext. Empty strings stay empty (nothing to hide)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or value == "":
            return value
        return encrypt_text(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or value == "":
            return value
        return decrypt_text(str(value))

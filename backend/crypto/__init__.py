"""Application-level encryption of secrets and of free text that can carry clinical detail.

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key ring from settings: `ENCRYPTION_KEYS` is a
comma-separated list of Fernet keys, the first one current (it encrypts), every one able to decrypt, so a key can be
rotated in without making old rows unreadable (see the README's "Security" section).

Columns typed `EncryptedText` hold Fernet tokens; the ORM and Core statements see the plaintext. A column that holds
`encrypt_text` output without that type must be named with `register_token_column` so that `rotate` covers it.

Key rotation over the stored rows lives in backend/crypto/rotation.py (it reads the models, which import this
module): `python -m backend.crypto generate-key | derived-key | status | rotate`.
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
    """A Fernet key derived from an arbitrary secret (the development default uses SECRET_KEY).

    alembic/versions/0013_encrypt_free_text.py repeats this derivation (a migration imports nothing from backend):
    change both or neither."""
    return base64.urlsafe_b64encode(hashlib.sha256(b"waitwell-encryption:" + secret.encode()).digest()).decode()


def key_ring() -> list[str]:
    """The configured keys, current first; without ENCRYPTION_KEYS, one key derived from SECRET_KEY."""
    settings = get_settings()
    keys = [k for k in settings.encryption_keys.split(",") if k]  # validated and stripped by Settings
    return keys or [derive_key(settings.secret_key)]


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


@lru_cache(maxsize=8)
def _current(key: str) -> Fernet:
    return Fernet(key.encode())


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


def under_current_key(token: str) -> bool:
    """Whether the current key (the first of the ring) decrypts this token."""
    try:
        _current(key_ring()[0]).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


class EncryptedText(sa.types.TypeDecorator[str]):
    """A text column stored encrypted; Python sees the plaintext. Empty strings stay empty (nothing to hide).

    The column is Text: a token is about 4/3 of (57 + the plaintext's UTF-8 bytes rounded up to 16), so a 500-character
    note takes 760 to 2,700 characters. Length limits apply to the plaintext, in the request models and the services.
    Tokens are random (a fresh IV each time): such a column cannot be searched, sorted or compared in SQL."""

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


# ---- columns that hold tokens without the EncryptedText type (rotation covers them too) --------------------------

_TOKEN_COLUMNS: set[tuple[str, str]] = set()


def register_token_column(table: str, column: str) -> None:
    """Name a column that stores `encrypt_text` tokens without the EncryptedText type, so `rotate` covers it."""
    _TOKEN_COLUMNS.add((table, column))


def token_columns() -> frozenset[tuple[str, str]]:
    return frozenset(_TOKEN_COLUMNS)

"""backend/crypto without a database: the column type, the key ring, and the settings' check of the keys."""

from __future__ import annotations

import importlib.util

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from backend import crypto
from backend.settings import PROJECT_ROOT, Settings, get_settings

SECRET = "s" * 48


def test_encrypted_text_stores_tokens_and_reads_plaintext() -> None:
    column = crypto.EncryptedText()
    token = column.process_bind_param("Needs to be seen soon: panic attacks", None)  # type: ignore[arg-type]
    assert token is not None and token.startswith("gAAAAA") and "panic" not in token
    assert column.process_result_value(token, None) == "Needs to be seen soon: panic attacks"  # type: ignore[arg-type]
    # A fresh IV each time: equal texts do not give equal tokens (nothing to compare or sort on in SQL).
    assert column.process_bind_param("same", None) != column.process_bind_param("same", None)  # type: ignore[arg-type]
    for nothing in (None, ""):
        assert column.process_bind_param(nothing, None) == nothing  # type: ignore[arg-type]
        assert column.process_result_value(nothing, None) == nothing  # type: ignore[arg-type]


def test_the_ring_decrypts_with_any_key_and_encrypts_with_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = get_settings()
    monkeypatch.setattr(settings, "encryption_keys", k1)
    old = crypto.encrypt_text("note")
    monkeypatch.setattr(settings, "encryption_keys", f"{k2},{k1}")
    assert crypto.decrypt_text(old) == "note" and not crypto.under_current_key(old)
    new = crypto.encrypt_text("note")
    assert Fernet(k2.encode()).decrypt(new.encode()) == b"note" and crypto.under_current_key(new)
    rotated = crypto.rotate_token(old)
    assert crypto.under_current_key(rotated) and crypto.decrypt_text(rotated) == "note"
    monkeypatch.setattr(settings, "encryption_keys", k2)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_text(old)
    assert crypto.decrypt_text(rotated) == "note"


def test_without_keys_one_is_derived_from_the_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "encryption_keys", "")
    assert crypto.key_ring() == [crypto.derive_key(settings.secret_key)]
    # The migration repeats the derivation (it imports nothing from backend): the two must agree.
    path = PROJECT_ROOT / "alembic" / "versions" / "0013_encrypt_free_text.py"
    spec = importlib.util.spec_from_file_location("migration_0013", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.derive_key(SECRET) == crypto.derive_key(SECRET)
    Fernet(crypto.derive_key(SECRET).encode())  # a valid Fernet key


def test_settings_refuse_a_malformed_key() -> None:
    good = Fernet.generate_key().decode()
    assert Settings(secret_key=SECRET, encryption_keys=f" {good} ,, ").encryption_keys == good
    for bad in ("not-a-key", f"{good},{good[:-4]}", "A" * 44 + "=="):
        with pytest.raises(ValidationError, match="is not a Fernet key"):
            Settings(secret_key=SECRET, encryption_keys=bad)

"""TOTP matching (window, replay), recovery codes and the pending-MFA token (no database)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pyotp
import pytest

from backend.identity import mfa
from backend.tenancy.context import Role

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_800_000_015.0  # inside a step, away from its edges
STEP = int(NOW // 30)


def code_at(step: int) -> str:
    return str(pyotp.TOTP(SECRET).at(step * 30))


def test_the_current_code_matches_its_step() -> None:
    assert mfa.match_totp(SECRET, code_at(STEP), last_step=None, now=NOW) == STEP


def test_one_step_either_side_is_accepted_and_two_are_not() -> None:
    assert mfa.match_totp(SECRET, code_at(STEP - 1), last_step=None, now=NOW) == STEP - 1
    assert mfa.match_totp(SECRET, code_at(STEP + 1), last_step=None, now=NOW) == STEP + 1
    assert mfa.match_totp(SECRET, code_at(STEP - 2), last_step=None, now=NOW) is None
    assert mfa.match_totp(SECRET, code_at(STEP + 2), last_step=None, now=NOW) is None


def test_a_code_at_or_before_the_last_used_step_is_a_replay() -> None:
    assert mfa.match_totp(SECRET, code_at(STEP), last_step=STEP, now=NOW) is None
    assert mfa.match_totp(SECRET, code_at(STEP - 1), last_step=STEP - 1, now=NOW) is None
    assert mfa.match_totp(SECRET, code_at(STEP - 1), last_step=STEP, now=NOW) is None
    # The next step's code is still good after the current one was used.
    assert mfa.match_totp(SECRET, code_at(STEP + 1), last_step=STEP, now=NOW) == STEP + 1


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "１２３４５６", "12 34 5x"])
def test_malformed_codes_never_match(code: str) -> None:
    assert mfa.match_totp(SECRET, code, last_step=None, now=NOW) is None


def test_spaces_in_a_typed_code_are_ignored() -> None:
    code = code_at(STEP)
    assert mfa.match_totp(SECRET, f" {code[:3]} {code[3:]} ", last_step=None, now=NOW) == STEP


def test_a_wrong_code_does_not_match() -> None:
    window = {code_at(STEP + offset) for offset in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in window)
    assert mfa.match_totp(SECRET, wrong, last_step=None, now=NOW) is None


def test_new_secrets_are_random_base32_of_160_bits() -> None:
    a, b = mfa.new_secret(), mfa.new_secret()
    assert a != b and len(a) == 32 and set(a) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def test_provisioning_uri_and_qr_code() -> None:
    uri = mfa.provisioning_uri(SECRET, "admin@harbor.example")
    assert uri.startswith("otpauth://totp/Waitwell:admin%40harbor.example?") and f"secret={SECRET}" in uri
    data = mfa.qr_data_uri(uri)
    assert data.startswith("data:image/svg+xml")


def test_recovery_codes_are_ten_distinct_and_hashed_with_their_own_salt() -> None:
    codes = mfa.new_recovery_codes()
    assert len(codes) == len(set(codes)) == 10
    assert all(len(c) == 11 and c[5] == "-" for c in codes)
    first, again = mfa.hash_recovery_code(codes[0]), mfa.hash_recovery_code(codes[0])
    assert first != again  # a fresh salt each time
    assert codes[0] not in first
    assert mfa.recovery_code_matches(first, codes[0]) and mfa.recovery_code_matches(again, codes[0])
    # Typed loosely: upper case, spaces instead of the dash.
    assert mfa.recovery_code_matches(first, codes[0].upper().replace("-", " "))
    assert not mfa.recovery_code_matches(first, codes[1])


def _user(**overrides: Any) -> Any:
    values = {
        "id": uuid.uuid4(),
        "tenant_id": uuid.uuid4(),
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def test_pending_token_round_trip_expiry_and_tampering() -> None:
    user = _user()
    token = mfa.issue_pending_token(user, Role.ADMIN, now=NOW)
    claims = mfa._read_pending_claims(token, now=NOW + 10)
    assert claims is not None and claims["u"] == str(user.id) and claims["r"] == "admin"
    assert mfa._read_pending_claims(token, now=NOW + mfa.PENDING_SECONDS) is None  # five minutes, no more
    body, signature = token.split(".")
    assert mfa._read_pending_claims(f"{body}x.{signature}", now=NOW) is None
    assert mfa._read_pending_claims(f"{body}.{signature[:-2]}AA", now=NOW) is None
    assert mfa._read_pending_claims("", now=NOW) is None
    assert mfa._read_pending_claims("a.b.c", now=NOW) is None


def test_pending_token_is_not_an_access_token() -> None:
    from backend.errors import AuthenticationFailed
    from backend.identity import security

    token = mfa.issue_pending_token(_user(), Role.ADMIN)
    with pytest.raises(AuthenticationFailed):
        security.decode_access_token(token)


def test_pending_token_names_the_password_it_checked() -> None:
    user = _user()
    token = mfa.issue_pending_token(user, Role.ADMIN, now=NOW)
    claims = mfa._read_pending_claims(token, now=NOW)
    assert claims is not None
    assert claims["p"] == mfa._password_fingerprint(user.password_hash)
    assert claims["p"] != mfa._password_fingerprint(user.password_hash + "changed")


def test_error_codes() -> None:
    actor = SimpleNamespace()
    required = mfa.MfaRequired(actor=actor, pending_token="t")  # type: ignore[arg-type]
    assert required.code == "mfa_required" and required.status_code == 401
    assert mfa.MfaInvalid("x").code == "mfa_invalid" and mfa.MfaInvalid("x").status_code == 401

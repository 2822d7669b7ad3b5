"""Passwords, access tokens and session tokens (no database)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from backend.errors import AuthenticationFailed
from backend.identity import security
from backend.settings import get_settings
from backend.types import utcnow

USER_ID = uuid.UUID("11111111-1111-4111-8111-111111111111")
TENANT_ID = uuid.UUID("22222222-2222-4222-8222-222222222222")


def _key() -> OctKey:
    return OctKey.import_key(get_settings().secret_key)


def _claims(**overrides: object) -> dict[str, object]:
    now = int(utcnow().timestamp())
    claims: dict[str, object] = {
        "sub": str(USER_ID),
        "tenant": str(TENANT_ID),
        "role": "admin",
        "iat": now,
        "exp": now + 600,
        "jti": "abc123",
    }
    claims.update(overrides)
    return claims


def _sign(claims: dict[str, object], alg: str = "HS256", key: OctKey | None = None) -> str:
    return jwt.encode({"alg": alg, "typ": "JWT"}, claims, key or _key(), algorithms=[alg])


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- passwords ---------------------------------------------------------------------------------------


def test_hash_password_is_argon2id_and_verifies() -> None:
    hashed = security.hash_password("s3cret pass")
    assert hashed.startswith("$argon2id$")
    assert "s3cret pass" not in hashed
    assert security.verify_password(hashed, "s3cret pass")
    assert not security.verify_password(hashed, "s3cret pasS")
    assert not security.verify_password(hashed, "")


def test_hash_password_is_salted() -> None:
    assert security.hash_password("same") != security.hash_password("same")


def test_verify_password_without_hash_fails() -> None:
    # An unknown account: the dummy hash is checked for timing, but the answer is always no.
    assert not security.verify_password(None, "not-a-real-password")
    assert not security.verify_password(None, "anything")


def test_verify_password_with_garbage_hash_fails() -> None:
    assert not security.verify_password("not-an-argon2-hash", "anything")


# -- access tokens -----------------------------------------------------------------------------------


def test_access_token_round_trip() -> None:
    token, expires_in = security.issue_access_token(user_id=USER_ID, tenant_id=TENANT_ID, role="doctor")
    assert expires_in == get_settings().access_token_minutes * 60
    claims = security.decode_access_token(token)
    assert claims["sub"] == str(USER_ID)
    assert claims["tenant"] == str(TENANT_ID)
    assert claims["role"] == "doctor"
    assert claims["exp"] - claims["iat"] == expires_in
    assert abs(claims["iat"] - utcnow().timestamp()) < 60
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "HS256"


def test_each_token_has_its_own_id() -> None:
    first, _ = security.issue_access_token(user_id=USER_ID, tenant_id=TENANT_ID, role="admin")
    second, _ = security.issue_access_token(user_id=USER_ID, tenant_id=TENANT_ID, role="admin")
    assert security.decode_access_token(first)["jti"] != security.decode_access_token(second)["jti"]


def test_token_with_tampered_payload_is_rejected() -> None:
    token, _ = security.issue_access_token(user_id=USER_ID, tenant_id=TENANT_ID, role="patient")
    header, _payload, signature = token.split(".")
    forged = _b64(_claims(role="admin"))
    with pytest.raises(AuthenticationFailed, match="invalid or expired token"):
        security.decode_access_token(f"{header}.{forged}.{signature}")


def test_token_with_tampered_signature_is_rejected() -> None:
    token, _ = security.issue_access_token(user_id=USER_ID, tenant_id=TENANT_ID, role="patient")
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(AuthenticationFailed):
        security.decode_access_token(f"{header}.{payload}.{flipped}")


def test_token_signed_with_another_key_is_rejected() -> None:
    other = OctKey.import_key("another-secret-key-that-is-long-enough-0123456789")
    with pytest.raises(AuthenticationFailed):
        security.decode_access_token(_sign(_claims(), key=other))


def test_hand_made_valid_token_is_accepted() -> None:
    # The control for the refusals below: the same construction with the pinned algorithm passes.
    assert security.decode_access_token(_sign(_claims()))["role"] == "admin"


def test_expired_token_is_rejected() -> None:
    past = int((utcnow() - timedelta(hours=2)).timestamp())
    token = _sign(_claims(iat=past, exp=past + 60))
    with pytest.raises(AuthenticationFailed, match="invalid or expired token"):
        security.decode_access_token(token)


def test_unsigned_alg_none_token_is_rejected() -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    with pytest.raises(AuthenticationFailed):
        security.decode_access_token(token)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_token_with_another_hmac_algorithm_is_rejected(alg: str) -> None:
    # Same secret, valid signature, but not the pinned algorithm.
    with pytest.raises(AuthenticationFailed):
        security.decode_access_token(_sign(_claims(), alg=alg))


@pytest.mark.parametrize("missing", ["sub", "tenant", "role", "exp", "iat", "jti"])
def test_token_missing_a_required_claim_is_rejected(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    with pytest.raises(AuthenticationFailed):
        security.decode_access_token(_sign(claims))


@pytest.mark.parametrize("claim", ["sub", "tenant"])
def test_token_with_non_uuid_subject_or_tenant_is_rejected(claim: str) -> None:
    with pytest.raises(AuthenticationFailed):
        security.decode_access_token(_sign(_claims(**{claim: "1 OR 1=1"})))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "....", "Bearer x.y.z"])
def test_garbage_is_rejected(garbage: str) -> None:
    with pytest.raises(AuthenticationFailed):
        security.decode_access_token(garbage)


# -- browser session tokens --------------------------------------------------------------------------


def test_session_token_and_stored_hash() -> None:
    token, token_hash = security.new_session_token()
    assert len(token) >= 40
    assert token_hash == security.hash_session_token(token)
    assert len(token_hash) == 64 and token not in token_hash
    other, other_hash = security.new_session_token()
    assert other != token and other_hash != token_hash

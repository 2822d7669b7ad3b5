"""Passwords, access tokens and session tokens (no database)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from backend.errors import AuthenticationFailed
from backend.identity import security
from backend.settings import Settings, get_settings
from backend.types import utcnow

USER_ID = uuid.UUID("11111111-1111-4111-8111-111111111111")
TENANT_ID = uuid.UUID("22222222-2222-4222-8222-222222222222")
SESSION_ID = uuid.UUID("33333333-3333-4333-8333-333333333333")


def _key() -> OctKey:
    return OctKey.import_key(get_settings().secret_key)


def _claims(**overrides: object) -> dict[str, object]:
    now = int(utcnow().timestamp())
    claims: dict[str, object] = {
        "sub": str(USER_ID),
        "tenant": str(TENANT_ID),
        "role": "admin",
        "sid": str(SESSION_ID),
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


def test_lone_surrogate_password_is_a_plain_mismatch_not_a_crash() -> None:
    # Valid in JSON, not encodable as UTF-8: it used to raise UnicodeEncodeError (a 500 at the login).
    hashed = security.hash_password("s3cret pass")
    assert not security.verify_password(hashed, "\ud800")
    assert not security.verify_password(None, "\udfff x")
    assert security.verify_password(security.hash_password("a\ud800b"), "a\ud800b")


# -- access tokens -----------------------------------------------------------------------------------


def test_access_token_round_trip() -> None:
    token, expires_in = security.issue_access_token(
        user_id=USER_ID, tenant_id=TENANT_ID, role="doctor", session_id=SESSION_ID
    )
    assert expires_in == get_settings().access_token_minutes * 60
    claims = security.decode_access_token(token)
    assert claims["sub"] == str(USER_ID)
    assert claims["tenant"] == str(TENANT_ID)
    assert claims["role"] == "doctor"
    assert claims["sid"] == str(SESSION_ID)
    assert claims["exp"] - claims["iat"] == expires_in
    assert abs(claims["iat"] - utcnow().timestamp()) < 60
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "HS256"


def test_each_token_has_its_own_id() -> None:
    first, _ = security.issue_access_token(user_id=USER_ID, tenant_id=TENANT_ID, role="admin", session_id=SESSION_ID)
    second, _ = security.issue_access_token(user_id=USER_ID, tenant_id=TENANT_ID, role="admin", session_id=SESSION_ID)
    assert security.decode_access_token(first)["jti"] != security.decode_access_token(second)["jti"]


def test_token_with_tampered_payload_is_rejected() -> None:
    token, _ = security.issue_access_token(user_id=USER_ID, tenant_id=TENANT_ID, role="patient", session_id=SESSION_ID)
    header, _payload, signature = token.split(".")
    forged = _b64(_claims(role="admin"))
    with pytest.raises(AuthenticationFailed, match="invalid or expired token"):
        security.decode_access_token(f"{header}.{forged}.{signature}")


def test_token_with_tampered_signature_is_rejected() -> None:
    token, _ = security.issue_access_token(user_id=USER_ID, tenant_id=TENANT_ID, role="patient", session_id=SESSION_ID)
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


def test_a_token_verified_once_still_expires_and_is_still_bound_to_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified tokens are remembered (each request reads its token twice); the memory changes no answer."""
    now = int(time.time())
    token = _sign(_claims(iat=now - 10, exp=now + 5))
    for _ in range(2):  # verified, then remembered: each caller gets a copy, and changing it changes nothing
        security.decode_access_token(token)["role"] = "patient"
    assert security.decode_access_token(token)["role"] == "admin"
    monkeypatch.setattr(time, "time", lambda: now + 5.5)  # exp itself is already too late, as joserfc has it
    with pytest.raises(AuthenticationFailed, match="invalid or expired token"):
        security.decode_access_token(token)
    monkeypatch.undo()
    rotated = get_settings().model_copy(update={"secret_key": "another-secret-key-that-is-long-enough-0123456789"})
    monkeypatch.setattr(security, "get_settings", lambda: rotated)
    with pytest.raises(AuthenticationFailed):  # a remembered token signed with the old secret
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


@pytest.mark.parametrize("missing", ["sub", "tenant", "role", "sid", "exp", "iat", "jti"])
def test_token_missing_a_required_claim_is_rejected(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    with pytest.raises(AuthenticationFailed):
        security.decode_access_token(_sign(claims))


@pytest.mark.parametrize("claim", ["sub", "tenant", "sid"])
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


# -- refresh tokens --------------------------------------------------------------------------------------


def test_refresh_token_names_its_session_and_generation_and_only_its_hash_is_kept() -> None:
    token, token_hash = security.new_refresh_token(SESSION_ID, 3)
    assert security.parse_refresh_token(token) == (SESSION_ID, 3)
    assert token_hash == security.hash_session_token(token) and token not in token_hash
    again, again_hash = security.new_refresh_token(SESSION_ID, 3)
    assert again != token and again_hash != token_hash  # the random part differs
    assert security.same_hash(token_hash, security.hash_session_token(token))
    assert not security.same_hash(token_hash, again_hash)
    assert not security.same_hash(None, token_hash)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "a.b.c",
        f"{SESSION_ID.hex}.x.secret",
        f"{SESSION_ID.hex}.1.",
        f"{SESSION_ID.hex}.\u00b2.s",
        "nothex.1.secret",
        f"{SESSION_ID.hex}.1.s.extra",
        f"{SESSION_ID.hex}.1234567890.s",
        "x" * 300,
    ],
)
def test_malformed_refresh_tokens_name_no_session(garbage: str) -> None:
    assert security.parse_refresh_token(garbage) is None


# -- cookie settings -------------------------------------------------------------------------------------


POSTGRES = "postgresql://postgres@db.internal/clinic"
SQLITE = "sqlite:///data/clinic.db"


@pytest.mark.parametrize(
    ("public_url", "database_url", "explicit", "secure", "name"),
    [
        ("http://localhost:3000", SQLITE, None, False, "clinic_session"),
        ("http://localhost:3000", POSTGRES, None, False, "clinic_session"),  # local make run with real services
        ("http://127.0.0.1:8123", POSTGRES, None, False, "clinic_session"),  # the e2e tests
        ("http://clinic.example", POSTGRES, None, True, "__Host-clinic_session"),  # deployed: Secure by default
        ("http://clinic.example", SQLITE, None, False, "clinic_session"),  # the embedded mode
        ("https://clinic.example", SQLITE, None, True, "__Host-clinic_session"),
        ("HTTPS://clinic.example", POSTGRES, None, True, "__Host-clinic_session"),
        ("https://clinic.example", POSTGRES, False, False, "clinic_session"),
        ("http://localhost:3000", SQLITE, True, True, "__Host-clinic_session"),
    ],
)
def test_session_cookie_is_secure_and_host_prefixed_over_https(
    public_url: str, database_url: str, explicit: bool | None, secure: bool, name: str
) -> None:
    settings = Settings(
        _env_file=None, secret_key="s" * 40, public_url=public_url, database_url=database_url, cookie_secure=explicit
    )
    assert settings.secure_cookies is secure
    assert settings.session_cookie == name


def test_access_tokens_last_fifteen_minutes_by_default() -> None:
    assert Settings(_env_file=None, secret_key="s" * 40).access_token_minutes == 15


@pytest.mark.parametrize("value", ["10.0.0.0/8, 127.0.0.1", "::1", ""])
def test_trusted_proxies_accepts_addresses_and_networks(value: str) -> None:
    Settings(_env_file=None, secret_key="s" * 40, trusted_proxies=value)


@pytest.mark.parametrize("value", ["*", "proxy.example", "10.0.0.0/33"])
def test_trusted_proxies_refuses_anything_else(value: str) -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(_env_file=None, secret_key="s" * 40, trusted_proxies=value)

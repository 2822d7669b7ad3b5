"""Password hashing (argon2), access tokens (JWT, HS256 pinned) and session tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from backend.errors import AuthenticationFailed
from backend.settings import get_settings
from backend.types import utcnow

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    """Hash a password with argon2id."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash, spend the same time and fail."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _key() -> OctKey:
    return OctKey.import_key(get_settings().secret_key)


def issue_access_token(*, user_id: uuid.UUID, tenant_id: uuid.UUID, role: str) -> tuple[str, int]:
    """Sign a bearer token; return it with its lifetime in seconds."""
    settings = get_settings()
    now = utcnow()
    lifetime = timedelta(minutes=settings.access_token_minutes)
    claims = {
        "sub": str(user_id),
        "tenant": str(tenant_id),
        "role": role,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "jti": secrets.token_hex(16),
    }
    token = jwt.encode(
        {"alg": settings.jwt_algorithm, "typ": "JWT"}, claims, _key(), algorithms=[settings.jwt_algorithm]
    )
    return token, int(lifetime.total_seconds())


def decode_access_token(token: str) -> dict[str, Any]:
    """Verify signature (pinned algorithm), expiry and required claims; return the claims."""
    settings = get_settings()
    try:
        decoded = jwt.decode(token, _key(), algorithms=[settings.jwt_algorithm])
        registry = jwt.JWTClaimsRegistry(
            sub={"essential": True},
            tenant={"essential": True},
            role={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
        )
        registry.validate(decoded.claims)
        claims = dict(decoded.claims)
        uuid.UUID(claims["sub"])
        uuid.UUID(claims["tenant"])
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise AuthenticationFailed("invalid or expired token") from exc
    return claims


def new_session_token() -> tuple[str, str]:
    """Return a random session token for the cookie and the hash we store."""
    token = secrets.token_urlsafe(32)
    return token, hash_session_token(token)


def hash_session_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

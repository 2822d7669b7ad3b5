"""Password hashing (argon2), access tokens (JWT, HS256 pinned), session and refresh tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from datetime import timedelta
from functools import lru_cache
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


def _secret_bytes(password: str) -> bytes:
    # UTF-8 for every real password; a lone surrogate (valid in JSON, not in UTF-8) must not become a 500.
    return password.encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    """Hash a password with argon2id."""
    return _hasher.hash(_secret_bytes(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash, spend the same time and fail."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, _secret_bytes(password)) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=4)
def _key_of(secret: str) -> OctKey:
    return OctKey.import_key(secret)


def _key() -> OctKey:
    return _key_of(get_settings().secret_key)


_CLAIMS = jwt.JWTClaimsRegistry(
    sub={"essential": True},
    tenant={"essential": True},
    role={"essential": True},
    sid={"essential": True},
    exp={"essential": True},
    iat={"essential": True},
    jti={"essential": True},
)
# Tokens this process has verified, by (secret, algorithm, token): a client sends the same token with every request,
# and the rate limiter and the route each read it. A hit is checked for expiry again (the one check that time can
# change); an edited token is a different key, and a changed secret or algorithm misses. Emptied when full.
_verified: dict[tuple[str, str, str], dict[str, Any]] = {}
_VERIFIED_MAX = 4096


def issue_access_token(
    *, user_id: uuid.UUID, tenant_id: uuid.UUID, role: str, session_id: uuid.UUID
) -> tuple[str, int]:
    """Sign a bearer token bound to its session (`sid`); return it with its lifetime in seconds."""
    settings = get_settings()
    now = utcnow()
    lifetime = timedelta(minutes=settings.access_token_minutes)
    claims = {
        "sub": str(user_id),
        "tenant": str(tenant_id),
        "role": role,
        "sid": str(session_id),
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
    memo = (settings.secret_key, settings.jwt_algorithm, token)
    known = _verified.get(memo)
    if known is not None:
        if known["exp"] <= int(time.time()):  # as joserfc's exp check: expired at exp itself
            raise AuthenticationFailed("invalid or expired token")
        return dict(known)
    try:
        decoded = jwt.decode(token, _key(), algorithms=[settings.jwt_algorithm])
        _CLAIMS.validate(decoded.claims)
        claims = dict(decoded.claims)
        uuid.UUID(claims["sub"])
        uuid.UUID(claims["tenant"])
        uuid.UUID(claims["sid"])
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise AuthenticationFailed("invalid or expired token") from exc
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[memo] = claims
    return dict(claims)


def new_session_token() -> tuple[str, str]:
    """Return a random session token for the cookie and the hash we store."""
    token = secrets.token_urlsafe(32)
    return token, hash_session_token(token)


def hash_session_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token(session_id: uuid.UUID, generation: int) -> tuple[str, str]:
    """Return an opaque refresh token for the session's `generation`, and the hash we store.

    The session id and generation ride in the clear so that a presented token finds its session and a rotated
    (older) one is recognised as reuse; the random part is what proves possession.
    """
    token = f"{session_id.hex}.{generation}.{secrets.token_urlsafe(32)}"
    return token, hash_session_token(token)


def parse_refresh_token(token: str) -> tuple[uuid.UUID, int] | None:
    """The session id and generation a refresh token names, or None when it is not one of ours in shape."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 200 or not parts[1].isdigit() or len(parts[1]) > 9 or not parts[2]:
        return None
    try:
        return uuid.UUID(hex=parts[0]), int(parts[1])
    except ValueError:
        return None


def same_hash(left: str | None, right: str) -> bool:
    """Compare two stored hashes in constant time."""
    return left is not None and hmac.compare_digest(left, right)

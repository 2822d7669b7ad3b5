"""Multi-factor sign-in: TOTP (RFC 6238) with one-time recovery codes.

- The secret is generated here, shown once as a QR code (drawn locally, segno) and as text, and stored encrypted
  (backend.crypto); no route returns it after enrolment. Enrolment is confirmed by a first valid code, which then
  yields ten recovery codes, shown once and stored as salted SHA-256 hashes.
- A code is accepted for the current 30-second step or one step either side (valid_window=1), and only for a
  step after the last one accepted for that user (`users.mfa_last_step`): a code is never accepted twice.
- Admins must use MFA; clinicians too when their practice says so (`tenants.mfa_required_for_clinicians`); anyone
  else may opt in. Someone who must and has not enrolled signs in to a session that reaches only the enrolment page,
  in the browser and through the API alike (`user_sessions.mfa_enrolment_only`, cleared by confirming enrolment):
  an API token of such a session is refused (403 `mfa_enrolment_required`) everywhere but on the enrolment routes
  (backend/api/deps.py).
- Between the password and the code, the browser holds a signed pending-MFA token (5 minutes, bound to the user and
  to their current password hash), never a session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass

import pyotp
import segno
from sqlalchemy import update
from sqlmodel import col, select

from backend.audit.service import record
from backend.crypto import decrypt_text, encrypt_text
from backend.db import UnitOfWork
from backend.errors import AuthenticationFailed, NotFound, PermissionDenied, ValidationFailed
from backend.identity import security
from backend.identity.models import Membership, MfaRecoveryCode, User, UserSession
from backend.service import require_role, service_function
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Tenant
from backend.types import utcnow

ISSUER = "Waitwell"
STEP_SECONDS = 30
DIGITS = 6
VALID_WINDOW = 1  # steps accepted either side of the current one (clock drift, a code typed at the boundary)
RECOVERY_CODE_COUNT = 10
PENDING_SECONDS = 300  # between a right password and the code
PENDING_COOKIE = "clinic_mfa_pending"
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read from paper, typed by hand


class MfaRequired(AuthenticationFailed):
    """The password was right; this account also needs a code (`totp`: a TOTP code or a recovery code)."""

    code = "mfa_required"

    def __init__(
        self, message: str = "Enter the code from your authenticator app.", *, actor: Actor, pending_token: str
    ) -> None:
        super().__init__(message)
        self.actor = actor
        # Signed proof of the right password for the browser's second step (PENDING_SECONDS); not a session.
        self.pending_token = pending_token


class MfaInvalid(AuthenticationFailed):
    """The code was wrong, already used, or the account has no MFA to check it against."""

    code = "mfa_invalid"


class MfaEnrolmentRequired(PermissionDenied):
    """The account must use MFA and has not set it up: its token may only enrol (and say who it is, sign out)."""

    code = "mfa_enrolment_required"

    def __init__(
        self,
        message: str = (
            "Set up two-step sign-in first: POST /api/v1/me/mfa/enrol, then POST /api/v1/me/mfa/confirm with a code "
            "from your authenticator app. Until then this token can do nothing else."
        ),
    ) -> None:
        super().__init__(message)


BAD_CODE = "That code is not valid. Enter the current code from your authenticator app, or a recovery code."


# -- TOTP and recovery codes (no I/O) --------------------------------------------------------------------


def new_secret() -> str:
    """A random 160-bit TOTP secret in base32 (what authenticator apps take)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=account, issuer_name=issuer)


def qr_data_uri(uri: str) -> str:
    """The QR code of `uri` as an SVG data URI, drawn here (nothing leaves the server)."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.strip().lower() if ch not in " -\t")


def looks_like_totp(code: str) -> bool:
    value = normalize_code(code)
    return len(value) == DIGITS and value.isascii() and value.isdigit()


def match_totp(secret: str, code: str, *, last_step: int | None, now: float | None = None) -> int | None:
    """The time step `code` is valid for (current +- VALID_WINDOW, after `last_step`), or None."""
    value = normalize_code(code)
    if not looks_like_totp(value):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    step = current_step(now)
    matched = None
    for candidate in range(step - VALID_WINDOW, step + VALID_WINDOW + 1):
        # Every candidate is compared (constant work), and a step at or before the last accepted one never counts.
        if hmac.compare_digest(totp.at(candidate * STEP_SECONDS), value) and (
            last_step is None or candidate > last_step
        ):
            matched = candidate if matched is None else matched
    return matched


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """`count` one-time codes like `k7pqz-4mh2x` (about 49 bits each)."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def hash_recovery_code(code: str) -> str:
    """`salt$sha256(salt + code)`: a fresh salt per code, so equal codes never hash alike."""
    salt = secrets.token_hex(16)
    digest = hashlib.sha256(f"{salt}:{normalize_code(code)}".encode()).hexdigest()
    return f"{salt}${digest}"


def recovery_code_matches(stored: str, code: str) -> bool:
    salt, _, digest = stored.partition("$")
    candidate = hashlib.sha256(f"{salt}:{normalize_code(code)}".encode("utf-8", "surrogatepass")).hexdigest()
    return hmac.compare_digest(candidate, digest)


# -- the pending-MFA token (between the password and the code) -------------------------------------------


@dataclass(frozen=True)
class PendingLogin:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role


def _pending_key() -> bytes:
    return hashlib.sha256(b"waitwell-mfa-pending:" + get_settings().secret_key.encode()).digest()


def _password_fingerprint(password_hash: str) -> str:
    # Binds the token to the password that was checked: a password change in between voids it.
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def issue_pending_token(user: User, role: Role, *, now: float | None = None) -> str:
    """A signed token saying "this user gave the right password"; good for PENDING_SECONDS, not a session."""
    issued = int(time.time() if now is None else now)
    claims = {
        "u": str(user.id),
        "t": str(user.tenant_id),
        "r": str(role),
        "p": _password_fingerprint(user.password_hash),
        "e": issued + PENDING_SECONDS,
        "n": secrets.token_hex(8),
    }
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64(hmac.new(_pending_key(), body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def _read_pending_claims(token: str, now: float | None = None) -> dict[str, str] | None:
    if not token or len(token) > 600 or token.count(".") != 1:
        return None
    body, signature = token.split(".")
    expected = _b64(hmac.new(_pending_key(), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if not isinstance(claims, dict) or int(claims["e"]) <= int(time.time() if now is None else now):
            return None
        uuid.UUID(str(claims["u"]))
        uuid.UUID(str(claims["t"]))
        Role(str(claims["r"]))
    except (ValueError, KeyError, TypeError):
        return None
    return {key: str(value) for key, value in claims.items()}


def pending_cookie_name() -> str:
    return f"__Host-{PENDING_COOKIE}" if get_settings().secure_cookies else PENDING_COOKIE


# -- who needs MFA, and checking a code --------------------------------------------------------------------


def is_enrolled(user: User) -> bool:
    return user.mfa_secret_encrypted is not None


def mfa_required_for(uow: UnitOfWork, role: Role, tenant_id: uuid.UUID) -> bool:
    """Admins always; clinicians when their practice requires it; patients never (they may opt in)."""
    if role == Role.ADMIN:
        return True
    if role == Role.DOCTOR:
        tenant = uow.session.get(Tenant, tenant_id)
        return bool(tenant and tenant.mfa_required_for_clinicians)
    return False


def verify_second_factor(uow: UnitOfWork, user: User, code: str) -> str | None:
    """Check a TOTP code or an unused recovery code of an enrolled user; spend it; return "totp" or "recovery".

    The row is locked (PostgreSQL) so two requests with the same code cannot both pass the replay check.
    """
    if user.mfa_secret_encrypted is None:
        return None
    if uow.session.get_bind().dialect.name != "sqlite":
        uow.session.refresh(user, with_for_update=True)
    if looks_like_totp(code):
        step = match_totp(decrypt_text(user.mfa_secret_encrypted), code, last_step=user.mfa_last_step)
        if step is None:
            return None
        user.mfa_last_step = step
        uow.session.add(user)
        return "totp"
    if len(normalize_code(code)) != 10:
        return None
    unused = uow.session.exec(
        select(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id, col(MfaRecoveryCode.used_at).is_(None))
    )
    for row in unused:
        if recovery_code_matches(row.code_hash, code):
            row.used_at = utcnow()
            uow.session.add(row)
            return "recovery"
    return None


def _store_recovery_codes(uow: UnitOfWork, user: User) -> list[str]:
    for old in uow.session.exec(select(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id)):
        uow.session.delete(old)
    codes = new_recovery_codes()
    for code in codes:
        uow.session.add(MfaRecoveryCode(tenant_id=user.tenant_id, user_id=user.id, code_hash=hash_recovery_code(code)))
    return codes


def read_pending(token: str | None) -> tuple[PendingLogin, User] | None:
    """The pending login a token names, with its user, if the token is genuine, fresh and still matches the user."""
    claims = _read_pending_claims(token or "")
    if claims is None:
        return None
    pending = PendingLogin(user_id=uuid.UUID(claims["u"]), tenant_id=uuid.UUID(claims["t"]), role=Role(claims["r"]))
    with UnitOfWork(Actor.system(pending.tenant_id)) as uow:
        user = uow.session.get(User, pending.user_id)
        if (
            user is None
            or not user.is_active
            or not hmac.compare_digest(_password_fingerprint(user.password_hash), claims["p"])
        ):
            return None
        uow.session.expunge(user)
    return pending, user


# -- the enrolment-only session (started by identity.service.start_session(actor, enrolment_only=True)) -----


def enrolment_actor_from_session(token: str | None) -> Actor | None:
    """The actor of a live enrolment-only session cookie, or None."""
    if not token:
        return None
    with UnitOfWork(system=True) as uow:
        membership = uow.session.exec(
            select(Membership)
            .join(UserSession, col(UserSession.membership_id) == Membership.id)
            .join(User, col(User.id) == Membership.user_id)
            .where(
                UserSession.token_hash == security.hash_session_token(token),
                UserSession.kind == "browser",
                col(UserSession.mfa_enrolment_only).is_(True),
                col(UserSession.revoked_at).is_(None),
                col(UserSession.expires_at) > utcnow(),
                col(User.is_active).is_(True),
            )
        ).first()
        if membership is None:
            return None
        return Actor(
            tenant_id=membership.tenant_id,
            role=Role(membership.role),
            user_id=membership.user_id,
            patient_id=membership.patient_id,
            provider_id=membership.provider_id,
        )


def must_enrol(uow: UnitOfWork, user: User, role: Role) -> bool:
    """True when `role` requires MFA of `user` and the account has not enrolled."""
    return not is_enrolled(user) and mfa_required_for(uow, role, user.tenant_id)


def needs_enrolment(actor: Actor) -> bool:
    """True when the actor's role requires MFA and their account has not enrolled."""
    if actor.user_id is None:
        return False
    with UnitOfWork(actor) as uow:
        user = uow.session.get(User, actor.user_id)
        return user is not None and must_enrol(uow, user, actor.role)


# -- service functions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MfaStatus:
    enrolled: bool
    required: bool
    enabled_at: str
    recovery_codes_left: int


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the secret (for typing in), its otpauth URI and QR code."""

    secret: str
    uri: str
    qr_data_uri: str


def _own_user(actor: Actor, uow: UnitOfWork) -> User:
    if actor.user_id is None or actor.role == Role.SYSTEM:
        raise PermissionDenied("only people have MFA")
    user = uow.session.get(User, actor.user_id)
    if user is None or not user.is_active:
        raise NotFound("user")
    return user


@service_function
def get_mfa_status(actor: Actor, uow: UnitOfWork) -> MfaStatus:
    """Whether the signed-in person has MFA, must have it, and how many recovery codes they have left."""
    user = _own_user(actor, uow)
    left = len(
        list(
            uow.session.exec(
                select(MfaRecoveryCode.id).where(
                    MfaRecoveryCode.user_id == user.id, col(MfaRecoveryCode.used_at).is_(None)
                )
            )
        )
    )
    return MfaStatus(
        enrolled=is_enrolled(user),
        required=mfa_required_for(uow, actor.role, actor.tenant_id),
        enabled_at=user.mfa_enabled_at.isoformat() if user.mfa_enabled_at else "",
        recovery_codes_left=left if is_enrolled(user) else 0,
    )


@service_function
def begin_enrolment(actor: Actor, uow: UnitOfWork) -> Enrolment:
    """Start (or restart) enrolment: a new secret, kept aside encrypted until a first code confirms it."""
    user = _own_user(actor, uow)
    if is_enrolled(user):
        raise ValidationFailed("MFA is already set up for this account.", code="mfa_already_enrolled")
    secret = new_secret()
    user.mfa_pending_secret_encrypted = encrypt_text(secret)
    uow.session.add(user)
    uri = provisioning_uri(secret, user.email)
    return Enrolment(secret=secret, uri=uri, qr_data_uri=qr_data_uri(uri))


@service_function
def confirm_enrolment(actor: Actor, uow: UnitOfWork, *, code: str) -> list[str]:
    """Confirm enrolment with a first valid code; return the ten recovery codes (shown once, stored hashed).

    The person's sessions that reached only the enrolment page become ordinary sessions.
    """
    user = _own_user(actor, uow)
    if is_enrolled(user):
        raise ValidationFailed("MFA is already set up for this account.", code="mfa_already_enrolled")
    if user.mfa_pending_secret_encrypted is None:
        raise ValidationFailed("Start the set-up again: no code is expected.", field="code", code="mfa_invalid")
    secret = decrypt_text(user.mfa_pending_secret_encrypted)
    step = match_totp(secret, code, last_step=None)
    if step is None:
        raise ValidationFailed(
            "That code is not valid. Enter the 6-digit code your app shows now.", field="code", code="mfa_invalid"
        )
    user.mfa_secret_encrypted = user.mfa_pending_secret_encrypted
    user.mfa_pending_secret_encrypted = None
    user.mfa_enabled_at = utcnow()
    user.mfa_last_step = step  # the confirming code is spent too
    uow.session.add(user)
    codes = _store_recovery_codes(uow, user)
    uow.session.execute(
        update(UserSession)
        .where(
            col(UserSession.user_id) == user.id,
            col(UserSession.tenant_id) == actor.tenant_id,
            col(UserSession.mfa_enrolment_only).is_(True),
        )
        .values(mfa_enrolment_only=False)
    )
    record(actor, uow, action="user.mfa_enrolled", entity_type="user", entity_id=user.id)
    return codes


@service_function
def regenerate_recovery_codes(actor: Actor, uow: UnitOfWork, *, code: str) -> list[str]:
    """Replace the recovery codes (the old ones stop working); needs a current TOTP code."""
    user = _own_user(actor, uow)
    if not is_enrolled(user):
        raise ValidationFailed("Set up MFA first.", code="mfa_not_enrolled")
    if not looks_like_totp(code) or verify_second_factor(uow, user, code) != "totp":
        raise ValidationFailed(BAD_CODE, field="code", code="mfa_invalid")
    codes = _store_recovery_codes(uow, user)
    record(actor, uow, action="user.mfa_recovery_codes_regenerated", entity_type="user", entity_id=user.id)
    return codes


@service_function
def reset_mfa(actor: Actor, uow: UnitOfWork, user_id: uuid.UUID) -> User:
    """Remove a user's MFA (admin; e.g. a lost phone): they enrol again at their next sign-in. Their sessions end."""
    require_role(actor, Role.ADMIN)
    user = uow.session.get(User, user_id)
    if user is None:
        raise NotFound("user")
    if user.id == actor.user_id:
        raise ValidationFailed("Ask another admin to reset your own MFA.", code="mfa_reset_self")
    had = is_enrolled(user)
    user.mfa_secret_encrypted = None
    user.mfa_pending_secret_encrypted = None
    user.mfa_enabled_at = None
    user.mfa_last_step = None
    uow.session.add(user)
    for row in uow.session.exec(select(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id)):
        uow.session.delete(row)
    revoked = uow.session.execute(
        update(UserSession)
        .where(
            col(UserSession.user_id) == user.id,
            col(UserSession.tenant_id) == actor.tenant_id,
            col(UserSession.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )
    data = {"was_enrolled": had, "sessions_ended": int(getattr(revoked, "rowcount", 0) or 0)}
    record(actor, uow, action="user.mfa_reset", entity_type="user", entity_id=user.id, data=data)
    return user


@service_function
def get_mfa_policy(actor: Actor, uow: UnitOfWork) -> bool:
    """Whether the practice requires MFA of its clinicians (admins always need it)."""
    require_role(actor, Role.ADMIN)
    tenant = uow.session.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("practice")
    return tenant.mfa_required_for_clinicians


@service_function
def set_mfa_policy(actor: Actor, uow: UnitOfWork, *, clinicians_required: bool) -> bool:
    """Require (or stop requiring) MFA of the practice's clinicians."""
    require_role(actor, Role.ADMIN)
    tenant = uow.session.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("practice")
    tenant.mfa_required_for_clinicians = clinicians_required
    uow.session.add(tenant)
    data = {"clinicians_required": clinicians_required}
    record(actor, uow, action="practice.mfa_policy_changed", entity_type="tenant", entity_id=tenant.id, data=data)
    return clinicians_required

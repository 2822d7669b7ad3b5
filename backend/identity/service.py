"""Login, tokens and sessions: how a request becomes an Actor, and how a login ends."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import cast

from sqlalchemy import func, or_, update
from sqlmodel import col, select

from backend.audit.service import record, record_access
from backend.db import UnitOfWork
from backend.errors import (
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    PracticeRequired,
    RateLimited,
    ValidationFailed,
)
from backend.identity import actor_cache, idle, mfa, passwords, security, throttle
from backend.identity.models import Membership, Patient, Provider, User, UserSession
from backend.observability import metrics
from backend.service import require_role, service_function
from backend.settings import get_settings
from backend.tenancy.context import ROLE_PRIORITY, Actor, Role
from backend.tenancy.models import Tenant
from backend.types import utcnow

BAD_LOGIN = "Incorrect email or password."
BAD_TOKEN = "invalid or expired token"  # noqa: S105 - a message, not a secret
BAD_REFRESH = "invalid or expired refresh token"


def throttled_message(seconds: int) -> str:
    return f"Too many failed attempts. Try again in {seconds} seconds."


def _actor_for(membership: Membership) -> Actor:
    return Actor(
        tenant_id=membership.tenant_id,
        role=Role(membership.role),
        user_id=membership.user_id,
        patient_id=membership.patient_id,
        provider_id=membership.provider_id,
    )


def _pick_membership(uow: UnitOfWork, user: User, role: Role | None) -> Membership | None:
    memberships = list(uow.session.exec(select(Membership).where(Membership.user_id == user.id)))
    if role is not None:
        memberships = [m for m in memberships if m.role == role]
    memberships.sort(key=lambda m: ROLE_PRIORITY.get(Role(m.role), 99))
    return memberships[0] if memberships else None


def _throttle_or_raise(client_address: str | None, email: str) -> None:
    wait = throttle.check_attempt(client_address, email)
    if wait:
        throttle.record_breach("login")
        metrics.record_rate_limited("login", route="login", practice=None)
        raise RateLimited(throttled_message(wait), retry_after=wait)


def authenticate(
    *,
    email: str,
    password: str,
    client_address: str | None,
    practice: str | None = None,
    role: Role | None = None,
    totp: str | None = None,
) -> Actor:
    """Check an email and password from `client_address`; return the actor or raise (401, or 429 when throttled).

    Throttling (backend/identity/throttle.py) is keyed by the client's network and the e-mail, and treats an
    unknown e-mail exactly like a known one: same answers, same Retry-After, same cost (a dummy argon2 check).
    An account with MFA also needs `totp` (a TOTP or recovery code): without it, MfaRequired (401 `mfa_required`,
    carrying the pending-MFA token the browser continues with); a wrong one is a failed attempt (401 `mfa_invalid`).
    """
    email = email.strip().lower()
    if not email or not password:
        raise AuthenticationFailed("Enter your email and password.")
    _throttle_or_raise(client_address, email)
    with UnitOfWork(system=True) as uow:
        query = select(User).where(func.lower(User.email) == email, col(User.is_active).is_(True))
        if practice:
            query = query.join(Tenant, col(Tenant.id) == User.tenant_id).where(Tenant.slug == practice)
        candidates = list(uow.session.exec(query))
        if not candidates:
            security.verify_password(None, password)  # same cost as a wrong password
            metrics.record_login_failure()
            raise AuthenticationFailed(BAD_LOGIN)
        matched = [u for u in candidates if security.verify_password(u.password_hash, password)]
        if not matched:
            for user in candidates:
                # No e-mail in the data: the entity id names the account.
                record(_system_in(user), uow, action="user.login_failed", entity_type="user", entity_id=user.id)
            uow.commit()
            metrics.record_login_failure()
            raise AuthenticationFailed(BAD_LOGIN)
        if len(matched) > 1:
            # The right password: not a failed attempt.
            throttle.record_success(client_address, email)
            raise PracticeRequired("This email belongs to several practices; choose your practice.")
        user = matched[0]
        membership = _pick_membership(uow, user, role)
        if membership is None:
            throttle.record_success(client_address, email)
            raise AuthenticationFailed("This account has no access to the practice.")
        actor = _actor_for(membership)
        data = {"role": str(actor.role)}
        if mfa.is_enrolled(user):
            # Until the code is right too, the attempt stays counted: a wrong code is a failure for this
            # (network, account), and a network that only knows the password is never remembered as known.
            if not totp:
                raise mfa.MfaRequired(actor=actor, pending_token=mfa.issue_pending_token(user, actor.role))
            method = mfa.verify_second_factor(uow, user, totp)
            if method is None:
                record(_system_in(user), uow, action="user.mfa_failed", entity_type="user", entity_id=user.id)
                uow.commit()
                metrics.record_mfa_failure()
                raise mfa.MfaInvalid(mfa.BAD_CODE)
            data["mfa"] = method
        throttle.record_success(client_address, email)
        user.last_login_at = utcnow()
        uow.session.add(user)
        record(actor, uow, action="user.login", entity_type="user", entity_id=user.id, data=data)
        uow.commit()
        return actor


def complete_mfa_login(*, pending_token: str | None, code: str, client_address: str | None) -> Actor:
    """The browser's second step: a pending-MFA token (right password, under 5 minutes old) and a code -> the actor.

    A wrong code counts as a failed attempt for the (network, account), exactly like a wrong password.
    """
    found = mfa.read_pending(pending_token)
    if found is None:
        raise AuthenticationFailed(
            "Your sign-in took too long. Enter your email and password again.", code="mfa_expired"
        )
    pending, pending_user = found
    email = pending_user.email.strip().lower()
    _throttle_or_raise(client_address, email)
    with UnitOfWork(system=True) as uow:
        user = uow.session.get(User, pending.user_id)
        if user is None or user.tenant_id != pending.tenant_id or not user.is_active:
            raise AuthenticationFailed(BAD_LOGIN)
        membership = _pick_membership(uow, user, pending.role)
        if membership is None:
            raise AuthenticationFailed("This account has no access to the practice.")
        actor = _actor_for(membership)
        method = mfa.verify_second_factor(uow, user, code) if code.strip() else None
        if method is None:
            record(_system_in(user), uow, action="user.mfa_failed", entity_type="user", entity_id=user.id)
            uow.commit()
            metrics.record_mfa_failure()
            raise mfa.MfaInvalid(mfa.BAD_CODE)
        user.last_login_at = utcnow()
        uow.session.add(user)
        data = {"role": str(actor.role), "mfa": method}
        record(actor, uow, action="user.login", entity_type="user", entity_id=user.id, data=data)
        uow.commit()
    # Both attempts of this sign-in (the password's and the code's) were the owner's.
    throttle.record_success(client_address, email)
    throttle.record_success(client_address, email)
    return actor


def _is_sqlite(uow: UnitOfWork) -> bool:
    return uow.session.get_bind().dialect.name == "sqlite"


def _system_in(user: User) -> Actor:
    return Actor(tenant_id=user.tenant_id, role=Role.SYSTEM, user_id=user.id)


def _membership_of(uow: UnitOfWork, actor: Actor) -> Membership:
    membership = uow.session.exec(
        select(Membership).where(Membership.user_id == actor.user_id, Membership.role == actor.role)
    ).first()
    if membership is None:
        raise AuthenticationFailed("This account has no access to the practice.")
    return membership


# -- API tokens: short-lived access tokens bound to a revocable session, renewed by rotating refresh tokens --


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: int
    refresh_token: str
    # The session may only set up MFA until enrolment is confirmed (see start_api_session).
    mfa_enrolment_only: bool = False


def _access_token(actor: Actor, session_id: uuid.UUID) -> tuple[str, int]:
    assert actor.user_id is not None  # noqa: S101 - only people get sessions
    return security.issue_access_token(
        user_id=actor.user_id, tenant_id=actor.tenant_id, role=str(actor.role), session_id=session_id
    )


def start_api_session(actor: Actor) -> TokenGrant:
    """Open an API session for an authenticated actor; return its access token and first refresh token.

    Someone whose role requires MFA and who has not set it up gets a session limited to enrolment, as in the
    browser (`mfa_enrolment_only`): its tokens are refused everywhere but on the enrolment routes
    (backend/api/deps.py) until confirming enrolment lifts the limit (mfa.confirm_enrolment).
    """
    if actor.user_id is None or actor.role == Role.SYSTEM:
        raise AuthenticationFailed("only people get tokens")
    settings = get_settings()
    with UnitOfWork(actor) as uow:
        membership = _membership_of(uow, actor)
        user = uow.session.get(User, membership.user_id)
        enrolment_only = user is None or mfa.must_enrol(uow, user, actor.role)
        session = UserSession(
            tenant_id=actor.tenant_id,
            kind="api",
            token_hash=security.new_session_token()[1],
            user_id=membership.user_id,
            membership_id=membership.id,
            expires_at=utcnow() + timedelta(days=settings.refresh_token_days),
            idle_timeout_seconds=idle.timeout_for(actor.role, settings),
            mfa_enrolment_only=enrolment_only,
        )
        refresh_token, session.refresh_hash = security.new_refresh_token(session.id, session.refresh_generation)
        uow.session.add(session)
        uow.commit()
    access_token, expires_in = _access_token(actor, session.id)
    return TokenGrant(
        access_token=access_token,
        expires_in=expires_in,
        refresh_token=refresh_token,
        mfa_enrolment_only=enrolment_only,
    )


def issue_token(actor: Actor) -> tuple[str, int]:
    """Open an API session for an authenticated actor; return its access token and lifetime in seconds."""
    grant = start_api_session(actor)
    return grant.access_token, grant.expires_in


def refresh_api_session(refresh_token: str) -> TokenGrant:
    """Rotate a refresh token: return a new access token and refresh token, and retire the one presented.

    A refresh token that was already rotated is being replayed (it was copied, or the client is confused):
    the whole session is revoked, so neither copy works any more.
    """
    parsed = security.parse_refresh_token(refresh_token)
    if parsed is None:
        raise AuthenticationFailed(BAD_REFRESH)
    session_id, generation = parsed
    with UnitOfWork(system=True) as uow:
        query = select(UserSession).where(UserSession.id == session_id, UserSession.kind == "api")
        session = uow.session.exec(query if _is_sqlite(uow) else query.with_for_update()).first()
        if session is not None and session.revoked_reason == idle.IDLE_REASON:
            raise idle.SessionIdle(idle.IDLE_MESSAGE)
        if session is None or session.revoked_at is not None or session.expires_at <= utcnow():
            raise AuthenticationFailed(BAD_REFRESH)
        # A refresh is the client's timer, not its person: it checks the idle clock but does not move it.
        if not _idle_clock(session, touch=False).alive:
            _revoke_idle(uow, session)
            uow.commit()
            raise idle.SessionIdle(idle.IDLE_MESSAGE)
        if not security.same_hash(session.refresh_hash, security.hash_session_token(refresh_token)):
            if generation < session.refresh_generation:
                session.revoked_at = utcnow()
                uow.session.add(session)
                user = uow.session.get(User, session.user_id)
                if user is not None:
                    record(
                        _system_in(user), uow, action="user.refresh_token_reused", entity_type="user", entity_id=user.id
                    )
                uow.commit()
            raise AuthenticationFailed(BAD_REFRESH)
        membership = uow.session.exec(
            select(Membership)
            .join(User, col(User.id) == Membership.user_id)
            .where(Membership.id == session.membership_id, col(User.is_active).is_(True))
        ).first()
        if membership is None:
            raise AuthenticationFailed(BAD_REFRESH)
        session.refresh_generation += 1
        new_refresh, session.refresh_hash = security.new_refresh_token(session.id, session.refresh_generation)
        uow.session.add(session)
        uow.commit()
        actor = _actor_for(membership)
    access_token, expires_in = _access_token(actor, session.id)
    return TokenGrant(
        access_token=access_token,
        expires_in=expires_in,
        refresh_token=new_refresh,
        mfa_enrolment_only=session.mfa_enrolment_only,
    )


def _load_actor(
    tenant_id: uuid.UUID, user_id: uuid.UUID, role: Role, session_id: uuid.UUID
) -> tuple[Actor, bool] | None:
    """Re-read the membership and the token's session so a removed user, role or session stops working at once;
    return the actor and whether the session is limited to MFA enrolment (read in the same query, so confirming
    enrolment lifts the limit at once).

    A bearer request is activity: it moves the session's idle clock (in Redis, not the database), and a session
    idle past its timeout is revoked and refused (401 `session_idle`).
    """
    gens = actor_cache.generations(tenant_id)
    cached = actor_cache.get(session_id, gens)
    if cached is not None and cached.actor.tenant_id == tenant_id and cached.user_id == user_id and cached.role == role:
        if cached.expires_at > utcnow():
            return _cached_actor(session_id, cached)
        actor_cache.forget(session_id)
        return None
    with UnitOfWork(Actor.system(tenant_id)) as uow:
        # One round trip: this runs on every API request whose answer is not cached (backend/identity/actor_cache).
        row = uow.session.exec(
            select(Membership, UserSession)
            .join(User, col(User.id) == Membership.user_id)
            .join(UserSession, col(UserSession.membership_id) == Membership.id)
            .where(
                UserSession.id == session_id,
                UserSession.kind == "api",
                UserSession.user_id == user_id,
                col(UserSession.revoked_at).is_(None),
                col(UserSession.expires_at) > utcnow(),
                Membership.user_id == user_id,
                Membership.role == role,
                col(User.is_active).is_(True),
            )
        ).first()
        if row is None:
            return None
        membership, session = row
        clock = _idle_clock(session, touch=True)
        if not clock.alive:
            _revoke_idle(uow, session)
            uow.commit()
            raise idle.SessionIdle(idle.IDLE_MESSAGE)
        if clock.persist_due:
            _persist_last_seen(uow, session.id, clock.last)
            uow.commit()
        actor = _actor_for(membership)
        if gens is not None:
            actor_cache.put(
                session_id,
                actor_cache.Entry(
                    actor=actor,
                    enrolment_only=session.mfa_enrolment_only,
                    expires_at=session.expires_at,
                    idle_timeout_seconds=session.idle_timeout_seconds,
                    created_at=session.created_at,
                    last_seen_at=session.last_seen_at,
                    generations=gens,
                    stored_at=time.monotonic(),
                    user_id=user_id,
                    role=role,
                ),
            )
        return actor, session.mfa_enrolment_only


def _cached_actor(session_id: uuid.UUID, cached: actor_cache.Entry) -> tuple[Actor, bool]:
    """A cached answer still passes the idle clock (Redis, as for an uncached one); an idle session is revoked."""
    # What the idle clock and an idle revocation read of a session (a real row object costs a validation).
    stand_in = cast(
        UserSession,
        SimpleNamespace(
            id=session_id,
            tenant_id=cached.actor.tenant_id,
            kind="api",
            user_id=cached.user_id,
            created_at=cached.created_at,
            idle_timeout_seconds=cached.idle_timeout_seconds,
            last_seen_at=cached.last_seen_at,
        ),
    )
    clock = _idle_clock(stand_in, touch=True)
    if not clock.alive or clock.persist_due:
        with UnitOfWork(Actor.system(cached.actor.tenant_id)) as uow:
            if not clock.alive:
                _revoke_idle(uow, stand_in)
                uow.commit()
                actor_cache.forget(session_id)
                raise idle.SessionIdle(idle.IDLE_MESSAGE)
            _persist_last_seen(uow, session_id, clock.last)
            uow.commit()
    return cached.actor, cached.enrolment_only


@dataclass(frozen=True)
class BearerSession:
    actor: Actor
    session_id: uuid.UUID
    # Limited to MFA enrolment: the API refuses it everywhere else (backend/api/deps.py).
    mfa_enrolment_only: bool = False


def session_from_token(token: str) -> BearerSession:
    """Turn a bearer token into its actor and session, or raise AuthenticationFailed."""
    claims = security.decode_access_token(token)
    try:
        role = Role(claims["role"])
    except ValueError as exc:
        raise AuthenticationFailed(BAD_TOKEN) from exc
    session_id = uuid.UUID(claims["sid"])
    loaded = _load_actor(uuid.UUID(claims["tenant"]), uuid.UUID(claims["sub"]), role, session_id)
    if loaded is None:
        raise AuthenticationFailed(BAD_TOKEN)
    actor, enrolment_only = loaded
    return BearerSession(actor=actor, session_id=session_id, mfa_enrolment_only=enrolment_only)


def actor_from_token(token: str) -> Actor:
    """Turn a bearer token into an actor, or raise AuthenticationFailed (MfaEnrolmentRequired, 403, for a token
    limited to MFA enrolment)."""
    session = session_from_token(token)
    if session.mfa_enrolment_only:
        raise mfa.MfaEnrolmentRequired()
    return session.actor


def end_api_session(actor: Actor, session_id: uuid.UUID) -> None:
    """Revoke the API session a bearer token belongs to (its access and refresh tokens stop working)."""
    with UnitOfWork(actor) as uow:
        uow.session.execute(
            update(UserSession)
            .where(
                col(UserSession.id) == session_id,
                col(UserSession.user_id) == actor.user_id,
                col(UserSession.tenant_id) == actor.tenant_id,
                col(UserSession.revoked_at).is_(None),
            )
            .values(revoked_at=utcnow())
        )
        uow.commit()


# -- automatic logoff: the idle clock of a session (backend/identity/idle.py) -----------------------------


def _idle_timeout(session: UserSession) -> int:
    """The session's idle timeout: the one it was opened with (sessions older than the column: the stricter one)."""
    if session.idle_timeout_seconds:
        return session.idle_timeout_seconds
    settings = get_settings()
    return min(settings.idle_timeout_staff_seconds, settings.idle_timeout_patient_seconds)


def _idle_clock(session: UserSession, *, touch: bool) -> idle.Clock:
    return idle.look(
        session.id,
        timeout_seconds=_idle_timeout(session),
        created_at=session.created_at,
        last_seen_at=session.last_seen_at,
        touch=touch,
    )


def _persist_last_seen(uow: UnitOfWork, session_id: uuid.UUID, last: float) -> None:
    """The coarse copy of the idle clock (at most once per idle_persist_seconds per session: the clock says when)."""
    moment = datetime.fromtimestamp(last, tz=UTC)
    uow.session.execute(
        update(UserSession)
        .where(
            col(UserSession.id) == session_id,
            or_(col(UserSession.last_seen_at).is_(None), col(UserSession.last_seen_at) < moment),
        )
        .values(last_seen_at=moment)
    )


def _revoke_idle(uow: UnitOfWork, session: UserSession) -> None:
    """Revoke a session that timed out (once, whoever notices first) and audit the automatic logoff."""
    result = uow.session.execute(
        update(UserSession)
        .where(col(UserSession.id) == session.id, col(UserSession.revoked_at).is_(None))
        .values(revoked_at=utcnow(), revoked_reason=idle.IDLE_REASON)
    )
    if int(getattr(result, "rowcount", 0) or 0):
        system = Actor(tenant_id=session.tenant_id, role=Role.SYSTEM, user_id=session.user_id)
        data = {"kind": session.kind, "idle_timeout_seconds": _idle_timeout(session)}
        record(system, uow, action="user.logoff_idle", entity_type="user", entity_id=session.user_id, data=data)


# -- browser sessions ----------------------------------------------------------------------------------


def start_session(actor: Actor, *, enrolment_only: bool = False) -> tuple[str, int]:
    """Create a browser session; return the cookie value and its lifetime in seconds. `enrolment_only`: a session
    that reaches only the MFA enrolment page until enrolment is confirmed (an admin without MFA signing in)."""
    settings = get_settings()
    token, token_hash = security.new_session_token()
    lifetime = timedelta(hours=settings.session_hours)
    with UnitOfWork(actor) as uow:
        membership = _membership_of(uow, actor)
        uow.session.add(
            UserSession(
                tenant_id=actor.tenant_id,
                kind="browser",
                token_hash=token_hash,
                user_id=membership.user_id,
                membership_id=membership.id,
                expires_at=utcnow() + lifetime,
                idle_timeout_seconds=idle.timeout_for(actor.role, settings),
                mfa_enrolment_only=enrolment_only,
            )
        )
        uow.commit()
    return token, int(lifetime.total_seconds())


@dataclass(frozen=True)
class BrowserSession:
    """A session cookie's state: its actor (None when it does not admit anyone) and its idle clock."""

    actor: Actor | None
    # The session ended (or was found ended) because it went unused for its idle timeout.
    idle_ended: bool = False
    idle_timeout_seconds: int = 0
    # Whole seconds until the idle timeout (0 without a live session).
    idle_seconds_left: int = 0


def check_browser_session(token: str | None, *, activity: bool = False, end_if_idle: bool = False) -> BrowserSession:
    """Resolve a session cookie and look at its idle clock.

    `activity`: the person behind the page did something (the page's report of their own input): move the clock,
    unless the session is already idle (then it stays ended). Nothing else moves it: not a live push, a timer or
    a reconnect. `end_if_idle`: revoke a session found idle (with its reason and an audit row), so it is over in
    the database too; without it this is a read (live pushes call it under `reads_only`).
    """
    if not token:
        return BrowserSession(actor=None)
    with UnitOfWork(system=True) as uow:
        # One round trip: the session, its membership and the user's state together.
        row = uow.session.exec(
            select(Membership, UserSession, User.is_active)
            .join(UserSession, col(UserSession.membership_id) == Membership.id)
            .join(User, col(User.id) == Membership.user_id)
            .where(
                UserSession.token_hash == security.hash_session_token(token),
                UserSession.kind == "browser",
                # A session limited to MFA enrolment is no session for anything else (backend/identity/mfa.py).
                col(UserSession.mfa_enrolment_only).is_(False),
                col(UserSession.user_id) == Membership.user_id,
                col(UserSession.tenant_id) == Membership.tenant_id,
            )
        ).first()
        if row is None:
            return BrowserSession(actor=None)
        membership, session, user_active = row
        timeout = _idle_timeout(session)
        if session.revoked_at is not None:
            ended = session.revoked_reason == idle.IDLE_REASON
            return BrowserSession(actor=None, idle_ended=ended, idle_timeout_seconds=timeout)
        if session.expires_at <= utcnow() or not user_active:
            return BrowserSession(actor=None)
        clock = _idle_clock(session, touch=activity)
        if not clock.alive:
            if end_if_idle:
                _revoke_idle(uow, session)
                uow.commit()
            return BrowserSession(actor=None, idle_ended=True, idle_timeout_seconds=timeout)
        if clock.persist_due:
            _persist_last_seen(uow, session.id, clock.last)
            uow.commit()
        return BrowserSession(
            actor=_actor_for(membership),
            idle_timeout_seconds=timeout,
            idle_seconds_left=idle.seconds_left(clock, timeout),
        )


def actor_from_session(token: str | None) -> Actor | None:
    """Return the actor of a live session cookie, or None (expired, idle, revoked, unknown, or user removed).

    A read: it neither moves the idle clock nor writes (see check_browser_session).
    """
    return check_browser_session(token).actor


def end_session(token: str | None) -> None:
    """Revoke a session cookie (logout). Unknown tokens are ignored."""
    if not token:
        return
    with UnitOfWork(system=True) as uow:
        session = uow.session.exec(
            select(UserSession).where(
                UserSession.token_hash == security.hash_session_token(token), UserSession.kind == "browser"
            )
        ).first()
        if session is not None and session.revoked_at is None:
            session.revoked_at = utcnow()
            uow.session.add(session)
            uow.commit()


# -- password changes and disabled users: every session of the user ends -------------------------------


def _revoke_all_sessions(uow: UnitOfWork, tenant_id: uuid.UUID, user_id: uuid.UUID) -> int:
    result = uow.session.execute(
        update(UserSession)
        .where(
            col(UserSession.user_id) == user_id,
            col(UserSession.tenant_id) == tenant_id,
            col(UserSession.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def check_password_policy(
    password: str, *, email: str = "", names: tuple[str, ...] = (), field: str = "new_password"
) -> None:
    """Refuse a new password that is too short or too long, the e-mail or name itself, or a common one (422;
    backend/identity/passwords.py: NIST SP 800-63B, no composition rules)."""
    passwords.check(password, minimum=get_settings().min_password_length, email=email, names=names, field=field)


@service_function
def change_password(
    actor: Actor, uow: UnitOfWork, *, current_password: str, new_password: str, client_address: str | None
) -> None:
    """Change the signed-in person's own password and end every session they have (this one too)."""
    if actor.user_id is None or actor.role == Role.SYSTEM:
        raise PermissionDenied("only people have passwords")
    user = uow.session.get(User, actor.user_id)
    if user is None or not user.is_active:
        raise NotFound("user")
    check_password_policy(new_password, email=user.email, names=(user.full_name,))
    # Guessing the current password with a stolen token counts like guessing it at the login.
    _throttle_or_raise(client_address, user.email)
    if not security.verify_password(user.password_hash, current_password):
        raise ValidationFailed("The current password is incorrect.", field="current_password")
    throttle.record_success(client_address, user.email)
    if current_password == new_password:
        raise ValidationFailed("Choose a new password that differs from the current one.", field="new_password")
    user.password_hash = security.hash_password(new_password)
    uow.session.add(user)
    revoked = _revoke_all_sessions(uow, actor.tenant_id, user.id)
    data = {"sessions_ended": revoked}
    record(actor, uow, action="user.password_changed", entity_type="user", entity_id=user.id, data=data)


@service_function
def disable_user(actor: Actor, uow: UnitOfWork, user_id: uuid.UUID) -> User:
    """Disable a user of the admin's practice: they can no longer sign in, and every session of theirs ends."""
    require_role(actor, Role.ADMIN)
    user = uow.session.get(User, user_id)
    if user is None:
        raise NotFound("user")
    if user.id == actor.user_id:
        raise ValidationFailed("You cannot disable your own account.")
    user.is_active = False
    uow.session.add(user)
    revoked = _revoke_all_sessions(uow, actor.tenant_id, user.id)
    record(actor, uow, action="user.disabled", entity_type="user", entity_id=user.id, data={"sessions_ended": revoked})
    return user


@dataclass(frozen=True)
class Profile:
    """What the app shell shows about the signed-in person."""

    user_id: uuid.UUID
    full_name: str
    email: str
    role: Role
    practice_name: str
    patient_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    provider_title: str
    # The language of the patient's pages and messages (patients.locale); staff pages are in English.
    language: str = "en"


@service_function
def get_profile(actor: Actor, uow: UnitOfWork) -> Profile:
    """Return the signed-in person's name, role and practice."""
    user = uow.session.get(User, actor.user_id) if actor.user_id else None
    tenant = uow.session.get(Tenant, actor.tenant_id)
    if user is None or tenant is None:
        raise NotFound("user")
    title = ""
    if actor.provider_id:
        provider = uow.session.get(Provider, actor.provider_id)
        title = provider.title if provider else ""
    patient = uow.session.get(Patient, actor.patient_id) if actor.patient_id else None
    return Profile(
        user_id=user.id,
        full_name=user.full_name,
        email=user.email,
        role=actor.role,
        practice_name=tenant.name,
        patient_id=actor.patient_id,
        provider_id=actor.provider_id,
        provider_title=title,
        language=(patient.locale if patient is not None else "") or "en",
    )


@service_function
def get_patient(actor: Actor, uow: UnitOfWork, patient_id: uuid.UUID) -> Patient:
    """Return a patient: staff see any of the practice's patients, a patient only themself."""
    if actor.role == Role.PATIENT and actor.patient_id != patient_id:
        raise NotFound("patient")
    patient = uow.session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("patient")
    record_access(actor, uow, action="patient.profile", patient_ids=[patient.id])
    return patient

"""Login, tokens and browser sessions: how a request becomes an Actor."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import col, select

from backend.audit.service import record
from backend.db import UnitOfWork
from backend.errors import AuthenticationFailed, NotFound, PracticeRequired, RateLimited
from backend.identity import security
from backend.identity.models import Membership, Patient, Provider, User, UserSession
from backend.service import service_function
from backend.settings import get_settings
from backend.tenancy.context import ROLE_PRIORITY, Actor, Role
from backend.tenancy.models import Tenant
from backend.types import utcnow

BAD_LOGIN = "Incorrect email or password."


def _login_wait_seconds(user: User) -> int:
    """Seconds the account must still wait before another attempt (0 when it may try now)."""
    settings = get_settings()
    extra = user.failed_login_count - settings.login_free_failures
    if extra < 0 or user.last_failed_login_at is None:
        return 0
    backoff = min(settings.login_backoff_base_seconds * 2**extra, settings.login_backoff_max_seconds)
    remaining = (user.last_failed_login_at + timedelta(seconds=backoff) - utcnow()).total_seconds()
    return max(0, math.ceil(remaining))


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


def authenticate(*, email: str, password: str, practice: str | None = None, role: Role | None = None) -> Actor:
    """Check an email and password; return the actor or raise (401, or 429 after repeated failures).

    After `login_free_failures` wrong passwords in a row every further attempt on the account waits
    an exponentially growing delay, whether or not its password is right.
    """
    email = email.strip().lower()
    if not email or not password:
        raise AuthenticationFailed("Enter your email and password.")
    with UnitOfWork(unscoped=True) as uow:
        query = select(User).where(func.lower(User.email) == email, col(User.is_active).is_(True))
        if practice:
            query = query.join(Tenant, col(Tenant.id) == User.tenant_id).where(Tenant.slug == practice)
        candidates = list(uow.session.exec(query.with_for_update(of=User) if not _is_sqlite(uow) else query))
        if not candidates:
            security.verify_password(None, password)  # same cost as a wrong password
            raise AuthenticationFailed(BAD_LOGIN)
        for user in candidates:
            wait = _login_wait_seconds(user)
            if wait:
                raise RateLimited(f"Too many failed attempts. Try again in {wait} seconds.", retry_after=wait)
        matched = [u for u in candidates if security.verify_password(u.password_hash, password)]
        if len(matched) > 1:
            # The right password for accounts in several practices is not a failed attempt: never count it.
            raise PracticeRequired("This email belongs to several practices; choose your practice.")
        if not matched:
            now = utcnow()
            for user in candidates:
                user.failed_login_count += 1
                user.last_failed_login_at = now
                uow.session.add(user)
                record(_system_in(user), uow, action="user.login_failed", entity_type="user", entity_id=user.id)
            uow.commit()
            raise AuthenticationFailed(BAD_LOGIN)
        user = matched[0]
        membership = _pick_membership(uow, user, role)
        if membership is None:
            raise AuthenticationFailed("This account has no access to the practice.")
        user.failed_login_count = 0
        user.last_failed_login_at = None
        user.last_login_at = utcnow()
        uow.session.add(user)
        actor = _actor_for(membership)
        record(actor, uow, action="user.login", entity_type="user", entity_id=user.id, data={"role": str(actor.role)})
        uow.commit()
        return actor


def _is_sqlite(uow: UnitOfWork) -> bool:
    return uow.session.get_bind().dialect.name == "sqlite"


def _system_in(user: User) -> Actor:
    return Actor(tenant_id=user.tenant_id, role=Role.SYSTEM, user_id=user.id)


def issue_token(actor: Actor) -> tuple[str, int]:
    """Sign a bearer token for an authenticated actor; return it with its lifetime in seconds."""
    if actor.user_id is None or actor.role == Role.SYSTEM:
        raise AuthenticationFailed("only people get tokens")
    return security.issue_access_token(user_id=actor.user_id, tenant_id=actor.tenant_id, role=str(actor.role))


def _load_actor(tenant_id: uuid.UUID, user_id: uuid.UUID, role: Role) -> Actor | None:
    """Re-read the membership so a removed user or role stops working at once."""
    with UnitOfWork(Actor.system(tenant_id)) as uow:
        # One round trip: this runs on every API request.
        membership = uow.session.exec(
            select(Membership)
            .join(User, col(User.id) == Membership.user_id)
            .where(Membership.user_id == user_id, Membership.role == role, col(User.is_active).is_(True))
        ).first()
        return _actor_for(membership) if membership else None


def actor_from_token(token: str) -> Actor:
    """Turn a bearer token into an actor, or raise AuthenticationFailed."""
    claims = security.decode_access_token(token)
    try:
        role = Role(claims["role"])
    except ValueError as exc:
        raise AuthenticationFailed("invalid or expired token") from exc
    actor = _load_actor(uuid.UUID(claims["tenant"]), uuid.UUID(claims["sub"]), role)
    if actor is None:
        raise AuthenticationFailed("invalid or expired token")
    return actor


def start_session(actor: Actor) -> tuple[str, int]:
    """Create a browser session; return the cookie value and its lifetime in seconds."""
    settings = get_settings()
    token, token_hash = security.new_session_token()
    lifetime = timedelta(hours=settings.session_hours)
    with UnitOfWork(actor) as uow:
        membership = uow.session.exec(
            select(Membership).where(Membership.user_id == actor.user_id, Membership.role == actor.role)
        ).one()
        uow.session.add(
            UserSession(
                tenant_id=actor.tenant_id,
                token_hash=token_hash,
                user_id=membership.user_id,
                membership_id=membership.id,
                expires_at=utcnow() + lifetime,
            )
        )
        uow.commit()
    return token, int(lifetime.total_seconds())


def actor_from_session(token: str | None) -> Actor | None:
    """Return the actor of a live session cookie, or None (expired, revoked, unknown, or user removed)."""
    if not token:
        return None
    with UnitOfWork(unscoped=True) as uow:
        session = uow.session.exec(
            select(UserSession).where(UserSession.token_hash == security.hash_session_token(token))
        ).first()
        if session is None or session.revoked_at is not None or session.expires_at <= utcnow():
            return None
        membership = uow.session.get(Membership, session.membership_id)
        if membership is None:
            return None
        tenant_id, user_id, role = session.tenant_id, session.user_id, Role(membership.role)
    return _load_actor(tenant_id, user_id, role)


def end_session(token: str | None) -> None:
    """Revoke a session cookie (logout). Unknown tokens are ignored."""
    if not token:
        return
    with UnitOfWork(unscoped=True) as uow:
        session = uow.session.exec(
            select(UserSession).where(UserSession.token_hash == security.hash_session_token(token))
        ).first()
        if session is not None and session.revoked_at is None:
            session.revoked_at = utcnow()
            uow.session.add(session)
            uow.commit()


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
    return Profile(
        user_id=user.id,
        full_name=user.full_name,
        email=user.email,
        role=actor.role,
        practice_name=tenant.name,
        patient_id=actor.patient_id,
        provider_id=actor.provider_id,
        provider_title=title,
    )


@service_function
def get_patient(actor: Actor, uow: UnitOfWork, patient_id: uuid.UUID) -> Patient:
    """Return a patient: staff see any of the practice's patients, a patient only themself."""
    if actor.role == Role.PATIENT and actor.patient_id != patient_id:
        raise NotFound("patient")
    patient = uow.session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("patient")
    return patient

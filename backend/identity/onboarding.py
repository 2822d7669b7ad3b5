"""Onboarding and recovery: staff invite patients and staff, a person sets their first password from the link they
were sent, and a forgotten password is reset from a link.

Every link is single-use and expires (settings: invite_link_hours, reset_link_minutes). Only a hash of its token is
stored (onboarding_links.token_hash); the token itself is an HMAC of the link's id under the app's secret, so the
outbox row carries the link's id only and the message is rendered from it at send time (like every notification),
while a copy of the database alone cannot make a working link. Links reach the person only through the outbox
(e-mail, and SMS with the link alone, no PHI); in the console mode the admin reads them on the Outbox page.

The visitor who opens a link is anonymous: the token is looked up in the system scope (UnitOfWork(system=True)),
and everything after that runs as the link's practice (Actor.system(tenant)). The answer to "forgot password" is
the same whether or not the e-mail has an account, and it is rate-limited per client address (429) and per account
(silently: no more e-mails, the same answer). Every step is audited.

Self-registration (off by default; an admin turns it on per practice): a newcomer gives name, e-mail, optional
mobile, a password (the same policy) and accepts the terms; the answer is always "check your e-mail". A new e-mail
gets a single-use, expiring verification link, and nothing usable exists until it is opened (the request waits in
`registrations`); opening it and entering the same password creates the user, the patient record and the
membership, and signs the person in. An e-mail that already has an account here gets a message saying so (sign in
or reset the password) instead, and no second account. Rate-limited like "forgot password": per client address
(429) and per e-mail (silently).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import func, update
from sqlmodel import col, select

from backend.audit.service import record
from backend.db import UnitOfWork
from backend.errors import Conflict, DomainError, NotFound, PermissionDenied, RateLimited, ValidationFailed
from backend.identity import security
from backend.identity.models import Membership, OnboardingLink, Patient, Provider, ProviderClinic, Registration, User
from backend.identity.service import _actor_for, _pick_membership, _revoke_all_sessions, check_password_policy
from backend.notifications.models import Channel, Notification, NotificationDelivery
from backend.redis_client import get_redis
from backend.service import require_role, service_function
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, Tenant
from backend.types import new_id, utcnow

logger = logging.getLogger(__name__)

INVITE = "invite"
RESET = "reset"
# A self-registration's e-mail verification link (a `registrations` row, not an onboarding link).
VERIFY = "verify"
PURPOSES = (INVITE, RESET)
# The notification event of each purpose (backend/notifications/templates/<locale>/<event>.*.j2).
EVENT_BY_PURPOSE = {INVITE: "account_invite", RESET: "password_reset"}
REGISTRATION_VERIFY = "registration_verify"
REGISTRATION_EXISTS = "registration_exists"
# Account messages: rendered from a link's (or registration's) id at send time, never with an unsubscribe link.
LINK_EVENTS = frozenset(EVENT_BY_PURPOSE.values()) | {REGISTRATION_VERIFY, REGISTRATION_EXISTS}
PATH_BY_PURPOSE = {INVITE: "/invite/", RESET: "/reset/", VERIFY: "/verify/"}
INVITABLE_ROLES = (Role.PATIENT, Role.DOCTOR, Role.ADMIN)

LINK_INVALID = "This link has expired or was already used."
RESET_SENT = (
    "If an account uses that e-mail address, we have sent it a link to choose a new password. "
    "Check your inbox (and spam folder); the link works once, for a limited time."
)
TOKEN_MAX_LENGTH = 200


class LinkInvalid(DomainError):
    """An unknown, expired, used or replaced link: one answer for all (410)."""

    status_code = 410
    code = "link_invalid"

    def __init__(self) -> None:
        super().__init__(LINK_INVALID)


# -- tokens ----------------------------------------------------------------------------------------------


def link_token(link_id: uuid.UUID) -> str:
    """The link's token: an HMAC of its id under the app's secret (43 URL-safe characters)."""
    key = get_settings().secret_key.encode("utf-8")
    digest = hmac.new(key, b"waitwell-onboarding-link:" + link_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def link_url(purpose: str, link_id: uuid.UUID) -> str:
    """The absolute address the person opens (PUBLIC_URL + /invite/<token> or /reset/<token>)."""
    return get_settings().public_url.rstrip("/") + PATH_BY_PURPOSE[purpose] + link_token(link_id)


def _lifetime(purpose: str) -> timedelta:
    settings = get_settings()
    if purpose == INVITE:
        return timedelta(hours=settings.invite_link_hours)
    if purpose == VERIFY:
        return timedelta(hours=settings.registration_link_hours)
    return timedelta(minutes=settings.reset_link_minutes)


def valid_for(purpose: str, locale: str = "en") -> str:
    """How long a link of `purpose` works, in words of `locale` ("72 hours", "72 horas", "60 minutes")."""
    seconds = int(_lifetime(purpose).total_seconds())
    spanish = locale.lower().startswith("es")
    if seconds % 3600 == 0:
        count, one, many = seconds // 3600, ("hora" if spanish else "hour"), ("horas" if spanish else "hours")
    else:
        count, one, many = seconds // 60, ("minuto" if spanish else "minute"), ("minutos" if spanish else "minutes")
    return f"{count} {one if count == 1 else many}"


# -- issuing and sending links ---------------------------------------------------------------------------


def _issue_link(uow: UnitOfWork, *, user: User, purpose: str, created_by: uuid.UUID | None) -> OnboardingLink:
    """A new link for `user`; any earlier open link of the same purpose stops working (only the newest works)."""
    now = utcnow()
    uow.session.execute(
        update(OnboardingLink)
        .where(
            col(OnboardingLink.user_id) == user.id,
            col(OnboardingLink.purpose) == purpose,
            col(OnboardingLink.used_at).is_(None),
            col(OnboardingLink.revoked_at).is_(None),
        )
        .values(revoked_at=now)
    )
    link_id = new_id()
    link = OnboardingLink(
        id=link_id,
        tenant_id=user.tenant_id,
        purpose=purpose,
        user_id=user.id,
        token_hash=hash_token(link_token(link_id)),
        expires_at=now + _lifetime(purpose),
        created_by=created_by,
        created_at=now,
    )
    uow.session.add(link)
    uow.flush()
    return link


def _patient_of(uow: UnitOfWork, user: User) -> Patient | None:
    row = uow.session.exec(
        select(Patient)
        .join(Membership, col(Membership.patient_id) == Patient.id)
        .where(Membership.user_id == user.id, Membership.role == Role.PATIENT)
    ).first()
    return row


def _send_link(actor: Actor, uow: UnitOfWork, *, link: OnboardingLink, user: User, phone: str = "") -> list[uuid.UUID]:
    """Write the link's outbox rows in this transaction (ids only) and enqueue them after commit.

    E-mail always (the sign-in name); SMS too when a mobile number is given (its text is the link alone). In the
    console mode one console row carries it, which the admin reads on the Outbox page. Account messages go whatever
    the person's marketing choices: they asked for them (reset) or cannot sign in without them (invite)."""
    patient = _patient_of(uow, user)
    # A mobile number is kept on the patient record only: staff get their links by e-mail.
    channels = [Channel.EMAIL] + ([Channel.SMS] if phone and patient is not None else [])
    return _write_account_messages(
        actor,
        uow,
        event_type=EVENT_BY_PURPOSE[link.purpose],
        channels=channels,
        patient_id=patient.id if patient is not None else None,
        payload={"link_id": str(link.id), "user_id": str(user.id)},
    )


def _write_account_messages(
    actor: Actor,
    uow: UnitOfWork,
    *,
    event_type: str,
    channels: list[Channel],
    patient_id: uuid.UUID | None,
    payload: dict[str, str],
) -> list[uuid.UUID]:
    """The outbox rows of an account message (ids only in the payload), enqueued after commit; one console row
    instead in the console mode."""
    from backend.notifications.outbox import channel_mode, enqueue_deliveries

    if channel_mode() == "console":
        channels = [Channel.CONSOLE]
    now = utcnow()
    notes = [
        Notification(
            tenant_id=actor.tenant_id,
            patient_id=patient_id,
            event_type=event_type,
            channel=channel,
            payload=payload,
            next_attempt_at=now,
            created_at=now,
        )
        for channel in channels
    ]
    for note in notes:
        uow.session.add(note)
    uow.flush()
    for note in notes:
        uow.session.add(
            NotificationDelivery(
                tenant_id=actor.tenant_id, notification_id=note.id, next_attempt_at=now, created_at=now, updated_at=now
            )
        )
    uow.flush()
    ids = [note.id for note in notes]
    uow.after_commit(lambda: enqueue_deliveries(ids))
    return ids


@dataclass(frozen=True)
class LinkMessage:
    """What the outbox needs to render a link's message: who gets it, where, and the link itself."""

    first_name: str
    email: str
    phone: str
    locale: str
    link: str
    valid_for: str


def message_for(uow: UnitOfWork, link_id: uuid.UUID) -> LinkMessage | None:
    """The message of a link notification (backend/notifications/delivery.py renders it); None when gone."""
    link = uow.session.get(OnboardingLink, link_id)
    if link is None:
        return _registration_message(uow, link_id)
    user = uow.session.get(User, link.user_id)
    if user is None:
        return None
    patient = _patient_of(uow, user)
    parts = user.full_name.split()
    locale = (patient.locale if patient is not None else "") or "en"
    return LinkMessage(
        first_name=parts[0] if parts else "",
        email=user.email,
        phone=patient.phone if patient is not None else "",
        locale=locale,
        link=link_url(link.purpose, link.id),
        valid_for=valid_for(link.purpose, locale),
    )


# -- staff: invitations, people --------------------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    user_id: uuid.UUID
    role: Role
    patient_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    expires_at: datetime
    notification_ids: list[uuid.UUID]


def _clean_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 320 or email.count("@") != 1 or email.startswith("@") or email.endswith("@") or " " in email:
        raise ValidationFailed("Enter a valid e-mail address.", field="email")
    local, domain = email.split("@")
    if not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        raise ValidationFailed("Enter a valid e-mail address.", field="email")
    return email


def _clean_phone(phone: str) -> str:
    phone = (phone or "").strip()
    if not phone:
        return ""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not phone.startswith("+") or len(digits) < 8 or len(digits) > 15 or len(phone) > 40:
        raise ValidationFailed("Enter the mobile number with its country code, e.g. +1 555 010 0199.", field="phone")
    if any(not (ch.isdigit() or ch in "+ -().") for ch in phone):
        raise ValidationFailed("Enter the mobile number with its country code, e.g. +1 555 010 0199.", field="phone")
    return "+" + digits


def _clean_name(full_name: str) -> str:
    name = " ".join((full_name or "").split())
    if len(name) < 2 or len(name) > 200:
        raise ValidationFailed("Enter the person's full name (2 to 200 characters).", field="full_name")
    return name


@service_function
def invite_person(
    actor: Actor,
    uow: UnitOfWork,
    *,
    full_name: str,
    email: str,
    role: Role | str = Role.PATIENT,
    phone: str = "",
    clinic_id: uuid.UUID | None = None,
    title: str = "",
) -> Invitation:
    """Create a person's account, inactive until they accept, and send them a single-use invitation link (admin).

    A patient gets a patient record (home clinic `clinic_id`); a doctor a provider record working at `clinic_id`;
    an admin a login only. The e-mail is their sign-in name (unique in the practice); a mobile number also gets
    the link by SMS."""
    require_role(actor, Role.ADMIN)
    try:
        role = Role(role)
    except ValueError as exc:
        raise ValidationFailed("Choose patient, doctor or admin.", field="role") from exc
    if role not in INVITABLE_ROLES:
        raise ValidationFailed("Choose patient, doctor or admin.", field="role")
    full_name = _clean_name(full_name)
    email = _clean_email(email)
    phone = _clean_phone(phone)
    if len(title or "") > 40:
        raise ValidationFailed("Keep the title to 40 characters.", field="title")
    clinic: Clinic | None = None
    if clinic_id is not None:
        clinic = uow.session.get(Clinic, clinic_id)
        if clinic is None:
            raise NotFound("clinic")
        if clinic.archived_at is not None:
            raise ValidationFailed("This clinic is archived: choose an open one.", field="clinic_id")
    elif role == Role.DOCTOR:
        raise ValidationFailed("Choose the clinic where the clinician works.", field="clinic_id")
    taken = uow.session.exec(select(User.id).where(func.lower(User.email) == email)).first()
    if taken is not None:
        raise Conflict("Someone in this practice already has an account with this e-mail address.")
    user = User(
        tenant_id=actor.tenant_id,
        email=email,
        full_name=full_name,
        # No password until they choose one: a hash of a random value nobody holds.
        password_hash=security.hash_password(security.new_session_token()[0]),
        is_active=False,
    )
    uow.session.add(user)
    patient_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    if role == Role.PATIENT:
        patient = Patient(
            tenant_id=actor.tenant_id,
            full_name=full_name,
            email=email,
            phone=phone,
            home_clinic_id=clinic.id if clinic else None,
        )
        uow.session.add(patient)
        patient_id = patient.id
    elif role == Role.DOCTOR:
        provider = Provider(tenant_id=actor.tenant_id, full_name=full_name, title=(title or "").strip())
        uow.session.add(provider)
        uow.flush()
        assert clinic is not None  # noqa: S101 - checked above
        uow.session.add(ProviderClinic(tenant_id=actor.tenant_id, provider_id=provider.id, clinic_id=clinic.id))
        provider_id = provider.id
    uow.flush()
    uow.session.add(
        Membership(
            tenant_id=actor.tenant_id, user_id=user.id, role=role, patient_id=patient_id, provider_id=provider_id
        )
    )
    uow.flush()
    link = _issue_link(uow, user=user, purpose=INVITE, created_by=actor.user_id)
    ids = _send_link(actor, uow, link=link, user=user, phone=phone)
    data = {"role": str(role), "channels": len(ids), "expires_at": link.expires_at.isoformat()}
    if patient_id is not None:
        data["patient_id"] = str(patient_id)
    record(actor, uow, action="user.invited", entity_type="user", entity_id=user.id, data=data)
    return Invitation(user.id, role, patient_id, provider_id, link.expires_at, ids)


@service_function
def resend_invitation(actor: Actor, uow: UnitOfWork, user_id: uuid.UUID) -> Invitation:
    """Send a new invitation link to someone who has not accepted yet (admin); the earlier link stops working."""
    require_role(actor, Role.ADMIN)
    user = uow.session.get(User, user_id)
    if user is None:
        raise NotFound("user")
    if user.is_active or user.last_login_at is not None or user.terms_accepted_at is not None:
        raise Conflict("This person has already accepted their invitation.")
    membership = _pick_membership(uow, user, None)
    if membership is None:
        raise NotFound("user")
    patient = _patient_of(uow, user)
    link = _issue_link(uow, user=user, purpose=INVITE, created_by=actor.user_id)
    ids = _send_link(actor, uow, link=link, user=user, phone=patient.phone if patient is not None else "")
    data = {"channels": len(ids), "expires_at": link.expires_at.isoformat()}
    record(actor, uow, action="user.invitation_resent", entity_type="user", entity_id=user.id, data=data)
    return Invitation(
        user.id, Role(membership.role), membership.patient_id, membership.provider_id, link.expires_at, ids
    )


@dataclass(frozen=True)
class Person:
    """A row of the admin's People page."""

    user_id: uuid.UUID
    full_name: str
    email: str
    role: Role
    status: str  # "active", "invited" (link open), "invite expired", "deactivated"
    invite_expires_at: datetime | None
    last_login_at: datetime | None
    mfa_enabled: bool = False


@service_function
def list_people(actor: Actor, uow: UnitOfWork, *, role: str | None = None, limit: int = 500) -> list[Person]:
    """The practice's accounts with their role and state (admin): staff first, then patients, by name."""
    require_role(actor, Role.ADMIN)
    if role:
        try:
            wanted: Role | None = Role(role)
        except ValueError as exc:
            raise ValidationFailed("role must be patient, doctor or admin", field="role") from exc
        if wanted not in INVITABLE_ROLES:
            raise ValidationFailed("role must be patient, doctor or admin", field="role")
    else:
        wanted = None
    if not 1 <= limit <= 2000:
        raise ValidationFailed("limit must be between 1 and 2000", field="limit")
    now = utcnow()
    open_invites: dict[uuid.UUID, datetime] = {}
    for link in uow.session.exec(
        select(OnboardingLink).where(
            OnboardingLink.purpose == INVITE,
            col(OnboardingLink.used_at).is_(None),
            col(OnboardingLink.revoked_at).is_(None),
        )
    ):
        if link.user_id not in open_invites or open_invites[link.user_id] < link.expires_at:
            open_invites[link.user_id] = link.expires_at
    accepted = {
        link_user
        for link_user in uow.session.exec(
            select(OnboardingLink.user_id).where(
                OnboardingLink.purpose == INVITE, col(OnboardingLink.used_at).is_not(None)
            )
        )
    }
    query = select(User, Membership.role).join(Membership, col(Membership.user_id) == User.id)
    if wanted is not None:
        query = query.where(Membership.role == wanted)
    people: dict[uuid.UUID, Person] = {}
    for user, member_role in uow.session.exec(query):
        role_value = Role(member_role)
        known = people.get(user.id)
        if known is not None and _rank(known.role) <= _rank(role_value):
            continue
        expires = open_invites.get(user.id)
        if user.is_active:
            status = "active"
        elif user.last_login_at is None and user.id not in accepted and expires is not None:
            status = "invited" if expires > now else "invite expired"
        else:
            status = "deactivated"
        people[user.id] = Person(
            user.id, user.full_name, user.email, role_value, status,
            expires if status.startswith("invite") else None, user.last_login_at, user.mfa_enabled_at is not None,
        )  # fmt: skip
    ordered = sorted(people.values(), key=lambda p: (_rank(p.role) == _rank(Role.PATIENT), p.full_name.lower()))
    return ordered[:limit]


def _rank(role: Role) -> int:
    return {Role.ADMIN: 0, Role.DOCTOR: 1, Role.PATIENT: 2}.get(role, 9)


# -- the anonymous visitor with a link -------------------------------------------------------------------


@dataclass(frozen=True)
class LinkView:
    """What the page of a valid link shows (nothing of it is PHI beyond the person's own first name)."""

    purpose: str
    practice_name: str
    practice_slug: str
    first_name: str
    email: str
    role: Role
    expires_at: datetime


def _find_link(token: str | None, purpose: str) -> tuple[uuid.UUID, uuid.UUID]:
    """(tenant id, link id) of a live link of `purpose`, looked up in the system scope; else LinkInvalid."""
    if not token or len(token) > TOKEN_MAX_LENGTH or "\x00" in token:
        raise LinkInvalid()
    with UnitOfWork(system=True) as uow:
        link = uow.session.exec(select(OnboardingLink).where(OnboardingLink.token_hash == hash_token(token))).first()
        if link is None or link.purpose != purpose or link.used_at is not None or link.revoked_at is not None:
            raise LinkInvalid()
        if link.expires_at <= utcnow():
            raise LinkInvalid()
        return link.tenant_id, link.id


def _locked_link(uow: UnitOfWork, link_id: uuid.UUID, purpose: str) -> tuple[OnboardingLink, User]:
    """The link, row-locked in the practice's own unit of work, still live, with its user."""
    link = uow.session.exec(select(OnboardingLink).where(OnboardingLink.id == link_id).with_for_update()).first()
    if link is None or link.purpose != purpose or link.used_at is not None or link.revoked_at is not None:
        raise LinkInvalid()
    if link.expires_at <= utcnow():
        raise LinkInvalid()
    user = uow.session.get(User, link.user_id)
    if user is None:
        raise LinkInvalid()
    return link, user


def inspect_link(token: str | None, purpose: str) -> LinkView:
    """What a link's page shows; LinkInvalid when it is unknown, expired, used or replaced."""
    if purpose not in PURPOSES:
        raise LinkInvalid()
    tenant_id, link_id = _find_link(token, purpose)
    with UnitOfWork(Actor.system(tenant_id)) as uow:
        link = uow.session.get(OnboardingLink, link_id)
        user = uow.session.get(User, link.user_id) if link is not None else None
        tenant = uow.session.get(Tenant, tenant_id)
        membership = _pick_membership(uow, user, None) if user is not None else None
        if link is None or user is None or tenant is None or membership is None:
            raise LinkInvalid()
        if purpose == RESET and not user.is_active:
            raise LinkInvalid()
        parts = user.full_name.split()
        return LinkView(purpose, tenant.name, tenant.slug, parts[0] if parts else "", user.email, Role(membership.role),
                        link.expires_at)  # fmt: skip


def accept_invitation(*, token: str | None, password: str, accept_terms: bool) -> Actor:
    """Set the first password from an invitation link and accept the terms: the account becomes active, the link
    is spent. Returns the actor, so the browser can be signed in."""
    tenant_id, link_id = _find_link(token, INVITE)
    system = Actor.system(tenant_id)
    with UnitOfWork(system) as uow:
        link, user = _locked_link(uow, link_id, INVITE)
        if not accept_terms:
            raise ValidationFailed("Accept the terms of use to continue.", field="accept_terms")
        check_password_policy(password, email=user.email, names=(user.full_name,), field="password")
        membership = _pick_membership(uow, user, None)
        if membership is None:
            raise LinkInvalid()
        now = utcnow()
        user.password_hash = security.hash_password(password)
        user.is_active = True
        user.terms_accepted_at = now
        link.used_at = now
        uow.session.add(user)
        uow.session.add(link)
        actor = _actor_for(membership)
        record(actor, uow, action="user.invitation_accepted", entity_type="user", entity_id=user.id,
               data={"role": str(actor.role), "terms_accepted_at": now.isoformat()})  # fmt: skip
        uow.commit()
        return actor


# -- forgotten passwords ---------------------------------------------------------------------------------


class _Counter:
    """Fixed-window counters in Redis (in process memory without Redis): how many requests per key per window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, window: int) -> tuple[int, int]:
        """Count one request; return (count in the window, seconds until the window ends)."""
        settings = get_settings()
        full = f"{settings.redis_key_prefix}:onboarding:{key}"
        if settings.redis_url:
            try:
                client = get_redis()
                pipe = client.pipeline()
                pipe.set(full, 0, ex=window, nx=True)  # the window starts with the first request
                pipe.incr(full)
                pipe.ttl(full)
                _started, count, ttl = pipe.execute()
                return int(count), max(1, int(ttl))
            except Exception:  # noqa: BLE001 - Redis away: count in process, never fail the request for it
                logger.warning("password-reset counter: Redis unavailable, counting in process")
        now = time.monotonic()
        with self._lock:
            start, count = self._memory.get(full, (now, 0))
            if now - start >= window:
                start, count = now, 0
            self._memory[full] = (start, count + 1)
            return count + 1, max(1, int(window - (now - start)))


_counter = _Counter()
ADDRESS_WINDOW_SECONDS = 900
ACCOUNT_WINDOW_SECONDS = 3600


def _keyed(value: str) -> str:
    """A keyed hash: neither e-mails nor addresses are kept in Redis."""
    key = get_settings().secret_key.encode("utf-8")
    return hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


def request_password_reset(*, email: str, client_address: str | None, practice: str | None = None) -> str:
    """Send a reset link to every active account with this e-mail (one per practice, or the named practice's).

    The answer (the returned sentence) is the same whether or not an account exists. Too many requests from one
    address: RateLimited (429, for everyone alike). More than a few e-mails per account per hour: nothing more is
    sent, same answer."""
    settings = get_settings()
    if settings.rate_limit_enabled:
        count, wait = _counter.hit(f"reset-address:{_keyed(client_address or 'unknown')}", ADDRESS_WINDOW_SECONDS)
        if count > settings.password_reset_address_max:
            raise RateLimited(f"Too many requests. Try again in {wait} seconds.", retry_after=wait)
    email = (email or "").strip().lower()
    if not email or len(email) > 320 or "@" not in email or "\x00" in email:
        raise ValidationFailed("Enter the e-mail address you sign in with.", field="email")
    with UnitOfWork(system=True) as uow:
        query = select(User.tenant_id, User.id).where(func.lower(User.email) == email, col(User.is_active).is_(True))
        if practice:
            query = query.join(Tenant, col(Tenant.id) == User.tenant_id).where(Tenant.slug == practice.strip())
        accounts = [(tenant_id, user_id) for tenant_id, user_id in uow.session.exec(query)]
    for tenant_id, user_id in accounts:
        count, _wait = _counter.hit(f"reset-account:{user_id.hex}", ACCOUNT_WINDOW_SECONDS)
        system = Actor.system(tenant_id)
        with UnitOfWork(system) as uow:
            user = uow.session.get(User, user_id)
            if user is None or not user.is_active:
                continue
            if count > settings.password_reset_account_max:
                record(system, uow, action="user.password_reset_suppressed", entity_type="user", entity_id=user.id)
                uow.commit()
                continue
            link = _issue_link(uow, user=user, purpose=RESET, created_by=None)
            ids = _send_link(system, uow, link=link, user=user)
            record(system, uow, action="user.password_reset_requested", entity_type="user", entity_id=user.id,
                   data={"channels": len(ids), "expires_at": link.expires_at.isoformat()})  # fmt: skip
            uow.commit()
    return RESET_SENT


def reset_password(*, token: str | None, new_password: str) -> int:
    """Set a new password from a reset link: the link is spent, and every session and API token of the account
    ends (returns how many). The person signs in again with the new password."""
    tenant_id, link_id = _find_link(token, RESET)
    system = Actor.system(tenant_id)
    with UnitOfWork(system) as uow:
        link, user = _locked_link(uow, link_id, RESET)
        if not user.is_active:
            raise LinkInvalid()
        check_password_policy(new_password, email=user.email, names=(user.full_name,), field="password")
        now = utcnow()
        user.password_hash = security.hash_password(new_password)
        link.used_at = now
        uow.session.add(user)
        uow.session.add(link)
        revoked = _revoke_all_sessions(uow, tenant_id, user.id)
        record(system, uow, action="user.password_reset", entity_type="user", entity_id=user.id,
               data={"sessions_ended": revoked})  # fmt: skip
        uow.commit()
        return revoked


# -- self-registration -----------------------------------------------------------------------------------

REGISTER_SENT = (
    "We have sent a message to the address you gave. To finish, open the link in it and enter the password you "
    "chose. Nothing arrived? Check the spam folder, or register again for a new link."
)
REGISTRATION_LOCALES = ("en", "es")
# Wrong passwords entered on one verification link before it asks the person to wait.
VERIFY_ATTEMPTS_MAX = 10
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,59}")
# A greeting is made of the first name only when it looks like one: the message goes to whatever address was typed,
# so nothing else the visitor typed reaches it (a registration form is no relay for someone else's words).
_GREETABLE = re.compile(r"[^\W\d_](?:[^\W\d_]|['’.-]){0,39}")


class RegistrationClosed(PermissionDenied):
    """The practice does not take registrations (its admin has not turned self-registration on): 403."""

    code = "registration_closed"

    def __init__(self, practice_name: str) -> None:
        super().__init__(
            f"{practice_name} does not take online registrations. Ask the practice to send you an invitation."
        )


@dataclass(frozen=True)
class SelfRegistrationSetting:
    """Whether the practice's patients may create their own account, and where they do it."""

    enabled: bool
    practice_slug: str

    @property
    def register_path(self) -> str:
        return f"/register/{self.practice_slug}"


def _own_tenant(actor: Actor, uow: UnitOfWork) -> Tenant:
    tenant = uow.session.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("practice")
    return tenant


@service_function
def get_self_registration(actor: Actor, uow: UnitOfWork) -> SelfRegistrationSetting:
    """Whether patients may create their own account in the practice (admin)."""
    require_role(actor, Role.ADMIN)
    tenant = _own_tenant(actor, uow)
    return SelfRegistrationSetting(tenant.self_registration_enabled, tenant.slug)


@service_function
def set_self_registration(actor: Actor, uow: UnitOfWork, *, enabled: bool) -> SelfRegistrationSetting:
    """Let patients create their own account (with e-mail verification), or stop it (admin; audited)."""
    require_role(actor, Role.ADMIN)
    if not isinstance(enabled, bool):
        raise ValidationFailed("enabled must be true or false", field="enabled")
    tenant = _own_tenant(actor, uow)
    was = tenant.self_registration_enabled
    tenant.self_registration_enabled = enabled
    uow.session.add(tenant)
    record(actor, uow, action="practice.self_registration_changed", entity_type="tenant", entity_id=tenant.id,
           data={"enabled": enabled, "was": was})  # fmt: skip
    return SelfRegistrationSetting(enabled, tenant.slug)


@dataclass(frozen=True)
class RegistrationInfo:
    """What the registration and sign-in pages need about a practice named in the address."""

    practice_id: uuid.UUID
    practice_name: str
    practice_slug: str
    open: bool


def registration_info(slug: str | None) -> RegistrationInfo | None:
    """The practice with this short name and whether it takes registrations (system scope: nobody is signed in);
    None for an unknown or malformed name."""
    slug = (slug or "").strip().lower()
    if not _SLUG.fullmatch(slug):
        return None
    with UnitOfWork(system=True) as uow:
        tenant = uow.session.exec(select(Tenant).where(col(Tenant.slug) == slug)).first()
        if tenant is None:
            return None
        return RegistrationInfo(tenant.id, tenant.name, tenant.slug, tenant.self_registration_enabled)


def _clean_locale(locale: str | None) -> str:
    value = (locale or "en").strip().lower()[:10]
    if value not in REGISTRATION_LOCALES:
        raise ValidationFailed("Choose English or Spanish.", field="locale")
    return value


@dataclass(frozen=True)
class RegistrationReceipt:
    """What a registration did. Only tests and the audit trail see it: the visitor gets REGISTER_SENT, always."""

    kind: str  # "verify" (a link was sent), "exists" (the owner was told), "suppressed" (too many: nothing sent)
    registration_id: uuid.UUID | None
    notification_ids: list[uuid.UUID]


def _patient_id_of(uow: UnitOfWork, user: User) -> uuid.UUID | None:
    patient = _patient_of(uow, user)
    return patient.id if patient is not None else None


@service_function
def request_registration(
    actor: Actor,
    uow: UnitOfWork,
    *,
    full_name: str,
    email: str,
    password: str,
    accept_terms: bool,
    phone: str = "",
    locale: str = "en",
) -> RegistrationReceipt:
    """Register a newcomer as a patient of the actor's practice, pending e-mail verification (the anonymous visitor
    acts as the practice's system actor). A new e-mail gets a verification link; one with an account here gets a
    "you already have an account" message instead; too many requests for one e-mail send nothing."""
    require_role(actor, Role.SYSTEM)
    tenant = _own_tenant(actor, uow)
    if not tenant.self_registration_enabled:
        raise RegistrationClosed(tenant.name)
    full_name = _clean_name(full_name)
    email = _clean_email(email)
    phone = _clean_phone(phone)
    locale = _clean_locale(locale)
    check_password_policy(password, email=email, names=(full_name,), field="password")
    if accept_terms is not True:
        raise ValidationFailed("Accept the terms of use and the privacy notice to continue.", field="accept_terms")
    # Hashed whether or not it is kept: both answers take the same time.
    password_hash = security.hash_password(password)
    count, _wait = _counter.hit(f"register-email:{_keyed(f'{tenant.id}:{email}')}", ACCOUNT_WINDOW_SECONDS)
    if count > get_settings().password_reset_account_max:
        record(actor, uow, action="user.registration_suppressed", entity_type="registration", entity_id=None)
        return RegistrationReceipt("suppressed", None, [])
    now = utcnow()
    existing = uow.session.exec(select(User).where(func.lower(User.email) == email)).first()
    registration_id = new_id()
    # What either kind of request records; each kind adds its own fields below.
    new_registration = partial(
        Registration, id=registration_id, tenant_id=tenant.id, email=email, locale=locale,
        token_hash=hash_token(link_token(registration_id)), created_at=now,
    )  # fmt: skip
    if existing is not None:
        registration = new_registration(kind="exists", user_id=existing.id, expires_at=now)
        uow.session.add(registration)
        uow.flush()
        ids = _write_account_messages(
            actor,
            uow,
            event_type=REGISTRATION_EXISTS,
            channels=[Channel.EMAIL],
            patient_id=_patient_id_of(uow, existing),
            payload={"link_id": str(registration_id), "registration_id": str(registration_id),
                     "user_id": str(existing.id)},
        )  # fmt: skip
        record(actor, uow, action="user.registration_existing_account", entity_type="user", entity_id=existing.id,
               data={"registration_id": str(registration_id), "channels": len(ids)})  # fmt: skip
        return RegistrationReceipt("exists", registration_id, ids)
    # Only the newest request for an e-mail works; the password of an older one is forgotten.
    uow.session.execute(
        update(Registration)
        .where(
            col(Registration.email) == email,
            col(Registration.kind) == "verify",
            col(Registration.used_at).is_(None),
            col(Registration.revoked_at).is_(None),
        )
        .values(revoked_at=now, password_hash="")
    )
    registration = new_registration(
        kind="verify", full_name=full_name, phone=phone, password_hash=password_hash,
        expires_at=now + _lifetime(VERIFY), terms_accepted_at=now,
    )  # fmt: skip
    uow.session.add(registration)
    uow.flush()
    ids = _write_account_messages(
        actor,
        uow,
        event_type=REGISTRATION_VERIFY,
        channels=[Channel.EMAIL],  # it verifies the e-mail address: by e-mail only
        patient_id=None,
        payload={"link_id": str(registration_id), "registration_id": str(registration_id)},
    )
    record(actor, uow, action="user.registration_requested", entity_type="registration", entity_id=registration_id,
           data={"channels": len(ids), "expires_at": registration.expires_at.isoformat()})  # fmt: skip
    return RegistrationReceipt("verify", registration_id, ids)


def register_patient(
    *,
    practice: str | None,
    full_name: str,
    email: str,
    password: str,
    accept_terms: bool,
    phone: str = "",
    locale: str = "en",
    client_address: str | None,
) -> str:
    """A newcomer's registration at the practice with this short name: always the same answer (REGISTER_SENT).

    NotFound for an unknown practice, RegistrationClosed when it does not take registrations, ValidationFailed
    (with its field) for bad input, RateLimited when one address asks too often."""
    settings = get_settings()
    if settings.rate_limit_enabled:
        count, wait = _counter.hit(f"register-address:{_keyed(client_address or 'unknown')}", ADDRESS_WINDOW_SECONDS)
        if count > settings.password_reset_address_max:
            raise RateLimited(f"Too many requests. Try again in {wait} seconds.", retry_after=wait)
    info = registration_info(practice)
    if info is None:
        raise NotFound("practice")
    actor = Actor.system(info.practice_id)
    with UnitOfWork(actor) as uow:
        request_registration(actor, uow, full_name=full_name, email=email, password=password,
                             accept_terms=accept_terms, phone=phone, locale=locale)  # fmt: skip
        uow.commit()
    return REGISTER_SENT


@dataclass(frozen=True)
class RegistrationView:
    """What the verification page shows (the person's own e-mail and first name, nothing else)."""

    practice_name: str
    practice_slug: str
    first_name: str
    email: str
    expires_at: datetime


def _find_registration(token: str | None) -> tuple[uuid.UUID, uuid.UUID]:
    """(tenant id, registration id) of a live verification link, looked up in the system scope; else LinkInvalid."""
    if not token or len(token) > TOKEN_MAX_LENGTH or "\x00" in token:
        raise LinkInvalid()
    with UnitOfWork(system=True) as uow:
        found = uow.session.exec(select(Registration).where(Registration.token_hash == hash_token(token))).first()
        if found is None or not _live(found):
            raise LinkInvalid()
        return found.tenant_id, found.id


def _live(registration: Registration) -> bool:
    return (
        registration.kind == "verify"
        and registration.used_at is None
        and registration.revoked_at is None
        and registration.expires_at > utcnow()
    )


def _first_name(full_name: str) -> str:
    parts = full_name.split()
    return parts[0] if parts else ""


def inspect_registration(token: str | None) -> RegistrationView:
    """What a verification link's page shows; LinkInvalid when it is unknown, expired, used or replaced."""
    tenant_id, registration_id = _find_registration(token)
    with UnitOfWork(Actor.system(tenant_id)) as uow:
        registration = uow.session.get(Registration, registration_id)
        tenant = uow.session.get(Tenant, tenant_id)
        if registration is None or tenant is None or not _live(registration):
            raise LinkInvalid()
        return RegistrationView(tenant.name, tenant.slug, _first_name(registration.full_name), registration.email,
                                registration.expires_at)  # fmt: skip


@service_function
def verify_registration(actor: Actor, uow: UnitOfWork, registration_id: uuid.UUID, *, password: str) -> Actor:
    """Open a verification link: with the password chosen at registration, create the user (active, role patient),
    the patient record and the membership in the actor's practice, and spend the link. Returns the new patient's
    actor, so the browser can be signed in."""
    require_role(actor, Role.SYSTEM)
    registration = uow.session.exec(
        select(Registration).where(Registration.id == registration_id).with_for_update()
    ).first()
    if registration is None or not _live(registration):
        raise LinkInvalid()
    tenant = _own_tenant(actor, uow)
    if not tenant.self_registration_enabled:
        raise RegistrationClosed(tenant.name)
    attempts, wait = _counter.hit(f"register-verify:{registration.id.hex}", ACCOUNT_WINDOW_SECONDS)
    if attempts > VERIFY_ATTEMPTS_MAX:
        raise RateLimited(f"Too many attempts. Try again in {wait} seconds.", retry_after=wait)
    if not registration.password_hash or not security.verify_password(registration.password_hash, password or ""):
        raise ValidationFailed(
            "This is not the password you chose when you registered. Enter that one (or register again).",
            field="password",
            code="registration_password_mismatch",
        )
    email = registration.email
    if uow.session.exec(select(User.id).where(func.lower(User.email) == email)).first() is not None:
        raise Conflict(
            "An account with this e-mail address already exists here: sign in, or reset your password.",
            code="registration_exists",
        )
    now = utcnow()
    user = User(
        tenant_id=actor.tenant_id,
        email=email,
        full_name=registration.full_name,
        password_hash=registration.password_hash,
        is_active=True,
        terms_accepted_at=registration.terms_accepted_at or now,
    )
    patient = Patient(
        tenant_id=actor.tenant_id,
        full_name=registration.full_name,
        email=email,
        phone=registration.phone,
        locale=registration.locale or "en",
    )
    uow.session.add(user)
    uow.session.add(patient)
    uow.flush()
    membership = Membership(tenant_id=actor.tenant_id, user_id=user.id, role=Role.PATIENT, patient_id=patient.id)
    uow.session.add(membership)
    registration.used_at = now
    registration.user_id = user.id
    registration.password_hash = ""  # it lives on the account now
    uow.session.add(registration)
    uow.flush()
    patient_actor = _actor_for(membership)
    accepted = user.terms_accepted_at.isoformat() if user.terms_accepted_at else None
    record(patient_actor, uow, action="user.registration_verified", entity_type="user", entity_id=user.id,
           data={"patient_id": str(patient.id), "registration_id": str(registration.id),
                 "terms_accepted_at": accepted})  # fmt: skip
    return patient_actor


def complete_registration(*, token: str | None, password: str) -> Actor:
    """The visitor with a verification link and their password: the account exists from now on (see
    verify_registration). Returns the new patient's actor."""
    tenant_id, registration_id = _find_registration(token)
    system = Actor.system(tenant_id)
    with UnitOfWork(system) as uow:
        actor = verify_registration(system, uow, registration_id, password=password)
        uow.commit()
        return actor


def _registration_message(uow: UnitOfWork, registration_id: uuid.UUID) -> LinkMessage | None:
    """The message about a registration: its verification link, or (the e-mail had an account) the way to sign in."""
    registration = uow.session.get(Registration, registration_id)
    if registration is None:
        return None
    public = get_settings().public_url.rstrip("/")
    if registration.kind == "verify":
        first = _first_name(registration.full_name)
        locale = registration.locale or "en"
        return LinkMessage(
            first_name=first if _GREETABLE.fullmatch(first) else "",
            email=registration.email,
            phone="",
            locale=locale,
            link=link_url(VERIFY, registration.id),
            valid_for=valid_for(VERIFY, locale),
        )
    user = uow.session.get(User, registration.user_id) if registration.user_id else None
    tenant = uow.session.get(Tenant, registration.tenant_id)
    if user is None or tenant is None:
        return None
    patient = _patient_of(uow, user)
    return LinkMessage(
        first_name=_first_name(user.full_name),
        email=user.email,
        phone="",
        locale=(patient.locale if patient is not None else "") or registration.locale or "en",
        link=f"{public}/login?practice={tenant.slug}",
        valid_for="",
    )


def recipient_name(uow: UnitOfWork, payload: dict[str, object]) -> str | None:
    """Who a registration's verification message goes to, for the outbox ("Name (registering)"); None for any
    other message."""
    raw = payload.get("registration_id")
    if not raw or payload.get("user_id"):
        return None
    try:
        registration = uow.session.get(Registration, uuid.UUID(str(raw)))
    except ValueError:
        return None
    return f"{registration.full_name} (registering)" if registration is not None else "(registering)"

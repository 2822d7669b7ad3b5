"""Build practices and their data quickly through the ORM, for integration tests.

The Tenant row is written in an unscoped unit of work (it is the root of isolation); everything else
is written as the system actor of that tenant, so the tenant-scoping listeners run exactly as in
production code.

Admins must use MFA (backend/identity/mfa.py), so every admin made here is enrolled, with a random secret and
ten recovery codes whose plain text only this module knows; `bearer()` signs them in with a code the server has
not accepted yet (see `second_factor`). A test about an admin without MFA says so: `remove_mfa(practice, user)`.
"""

from __future__ import annotations

import threading
import time as clock
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pyotp
from sqlalchemy import func
from sqlmodel import col, select

from backend.audit.models import AuditEvent
from backend.audit.service import record
from backend.crypto import decrypt_text, encrypt_text
from backend.db import UnitOfWork
from backend.identity import mfa
from backend.identity.models import Membership, MfaRecoveryCode, Patient, Provider, ProviderClinic, User
from backend.identity.security import hash_password
from backend.redis_client import get_redis
from backend.scheduling.models import Appointment, AppointmentStatus, AvailabilityRule, BookingPolicy, TimeOff
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, Tenant
from backend.types import utcnow
from backend.waitlist.models import EntryStatus, WaitlistEntry

TEST_PASSWORD = "correct horse battery staple"
# argon2 is deliberately slow: hash once per test process and reuse the hash for every user.
PASSWORD_HASH = hash_password(TEST_PASSWORD)

DEFAULT_ZONES = ("America/New_York", "Europe/Berlin")


@dataclass
class Practice:
    """A tenant with two clinics, one doctor, one patient and one admin (plus their actors)."""

    tenant: Tenant
    clinic: Clinic
    clinic2: Clinic
    provider: Provider
    patient: Patient
    admin_user: User
    doctor_user: User
    patient_user: User
    admin_membership: Membership
    doctor_membership: Membership
    patient_membership: Membership
    admin: Actor
    doctor: Actor
    patient_actor: Actor
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.tenant.id

    @property
    def system(self) -> Actor:
        return Actor.system(self.tenant.id)

    @property
    def clinics(self) -> tuple[Clinic, Clinic]:
        return (self.clinic, self.clinic2)

    @property
    def actors(self) -> dict[str, Actor]:
        """Every kind of actor of this practice, by role name."""
        return {"admin": self.admin, "doctor": self.doctor, "patient": self.patient_actor, "system": self.system}

    @property
    def emails(self) -> dict[str, str]:
        return {"admin": self.admin_user.email, "doctor": self.doctor_user.email, "patient": self.patient_user.email}


def make_practice(name: str, slug: str, *, zones: tuple[str, str] = DEFAULT_ZONES) -> Practice:
    """Create a practice: tenant, two clinics in different zones, a doctor, a patient and an admin."""
    with UnitOfWork(system=True) as uow:
        tenant = Tenant(name=name, slug=slug)
        uow.session.add(tenant)
        uow.commit()

    with UnitOfWork(Actor.system(tenant.id)) as uow:
        s = uow.session
        clinic = Clinic(tenant_id=tenant.id, name=f"{name} Downtown", timezone=zones[0], address="1 Main St")
        clinic2 = Clinic(tenant_id=tenant.id, name=f"{name} Uptown", timezone=zones[1], address="9 Hill Rd")
        s.add_all([clinic, clinic2])
        s.flush()
        provider = Provider(
            tenant_id=tenant.id,
            full_name=f"Dana Doctor ({slug})",
            title="MD",
            specialties=["psychiatry"],
            modalities=["in_person", "telehealth"],
        )
        patient = Patient(
            tenant_id=tenant.id,
            full_name=f"Pat Patient ({slug})",
            email=f"patient@{slug}.test",
            home_clinic_id=clinic.id,
        )
        s.add_all([provider, patient])
        s.flush()
        s.add(ProviderClinic(tenant_id=tenant.id, provider_id=provider.id, clinic_id=clinic.id))

        def user(role: str, full_name: str) -> User:
            u = User(tenant_id=tenant.id, email=f"{role}@{slug}.test", full_name=full_name, password_hash=PASSWORD_HASH)
            s.add(u)
            return u

        admin_user = user("admin", f"Ada Admin ({slug})")
        doctor_user = user("doctor", provider.full_name)
        patient_user = user("patient", patient.full_name)
        s.flush()
        _enrol_mfa(uow, admin_user)
        admin_m = Membership(tenant_id=tenant.id, user_id=admin_user.id, role=Role.ADMIN)
        doctor_m = Membership(tenant_id=tenant.id, user_id=doctor_user.id, role=Role.DOCTOR, provider_id=provider.id)
        patient_m = Membership(tenant_id=tenant.id, user_id=patient_user.id, role=Role.PATIENT, patient_id=patient.id)
        s.add_all([admin_m, doctor_m, patient_m])
        uow.commit()

    return Practice(
        tenant=tenant,
        clinic=clinic,
        clinic2=clinic2,
        provider=provider,
        patient=patient,
        admin_user=admin_user,
        doctor_user=doctor_user,
        patient_user=patient_user,
        admin_membership=admin_m,
        doctor_membership=doctor_m,
        patient_membership=patient_m,
        admin=Actor(tenant_id=tenant.id, role=Role.ADMIN, user_id=admin_user.id),
        doctor=Actor(tenant_id=tenant.id, role=Role.DOCTOR, user_id=doctor_user.id, provider_id=provider.id),
        patient_actor=Actor(tenant_id=tenant.id, role=Role.PATIENT, user_id=patient_user.id, patient_id=patient.id),
    )


def drop_redis_keys(practice: Practice) -> None:
    """Delete the practice's own Redis keys (clinic:<tenant>:*: search cache, slot marks, waitlist marks)."""
    client = get_redis()
    keys = list(client.scan_iter(f"clinic:{practice.tenant_id}:*"))
    if keys:
        client.delete(*keys)


def future(days: int = 1, hour: int = 15, minute: int = 0) -> datetime:
    """An aware UTC datetime `days` days from today at hh:mm UTC."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hour, minutes=minute)


def add_provider(practice: Practice, full_name: str, *, clinic: Clinic | None = None, title: str = "PsyD") -> Provider:
    """Add another provider, linked to `clinic` (default: the practice's first clinic)."""
    with UnitOfWork(practice.system) as uow:
        provider = Provider(tenant_id=practice.tenant_id, full_name=full_name, title=title)
        uow.session.add(provider)
        uow.flush()
        uow.session.add(
            ProviderClinic(
                tenant_id=practice.tenant_id, provider_id=provider.id, clinic_id=(clinic or practice.clinic).id
            )
        )
        uow.commit()
    return provider


def add_patient(practice: Practice, full_name: str, *, home_clinic: Clinic | None = None) -> Patient:
    """Add another patient (without a login)."""
    with UnitOfWork(practice.system) as uow:
        patient = Patient(
            tenant_id=practice.tenant_id, full_name=full_name, home_clinic_id=home_clinic.id if home_clinic else None
        )
        uow.session.add(patient)
        uow.commit()
    return patient


def add_user(
    practice: Practice,
    email: str,
    role: Role,
    *,
    full_name: str = "Extra User",
    with_mfa: bool | None = None,
    **links: Any,
) -> User:
    """Add a login with one membership (links: patient_id= / provider_id=). `with_mfa` (default: for an admin, who
    must use it) enrols it in MFA as `make_practice` does."""
    with UnitOfWork(practice.system) as uow:
        user = User(tenant_id=practice.tenant_id, email=email, full_name=full_name, password_hash=PASSWORD_HASH)
        uow.session.add(user)
        uow.flush()
        uow.session.add(Membership(tenant_id=practice.tenant_id, user_id=user.id, role=role, **links))
        if (role == Role.ADMIN) if with_mfa is None else with_mfa:
            _enrol_mfa(uow, user)
        uow.commit()
    return user


# -- MFA of test accounts ---------------------------------------------------------------------------------------

# user id -> the plain text of its unused recovery codes (the database keeps only their hashes).
_RECOVERY_CODES: dict[uuid.UUID, list[str]] = {}
_CODES_LOCK = threading.Lock()


def _enrol_mfa(uow: UnitOfWork, user: User) -> None:
    """Enrol `user` as a confirmed enrolment leaves it: encrypted secret, ten hashed recovery codes."""
    user.mfa_secret_encrypted = encrypt_text(mfa.new_secret())
    user.mfa_enabled_at = utcnow()
    uow.session.add(user)
    _add_recovery_codes(uow, user)


def _add_recovery_codes(uow: UnitOfWork, user: User) -> None:
    codes = mfa.new_recovery_codes()
    for code in codes:
        uow.session.add(
            MfaRecoveryCode(tenant_id=user.tenant_id, user_id=user.id, code_hash=mfa.hash_recovery_code(code))
        )
    _RECOVERY_CODES.setdefault(user.id, []).extend(codes)


def enrol_mfa(practice: Practice, user: User) -> None:
    """Enrol a login of `practice` in MFA (an admin from `make_practice` or `add_user` already is)."""
    with UnitOfWork(practice.system) as uow:
        row = uow.session.get(User, user.id)
        assert row is not None and row.mfa_secret_encrypted is None, "already enrolled"
        _enrol_mfa(uow, row)
        uow.commit()


def remove_mfa(practice: Practice, user: User) -> None:
    """Take a login's MFA away, as an admin's reset does (without its audit row): an admin who has not set it up."""
    with UnitOfWork(practice.system) as uow:
        row = uow.session.get(User, user.id)
        assert row is not None
        row.mfa_secret_encrypted = None
        row.mfa_pending_secret_encrypted = None
        row.mfa_enabled_at = None
        row.mfa_last_step = None
        uow.session.add(row)
        for code in uow.session.exec(select(MfaRecoveryCode).where(MfaRecoveryCode.user_id == row.id)):
            uow.session.delete(code)
        uow.commit()
    _RECOVERY_CODES.pop(user.id, None)


def second_factor(email: str, practice: str | None = None) -> str | None:
    """A code that POST /auth/token will accept next for the account `email` (in practice slug `practice`), or
    None when the account has no MFA (or this cannot tell which account it is).

    The server accepts a TOTP code for the current step or one either side, and only for a step after the last one
    it accepted for the account (`users.mfa_last_step`, read here each time): never the same code twice. So: the
    TOTP code of the current step or the next (never the previous one, which could leave the window before the
    server checks it); when both are spent (a test signing one account in many times within 30 seconds, like the
    fuzz suite's fresh token per operation), one of the account's recovery codes only this module knows, each
    good once, and when those run out, ten more for the account (rows as enrolment writes them) rather than a wait.
    """
    with _CODES_LOCK, UnitOfWork(system=True) as uow:
        query = select(User).where(func.lower(User.email) == email.strip().lower(), col(User.is_active))
        if practice:
            query = query.join(Tenant, col(Tenant.id) == User.tenant_id).where(Tenant.slug == practice)
        found = list(uow.session.exec(query))
        if len(found) != 1 or found[0].mfa_secret_encrypted is None:
            return None
        user = found[0]
        step = mfa.current_step(clock.time())
        free = [s for s in (step, step + 1) if user.mfa_last_step is None or s > user.mfa_last_step]
        if free:
            return str(pyotp.TOTP(decrypt_text(user.mfa_secret_encrypted)).at(free[0] * mfa.STEP_SECONDS))
        if not _RECOVERY_CODES.get(user.id):
            with UnitOfWork(Actor.system(user.tenant_id)) as scoped:
                _add_recovery_codes(scoped, user)
                scoped.commit()
        return _RECOVERY_CODES[user.id].pop()


def token_request(email: str, password: str = TEST_PASSWORD, **extra: Any) -> dict[str, Any]:
    """The JSON body of POST /api/v1/auth/token for `email`, with a fresh MFA code when the account has MFA (unless
    `extra` brings its own `totp`)."""
    body: dict[str, Any] = {"email": email, "password": password, **extra}
    if "totp" not in extra:
        code = second_factor(email, extra.get("practice"))
        if code is not None:
            body["totp"] = code
    return body


def add_appointment(
    practice: Practice,
    start: datetime,
    *,
    minutes: int = 50,
    clinic: Clinic | None = None,
    provider: Provider | None = None,
    patient: Patient | None = None,
    status: AppointmentStatus = AppointmentStatus.BOOKED,
) -> Appointment:
    """Book an appointment (defaults: the practice's doctor, patient and first clinic)."""
    if start.tzinfo is None:
        raise ValueError("pass an aware datetime")
    with UnitOfWork(practice.system) as uow:
        appointment = Appointment(
            tenant_id=practice.tenant_id,
            provider_id=(provider or practice.provider).id,
            patient_id=(patient or practice.patient).id,
            clinic_id=(clinic or practice.clinic).id,
            start_at=start.astimezone(UTC),
            end_at=(start + timedelta(minutes=minutes)).astimezone(UTC),
            status=status,
        )
        uow.session.add(appointment)
        uow.commit()
    return appointment


def add_waitlist_entry(
    practice: Practice,
    *,
    clinic: Clinic | None = None,
    provider: Provider | None = None,
    any_provider: bool = False,
    patient: Patient | None = None,
    status: EntryStatus = EntryStatus.WAITING,
    urgency: int = 2,
    windows: list[dict[str, Any]] | None = None,
    earliest: date | None = None,
    specialty: str | None = None,
    modality: str | None = None,
) -> WaitlistEntry:
    """Put a patient on a waitlist (defaults: the practice's patient, doctor and first clinic).

    A patient has one active entry per target: vary the provider, specialty or modality for a second one."""
    clinic = clinic or practice.clinic
    with UnitOfWork(practice.system) as uow:
        entry = WaitlistEntry(
            tenant_id=practice.tenant_id,
            patient_id=(patient or practice.patient).id,
            clinic_id=clinic.id,
            provider_id=None if any_provider else (provider or practice.provider).id,
            preferred_windows=windows if windows is not None else [{"weekday": 1, "start": "09:00", "end": "12:00"}],
            timezone=clinic.timezone,
            earliest_date=earliest,
            urgency=urgency,
            status=status,
            specialty=specialty,
            modality=modality,
        )
        uow.session.add(entry)
        uow.commit()
    return entry


def add_audit_event(
    practice: Practice, action: str = "test.event", *, entity_id: uuid.UUID | None = None
) -> AuditEvent:
    """Write one audit event in the practice, as its system actor."""
    with UnitOfWork(practice.system) as uow:
        event = record(practice.system, uow, action=action, entity_type="test", entity_id=entity_id or uuid.uuid4())
        uow.commit()
    return event


def rows(practice: Practice, model: type[Any], **where: Any) -> list[Any]:
    """All rows of `model` in the practice matching `where` (read as its system actor)."""
    from sqlmodel import select

    with UnitOfWork(practice.system) as uow:
        query = select(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        found = list(uow.session.exec(query))
        uow.session.expunge_all()  # keep the loaded values: leaving the unit of work rolls back and expires
        return found


def bearer(client: Any, email: str, password: str = TEST_PASSWORD, **extra: Any) -> dict[str, str]:
    """Log in through POST /api/v1/auth/token (with an MFA code for an account with MFA, see `token_request`) and
    return the Authorization header."""
    response = client.post("/api/v1/auth/token", json=token_request(email, password, **extra))
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def add_availability(
    practice: Practice,
    *weekdays: int,
    clinic: Clinic | None = None,
    provider: Provider | None = None,
    start: time = time(8, 0),
    end: time = time(20, 0),
    session_minutes: int = 50,
    buffer_minutes: int = 10,
    modality: str = "in_person",
    valid_from: date | None = None,
    valid_until: date | None = None,
) -> list[AvailabilityRule]:
    """Weekly availability of a provider at a clinic (defaults: the practice's doctor and first clinic,
    every day 08:00-20:00 local, 50-minute sessions on the hour)."""
    with UnitOfWork(practice.system) as uow:
        rules = [
            AvailabilityRule(
                tenant_id=practice.tenant_id,
                provider_id=(provider or practice.provider).id,
                clinic_id=(clinic or practice.clinic).id,
                weekday=weekday,
                start_time=start,
                end_time=end,
                session_minutes=session_minutes,
                buffer_minutes=buffer_minutes,
                modality=modality,
                valid_from=valid_from,
                valid_until=valid_until,
            )
            for weekday in (weekdays or range(7))
        ]
        uow.session.add_all(rules)
        uow.commit()
    return rules


def set_booking_policy(practice: Practice, *, clinic: Clinic | None = None, **fields: Any) -> BookingPolicy:
    """Create or change the practice's booking policy (or a clinic's override)."""
    from sqlmodel import select

    clinic_id = clinic.id if clinic else None
    with UnitOfWork(practice.system) as uow:
        policy = uow.session.exec(select(BookingPolicy).where(BookingPolicy.clinic_id == clinic_id)).first()
        policy = policy or BookingPolicy(tenant_id=practice.tenant_id, clinic_id=clinic_id)
        for key, value in fields.items():
            setattr(policy, key, value)
        uow.session.add(policy)
        uow.commit()
    return policy


def add_time_off(
    practice: Practice, start: datetime, end: datetime, *, provider: Provider | None = None, reason: str = ""
) -> TimeOff:
    """Block a provider's time (default: the practice's doctor)."""
    with UnitOfWork(practice.system) as uow:
        off = TimeOff(
            tenant_id=practice.tenant_id, provider_id=(provider or practice.provider).id, start_at=start, end_at=end,
            reason=reason,
        )  # fmt: skip
        uow.session.add(off)
        uow.commit()
    return off


def local_start(days: int, hour: int, *, zone: str = "America/New_York", minute: int = 0) -> datetime:
    """The UTC instant of hh:mm wall-clock time in `zone`, `days` days after today's date there."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    day = datetime.now(tz).date() + timedelta(days=days)
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)


def call(actor: Actor, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one service function in its own unit of work and commit, as a page or route does."""
    with UnitOfWork(actor) as uow:
        result = fn(actor, uow, *args, **kwargs)
        uow.commit()
        return result

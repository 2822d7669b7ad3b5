"""People: patients, providers, users and their memberships; login sessions."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from backend.tenancy.context import Role
from backend.tenancy.models import TenantMixin, tenant_fk, tenant_key
from backend.types import JSONType, UTCDateTime, new_id, utcnow

MODALITIES = ("in_person", "telehealth")


class Provider(TenantMixin, table=True):
    """A doctor or therapist."""

    __tablename__ = "providers"
    __table_args__ = (tenant_key("providers"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    full_name: str = Field(max_length=200)
    title: str = Field(default="", max_length=40, description="e.g. MD, PsyD, LCSW")
    kind: str = Field(default="doctor", max_length=20, description="doctor or therapist")
    specialties: list[str] = Field(default_factory=list, sa_type=JSONType)
    languages: list[str] = Field(default_factory=list, sa_type=JSONType)
    modalities: list[str] = Field(default_factory=list, sa_type=JSONType)
    bio: str = Field(default="", max_length=2000)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ProviderClinic(TenantMixin, table=True):
    """Where a provider sees patients."""

    __tablename__ = "provider_clinics"
    __table_args__ = (
        tenant_fk("provider_clinics", "provider_id", "providers", ondelete="CASCADE"),
        tenant_fk("provider_clinics", "clinic_id", "clinics"),
    )

    provider_id: uuid.UUID = Field(primary_key=True)
    clinic_id: uuid.UUID = Field(primary_key=True, index=True)


class Patient(TenantMixin, table=True):
    __tablename__ = "patients"
    __table_args__ = (tenant_key("patients"), tenant_fk("patients", "home_clinic_id", "clinics"))

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    full_name: str = Field(max_length=200)
    date_of_birth: date | None = None
    email: str = Field(default="", max_length=320)
    phone: str = Field(default="", max_length=40)
    locale: str = Field(default="en", max_length=10)
    home_clinic_id: uuid.UUID | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class User(TenantMixin, table=True):
    """A login. Email is unique within a practice."""

    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"), tenant_key("users"))

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    email: str = Field(max_length=320, index=True)
    full_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=255)
    is_active: bool = Field(default=True)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # MFA (backend/identity/mfa.py): the TOTP secret, encrypted (backend.crypto); the one being enrolled until its
    # first code confirms it; the last time step a code was accepted for (a code at or before it is a replay).
    mfa_secret_encrypted: str | None = Field(default=None, sa_type=sa.Text)
    mfa_pending_secret_encrypted: str | None = Field(default=None, sa_type=sa.Text)
    mfa_enabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    mfa_last_step: int | None = Field(default=None, sa_type=sa.BigInteger)
    # When the person accepted the terms of use (from their invitation link, backend/identity/onboarding.py).
    terms_accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class MfaRecoveryCode(TenantMixin, table=True):
    """A one-time recovery code: only a salted hash is kept; `used_at` is set when it is spent."""

    __tablename__ = "mfa_recovery_codes"
    __table_args__ = (tenant_fk("mfa_recovery_codes", "user_id", "users", ondelete="CASCADE"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(index=True)
    code_hash: str = Field(max_length=200)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OnboardingLink(TenantMixin, table=True):
    """A single-use, expiring link sent to a person: an invitation to set a first password, or a password reset.

    Only a hash of the link's token is stored. The token itself is derived from the row's id with the app's secret
    (backend/identity/onboarding.py), so the outbox can render the message from ids at send time while a copy of
    the database alone cannot make a working link.
    """

    __tablename__ = "onboarding_links"
    __table_args__ = (
        sa.CheckConstraint("purpose IN ('invite', 'reset')", name="purpose"),
        tenant_fk("onboarding_links", "user_id", "users", ondelete="CASCADE"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    purpose: str = Field(max_length=10)
    user_id: uuid.UUID = Field(index=True)
    token_hash: str = Field(max_length=64, unique=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    # Spent (the password was set), or replaced by a newer link of the same purpose (revoked).
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The staff member who sent an invitation (None for a reset the person asked for).
    created_by: uuid.UUID | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Registration(TenantMixin, table=True):
    """A patient's own request for an account (self-registration), waiting for its e-mail to be verified.

    Nothing usable exists until the link is opened: no user, no patient, no membership; the verification creates
    them (backend/identity/onboarding.py). `kind` 'verify': the request and its single-use, expiring link (only a
    hash of the token is stored, the token is an HMAC of the row's id, like onboarding links); 'exists': the e-mail
    already had an account here, and its owner was told instead (no password kept, no link that verifies).
    """

    __tablename__ = "registrations"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('verify', 'exists')", name="kind"),
        tenant_fk("registrations", "user_id", "users", ondelete="CASCADE"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    kind: str = Field(max_length=10)
    email: str = Field(max_length=320, index=True)
    full_name: str = Field(default="", max_length=200)
    phone: str = Field(default="", max_length=40)
    locale: str = Field(default="en", max_length=10)
    # The argon2 hash of the password the person chose; emptied once it moves to the account (or is replaced).
    password_hash: str = Field(default="", max_length=255)
    token_hash: str = Field(max_length=64, unique=True)
    # 'exists': the account the e-mail already had; 'verify': the account the verification created.
    user_id: uuid.UUID | None = Field(default=None, index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    terms_accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Membership(TenantMixin, table=True):
    """A user's role in its practice, linked to the patient or provider record it acts as."""

    __tablename__ = "memberships"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "role", name="uq_memberships_user_role"),
        sa.CheckConstraint(
            "(role <> 'patient' OR patient_id IS NOT NULL) AND (role <> 'doctor' OR provider_id IS NOT NULL)",
            name="role_link",
        ),
        tenant_key("memberships"),
        tenant_fk("memberships", "user_id", "users", ondelete="CASCADE"),
        tenant_fk("memberships", "patient_id", "patients"),
        tenant_fk("memberships", "provider_id", "providers"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(index=True)
    role: Role = Field(sa_type=sa.String(20))
    patient_id: uuid.UUID | None = Field(default=None, index=True)
    provider_id: uuid.UUID | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserSession(TenantMixin, table=True):
    """A login: a browser's cookie session, or an API client's token session.

    Browser: the cookie carries a random token; only its hash is stored. API: access tokens carry the session's
    id (`sid`) and stop working when the row is revoked; the rotating refresh token is stored as a hash, and its
    generation tells a reused (already rotated) refresh token from the current one.
    """

    __tablename__ = "user_sessions"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('browser', 'api')", name="kind"),
        tenant_fk("user_sessions", "user_id", "users", ondelete="CASCADE"),
        tenant_fk("user_sessions", "membership_id", "memberships", ondelete="CASCADE"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    kind: str = Field(default="browser", max_length=10)
    # API sessions have no cookie: a hash of a random value nobody holds keeps the column unique and not null.
    token_hash: str = Field(max_length=64, unique=True)
    refresh_hash: str | None = Field(default=None, max_length=64)
    refresh_generation: int = Field(default=0)
    user_id: uuid.UUID = Field(index=True)
    membership_id: uuid.UUID = Field()
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Automatic logoff (backend/identity/idle.py): why the session was revoked ("idle" when it timed out), the
    # idle timeout it was opened with, and a coarse copy of its last activity (the live clock is in Redis).
    revoked_reason: str | None = Field(default=None, max_length=20)
    idle_timeout_seconds: int | None = Field(default=None)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # An admin (or a clinician whose practice requires MFA) who has not enrolled yet signs in to a session that
    # reaches only the enrolment page; confirming enrolment lifts it (backend/identity/mfa.py).
    mfa_enrolment_only: bool = Field(default=False)


class PracticeSSO(TenantMixin, table=True):
    """A practice's OpenID Connect identity provider, through which its staff may sign in (one per practice).

    The client secret is stored encrypted (backend.crypto) and never read back by any route.
    """

    __tablename__ = "practice_sso"
    __table_args__ = (sa.UniqueConstraint("tenant_id"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    issuer: str = Field(max_length=500)
    client_id: str = Field(max_length=255)
    client_secret_encrypted: str = Field(default="", sa_type=sa.Text)
    enabled: bool = Field(default=False)
    # The practice vouches that its identity provider enforces MFA: such a sign-in skips our own TOTP step
    # (unless the ID token's `amr` shows a password-only sign-in).
    trust_idp_mfa: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ProviderPublic(SQLModel):
    id: uuid.UUID
    full_name: str
    title: str
    kind: str
    specialties: list[str]
    languages: list[str]
    modalities: list[str]
    bio: str

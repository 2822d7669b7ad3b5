"""Tenants (practices), clinics, and the mixin that gives every other table its tenant."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from pydantic import field_validator
from sqlmodel import Field, SQLModel

from backend.types import UTCDateTime, new_id, utcnow, valid_timezone


class Tenant(SQLModel, table=True):
    """A practice. The root of isolation: every other row carries its id."""

    __tablename__ = "tenants"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=60, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Admins always need MFA; clinicians too when the practice turns this on (backend/identity/mfa.py).
    mfa_required_for_clinicians: bool = Field(default=False)
    # Patients may create their own account (with e-mail verification, backend/identity/onboarding.py); off by
    # default: then only staff invite people.
    self_registration_enabled: bool = Field(default=False)


def partial_unique(name: str, *columns: str, where: str) -> sa.Index:
    """A unique index over the rows matching `where`, on PostgreSQL and SQLite alike."""
    return sa.Index(name, *columns, unique=True, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def default_and_override_indexes(table: str) -> tuple[sa.Index, sa.Index]:
    """One practice default row (clinic_id NULL) and at most one override per clinic, per tenant."""
    return (
        partial_unique(f"uq_{table}_default", "tenant_id", where="clinic_id IS NULL"),
        partial_unique(f"uq_{table}_clinic", "tenant_id", "clinic_id", where="clinic_id IS NOT NULL"),
    )


def tenant_key(table: str) -> sa.UniqueConstraint:
    """A parent's (tenant_id, id): what its children's composite foreign keys point at."""
    return sa.UniqueConstraint("tenant_id", "id", name=f"uq_{table}_tenant_id_id")


def tenant_fk(table: str, column: str, parent: str, *, ondelete: str | None = None) -> sa.ForeignKeyConstraint:
    """`table`.(tenant_id, `column`) -> `parent`.(tenant_id, id): a row can only reference its own practice's row
    (a NULL `column` references nothing). Named as the single-column key it replaced (migration 0015)."""
    return sa.ForeignKeyConstraint(
        ["tenant_id", column],
        [f"{parent}.tenant_id", f"{parent}.id"],
        name=f"fk_{table}_{column}_{parent}",
        ondelete=ondelete,
    )


class TenantMixin(SQLModel):
    """Gives a table its tenant column. The unit of work scopes every query on it."""

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", index=True, ondelete="CASCADE")


class ClinicBase(SQLModel):
    name: str = Field(min_length=2, max_length=200)
    timezone: str = Field(max_length=64, description="IANA time zone, e.g. America/New_York")
    address: str = Field(default="", max_length=400)
    phone: str = Field(default="", max_length=40)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return valid_timezone(value)

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        value = value.strip()
        if len(value) < 2:
            raise ValueError("name must have at least 2 characters")
        return value


class Clinic(ClinicBase, TenantMixin, table=True):
    __tablename__ = "clinics"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_clinics_tenant_name"), tenant_key("clinics"))

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ClinicCreate(ClinicBase):
    pass


class ClinicUpdate(SQLModel):
    name: str | None = Field(default=None, min_length=2, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=400)
    phone: str | None = Field(default=None, max_length=40)
    archived: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else valid_timezone(value)

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str | None) -> str | None:
        # The same rule as on create: a name of blanks around one character is not a name.
        return None if value is None else ClinicBase._strip_name(value)


class ClinicPublic(ClinicBase):
    id: uuid.UUID
    archived: bool
    created_at: datetime

    @classmethod
    def of(cls, clinic: Clinic) -> ClinicPublic:
        return cls(
            id=clinic.id,
            name=clinic.name,
            timezone=clinic.timezone,
            address=clinic.address,
            phone=clinic.phone,
            archived=clinic.archived_at is not None,
            created_at=clinic.created_at,
        )


# The texts a practice publishes for its patients and staff (backend/tenancy/texts.py): the Terms and Privacy pages.
PRACTICE_TEXT_KINDS = ("terms", "privacy")


class PracticeText(TenantMixin, table=True):
    """A text the practice sets (kind 'terms' or 'privacy'); without a row the built-in default is shown."""

    __tablename__ = "practice_texts"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "kind", name="uq_practice_texts_tenant_kind"),
        sa.CheckConstraint("kind IN ('terms', 'privacy')", name="kind"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    kind: str = Field(max_length=10)
    # Plain text: paragraphs separated by blank lines, never HTML (the pages render it as text).
    body: str = Field(sa_type=sa.Text)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

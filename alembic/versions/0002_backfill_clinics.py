"""backfill clinic references

Revision ID: 0002_backfill_clinics
Revises: 0001_initial
Create Date: 2026-11-21

A data migration for data that predates clinics. For every tenant with rows lacking a clinic:
- pick its first non-archived clinic (by created_at); if it has none, create "Main clinic" (UTC);
- set appointments.clinic_id and patients.home_clinic_id where NULL;
- link every provider without a provider_clinics row to that clinic.
Then appointments.clinic_id becomes NOT NULL. Safe to run again (every step only touches what is missing).
Downgrade makes the column nullable again and keeps the data.

Plain SQL constructs only: never import application models in a migration.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002_backfill_clinics"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_CLINIC_NAME = "Main clinic"
DEFAULT_CLINIC_TIMEZONE = "UTC"

# Lightweight table stubs as of this revision. sa.Uuid converts ids per dialect
# (native UUID on PostgreSQL, 32-char hex on SQLite).
clinics = sa.table(
    "clinics",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("timezone", sa.String()),
    sa.column("address", sa.String()),
    sa.column("phone", sa.String()),
    sa.column("archived_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
appointments = sa.table(
    "appointments",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("clinic_id", sa.Uuid()),
)
patients = sa.table(
    "patients",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("home_clinic_id", sa.Uuid()),
)
providers = sa.table(
    "providers",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
)
provider_clinics = sa.table(
    "provider_clinics",
    sa.column("tenant_id", sa.Uuid()),
    sa.column("provider_id", sa.Uuid()),
    sa.column("clinic_id", sa.Uuid()),
)


def _unlinked_providers() -> sa.Exists:
    """NOT EXISTS a provider_clinics row for providers.id."""
    return ~sa.exists().where(provider_clinics.c.provider_id == providers.c.id)


def _tenants_needing_backfill(bind: sa.Connection) -> list[uuid.UUID]:
    query = sa.union(
        sa.select(appointments.c.tenant_id).where(appointments.c.clinic_id.is_(None)),
        sa.select(patients.c.tenant_id).where(patients.c.home_clinic_id.is_(None)),
        sa.select(providers.c.tenant_id).where(_unlinked_providers()),
    )
    # UNION removes duplicates; the typed column turns SQLite's hex strings into uuid.UUID too.
    return sorted(bind.execute(query).scalars(), key=str)


def _now(bind: sa.Connection) -> datetime:
    now = datetime.now(UTC)
    # Stored as UTC wall time on SQLite (no zones there), aware elsewhere: as the app's UTCDateTime does.
    return now.replace(tzinfo=None) if bind.dialect.name == "sqlite" else now


def _clinic_for(bind: sa.Connection, tenant_id: uuid.UUID) -> uuid.UUID:
    """The tenant's first non-archived clinic; a new "Main clinic" when it has none."""
    existing = bind.execute(
        sa.select(clinics.c.id)
        .where(clinics.c.tenant_id == tenant_id, clinics.c.archived_at.is_(None))
        .order_by(clinics.c.created_at, clinics.c.id)
        .limit(1)
    ).scalar_one_or_none()
    if existing is not None:
        return existing

    # Clinic names are unique per tenant; an archived "Main clinic" must not make the insert fail.
    taken = set(bind.execute(sa.select(clinics.c.name).where(clinics.c.tenant_id == tenant_id)).scalars())
    name, n = DEFAULT_CLINIC_NAME, 1
    while name in taken:
        n += 1
        name = f"{DEFAULT_CLINIC_NAME} {n}"

    clinic_id = uuid.uuid4()
    bind.execute(
        sa.insert(clinics).values(
            id=clinic_id,
            tenant_id=tenant_id,
            name=name,
            timezone=DEFAULT_CLINIC_TIMEZONE,
            address="",
            phone="",
            archived_at=None,
            created_at=_now(bind),
        )
    )
    return clinic_id


def upgrade() -> None:
    bind = op.get_bind()

    for tenant_id in _tenants_needing_backfill(bind):
        clinic_id = _clinic_for(bind, tenant_id)
        bind.execute(
            sa.update(appointments)
            .where(appointments.c.tenant_id == tenant_id, appointments.c.clinic_id.is_(None))
            .values(clinic_id=clinic_id)
        )
        bind.execute(
            sa.update(patients)
            .where(patients.c.tenant_id == tenant_id, patients.c.home_clinic_id.is_(None))
            .values(home_clinic_id=clinic_id)
        )
        bind.execute(
            sa.insert(provider_clinics).from_select(
                ["tenant_id", "provider_id", "clinic_id"],
                sa.select(
                    providers.c.tenant_id,
                    providers.c.id,
                    sa.literal(clinic_id, sa.Uuid()),
                ).where(providers.c.tenant_id == tenant_id, _unlinked_providers()),
            )
        )

    # Batch mode: SQLite cannot ALTER a column's nullability, so it recreates the table.
    with op.batch_alter_table("appointments") as batch_op:
        batch_op.alter_column("clinic_id", existing_type=sa.Uuid(), nullable=False)


def downgrade() -> None:
    # The backfilled values stay: they are correct data, only the constraint goes.
    with op.batch_alter_table("appointments") as batch_op:
        batch_op.alter_column("clinic_id", existing_type=sa.Uuid(), nullable=True)

"""hot query indexes: what the hot paths look up, led by the practice, so no plan needs statistics to narrow

Revision ID: 0021_hot_query_indexes
Revises: 0020_payments
Create Date: 2026-12-05

Without statistics (a new or restored database, autovacuum off) the planner guesses, and it took an index whose
only condition is `tenant_id` for the release of expired holds before each booking: every appointment of the
practice was read to find the few held ones. `ix_appointments_held_expiry` holds only held rows (a booking that
is not held is never in it), by practice and expiry. The two others serve the cascade and the patients' pages:
a patient's entries, and an entry's offers, each within its practice.

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0021_hot_query_indexes"
down_revision: str | Sequence[str] | None = "0020_payments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HELD = sa.text("status = 'held'")


def upgrade() -> None:
    op.create_index(
        "ix_appointments_held_expiry",
        "appointments",
        ["tenant_id", "hold_expires_at"],
        postgresql_where=HELD,
        sqlite_where=HELD,
    )
    op.create_index("ix_waitlist_entries_tenant_patient", "waitlist_entries", ["tenant_id", "patient_id"])
    op.create_index("ix_waitlist_offers_tenant_entry", "waitlist_offers", ["tenant_id", "entry_id"])


def downgrade() -> None:
    op.drop_index("ix_waitlist_offers_tenant_entry", table_name="waitlist_offers")
    op.drop_index("ix_waitlist_entries_tenant_patient", table_name="waitlist_entries")
    op.drop_index("ix_appointments_held_expiry", table_name="appointments")

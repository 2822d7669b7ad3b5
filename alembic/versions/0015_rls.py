"""isolation enforced by PostgreSQL: row-level security, composite tenant foreign keys

Revision ID: 0015_rls
Revises: 0014_sso
Create Date: 2026-12-05

Two walls under the ORM's tenant hook (backend/db.py):

- Composite foreign keys: every reference to a tenant's row is (tenant_id, <fk>) -> parent (tenant_id, id), so no
  row can point at another practice's clinic, patient, provider... (both dialects). Parents get a unique
  (tenant_id, id). A database holding a cross-practice reference already fails this upgrade: that row is the bug.
- PostgreSQL only: row-level security ENABLED and FORCED on every table with a tenant_id column (found in the
  catalog, so tables of earlier revisions are all covered), one policy each: a row is visible and writable only
  when its tenant_id is the transaction's `app.tenant_id` setting (set by the unit of work). Unset or empty: no
  rows. The tenants table: only the own practice's row. Roles with BYPASSRLS (the system scope) and superusers
  are not subject to it. A later revision adding a tenant table must add its policy too (tests/integration/
  test_rls.py enumerates the tables and fails otherwise).

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0015_rls"
down_revision: str | Sequence[str] | None = "0014_sso"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (child table, column, parent table, ON DELETE): every reference from one tenant's row to another tenant's row.
FOREIGN_KEYS: list[tuple[str, str, str, str | None]] = [
    ("appointment_reminders", "appointment_id", "appointments", "CASCADE"),
    ("appointments", "clinic_id", "clinics", None),
    ("appointments", "patient_id", "patients", None),
    ("appointments", "provider_id", "providers", None),
    ("availability_rules", "clinic_id", "clinics", None),
    ("availability_rules", "provider_id", "providers", "CASCADE"),
    ("booking_policies", "clinic_id", "clinics", None),
    ("memberships", "patient_id", "patients", None),
    ("memberships", "provider_id", "providers", None),
    ("memberships", "user_id", "users", "CASCADE"),
    ("mfa_recovery_codes", "user_id", "users", "CASCADE"),
    ("notification_deliveries", "notification_id", "notifications", "CASCADE"),
    ("notification_preferences", "patient_id", "patients", "CASCADE"),
    ("notifications", "patient_id", "patients", None),
    ("patients", "home_clinic_id", "clinics", None),
    ("provider_clinics", "clinic_id", "clinics", None),
    ("provider_clinics", "provider_id", "providers", "CASCADE"),
    ("time_off", "provider_id", "providers", "CASCADE"),
    ("user_sessions", "membership_id", "memberships", "CASCADE"),
    ("user_sessions", "user_id", "users", "CASCADE"),
    ("waitlist_entries", "clinic_id", "clinics", None),
    ("waitlist_entries", "patient_id", "patients", None),
    ("waitlist_entries", "provider_id", "providers", None),
    ("waitlist_offers", "appointment_id", "appointments", None),
    ("waitlist_offers", "clinic_id", "clinics", None),
    ("waitlist_offers", "entry_id", "waitlist_entries", None),
    ("waitlist_offers", "provider_id", "providers", None),
    ("waitlist_policies", "clinic_id", "clinics", None),
]
PARENTS = sorted({parent for _table, _column, parent, _ondelete in FOREIGN_KEYS})

# NULL when unset (or reset to '' at the end of a transaction that set it locally): then no row matches.
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
POLICY = "tenant_isolation"


def _fk_name(table: str, column: str, parent: str) -> str:
    return f"fk_{table}_{column}_{parent}"


def _by_table() -> list[tuple[str, list[tuple[str, str, str | None]]]]:
    return [(table, [(c, p, d) for _t, c, p, d in rows]) for table, rows in groupby(FOREIGN_KEYS, lambda r: r[0])]


def _tenant_tables() -> list[str]:
    """Every table of this schema with a tenant_id column, from the catalog (not from a list that can go stale)."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.relname"
        )
    )
    return [str(name) for name in rows.scalars()]


def upgrade() -> None:
    for parent in PARENTS:
        with op.batch_alter_table(parent, schema=None) as batch_op:
            batch_op.create_unique_constraint(f"uq_{parent}_tenant_id_id", ["tenant_id", "id"])
    for table, fks in _by_table():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, parent, ondelete in fks:
                name = _fk_name(table, column, parent)
                batch_op.drop_constraint(name, type_="foreignkey")
                batch_op.create_foreign_key(
                    name, parent, ["tenant_id", column], ["tenant_id", "id"], ondelete=ondelete
                )
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _tenant_tables():
        op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY')
        op.execute(
            f'CREATE POLICY {POLICY} ON "{table}"'
            f" USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )
    # A practice sees its own row only; finding a practice by slug (login) is system work.
    op.execute("ALTER TABLE tenants ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenants FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY {POLICY} ON tenants USING (id = {CURRENT_TENANT}) WITH CHECK (id = {CURRENT_TENANT})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ["tenants", *_tenant_tables()]:
            op.execute(f'DROP POLICY IF EXISTS {POLICY} ON "{table}"')
            op.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
            op.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')
    for table, fks in _by_table():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, parent, ondelete in fks:
                name = _fk_name(table, column, parent)
                batch_op.drop_constraint(name, type_="foreignkey")
                batch_op.create_foreign_key(name, parent, [column], ["id"], ondelete=ondelete)
    for parent in PARENTS:
        with op.batch_alter_table(parent, schema=None) as batch_op:
            batch_op.drop_constraint(f"uq_{parent}_tenant_id_id", type_="unique")

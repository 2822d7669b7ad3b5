"""Isolation enforced by PostgreSQL itself: row-level security and composite tenant foreign keys (migration 0015).

Here the ORM hook is out of the picture: raw SQL on a raw connection as the app's role (DATABASE_URL), with only
`app.tenant_id` set, as any code path that forgot the unit of work (or a SQL injection) would run.
"""

# ruff: noqa: S608 - the SQL below names tables read from the catalog; values are always bound parameters

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import errors as pg_errors
from sqlmodel import select

from backend.db import UnitOfWork, get_engine
from backend.dbroles import libpq_url
from backend.identity.models import UserSession
from backend.notifications.models import (
    AppointmentReminder,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    NotificationSettings,
)
from backend.settings import get_settings
from backend.tenancy.models import Clinic
from backend.waitlist.models import WaitlistOffer, WaitlistPolicy
from tests.factories import (
    Practice,
    add_appointment,
    add_audit_event,
    add_availability,
    add_time_off,
    add_waitlist_entry,
    future,
    make_practice,
    set_booking_policy,
)

# Tables every practice below has rows in (a table added later is checked too, where it has rows).
FILLED = {
    "appointment_reminders", "appointments", "audit_events", "availability_rules", "booking_policies", "clinics",
    "memberships", "notification_deliveries", "notification_preferences", "notification_settings", "notifications",
    "patients", "provider_clinics", "providers", "time_off", "user_sessions", "users", "waitlist_entries",
    "waitlist_offers", "waitlist_policies",
}  # fmt: skip


def _fill(p: Practice, day: int) -> Practice:
    """One row or more of the practice in every tenant table."""
    appointment = add_appointment(p, future(days=day, hour=10))
    entry = add_waitlist_entry(p)
    add_availability(p)
    add_time_off(p, future(days=day + 1, hour=8), future(days=day + 1, hour=9))
    set_booking_policy(p, horizon_days=100)
    add_audit_event(p)
    with UnitOfWork(p.system) as uow:
        s = uow.session
        note = Notification(tenant_id=p.tenant_id, patient_id=p.patient.id, event_type="test", channel="console")
        s.add(note)
        s.flush()
        s.add_all([
            NotificationDelivery(tenant_id=p.tenant_id, notification_id=note.id),
            NotificationPreference(tenant_id=p.tenant_id, patient_id=p.patient.id),
            NotificationSettings(tenant_id=p.tenant_id),
            AppointmentReminder(tenant_id=p.tenant_id, appointment_id=appointment.id, offset_minutes=120),
            WaitlistPolicy(tenant_id=p.tenant_id),
            WaitlistOffer(
                tenant_id=p.tenant_id, entry_id=entry.id, provider_id=p.provider.id, clinic_id=p.clinic.id,
                slot_start=future(days=day + 2), slot_end=future(days=day + 2) + timedelta(minutes=50),
                expires_at=datetime.now(UTC) + timedelta(hours=1),
            ),
            UserSession(
                tenant_id=p.tenant_id, token_hash=uuid.uuid4().hex, user_id=p.admin_user.id,
                membership_id=p.admin_membership.id, expires_at=datetime.now(UTC) + timedelta(hours=1),
            ),
        ])  # fmt: skip
        uow.commit()
    return p


@pytest.fixture
def world(db: sa.Engine) -> dict[str, Practice]:
    return {
        "A": _fill(make_practice("Harbor Mental Health", "harbor"), day=3),
        "B": _fill(make_practice("Summit Counseling", "summit"), day=4),
    }


def _tenant_tables(engine: sa.Engine) -> list[str]:
    """Every table of the migrated database with a tenant_id column (from the catalog, not from the models)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped"
                    " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1"
                )
            ).scalars()
        )


def _owner_counts(engine: sa.Engine, tenant_id: uuid.UUID) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(sa.text(f'SELECT count(*) FROM "{t}" WHERE tenant_id = :t'), {"t": tenant_id}).scalar_one()
            for t in _tenant_tables(engine)
        }


@pytest.fixture
def app_conn() -> Iterator[psycopg.Connection]:
    """A raw connection as the app's role: no ORM, no unit of work, no hook."""
    with psycopg.connect(libpq_url(get_settings().database_url)) as conn:
        yield conn


def _as_tenant(conn: psycopg.Connection, tenant_id: uuid.UUID | None) -> None:
    """Begin a transaction (psycopg begins one at the first statement) with app.tenant_id set for it only."""
    if tenant_id is None:
        conn.execute("SELECT 1")
    else:
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))


def _count(conn: psycopg.Connection, table: str, where: str = "true", *params: object) -> int:
    row = conn.execute(f'SELECT count(*) FROM "{table}" WHERE {where}', params).fetchone()
    assert row is not None
    return int(row[0])


# -- the roles ------------------------------------------------------------------------------------------


def test_the_app_role_is_not_superuser_and_cannot_bypass_rls(app_conn: psycopg.Connection) -> None:
    row = app_conn.execute(
        "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    user, superuser, bypass = row
    assert user != "postgres" and superuser is False and bypass is False


def test_every_tenant_table_has_forced_row_level_security_and_a_policy(engine: sa.Engine) -> None:
    tables = _tenant_tables(engine)
    assert FILLED <= set(tables)
    with engine.connect() as conn:
        for table in [*tables, "tenants"]:
            secured, forced = conn.execute(
                sa.text("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                {"t": f'public."{table}"'},
            ).one()
            policies = conn.execute(
                sa.text("SELECT qual, with_check FROM pg_policies WHERE schemaname = 'public' AND tablename = :t"),
                {"t": table},
            ).all()
            assert secured and forced, f"{table}: row-level security not enabled and forced"
            assert policies, f"{table}: no policy"
            for qual, with_check in policies:
                assert "app.tenant_id" in (qual or "") and "app.tenant_id" in (with_check or ""), table


# -- reads ----------------------------------------------------------------------------------------------


def test_raw_sql_as_one_practice_sees_none_of_the_others_rows(
    world: dict[str, Practice], engine: sa.Engine, app_conn: psycopg.Connection
) -> None:
    a, b = world["A"], world["B"]
    theirs = _owner_counts(engine, b.tenant_id)
    mine = _owner_counts(engine, a.tenant_id)
    assert {t for t, n in theirs.items() if n} >= FILLED  # the control: B's rows are there
    _as_tenant(app_conn, a.tenant_id)
    for table in theirs:
        assert _count(app_conn, table, "tenant_id = %s", b.tenant_id) == 0, table
        assert _count(app_conn, table) == mine[table], table  # all of A's rows, and only those
    assert [r[0] for r in app_conn.execute("SELECT id FROM tenants")] == [a.tenant_id]


def test_with_no_practice_set_nothing_is_visible(
    world: dict[str, Practice], engine: sa.Engine, app_conn: psycopg.Connection
) -> None:
    a = world["A"]
    tables = [*_tenant_tables(engine), "tenants"]
    for _ in range(2):  # never set; then set in an earlier transaction of the same connection ('' afterwards)
        _as_tenant(app_conn, None)
        for table in tables:
            assert _count(app_conn, table) == 0, table
        app_conn.rollback()
        _as_tenant(app_conn, a.tenant_id)
        assert _count(app_conn, "clinics") == 2
        app_conn.commit()
    app_conn.execute("SELECT set_config('app.tenant_id', '', false)")
    assert _count(app_conn, "clinics") == 0


def test_raw_sql_inside_a_unit_of_work_is_scoped_by_the_database(world: dict[str, Practice]) -> None:
    """The unit of work sets app.tenant_id: even text SQL the ORM hook never sees stays in the practice."""
    a, b = world["A"], world["B"]
    with UnitOfWork(a.admin) as uow:
        tenants = set(uow.session.execute(sa.text("SELECT DISTINCT tenant_id FROM appointments")).scalars())
        clinics = uow.session.execute(sa.text("SELECT count(*) FROM clinics")).scalar_one()
    assert tenants == {a.tenant_id} and clinics == 2
    # The explicit system scope (a BYPASSRLS role) is what sees across practices.
    with UnitOfWork(system=True) as uow:
        assert {c.tenant_id for c in uow.session.exec(select(Clinic))} == {a.tenant_id, b.tenant_id}


def test_each_unit_of_work_on_a_pooled_connection_sees_only_its_own_practice(world: dict[str, Practice]) -> None:
    """Units of work of A, B (one inside another too), then a raw connection with no unit of work, one after another
    on the same pooled connections: each sees its own practice and nothing else (app.tenant_id is transaction-local
    and set by every unit of work, so nothing carries over on a pooled connection)."""
    a, b = world["A"], world["B"]
    setting = sa.text("SELECT current_setting('app.tenant_id', true)")
    for _round in range(3):  # the first round may open fresh connections (not pinged); the next ones reuse them
        for practice in (a, b):
            with UnitOfWork(practice.admin) as uow:
                assert uow.session.execute(setting).scalar_one() == str(practice.tenant_id)
                seen = set(uow.session.execute(sa.text("SELECT DISTINCT tenant_id FROM clinics")).scalars())
                assert seen == {practice.tenant_id}
                uow.commit()
            with UnitOfWork(practice.admin) as uow, UnitOfWork(a.admin if practice is b else b.admin) as inner:
                # A unit of work opened inside another one gets its own connection, scoped to its own practice.
                other = set(inner.session.execute(sa.text("SELECT DISTINCT tenant_id FROM clinics")).scalars())
                mine = set(uow.session.execute(sa.text("SELECT DISTINCT tenant_id FROM clinics")).scalars())
                assert other == {(a if practice is b else b).tenant_id} and mine == {practice.tenant_id}
        with get_engine().connect() as conn:  # no unit of work: no practice
            assert conn.execute(setting).scalar_one() in ("", None)
            assert conn.execute(sa.text("SELECT count(*) FROM clinics")).scalar_one() == 0


def test_a_checkout_sets_the_practice_so_the_transaction_needs_no_statement_of_its_own(
    world: dict[str, Practice],
) -> None:
    """The pool's checkout check sets app.tenant_id for the unit of work of its context: no set_config inside."""
    a = world["A"]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with UnitOfWork(a.admin):
        pass
    sa.event.listen(get_engine(), "before_cursor_execute", seen)
    try:
        for _ in range(3):
            with UnitOfWork(a.admin) as uow:
                assert uow.session.execute(sa.text("SELECT count(*) FROM clinics")).scalar_one() == 2
    finally:
        sa.event.remove(get_engine(), "before_cursor_execute", seen)
    assert len(statements) == 3 and not [s for s in statements if "set_config" in s]


def test_a_dead_pooled_connection_is_replaced_at_checkout(world: dict[str, Practice], engine: sa.Engine) -> None:
    """The checkout check is also the pre-ping: connections the server dropped are replaced, not handed out."""
    a = world["A"]
    with UnitOfWork(a.admin) as uow:
        pids = {uow.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()}
    with engine.begin() as conn:
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    for _ in range(3):
        with UnitOfWork(a.admin) as uow:
            assert uow.session.execute(sa.text("SELECT count(*) FROM clinics")).scalar_one() == 2


# -- writes ---------------------------------------------------------------------------------------------


def _refused(conn: psycopg.Connection, statement: str, *params: object) -> None:
    """The statement fails with insufficient privilege (an RLS policy or a missing grant); roll back."""
    with pytest.raises(pg_errors.InsufficientPrivilege):
        conn.execute(statement, params)
    conn.rollback()


def test_raw_sql_cannot_change_or_remove_the_other_practices_rows(
    world: dict[str, Practice], engine: sa.Engine, app_conn: psycopg.Connection
) -> None:
    a, b = world["A"], world["B"]
    before = _owner_counts(engine, b.tenant_id)
    for table in _tenant_tables(engine):
        _as_tenant(app_conn, a.tenant_id)
        if table.startswith("audit"):
            _refused(app_conn, f'UPDATE "{table}" SET tenant_id = tenant_id WHERE tenant_id = %s', b.tenant_id)
            _refused(app_conn, f'DELETE FROM "{table}" WHERE tenant_id = %s', b.tenant_id)
            continue
        updated = app_conn.execute(f'UPDATE "{table}" SET tenant_id = tenant_id WHERE tenant_id = %s', (b.tenant_id,))
        deleted = app_conn.execute(f'DELETE FROM "{table}" WHERE tenant_id = %s', (b.tenant_id,))
        assert (updated.rowcount, deleted.rowcount) == (0, 0), table
        app_conn.commit()
    _as_tenant(app_conn, a.tenant_id)
    assert app_conn.execute("UPDATE tenants SET name = 'x' WHERE id = %s", (b.tenant_id,)).rowcount == 0
    app_conn.rollback()
    assert _owner_counts(engine, b.tenant_id) == before


def test_raw_sql_cannot_insert_or_move_rows_into_the_other_practice(
    world: dict[str, Practice], engine: sa.Engine, app_conn: psycopg.Connection
) -> None:
    a, b = world["A"], world["B"]
    before = _owner_counts(engine, b.tenant_id)
    mine = _owner_counts(engine, a.tenant_id)
    for table in [t for t, n in mine.items() if n]:
        # A copy of one of A's rows, with B's tenant and a new id (where the table has one).
        _as_tenant(app_conn, a.tenant_id)
        _refused(
            app_conn,
            f'INSERT INTO "{table}" SELECT (jsonb_populate_record(NULL::"{table}", to_jsonb(x)'
            f" || jsonb_build_object('tenant_id', %s::text, 'id', gen_random_uuid()))).*"
            f' FROM "{table}" x LIMIT 1',
            b.tenant_id,
        )
        _as_tenant(app_conn, a.tenant_id)
        _refused(app_conn, f'UPDATE "{table}" SET tenant_id = %s', b.tenant_id)
    _as_tenant(app_conn, a.tenant_id)
    _refused(app_conn, "INSERT INTO tenants (id, name, slug, created_at) VALUES (gen_random_uuid(), 'x', 'x', now())")
    assert _owner_counts(engine, b.tenant_id) == before


def test_a_row_cannot_reference_another_practices_row(
    world: dict[str, Practice], engine: sa.Engine, app_conn: psycopg.Connection
) -> None:
    """Composite foreign keys: (tenant_id, clinic_id) -> clinics (tenant_id, id). A's patient with B's clinic as
    its home, and A's provider working at B's clinic, are refused by the schema itself."""
    a, b = world["A"], world["B"]
    _as_tenant(app_conn, a.tenant_id)
    with pytest.raises(pg_errors.ForeignKeyViolation):
        app_conn.execute(
            "INSERT INTO patients (tenant_id, id, full_name, email, phone, locale, home_clinic_id, created_at)"
            " VALUES (%s, gen_random_uuid(), 'Stray', '', '', 'en', %s, now())",
            (a.tenant_id, b.clinic.id),
        )
    app_conn.rollback()
    _as_tenant(app_conn, a.tenant_id)
    with pytest.raises(pg_errors.ForeignKeyViolation):
        app_conn.execute(
            "INSERT INTO provider_clinics (tenant_id, provider_id, clinic_id) VALUES (%s, %s, %s)",
            (a.tenant_id, a.provider.id, b.clinic.id),
        )
    app_conn.rollback()
    _as_tenant(app_conn, a.tenant_id)
    with pytest.raises(pg_errors.ForeignKeyViolation):
        app_conn.execute("UPDATE patients SET home_clinic_id = %s WHERE id = %s", (b.clinic.id, a.patient.id))
    app_conn.rollback()
    # Even the system scope (no row-level security) cannot: the key is the schema's.
    with UnitOfWork(system=True) as uow, pytest.raises(sa.exc.IntegrityError, match="foreign key"):
        uow.session.execute(
            sa.text("UPDATE appointments SET clinic_id = :c WHERE tenant_id = :t"), {"c": b.clinic.id, "t": a.tenant_id}
        )
    with engine.connect() as conn:
        homes = conn.execute(sa.text("SELECT home_clinic_id FROM patients WHERE id = :p"), {"p": a.patient.id})
        assert homes.scalar_one() == a.clinic.id


# -- the audit trail is append-only --------------------------------------------------------------------


def test_the_audit_table_refuses_update_and_delete_as_the_app_role(
    world: dict[str, Practice], engine: sa.Engine, app_conn: psycopg.Connection
) -> None:
    a = world["A"]
    audit_tables = [t for t in _tenant_tables(engine) if t.startswith("audit")]
    assert "audit_events" in audit_tables
    for table in audit_tables:
        _as_tenant(app_conn, a.tenant_id)
        _refused(app_conn, f'UPDATE "{table}" SET tenant_id = tenant_id WHERE tenant_id = %s', a.tenant_id)
        _as_tenant(app_conn, a.tenant_id)
        _refused(app_conn, f'DELETE FROM "{table}" WHERE tenant_id = %s', a.tenant_id)
        _as_tenant(app_conn, a.tenant_id)
        _refused(app_conn, f'TRUNCATE "{table}"')
    # Appending is what it is for.
    _as_tenant(app_conn, a.tenant_id)
    before = _count(app_conn, "audit_events")
    app_conn.rollback()
    add_audit_event(a)
    _as_tenant(app_conn, a.tenant_id)
    assert _count(app_conn, "audit_events") == before + 1

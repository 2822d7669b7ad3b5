"""No hot query may need the planner's statistics to narrow what it reads (issue 13).

Autovacuum is off on this machine's PostgreSQL, and a new or restored database has no statistics until someone runs
ANALYZE: then the planner guesses. Before each booking, expired holds of the provider and patient at that time are
released; without statistics that UPDATE took an index whose only condition was the practice and read every
appointment of it. This test fills a practice with most of a year of appointments, a waitlist and its offers,
books through the real service, records the statements the app's engine sends, and EXPLAINs the release as the
app's role under row-level security on tables never analysed: it reads held rows by expiry (migration 0021).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from backend.db import get_engine
from backend.scheduling import booking
from backend.scheduling import service as scheduling
from tests.factories import add_availability, add_patient, add_provider, add_waitlist_entry, call, make_practice

pytestmark = pytest.mark.usefixtures("db")

# Tables that grow with a practice's use. The rest (clinics, providers, rules, policies) stay small.
GROWING = {
    "appointments",
    "waitlist_entries",
    "waitlist_offers",
    "audit_events",
    "outbox_messages",
    "user_sessions",
    "patients",
}
APPOINTMENTS = 12_000
ENTRIES = 1_500


def _fill(engine: sa.Engine, practice: Any, provider_id: uuid.UUID) -> None:
    """Many patients, most of a year of appointments around now for one provider, a waitlist: bulk, as the owner.
    (The plans do not depend on whose rows they are: without statistics the planner knows only the table's size.)"""
    tenant, clinic, provider = str(practice.tenant_id), str(practice.clinic.id), str(provider_id)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO patients (id, tenant_id, full_name, email, phone, locale, home_clinic_id, created_at) "
                "SELECT gen_random_uuid(), :t, 'Filler ' || g, '', '', 'en', :c, now() FROM generate_series(1, :n) g"
            ),
            {"t": tenant, "c": clinic, "n": ENTRIES},
        )
        # Thirty-minute appointments back to back, a year around now, most booked, some cancelled or completed.
        conn.execute(
            sa.text(
                "INSERT INTO appointments (id, tenant_id, provider_id, patient_id, clinic_id, start_at, end_at, "
                "modality, status, version, cancel_reason, created_at, updated_at) "
                "SELECT gen_random_uuid(), :t, :p, pt.id, :c, s, s + interval '30 minutes', 'in_person', "
                "CASE WHEN g % 10 = 0 THEN 'cancelled' WHEN s < now() THEN 'completed' ELSE 'booked' END, 1, '', "
                "now(), now() FROM generate_series(1, :n) g "
                "CROSS JOIN LATERAL (SELECT date_trunc('hour', now()) - interval '180 days' "
                "+ (g * interval '30 minutes') + interval '17 minutes' AS s) x "
                "CROSS JOIN LATERAL (SELECT id FROM patients WHERE tenant_id = :t "
                "ORDER BY id OFFSET (g % :e) LIMIT 1) pt"
            ),
            {"t": tenant, "p": provider, "c": clinic, "n": APPOINTMENTS, "e": ENTRIES},
        )
        conn.execute(
            sa.text(
                "INSERT INTO waitlist_entries (id, tenant_id, patient_id, clinic_id, provider_id, preferred_windows, "
                "timezone, urgency, reason, status, created_at, updated_at, last_confirmed_at, target_key, version) "
                "SELECT gen_random_uuid(), :t, p.id, :c, :pr, '[]'::json, 'UTC', 1 + (row_number() OVER () % 4)::int, "
                "'', CASE WHEN row_number() OVER () % 3 = 0 THEN 'booked' ELSE 'removed' END, now(), now(), now(), "
                "'filler', 1 "
                "FROM patients p WHERE p.tenant_id = :t AND p.full_name LIKE 'Filler %'"
            ),
            {"t": tenant, "c": clinic, "pr": provider},
        )
        # An answered offer for each of those entries: declined or expired, at the other provider's slots.
        conn.execute(
            sa.text(
                "INSERT INTO waitlist_offers (id, tenant_id, entry_id, provider_id, clinic_id, slot_start, slot_end, "
                "status, kind, score, reasons, expires_at, responded_at, created_at) "
                "SELECT gen_random_uuid(), :t, e.id, :pr, :c, s, s + interval '30 minutes', "
                "CASE WHEN n % 2 = 0 THEN 'declined' ELSE 'expired' END, 'auto', 1.0, '[]'::json, "
                "s - interval '1 day', s - interval '1 day', s - interval '2 days' "
                "FROM (SELECT id, row_number() OVER () AS n FROM waitlist_entries WHERE tenant_id = :t) e "
                "CROSS JOIN LATERAL (SELECT date_trunc('hour', now()) - interval '90 days' "
                "+ (e.n * interval '1 hour') AS s) x"
            ),
            {"t": tenant, "c": clinic, "pr": provider},
        )


def _never_analysed(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        analysed = conn.execute(
            sa.text(
                "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(:names) "
                "AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)"
            ),
            {"names": sorted(GROWING)},
        ).scalars().all()
    if analysed:
        # Another test (or autovacuum) analysed them: forget the statistics, so the planner guesses again.
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM pg_statistic WHERE starelid = ANY(:ids)"), {
                "ids": [conn.execute(sa.text("SELECT :n::regclass::oid"), {"n": n}).scalar() for n in GROWING]
            })  # fmt: skip


@pytest.fixture
def recorded() -> Iterator[list[tuple[str, Any]]]:
    """Every statement the app's engine sends meanwhile, with its parameters."""
    seen: list[tuple[str, Any]] = []
    app_engine = get_engine()

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(app_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(app_engine, "before_cursor_execute", note)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _plan(tenant_id: uuid.UUID, statement: str, parameters: Any) -> dict[str, Any]:
    """`statement`'s plan, EXPLAINed as the app in its practice (row-level security applies), never executed."""
    with get_engine().connect() as conn:
        conn.exec_driver_sql("SELECT set_config('app.tenant_id', %s, false)", (str(tenant_id),))
        raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
        conn.rollback()
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


def test_releasing_expired_holds_reads_only_held_rows_without_statistics(
    engine: sa.Engine, recorded: list[tuple[str, Any]]
) -> None:
    practice = make_practice("Plans", "plans")
    add_availability(practice)
    _fill(engine, practice, add_provider(practice, "Fiona Full").id)
    other = add_patient(practice, "Wanda Waiting")
    add_waitlist_entry(practice, patient=other)
    _never_analysed(engine)
    recorded.clear()

    admin = practice.admin
    now = datetime.now(UTC)
    # Slots come from the availability rules; take free ones from the provider's next weeks.
    week = call(admin, scheduling.list_slots, practice.provider.id, start=now + timedelta(days=1),
                end=now + timedelta(days=8), include_taken=False)  # fmt: skip
    free = [slot for slot in week if slot.status == "free"]
    assert len(free) >= 2, "the practice's availability gives free slots"
    call(admin, booking.book_appointment, provider_id=practice.provider.id, start=free[0].start,
                  patient_id=practice.patient.id)  # fmt: skip
    call(admin, booking.book_appointment, provider_id=practice.provider.id, start=free[1].start,
         patient_id=other.id, idempotency_key="plans-1")  # fmt: skip
    # (On PostgreSQL the release also takes the provider's advisory lock, in a CTE of the same statement.)
    statements = [(s, p) for s, p in recorded if "UPDATE APPOINTMENTS" in " ".join(s.upper().split())]
    # Releasing expired holds (before each booking) reads held rows by expiry, not the practice's calendar.
    releases = [(s, p) for s, p in statements if "hold_expires_at <=" in s]
    assert len(releases) == 2, "each booking first releases expired holds"
    for statement, parameters in releases:
        plan = _plan(practice.tenant_id, statement, parameters)
        scans = [n for n in _nodes(plan) if "Scan" in n.get("Node Type", "") and n.get("Node Type") != "CTE Scan"]
        assert [n.get("Index Name") for n in scans] == ["ix_appointments_held_expiry"], scans
        assert "hold_expires_at" in scans[0].get("Index Cond", ""), scans

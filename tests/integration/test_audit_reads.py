"""The audit of reads: one batched row per request naming the patients, append-only tables, the hash chain."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import select

from backend.audit import chain as chain_module
from backend.audit import context as audit_context
from backend.audit.chain import GENESIS, row_hash, verify_chains
from backend.audit.models import AccessEvent, AuditEvent
from backend.audit.service import AuditFilter, export_audit_csv, record_access, search_audit
from backend.db import UnitOfWork, make_engine, reads_only
from backend.identity import service as identity
from backend.notifications import service as notes
from backend.notifications.models import Channel, Notification
from backend.scheduling import availability
from backend.scheduling.service import list_appointments
from backend.settings import PROJECT_ROOT
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Tenant
from backend.types import utcnow
from backend.waitlist import offers as wl_offers
from backend.waitlist import service as waitlist
from backend.waitlist.models import WaitlistOffer
from tests.factories import (
    Practice,
    add_appointment,
    add_audit_event,
    add_patient,
    add_waitlist_entry,
    bearer,
    future,
    make_practice,
    rows,
)


@pytest.fixture
def client() -> Iterator[TestClient]:
    from backend.api.app import api

    with TestClient(api) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))


def _reads(p: Practice) -> list[AccessEvent]:
    return sorted(rows(p, AccessEvent), key=lambda e: (e.occurred_at, e.chain_seq or 0))


def _new_reads(p: Practice, action: Callable[[], Any]) -> list[AccessEvent]:
    before = {e.id for e in rows(p, AccessEvent)}
    action()
    return [e for e in _reads(p) if e.id not in before]


def _scene(p: Practice) -> dict[str, Any]:
    """Two patients with appointments, waitlist entries, an offer and an outbox message each."""
    other = add_patient(p, "Oscar Other")
    appt = add_appointment(p, future(days=2, hour=14))
    other_appt = add_appointment(p, future(days=3, hour=14), patient=other)
    entry = add_waitlist_entry(p)
    other_entry = add_waitlist_entry(p, patient=other, any_provider=True, clinic=p.clinic)
    with UnitOfWork(p.system) as uow:
        now = utcnow()
        offer = WaitlistOffer(
            entry_id=entry.id,
            provider_id=p.provider.id,
            clinic_id=p.clinic.id,
            slot_start=now + timedelta(days=5),
            slot_end=now + timedelta(days=5, minutes=50),
            expires_at=now + timedelta(hours=2),
        )
        note = Notification(patient_id=p.patient.id, event_type="appointment.booked", channel=Channel.EMAIL)
        other_note = Notification(patient_id=other.id, event_type="appointment.booked", channel=Channel.EMAIL)
        uow.session.add_all([offer, note, other_note])
        uow.commit()
    both = sorted([str(p.patient.id), str(other.id)])
    return {
        "other": other,
        "appt": appt,
        "other_appt": other_appt,
        "entry": entry,
        "other_entry": other_entry,
        "note": note,
        "both": both,
        "mine": [str(p.patient.id)],
    }


# -- REST: one row per request, naming the patients -----------------------------------------------------------


def test_each_rest_read_of_patient_data_writes_one_row_naming_the_patients(
    client: TestClient, harbor: Practice
) -> None:
    p = harbor
    s = _scene(p)
    admin = bearer(client, p.admin_user.email)
    patient = bearer(client, p.patient_user.email)
    doctor = bearer(client, p.doctor_user.email)
    start, end = future(days=1, hour=0).isoformat(), future(days=9, hour=0).isoformat()
    cases: list[tuple[dict[str, str], str, dict[str, Any], str, list[str], str]] = [
        (admin, "/api/v1/appointments", {}, "appointments.list", s["both"], "admin"),
        (patient, "/api/v1/appointments", {}, "appointments.list", s["mine"], "patient"),
        (doctor, "/api/v1/appointments", {}, "appointments.list", s["both"], "doctor"),
        (patient, f"/api/v1/appointments/{s['appt'].id}", {}, "appointments.get", s["mine"], "patient"),
        (admin, "/api/v1/waitlists", {}, "waitlist.list", s["both"], "admin"),
        (admin, f"/api/v1/waitlists/{s['other_entry'].id}", {}, "waitlist.entry", [str(s["other"].id)], "admin"),
        (patient, "/api/v1/offers", {}, "offers.list", s["mine"], "patient"),
        (admin, "/api/v1/notifications", {}, "notifications.list", s["both"], "admin"),
        (patient, "/api/v1/me/notification-preferences", {}, "notifications.preferences", s["mine"], "patient"),
        (
            admin,
            f"/api/v1/patients/{s['other'].id}/notification-preferences",
            {},
            "notifications.preferences",
            [str(s["other"].id)],
            "admin",
        ),
        (
            doctor,
            f"/api/v1/providers/{p.provider.id}/time-off/conflicts",
            {"start": start, "end": end},
            "time_off.preview",
            s["both"],
            "doctor",
        ),
    ]
    holder: dict[str, Any] = {}
    for headers, path, params, action, patients, role in cases:

        def call(headers: dict[str, str] = headers, path: str = path, params: dict[str, Any] = params) -> None:
            holder["response"] = client.get(path, headers=headers, params=params)

        new = _new_reads(p, call)
        assert holder["response"].status_code == 200, (path, holder["response"].text)
        assert len(new) == 1, (path, [(e.action, e.patient_ids) for e in new])
        (row,) = new
        assert (row.action, row.patient_ids, row.patient_count, row.actor_role) == (
            action,
            patients,
            len(patients),
            role,
        ), path
        assert row.actor_user_id == {"admin": p.admin_user, "patient": p.patient_user, "doctor": p.doctor_user}[role].id
        assert row.via.startswith("GET /api/v1/"), row.via
        assert "{" in row.via or row.via == f"GET {path}"  # the route's template, not the ids in the path
        assert row.client_address == "testclient"


def test_a_read_that_shows_no_patient_writes_nothing(client: TestClient, harbor: Practice) -> None:
    patient = bearer(client, harbor.patient_user.email)
    assert _new_reads(harbor, lambda: client.get("/api/v1/appointments", headers=patient)) == []
    assert _new_reads(harbor, lambda: client.get("/api/v1/clinics", headers=patient)) == []


def test_a_list_of_many_patients_is_one_row(client: TestClient, harbor: Practice) -> None:
    patients = [add_patient(harbor, f"Patient {i:03d}") for i in range(60)]
    for i, patient in enumerate(patients):
        add_appointment(harbor, future(days=1 + i // 8, hour=8 + i % 8), patient=patient)
    admin = bearer(client, harbor.admin_user.email)
    new = _new_reads(harbor, lambda: client.get("/api/v1/appointments", headers=admin, params={"limit": 1000}))
    assert len(new) == 1
    assert new[0].patient_ids == sorted(str(p.id) for p in patients)
    assert new[0].patient_count == 60


# -- service calls ---------------------------------------------------------------------------------------------


def test_each_service_read_writes_one_row(harbor: Practice) -> None:
    p = harbor
    s = _scene(p)
    now = utcnow()
    reads: list[tuple[Actor, Callable[[Actor, UnitOfWork], Any], str, list[str]]] = [
        (p.admin, lambda a, u: list_appointments(a, u), "appointments.list", s["both"]),
        (p.admin, lambda a, u: waitlist.list_entries(a, u), "waitlist.list", s["both"]),
        (p.admin, lambda a, u: waitlist.ranked_entries(a, u), "waitlist.ranked", s["both"]),
        (p.admin, lambda a, u: waitlist.get_entry(a, u, s["entry"].id), "waitlist.entry", s["mine"]),
        (p.admin, lambda a, u: wl_offers.list_offers(a, u), "offers.list", s["mine"]),
        (
            p.doctor,
            lambda a, u: wl_offers.patient_busy_times(a, u, s["entry"].id, start=now, end=now + timedelta(days=30)),
            "waitlist.patient_busy_times",
            s["mine"],
        ),
        (p.admin, lambda a, u: notes.list_notifications(a, u), "notifications.list", s["both"]),
        (p.admin, lambda a, u: notes.read_message(a, u, s["note"].id), "notifications.read", s["mine"]),
        (
            p.admin,
            lambda a, u: notes.get_preferences(a, u, s["other"].id),
            "notifications.preferences",
            [str(s["other"].id)],
        ),
        (p.admin, lambda a, u: identity.get_patient(a, u, s["other"].id), "patient.profile", [str(s["other"].id)]),
        (
            p.doctor,
            lambda a, u: availability.preview_time_off(a, u, p.provider.id, start=now, end=now + timedelta(days=9)),
            "time_off.preview",
            s["both"],
        ),
    ]
    for actor, read, action, patients in reads:

        def run(actor: Actor = actor, read: Callable[[Actor, UnitOfWork], Any] = read) -> None:
            with UnitOfWork(actor) as uow:
                read(actor, uow)

        new = _new_reads(p, run)
        assert [(e.action, e.patient_ids, e.actor_role, e.via) for e in new] == [
            (action, patients, str(actor.role), "")
        ], action


def test_reads_in_one_unit_of_work_are_one_row_and_a_committing_one_writes_it_with_the_commit(
    harbor: Practice, engine: sa.Engine
) -> None:
    p = harbor
    s = _scene(p)

    def two_reads() -> None:
        with UnitOfWork(p.admin) as uow:
            list_appointments(p.admin, uow)
            identity.get_patient(p.admin, uow, s["other"].id)
            waitlist.list_entries(p.admin, uow)

    (row,) = _new_reads(p, two_reads)
    assert (row.action, row.patient_ids) == ("appointments.list", s["both"])

    def read_and_commit() -> None:
        with UnitOfWork(p.admin) as uow:
            identity.get_patient(p.admin, uow, s["other"].id)
            uow.commit()

    (row,) = _new_reads(p, read_and_commit)
    assert row.patient_ids == [str(s["other"].id)]


def test_the_system_actor_is_not_a_person_and_writes_no_read_row(harbor: Practice) -> None:
    _scene(harbor)

    def run() -> None:
        with UnitOfWork(harbor.system) as uow:
            list_appointments(harbor.system, uow)

    assert _new_reads(harbor, run) == []


def test_portal_page_reads_carry_page_and_address_and_live_rereads_record_only_new_patients(
    harbor: Practice,
) -> None:
    p = harbor
    s = _scene(p)
    view = f"tab-{uuid.uuid4()}:/admin/waitlists"

    def page_event(*, live: bool) -> None:
        def handler() -> None:
            audit_context.enter("page /admin/waitlists", "203.0.113.9", view)
            with UnitOfWork(p.admin) as uow:
                waitlist.list_entries(p.admin, uow)

        import contextvars

        ctx = contextvars.copy_context()
        if live:
            ctx.run(lambda: _in_reads_only(handler))
        else:
            ctx.run(handler)

    (load,) = _new_reads(p, lambda: page_event(live=False))
    assert (load.via, load.client_address, load.patient_ids) == ("page /admin/waitlists", "203.0.113.9", s["both"])
    # A live push re-reads the same page: nothing new is shown, nothing is written.
    assert _new_reads(p, lambda: page_event(live=True)) == []
    newcomer = add_patient(p, "Nina New")
    add_waitlist_entry(p, patient=newcomer)
    (pushed,) = _new_reads(p, lambda: page_event(live=True))
    assert (pushed.via, pushed.patient_ids) == ("live /admin/waitlists", [str(newcomer.id)])
    assert _new_reads(p, lambda: page_event(live=True)) == []
    # The person reloading the page is an access again, with everything it shows.
    (reload,) = _new_reads(p, lambda: page_event(live=False))
    assert len(reload.patient_ids) == 3

    # On the same page view, another kind of data about a patient already listed (their message preferences,
    # opened through a filter that re-reads like a live push) is new to the viewer: recorded, once.
    def open_preferences() -> None:
        def handler() -> None:
            audit_context.enter("page /admin/waitlists", "203.0.113.9", view)
            with UnitOfWork(p.admin) as uow:
                notes.get_preferences(p.admin, uow, s["other"].id)

        import contextvars

        contextvars.copy_context().run(lambda: _in_reads_only(handler))

    (opened,) = _new_reads(p, open_preferences)
    assert (opened.action, opened.patient_ids) == ("notifications.preferences", [str(s["other"].id)])
    assert _new_reads(p, open_preferences) == []


def _in_reads_only(fn: Callable[[], None]) -> None:
    with reads_only():
        fn()


# -- append-only -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["audit_access_events", "audit_events"])
@pytest.mark.parametrize(
    "statement",
    ["UPDATE {table} SET action = 'x'", "DELETE FROM {table}", "TRUNCATE {table}", "TRUNCATE {table} CASCADE"],
)
def test_the_app_connection_cannot_rewrite_the_audit_tables(
    client: TestClient, harbor: Practice, engine: sa.Engine, table: str, statement: str
) -> None:
    _scene(harbor)
    client.get("/api/v1/appointments", headers=bearer(client, harbor.admin_user.email))
    before = len(rows(harbor, AccessEvent)), len(rows(harbor, AuditEvent))
    assert before[0] >= 1 and before[1] >= 1
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql(statement.format(table=table))
    assert (len(rows(harbor, AccessEvent)), len(rows(harbor, AuditEvent))) == before


def test_deleting_a_practice_cannot_take_its_audit_trail_with_it(harbor: Practice, engine: sa.Engine) -> None:
    add_audit_event(harbor, "test.kept")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM tenants WHERE id = :id"), {"id": harbor.tenant_id})


# -- the hash chain --------------------------------------------------------------------------------------------


def _verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "backend.audit", "verify", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rows_are_chained_per_practice(client: TestClient, harbor: Practice, summit: Practice) -> None:
    for p in (harbor, summit):
        _scene(p)
        client.get("/api/v1/appointments", headers=bearer(client, p.admin_user.email))
    for p in (harbor, summit):
        for model in (AccessEvent, AuditEvent):
            chain = sorted(rows(p, model), key=lambda e: e.chain_seq)
            assert [e.chain_seq for e in chain] == list(range(1, len(chain) + 1))
            prev = GENESIS
            for e in chain:
                assert e.prev_hash == prev and e.row_hash == row_hash(prev, e)
                prev = e.row_hash
    result = _verify_cli()
    assert result.returncode == 0, result.stderr
    assert "all intact" in result.stdout


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_access_events SET patient_ids = '[]'::jsonb WHERE id = :id",
        "UPDATE audit_access_events SET actor_user_id = NULL WHERE id = :id",
        "DELETE FROM audit_access_events WHERE id = :id",
    ],
)
def test_a_tampered_row_is_found_by_the_chain_check(
    client: TestClient, harbor: Practice, engine: sa.Engine, tamper: str
) -> None:
    _scene(harbor)
    admin = bearer(client, harbor.admin_user.email)
    for _ in range(4):
        client.get("/api/v1/appointments", headers=admin)
    chain = _reads(harbor)
    assert len(chain) == 4
    victim = chain[1]
    # Only someone who can switch the triggers off (the superuser, bypassing them on purpose) gets this far.
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.execute(sa.text(tamper), {"id": victim.id})
    result = _verify_cli()
    assert result.returncode != 0
    broken_id = victim.id if tamper.startswith("UPDATE") else chain[2].id
    assert str(broken_id) in result.stderr, result.stderr
    assert f"practice {harbor.tenant_id}" in result.stderr
    with UnitOfWork(system=True) as uow:
        (report,) = [r for r in verify_chains(uow.session) if r.broken]
    assert report.broken is not None and report.broken.row_id == broken_id


def test_concurrent_writers_never_fork_a_chain(harbor: Practice) -> None:
    s = _scene(harbor)
    errors: list[Exception] = []

    def reader() -> None:
        try:
            for _ in range(10):
                with UnitOfWork(harbor.admin) as uow:
                    identity.get_patient(harbor.admin, uow, s["other"].id)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # However the 60 rows spread over the practice's chains, each chain is whole: 1, 2, 3 ... and linked.
    chain = _reads(harbor)
    assert len(chain) == 60
    by_shard: dict[int, list[int]] = {}
    for e in chain:
        by_shard.setdefault(e.chain_shard, []).append(e.chain_seq or 0)
    for seqs in by_shard.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
    with UnitOfWork(system=True) as uow:
        reports = verify_chains(uow.session, tenant_id=harbor.tenant_id)
    assert sorted((r.table, r.shard, r.rows, r.broken) for r in reports) == sorted(
        ("audit_access_events", shard, len(seqs), None) for shard, seqs in by_shard.items()
    )


def test_a_writer_takes_the_next_chain_while_one_is_held_and_a_break_there_is_found(
    harbor: Practice, engine: sa.Engine
) -> None:
    s = _scene(harbor)

    def read() -> None:
        with UnitOfWork(harbor.admin) as uow:
            identity.get_patient(harbor.admin, uow, s["other"].id)

    read()
    with engine.connect() as holder, holder.begin():
        # Another transaction holds shard 0 of the practice's read chain, as a slow writer would until its commit.
        lock = (chain_module._LOCK_CLASS[AccessEvent], chain_module._tenant_lock_key(harbor.tenant_id))
        holder.execute(sa.text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": lock[0], "b": lock[1]})
        read()  # does not wait: shard 1
        read()
    read()  # shard 0 again
    chain = _reads(harbor)
    assert [(e.chain_shard, e.chain_seq) for e in chain] == [(0, 1), (1, 1), (1, 2), (0, 2)]
    assert chain[2].prev_hash == chain[1].row_hash and chain[3].prev_hash == chain[0].row_hash
    assert _verify_cli().returncode == 0

    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.execute(sa.text("DELETE FROM audit_access_events WHERE id = :id"), {"id": chain[1].id})
    result = _verify_cli()
    assert result.returncode != 0
    assert str(chain[2].id) in result.stderr and "shard 1" in result.stderr, result.stderr


# -- the Audit trail itself: admin only, per practice, the export audited -------------------------------------


def test_admins_filter_reads_by_patient_and_staff_and_see_only_their_practice(
    client: TestClient, harbor: Practice, summit: Practice
) -> None:
    s = _scene(harbor)
    _scene(summit)
    harbor_admin = bearer(client, harbor.admin_user.email)
    summit_admin = bearer(client, summit.admin_user.email)
    client.get(f"/api/v1/waitlists/{s['other_entry'].id}", headers=harbor_admin)
    client.get("/api/v1/appointments", headers=bearer(client, harbor.doctor_user.email))
    client.get("/api/v1/appointments", headers=summit_admin)

    looked = client.get(
        "/api/v1/audit-events", headers=harbor_admin, params={"kind": "access", "patient_id": str(s["other"].id)}
    )
    assert looked.status_code == 200
    # Newest first: the doctor's schedule (it shows the patient's appointment), then the admin's look at the entry.
    assert [(e["action"], e["actor_name"], e["actor_role"]) for e in looked.json()] == [
        ("appointments.list", harbor.doctor_user.full_name, "doctor"),
        ("waitlist.entry", harbor.admin_user.full_name, "admin"),
    ]
    assert looked.json()[1]["patients"] == [{"id": str(s["other"].id), "name": "Oscar Other"}]
    by_doctor = client.get(
        "/api/v1/audit-events",
        headers=harbor_admin,
        params={"kind": "access", "user_id": str(harbor.doctor_user.id)},
    ).json()
    assert [e["action"] for e in by_doctor] == ["appointments.list"]
    # Summit's admin sees none of Harbor's rows, by any filter.
    theirs = client.get("/api/v1/audit-events", headers=summit_admin, params={"kind": "access", "limit": 500}).json()
    assert theirs and {e["tenant_id"] for e in theirs} == {str(summit.tenant_id)}
    assert (
        client.get(
            "/api/v1/audit-events",
            headers=summit_admin,
            params={"kind": "access", "patient_id": str(s["other"].id)},
        ).json()
        == []
    )
    with UnitOfWork(summit.admin) as uow:
        page = search_audit(summit.admin, uow, AuditFilter(kind="access", user_id=harbor.admin_user.id))
    assert page.rows == []


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_only_admins_read_the_audit_trail(client: TestClient, harbor: Practice, role: str) -> None:
    user = {"patient": harbor.patient_user, "doctor": harbor.doctor_user}[role]
    headers = bearer(client, user.email)
    assert client.get("/api/v1/audit-events", headers=headers, params={"kind": "access"}).status_code == 403
    assert client.get("/api/v1/audit-events/export.csv", headers=headers).status_code == 403


def test_bad_filters_are_refused_with_a_code(client: TestClient, harbor: Practice) -> None:
    admin = bearer(client, harbor.admin_user.email)
    for params in (
        {"kind": "everything"},
        {"patient_id": "nope"},
        {"start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z"},
        {"start": "2026-03-02T00:00:00"},
    ):
        response = client.get("/api/v1/audit-events", headers=admin, params=params)
        assert response.status_code == 422, params
        assert response.json().get("code") or response.json().get("detail"), params


def test_the_csv_export_lists_the_reads_and_is_itself_audited(client: TestClient, harbor: Practice) -> None:
    s = _scene(harbor)
    admin = bearer(client, harbor.admin_user.email)
    client.get("/api/v1/appointments", headers=admin)
    holder: dict[str, Any] = {}

    def export() -> None:
        holder["r"] = client.get(
            "/api/v1/audit-events/export.csv", headers=admin, params={"patient_id": str(s["other"].id)}
        )

    (audited,) = _new_reads(harbor, export)
    response = holder["r"]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    lines = response.text.strip().splitlines()
    assert lines[0].startswith("occurred_at,kind,actor_user_id,actor_name,actor_role,action,patient_ids")
    assert len(lines) == 2 and "appointments.list" in lines[1] and str(s["other"].id) in lines[1]
    assert (audited.action, audited.via) == ("audit.export", "GET /api/v1/audit-events/export.csv")
    assert str(s["other"].id) in audited.patient_ids
    with UnitOfWork(harbor.admin) as uow:
        text = export_audit_csv(harbor.admin, uow, AuditFilter(kind="change"))
    assert text.splitlines()[0].startswith("occurred_at,kind")


# -- SQLite (the embedded mode) --------------------------------------------------------------------------------


def test_sqlite_chains_reads_and_refuses_rewrites(tmp_path: Any) -> None:
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")
    engine = make_engine(url)
    try:
        with UnitOfWork(system=True, engine=engine) as uow:
            tenant = Tenant(name="Lite Practice", slug="lite")
            uow.session.add(tenant)
            uow.commit()
        actor = Actor(tenant_id=tenant.id, role=Role.ADMIN, user_id=uuid.uuid4())
        patients = [uuid.uuid4(), uuid.uuid4()]
        for _ in range(3):
            with reads_only(), UnitOfWork(actor, engine=engine) as uow:  # a read-only unit of work
                record_access(actor, uow, action="appointments.list", patient_ids=patients)
        with UnitOfWork(system=True, engine=engine) as uow:
            found = list(uow.session.exec(select(AccessEvent).order_by(AccessEvent.chain_seq)))  # type: ignore[arg-type]
            assert [e.chain_seq for e in found] == [1, 2, 3]
            assert found[0].patient_ids == sorted(str(p) for p in patients)
            assert [r.broken for r in verify_chains(uow.session)] == [None]
        for statement in ("UPDATE audit_access_events SET action = 'x'", "DELETE FROM audit_access_events"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()

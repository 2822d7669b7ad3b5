"""Service behaviour not covered through the API: overview figures, profiles, patients, and audit atomicity."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from backend import events
from backend.audit.models import AuditEvent
from backend.audit.service import list_audit_events, record
from backend.db import UnitOfWork
from backend.errors import Conflict, NotFound, PermissionDenied
from backend.identity.service import get_patient, get_profile
from backend.scheduling.models import AppointmentStatus
from backend.tenancy import service as tenancy
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, ClinicCreate, ClinicUpdate
from backend.types import utcnow
from backend.waitlist.models import EntryStatus
from tests.factories import (
    Practice,
    add_appointment,
    add_patient,
    add_provider,
    add_waitlist_entry,
    future,
    make_practice,
    rows,
)


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


# -- clinic_overview -----------------------------------------------------------------------------------


def test_clinic_overview_figures(harbor: Practice) -> None:
    p = harbor
    add_provider(p, "Second Doctor", clinic=p.clinic)
    add_provider(p, "Uptown Doctor", clinic=p.clinic2)
    add_patient(p, "Uptown Patient", home_clinic=p.clinic2)
    add_patient(p, "Homeless Patient")
    add_appointment(p, future(days=1, hour=9))
    add_appointment(p, future(days=2, hour=9))
    add_appointment(p, utcnow() - timedelta(days=2))  # past: not upcoming
    add_appointment(p, future(days=3, hour=9), status=AppointmentStatus.CANCELLED)
    add_appointment(p, future(days=4, hour=9), status=AppointmentStatus.HELD)  # a hold is not an appointment yet
    add_appointment(p, future(days=5, hour=9), clinic=p.clinic2)
    add_waitlist_entry(p)
    add_waitlist_entry(p, status=EntryStatus.OFFERED, specialty="Trauma")
    add_waitlist_entry(p, status=EntryStatus.CANCELLED)
    add_waitlist_entry(p, status=EntryStatus.BOOKED)
    add_waitlist_entry(p, clinic=p.clinic2, any_provider=True)

    with UnitOfWork(p.admin) as uow:
        summaries = tenancy.clinic_overview(p.admin, uow)
    by_id = {s.clinic_id: s for s in summaries}
    assert [s.name for s in summaries] == sorted(c.name for c in p.clinics)
    downtown, uptown = by_id[p.clinic.id], by_id[p.clinic2.id]
    assert (downtown.providers, downtown.patients, downtown.upcoming_appointments, downtown.waiting_entries) == (
        2,
        1,
        2,
        2,
    )
    assert (uptown.providers, uptown.patients, uptown.upcoming_appointments, uptown.waiting_entries) == (1, 1, 1, 1)
    assert (downtown.timezone, uptown.timezone) == ("America/New_York", "Europe/Berlin")


def test_clinic_overview_archived_and_roles(harbor: Practice) -> None:
    p = harbor
    with UnitOfWork(p.admin) as uow:
        tenancy.update_clinic(p.admin, uow, p.clinic2.id, ClinicUpdate(archived=True))
        uow.commit()
    with UnitOfWork(p.admin) as uow:
        everything = tenancy.clinic_overview(p.admin, uow)
        current = tenancy.clinic_overview(p.admin, uow, include_archived=False)
    assert {(s.clinic_id, s.archived) for s in everything} == {(p.clinic.id, False), (p.clinic2.id, True)}
    assert [s.clinic_id for s in current] == [p.clinic.id]
    for actor in (p.doctor, p.patient_actor):
        with UnitOfWork(actor) as uow, pytest.raises(PermissionDenied):
            tenancy.clinic_overview(actor, uow)
    with UnitOfWork(p.system) as uow:
        assert len(tenancy.clinic_overview(p.system, uow)) == 2


def test_clinic_overview_of_an_empty_practice(db: sa.Engine) -> None:
    p = make_practice("Empty Practice", "empty")
    with UnitOfWork(p.admin) as uow:
        for clinic in p.clinics:
            tenancy.delete_clinic(p.admin, uow, clinic.id)
        uow.commit()
    with UnitOfWork(p.admin) as uow:
        assert tenancy.clinic_overview(p.admin, uow) == []


# -- profiles and patients -----------------------------------------------------------------------------


def test_get_profile_for_each_role(harbor: Practice) -> None:
    p = harbor
    with UnitOfWork(p.admin) as uow:
        admin = get_profile(p.admin, uow)
        doctor = get_profile(p.doctor, uow)
        patient = get_profile(p.patient_actor, uow)
    assert (admin.full_name, admin.email, admin.role, admin.practice_name) == (
        p.admin_user.full_name,
        p.admin_user.email,
        Role.ADMIN,
        "Harbor Mental Health",
    )
    assert (admin.patient_id, admin.provider_id, admin.provider_title) == (None, None, "")
    assert (doctor.role, doctor.provider_id, doctor.provider_title) == (Role.DOCTOR, p.provider.id, "MD")
    assert (patient.role, patient.patient_id, patient.provider_title) == (Role.PATIENT, p.patient.id, "")


def test_get_profile_of_nobody_is_not_found(harbor: Practice) -> None:
    with UnitOfWork(harbor.system) as uow, pytest.raises(NotFound, match="user not found"):
        get_profile(harbor.system, uow)


def test_get_patient_scope(harbor: Practice) -> None:
    p = harbor
    stranger = add_patient(p, "Someone Else")
    with UnitOfWork(p.admin) as uow:
        assert get_patient(p.patient_actor, uow, p.patient.id).full_name == p.patient.full_name
        assert get_patient(p.doctor, uow, stranger.id).id == stranger.id
        assert get_patient(p.admin, uow, stranger.id).id == stranger.id
        with pytest.raises(NotFound, match="patient not found"):
            get_patient(p.patient_actor, uow, stranger.id)


# -- audit rows live and die with their change ---------------------------------------------------------


def test_audit_event_commits_in_the_same_transaction_as_the_change(harbor: Practice, engine: sa.Engine) -> None:
    with UnitOfWork(harbor.admin) as uow:
        clinic = tenancy.create_clinic(harbor.admin, uow, ClinicCreate(name="Harbor Annex", timezone="UTC"))
        uow.commit()
    # xmin is the id of the transaction that wrote a row: one transaction wrote both.
    with engine.connect() as conn:
        clinic_xmin = conn.execute(sa.text("SELECT xmin::text FROM clinics WHERE id = :id"), {"id": clinic.id}).scalar()
        audit_xmin = conn.execute(
            sa.text("SELECT xmin::text FROM audit_events WHERE entity_id = :id AND action = 'clinic.created'"),
            {"id": clinic.id},
        ).scalar()
    assert clinic_xmin is not None and clinic_xmin == audit_xmin


def test_a_service_failing_after_record_leaves_no_audit_row(harbor: Practice, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("publisher down")

    # create_clinic records its audit event, then emits: make the step after record() fail.
    monkeypatch.setattr(events, "emit", boom)
    with pytest.raises(RuntimeError, match="publisher down"), UnitOfWork(harbor.admin) as uow:
        tenancy.create_clinic(harbor.admin, uow, ClinicCreate(name="Harbor Ghost", timezone="UTC"))
        uow.commit()
    assert "Harbor Ghost" not in {c.name for c in rows(harbor, Clinic)}
    assert [e for e in rows(harbor, AuditEvent) if e.action == "clinic.created"] == []


def test_a_refused_change_leaves_no_audit_row(harbor: Practice) -> None:
    add_appointment(harbor, future(days=1), clinic=harbor.clinic2)
    with UnitOfWork(harbor.admin) as uow, pytest.raises(Conflict):
        tenancy.delete_clinic(harbor.admin, uow, harbor.clinic2.id)
    assert rows(harbor, AuditEvent) == []
    assert len(rows(harbor, Clinic, id=harbor.clinic2.id)) == 1


def test_uncommitted_unit_of_work_rolls_back_change_and_audit(harbor: Practice) -> None:
    with UnitOfWork(harbor.admin) as uow:
        tenancy.update_clinic(harbor.admin, uow, harbor.clinic.id, ClinicUpdate(name="Harbor Renamed"))
        record(harbor.admin, uow, action="test.extra", entity_type="test", entity_id=None)
        # no commit
    assert rows(harbor, AuditEvent) == []
    (clinic,) = rows(harbor, Clinic, id=harbor.clinic.id)
    assert clinic.name == harbor.clinic.name


def test_events_are_published_only_after_commit(harbor: Practice, monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[events.DomainEvent] = []
    monkeypatch.setattr(events, "publish", published.append)
    with UnitOfWork(harbor.admin) as uow:
        tenancy.create_clinic(harbor.admin, uow, ClinicCreate(name="Harbor Draft", timezone="UTC"))
        assert published == []
        # rolled back: never published
    assert published == []
    with UnitOfWork(harbor.admin) as uow:
        clinic = tenancy.create_clinic(harbor.admin, uow, ClinicCreate(name="Harbor Final", timezone="UTC"))
        assert published == []
        uow.commit()
    assert [(e.name, e.tenant_id, e.entity_id) for e in published] == [
        ("clinic.changed", str(harbor.tenant_id), str(clinic.id))
    ]


def test_list_audit_events_filters_and_order(harbor: Practice) -> None:
    p = harbor
    with UnitOfWork(p.admin) as uow:
        created = tenancy.create_clinic(p.admin, uow, ClinicCreate(name="Harbor Audit", timezone="UTC"))
        uow.commit()
    with UnitOfWork(p.admin) as uow:
        tenancy.update_clinic(p.admin, uow, created.id, ClinicUpdate(address="7 Quay"))
        uow.commit()
    since = utcnow() + timedelta(days=1)
    with UnitOfWork(p.admin) as uow:
        trail = list_audit_events(p.admin, uow, entity_type="clinic", entity_id=created.id)
        assert [e.action for e in trail] == ["clinic.updated", "clinic.created"]
        assert list_audit_events(p.admin, uow, since=since) == []
        assert len(list_audit_events(p.admin, uow, limit=1)) == 1
        assert list_audit_events(p.admin, uow, entity_type="patient") == []


def test_system_actor_acts_as_admin_in_its_tenant(harbor: Practice) -> None:
    system = Actor.system(harbor.tenant_id)
    with UnitOfWork(system) as uow:
        clinic = tenancy.create_clinic(system, uow, ClinicCreate(name="Harbor Robot", timezone="Asia/Tokyo"))
        uow.commit()
    (event,) = [e for e in rows(harbor, AuditEvent) if e.entity_id == clinic.id]
    assert (event.actor_role, event.actor_user_id) == ("system", None)

"""Tenant isolation: no service function lets one practice see or change another's data.

Every function in backend.service.SERVICE_FUNCTIONS must have a case in CASES below; the test fails for
any registered function without one, so a new service cannot land without showing that another
tenant's rows never appear in its results and that another tenant's ids behave exactly like missing ones.
Each case runs in both directions (A against B, then B against A).
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import delete, update
from sqlmodel import Session, select

import backend
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import NotFound, PermissionDenied, TenantScopeError, ValidationFailed
from backend.identity.models import Patient, ProviderClinic, User
from backend.scheduling.models import Appointment
from backend.service import SERVICE_FUNCTIONS
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, ClinicCreate, ClinicUpdate, Tenant
from backend.types import utcnow
from backend.waitlist.models import EntryStatus, WaitlistEntry
from tests.factories import (
    Practice,
    add_appointment,
    add_audit_event,
    add_waitlist_entry,
    future,
    make_practice,
    rows,
)


def _import_every_service_module() -> None:
    # Every module, not only those named service.py: booking.py, search.py, ... register functions too,
    # and the registry must not depend on which other test files happened to import them first.
    for info in pkgutil.walk_packages(backend.__path__, "backend."):
        importlib.import_module(info.name)


_import_every_service_module()
REGISTERED = sorted(SERVICE_FUNCTIONS)


# -- data ----------------------------------------------------------------------------------------------


def _populate(p: Practice, day: int) -> Practice:
    """Give a practice an appointment, two waitlist entries, an audit event and an archived clinic."""
    appointment = add_appointment(p, future(days=day, hour=14))
    entry = add_waitlist_entry(p)
    open_entry = add_waitlist_entry(p, any_provider=True, clinic=p.clinic, urgency=3)
    event = add_audit_event(p, "test.seeded")
    with UnitOfWork(p.system) as uow:
        clinic2 = uow.session.get(Clinic, p.clinic2.id)
        assert clinic2 is not None
        clinic2.archived_at = utcnow()
        uow.session.add(clinic2)
        uow.commit()
    p.extra.update(
        appointments={appointment.id},
        entries={entry.id, open_entry.id},
        audit_events={event.id},
    )
    return p


@pytest.fixture
def world(db: sa.Engine) -> dict[str, Practice]:
    a = _populate(make_practice("Harbor Mental Health", "harbor"), day=3)
    b = _populate(make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo")), day=4)
    return {"A": a, "B": b}


def _snapshot(p: Practice) -> dict[str, Any]:
    """Everything a cross-tenant write could have touched in practice `p`."""
    with UnitOfWork(p.system) as uow:
        s = uow.session
        return {
            "clinics": sorted((c.id, c.name, c.timezone, c.address, c.archived_at) for c in s.exec(select(Clinic))),
            "links": sorted((link.provider_id, link.clinic_id) for link in s.exec(select(ProviderClinic))),
            "homes": sorted((pt.id, pt.home_clinic_id) for pt in s.exec(select(Patient))),
            "audit": sorted(e.id for e in s.exec(select(AuditEvent))),
        }


# -- helpers -------------------------------------------------------------------------------------------


def _call(name: str, actor: Actor, *args: Any, **kwargs: Any) -> Any:
    """Run a registered service function in the actor's own unit of work, committing if it returns."""
    fn = SERVICE_FUNCTIONS[name]
    with UnitOfWork(actor) as uow:
        result = fn(actor, uow, *args, **kwargs)
        uow.commit()
        return result


def _like_missing(name: str, actor: Actor, foreign_id: uuid.UUID, *rest: Any) -> None:
    """Another tenant's id must raise NotFound with exactly the message a random id gets."""
    with pytest.raises(NotFound) as foreign:
        _call(name, actor, foreign_id, *rest)
    with pytest.raises(NotFound) as missing:
        _call(name, actor, uuid.uuid4(), *rest)
    assert foreign.value.message == missing.value.message
    assert foreign.value.status_code == missing.value.status_code == 404


def _all_actors(p: Practice) -> list[Actor]:
    return list(p.actors.values())


Case = Callable[[Practice, Practice], None]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn

    return register


# -- one case per registered service function ----------------------------------------------------------


@case("backend.tenancy.service.get_tenant")
def _get_tenant(me: Practice, other: Practice) -> None:
    for actor in _all_actors(me):
        tenant = _call("backend.tenancy.service.get_tenant", actor)
        assert tenant.id == me.tenant_id and tenant.name == me.tenant.name


@case("backend.tenancy.service.list_clinics")
def _list_clinics(me: Practice, other: Practice) -> None:
    mine = {c.id for c in me.clinics}
    for actor in _all_actors(me):
        everything = {c.id for c in _call("backend.tenancy.service.list_clinics", actor, include_archived=True)}
        current = {c.id for c in _call("backend.tenancy.service.list_clinics", actor)}
        assert everything == mine
        assert current == {me.clinic.id}


@case("backend.tenancy.service.get_clinic")
def _get_clinic(me: Practice, other: Practice) -> None:
    for actor in _all_actors(me):
        assert _call("backend.tenancy.service.get_clinic", actor, me.clinic.id).id == me.clinic.id
        for foreign in other.clinics:
            _like_missing("backend.tenancy.service.get_clinic", actor, foreign.id)


@case("backend.tenancy.service.create_clinic")
def _create_clinic(me: Practice, other: Practice) -> None:
    before = _snapshot(other)
    # The other practice's clinic name is free here: its existence must not leak as a conflict.
    created = _call(
        "backend.tenancy.service.create_clinic", me.admin, ClinicCreate(name=other.clinic.name, timezone="UTC")
    )
    assert created.tenant_id == me.tenant_id
    assert {c.id for c in rows(me, Clinic)} == {me.clinic.id, me.clinic2.id, created.id}
    assert _snapshot(other) == before


@case("backend.tenancy.service.update_clinic")
def _update_clinic(me: Practice, other: Practice) -> None:
    before = _snapshot(other)
    for actor in (me.admin, me.system):
        for foreign in other.clinics:
            for change in (ClinicUpdate(name="Hijacked"), ClinicUpdate(archived=True), ClinicUpdate(archived=False)):
                _like_missing("backend.tenancy.service.update_clinic", actor, foreign.id, change)
    assert _snapshot(other) == before


@case("backend.tenancy.service.preview_archive")
def _preview_archive(me: Practice, other: Practice) -> None:
    name = "backend.tenancy.service.preview_archive"
    preview = _call(name, me.admin, me.clinic.id)
    # Counts and destinations are this practice's own: the other's entries and clinics never appear.
    assert preview.active_entries == 2
    assert preview.move_targets == []  # clinic2 is archived; the other practice's open clinic is not offered
    for foreign in other.clinics:
        _like_missing(name, me.admin, foreign.id)


@case("backend.tenancy.service.archive_clinic")
def _archive_clinic(me: Practice, other: Practice) -> None:
    name = "backend.tenancy.service.archive_clinic"
    before = _snapshot(other)
    for actor in (me.admin, me.system):
        for foreign in other.clinics:
            with pytest.raises(NotFound) as foreign_clinic:
                _call(name, actor, foreign.id, waitlist="close")
            with pytest.raises(NotFound) as missing_clinic:
                _call(name, actor, uuid.uuid4(), waitlist="close")
            assert foreign_clinic.value.message == missing_clinic.value.message
        # Another practice's clinic as the destination is refused exactly like a missing one.
        refusals = []
        for target in (other.clinic.id, uuid.uuid4()):
            with pytest.raises(NotFound) as refused:
                _call(name, actor, me.clinic.id, waitlist="move", move_to_clinic_id=target)
            refusals.append(refused.value.message)
        assert refusals[0] == refusals[1]
    assert _snapshot(other) == before
    assert all(e.status == EntryStatus.WAITING for e in rows(other, WaitlistEntry))


@case("backend.tenancy.service.delete_clinic")
def _delete_clinic(me: Practice, other: Practice) -> None:
    before = _snapshot(other)
    for actor in (me.admin, me.system):
        # clinic2 has nothing depending on it: a leak would delete it rather than refuse.
        for foreign in (other.clinic2, other.clinic):
            _like_missing("backend.tenancy.service.delete_clinic", actor, foreign.id)
    assert _snapshot(other) == before


@case("backend.tenancy.service.clinic_overview")
def _clinic_overview(me: Practice, other: Practice) -> None:
    def figures() -> dict[uuid.UUID, tuple[int, int, int, int]]:
        summaries = _call("backend.tenancy.service.clinic_overview", me.admin)
        return {s.clinic_id: (s.providers, s.patients, s.upcoming_appointments, s.waiting_entries) for s in summaries}

    expected = {me.clinic.id: (1, 1, 1, 2), me.clinic2.id: (0, 0, 0, 0)}
    assert figures() == expected
    # Rows of the other practice cannot point at my clinic ids: the foreign keys are (tenant_id, clinic_id).
    strays = [
        ProviderClinic(tenant_id=other.tenant_id, provider_id=other.provider.id, clinic_id=me.clinic.id),
        Patient(tenant_id=other.tenant_id, full_name="Stray", home_clinic_id=me.clinic.id),
    ]
    for stray in strays:
        with UnitOfWork(other.system) as uow, pytest.raises(sa.exc.IntegrityError, match="foreign key"):
            uow.session.add(stray)
            uow.flush()
    with pytest.raises(sa.exc.IntegrityError, match="foreign key"):
        add_appointment(other, future(days=9, hour=10), clinic=me.clinic)
    with pytest.raises(sa.exc.IntegrityError, match="foreign key"):
        add_waitlist_entry(other, clinic=me.clinic)
    assert figures() == expected


@case("backend.identity.service.get_profile")
def _get_profile(me: Practice, other: Practice) -> None:
    for actor in (me.admin, me.doctor, me.patient_actor):
        profile = _call("backend.identity.service.get_profile", actor)
        assert profile.practice_name == me.tenant.name and profile.user_id == actor.user_id
    for role, foreign_user in ((Role.ADMIN, other.admin_user), (Role.PATIENT, other.patient_user)):
        forged = Actor(tenant_id=me.tenant_id, role=role, user_id=foreign_user.id)
        with pytest.raises(NotFound) as foreign:
            _call("backend.identity.service.get_profile", forged)
        with pytest.raises(NotFound) as missing:
            _call(
                "backend.identity.service.get_profile", Actor(tenant_id=me.tenant_id, role=role, user_id=uuid.uuid4())
            )
        assert foreign.value.message == missing.value.message


@case("backend.identity.service.disable_user")
def _disable_user(me: Practice, other: Practice) -> None:
    for actor in (me.admin, me.system):
        for foreign in (other.admin_user, other.doctor_user, other.patient_user):
            _like_missing("backend.identity.service.disable_user", actor, foreign.id)
    assert all(u.is_active for u in rows(other, User))


@case("backend.identity.service.change_password")
def _change_password(me: Practice, other: Practice) -> None:
    # An actor of my practice naming another practice's user finds nobody, and changes nothing.
    before = sorted((u.id, u.password_hash) for u in rows(other, User))
    for foreign in (other.admin_user, other.doctor_user, other.patient_user):
        forged = Actor(tenant_id=me.tenant_id, role=Role.ADMIN, user_id=foreign.id)
        with pytest.raises(NotFound):
            _call(
                "backend.identity.service.change_password",
                forged,
                current_password="correct horse battery staple",
                new_password="a brand new passphrase",
                client_address="198.51.100.1",
            )
    assert sorted((u.id, u.password_hash) for u in rows(other, User)) == before


def _mfa_rows(p: Practice) -> list[tuple[Any, ...]]:
    users = rows(p, User)
    return sorted((u.id, u.mfa_secret_encrypted, u.mfa_pending_secret_encrypted, u.mfa_last_step) for u in users)


def _forged_as_foreign_users(me: Practice, other: Practice) -> list[Actor]:
    # An actor of my practice that names another practice's user finds nobody.
    return [
        Actor(tenant_id=me.tenant_id, role=Role.ADMIN, user_id=u.id)
        for u in (other.admin_user, other.doctor_user, other.patient_user)
    ]


@case("backend.identity.mfa.get_mfa_status")
def _get_mfa_status(me: Practice, other: Practice) -> None:
    # The factories enrol every admin (admins must use MFA); the others have not set it up.
    statuses = [_call("backend.identity.mfa.get_mfa_status", a) for a in (me.admin, me.doctor, me.patient_actor)]
    assert [status.enrolled for status in statuses] == [True, False, False]
    for forged in _forged_as_foreign_users(me, other):
        with pytest.raises(NotFound):
            _call("backend.identity.mfa.get_mfa_status", forged)


@case("backend.identity.mfa.begin_enrolment")
def _begin_enrolment(me: Practice, other: Practice) -> None:
    before = _mfa_rows(other)
    for forged in _forged_as_foreign_users(me, other):
        with pytest.raises(NotFound):
            _call("backend.identity.mfa.begin_enrolment", forged)
    assert _mfa_rows(other) == before


@case("backend.identity.mfa.confirm_enrolment")
def _confirm_enrolment(me: Practice, other: Practice) -> None:
    before = _mfa_rows(other)
    for forged in _forged_as_foreign_users(me, other):
        with pytest.raises(NotFound):
            _call("backend.identity.mfa.confirm_enrolment", forged, code="123456")
    assert _mfa_rows(other) == before


@case("backend.identity.mfa.regenerate_recovery_codes")
def _regenerate_recovery_codes(me: Practice, other: Practice) -> None:
    before = _mfa_rows(other)
    for forged in _forged_as_foreign_users(me, other):
        with pytest.raises(NotFound):
            _call("backend.identity.mfa.regenerate_recovery_codes", forged, code="123456")
    assert _mfa_rows(other) == before


@case("backend.identity.mfa.reset_mfa")
def _reset_mfa(me: Practice, other: Practice) -> None:
    before = _mfa_rows(other)
    for actor in (me.admin, me.system):
        for foreign in (other.admin_user, other.doctor_user, other.patient_user):
            _like_missing("backend.identity.mfa.reset_mfa", actor, foreign.id)
    assert _mfa_rows(other) == before


@case("backend.identity.mfa.get_mfa_policy")
def _get_mfa_policy(me: Practice, other: Practice) -> None:
    with UnitOfWork(other.system) as uow:
        tenant = uow.session.get(Tenant, other.tenant_id)
        assert tenant is not None
        tenant.mfa_required_for_clinicians = True
        uow.session.add(tenant)
        uow.commit()
    try:
        assert _call("backend.identity.mfa.get_mfa_policy", me.admin) is False
    finally:
        with UnitOfWork(other.system) as uow:
            tenant = uow.session.get(Tenant, other.tenant_id)
            assert tenant is not None
            tenant.mfa_required_for_clinicians = False
            uow.session.add(tenant)
            uow.commit()


@case("backend.identity.mfa.set_mfa_policy")
def _set_mfa_policy(me: Practice, other: Practice) -> None:
    try:
        assert _call("backend.identity.mfa.set_mfa_policy", me.admin, clinicians_required=True) is True
        with UnitOfWork(other.system) as uow:
            tenant = uow.session.get(Tenant, other.tenant_id)
            assert tenant is not None and tenant.mfa_required_for_clinicians is False
    finally:
        _call("backend.identity.mfa.set_mfa_policy", me.admin, clinicians_required=False)


@case("backend.identity.service.get_patient")
def _get_patient(me: Practice, other: Practice) -> None:
    for actor in _all_actors(me):
        if actor.role != Role.PATIENT:
            assert _call("backend.identity.service.get_patient", actor, me.patient.id).id == me.patient.id
        _like_missing("backend.identity.service.get_patient", actor, other.patient.id)
    assert _call("backend.identity.service.get_patient", me.patient_actor, me.patient.id).id == me.patient.id


@case("backend.scheduling.service.list_appointments")
def _list_appointments(me: Practice, other: Practice) -> None:
    name = "backend.scheduling.service.list_appointments"
    my_clinics = {c.id for c in me.clinics}
    for actor in _all_actors(me):
        views = _call(name, actor)
        assert {v.id for v in views} == me.extra["appointments"], actor.role
        assert all(v.clinic_id in my_clinics and v.provider_id == me.provider.id for v in views)
        assert _call(name, actor, provider_id=other.provider.id) == []
        assert _call(name, actor, clinic_id=other.clinic.id) == []


@case("backend.waitlist.service.list_entries")
def _list_entries(me: Practice, other: Practice) -> None:
    name = "backend.waitlist.service.list_entries"
    for actor in _all_actors(me):
        views = _call(name, actor)
        assert {v.id for v in views} == me.extra["entries"], actor.role
        assert all(v.patient_id == me.patient.id and v.clinic_id == me.clinic.id for v in views)
        assert _call(name, actor, provider_id=other.provider.id) == []
        assert _call(name, actor, clinic_id=other.clinic.id) == []
        assert {v.id for v in _call(name, actor, status=EntryStatus.WAITING)} == me.extra["entries"]


def _entries(p: Practice) -> list[tuple[uuid.UUID, str, Any, Any]]:
    from backend.waitlist.models import WaitlistEntry

    return sorted((e.id, str(e.status), e.last_confirmed_at, e.expires_at) for e in rows(p, WaitlistEntry))


def _policies(p: Practice) -> list[tuple[Any, ...]]:
    from backend.waitlist.models import WaitlistPolicy

    found = rows(p, WaitlistPolicy)
    return sorted((w.id, str(w.clinic_id), w.max_active_per_provider, w.offer_hold_minutes) for w in found)


@case("backend.waitlist.service.get_entry")
def _get_entry(me: Practice, other: Practice) -> None:
    name = "backend.waitlist.service.get_entry"
    for actor in _all_actors(me):
        for mine in me.extra["entries"]:
            view = _call(name, actor, mine)
            assert view.id == mine and view.position == 1  # their entries never count in my queues
        for theirs in other.extra["entries"]:
            _like_missing(name, actor, theirs)


@case("backend.waitlist.service.join_waitlist")
def _join_waitlist(me: Practice, other: Practice) -> None:
    from backend.waitlist.service import JoinRequest

    name = "backend.waitlist.service.join_waitlist"
    before = _entries(other)
    for actor in _all_actors(me):
        naming = {} if actor.role == Role.PATIENT else {"patient_id": me.patient.id}
        for field, theirs in (("clinic_id", other.clinic.id), ("provider_id", other.provider.id)):
            refusals = []
            for some_id in (theirs, uuid.uuid4()):
                target = {"clinic_id": me.clinic.id, "modality": "telehealth", field: some_id, **naming}
                with pytest.raises(NotFound) as refused:
                    _call(name, actor, JoinRequest(**target))
                refusals.append(refused.value.message)
            assert refusals[0] == refusals[1]
    for actor in (me.admin, me.doctor, me.system):
        refusals = []
        for some_id in (other.patient.id, uuid.uuid4()):
            with pytest.raises(NotFound) as refused:
                _call(name, actor, JoinRequest(clinic_id=me.clinic.id, modality="telehealth", patient_id=some_id))
            refusals.append(refused.value.message)
        assert refusals[0] == refusals[1]
    # The other practice's patient waiting for "the same" target does not make mine a duplicate.
    entry = _call(name, me.patient_actor, JoinRequest(clinic_id=me.clinic.id, modality="telehealth"))
    assert entry.tenant_id == me.tenant_id
    assert _entries(other) == before


@case("backend.waitlist.service.leave_waitlist")
def _leave_waitlist(me: Practice, other: Practice) -> None:
    before = _entries(other)
    for actor in _all_actors(me):
        for theirs in other.extra["entries"]:
            _like_missing("backend.waitlist.service.leave_waitlist", actor, theirs)
    assert _entries(other) == before


@case("backend.waitlist.service.confirm_interest")
def _confirm_interest(me: Practice, other: Practice) -> None:
    before = _entries(other)
    for actor in _all_actors(me):
        for theirs in other.extra["entries"]:
            _like_missing("backend.waitlist.service.confirm_interest", actor, theirs)
    assert _entries(other) == before


@case("backend.waitlist.service.ranked_entries")
def _ranked_entries(me: Practice, other: Practice) -> None:
    name = "backend.waitlist.service.ranked_entries"
    with pytest.raises(sa.exc.IntegrityError, match="foreign key"):  # their row cannot point at my clinic id
        add_waitlist_entry(other, clinic=me.clinic, urgency=4)
    for actor in (me.admin, me.doctor, me.system):
        views = _call(name, actor)
        assert {v.id for v in views} == me.extra["entries"]
        assert sorted(v.position for v in views) == [1, 1]  # one per queue: mine alone in each
        assert _call(name, actor, provider_id=other.provider.id) == []
        assert _call(name, actor, clinic_id=other.clinic.id) == []
    with pytest.raises(PermissionDenied):
        _call(name, me.patient_actor)


@case("backend.waitlist.service.get_waitlist_policy")
def _get_waitlist_policy(me: Practice, other: Practice) -> None:
    name = "backend.waitlist.service.get_waitlist_policy"
    _call("backend.waitlist.service.put_waitlist_policy", other.admin, None, {"offer_hold_minutes": 99})
    for actor in (me.admin, me.system):
        mine = _call(name, actor)
        assert mine.source == "default" and mine.offer_hold_minutes != 99
        assert _call(name, actor, me.clinic.id).source == "default"
        for theirs in other.clinics:
            _like_missing(name, actor, theirs.id)


@case("backend.waitlist.service.put_waitlist_policy")
def _put_waitlist_policy(me: Practice, other: Practice) -> None:
    name = "backend.waitlist.service.put_waitlist_policy"
    before = (_policies(other), _snapshot(other))
    for actor in (me.admin, me.system):
        for theirs in other.clinics:
            _like_missing(name, actor, theirs.id, {"max_active_per_provider": 1})
    _call(name, me.admin, None, {"max_active_per_provider": 7})
    _call(name, me.admin, me.clinic.id, {"offer_hold_minutes": 11})
    assert (_policies(other), _snapshot(other)) == before
    assert _call("backend.waitlist.service.get_waitlist_policy", other.admin).source == "default"


@case("backend.waitlist.service.delete_clinic_waitlist_policy")
def _delete_clinic_waitlist_policy(me: Practice, other: Practice) -> None:
    name = "backend.waitlist.service.delete_clinic_waitlist_policy"
    _call("backend.waitlist.service.put_waitlist_policy", other.admin, other.clinic.id, {"offer_hold_minutes": 12})
    before = _policies(other)
    for actor in (me.admin, me.system):
        for theirs in other.clinics:
            _like_missing(name, actor, theirs.id)
    assert _policies(other) == before


def _finished_preview(actor: Actor, job_id: uuid.UUID) -> Any:
    from tests.integration.test_policy_preview import wait_for

    return wait_for(actor, job_id)


@case("backend.waitlist.preview.preview_policy")
def _preview_policy(me: Practice, other: Practice) -> None:
    name = "backend.waitlist.preview.preview_policy"
    before = (_policies(other), _snapshot(other))
    for actor in (me.admin, me.system):
        for theirs in other.clinics:
            _like_missing(name, actor, theirs.id, {"offer_hold_minutes": 15})
    job = _call(name, me.admin, None, {"offer_hold_minutes": 15})
    assert _finished_preview(me.admin, job).state == "done"
    with pytest.raises(NotFound):
        _call("backend.waitlist.preview.preview_status", other.admin, job)
    assert (_policies(other), _snapshot(other)) == before
    with pytest.raises(PermissionDenied):
        _call(name, me.patient_actor, None, {"offer_hold_minutes": 15})


@case("backend.waitlist.preview.preview_status")
def _preview_status(me: Practice, other: Practice) -> None:
    name = "backend.waitlist.preview.preview_status"
    theirs = _call("backend.waitlist.preview.preview_policy", other.admin, None, {"offer_hold_minutes": 15})
    _finished_preview(other.admin, theirs)
    for actor in (me.admin, me.system):
        _like_missing(name, actor, theirs)
    with pytest.raises(PermissionDenied):
        _call(name, me.patient_actor, theirs)


def _notification_settings(p: Practice) -> list[tuple[Any, ...]]:
    from backend.notifications.models import NotificationSettings

    return sorted((s.id, tuple(s.reminder_offsets_minutes), s.updated_at) for s in rows(p, NotificationSettings))


@case("backend.notifications.reminders.get_notification_settings")
def _get_notification_settings(me: Practice, other: Practice) -> None:
    name = "backend.notifications.reminders.get_notification_settings"
    _call("backend.notifications.reminders.update_notification_settings", other.admin, reminder_offsets_minutes=[45])
    for actor in (me.admin, me.system):
        mine = _call(name, actor)
        assert mine.source == "default" and mine.reminder_offsets_minutes != [45]
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor)


@case("backend.notifications.reminders.update_notification_settings")
def _update_notification_settings(me: Practice, other: Practice) -> None:
    name = "backend.notifications.reminders.update_notification_settings"
    _call(name, other.admin, reminder_offsets_minutes=[45])
    before = (_notification_settings(other), _snapshot(other))
    for actor in (me.admin, me.system):
        assert _call(name, actor, reminder_offsets_minutes=[90, 1440]).reminder_offsets_minutes == [1440, 90]
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor, reminder_offsets_minutes=[60])
    assert (_notification_settings(other), _snapshot(other)) == before
    (mine,) = _notification_settings(me)
    assert mine[1] == (1440, 90)
    theirs = _call("backend.notifications.reminders.get_notification_settings", other.admin)
    assert theirs.reminder_offsets_minutes == [45]


def _practice_texts(p: Practice) -> list[tuple[Any, ...]]:
    from backend.tenancy.models import PracticeText

    return sorted((t.id, t.kind, t.body, t.updated_at) for t in rows(p, PracticeText))


@case("backend.tenancy.texts.get_practice_text")
def _get_practice_text(me: Practice, other: Practice) -> None:
    name = "backend.tenancy.texts.get_practice_text"
    _call("backend.tenancy.texts.update_practice_text", other.admin, "terms", body=f"Only {other.tenant.name}.")
    for actor in _all_actors(me):
        mine = _call(name, actor, "terms")
        assert mine.source == "default" and mine.practice == me.tenant.name
        assert other.tenant.name not in mine.body


@case("backend.tenancy.texts.update_practice_text")
def _update_practice_text(me: Practice, other: Practice) -> None:
    name = "backend.tenancy.texts.update_practice_text"
    _call(name, other.admin, "privacy", body="Theirs.")
    before = (_practice_texts(other), _snapshot(other))
    for actor in (me.admin, me.system):
        assert _call(name, actor, "privacy", body=f"Ours, set by {actor.role}.").source == "practice"
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor, "privacy", body="Not allowed.")
    assert (_practice_texts(other), _snapshot(other)) == before
    (mine,) = _practice_texts(me)
    assert mine[1:3] == ("privacy", "Ours, set by system.")
    assert _call("backend.tenancy.texts.get_practice_text", other.patient_actor, "privacy").body == "Theirs."


def _reads_of(p: Practice) -> None:
    """Give the practice a read row (its admin lists its appointments)."""
    from backend.scheduling.service import list_appointments

    with UnitOfWork(p.admin) as uow:
        list_appointments(p.admin, uow)


@case("backend.audit.service.search_audit")
def _search_audit(me: Practice, other: Practice) -> None:
    from backend.audit.models import AccessEvent
    from backend.audit.service import AuditFilter

    name = "backend.audit.service.search_audit"
    _reads_of(me)
    _reads_of(other)
    theirs_reads = rows(other, AccessEvent)
    assert theirs_reads
    for kind in ("access", "change"):
        page = _call(name, me.admin, AuditFilter(kind=kind), limit=500)
        assert page.rows and {r.tenant_id for r in page.rows} == {me.tenant_id}
    theirs_ids = {e.id for e in theirs_reads} | {e.id for e in rows(other, AuditEvent)}
    for kind in ("access", "change"):
        for flt in (
            AuditFilter(kind=kind, patient_id=other.patient.id),
            AuditFilter(kind=kind, user_id=other.admin_user.id),
        ):
            found = _call(name, me.admin, flt, limit=500).rows
            assert found == [] and not ({r.id for r in found} & theirs_ids)
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor, AuditFilter())


@case("backend.audit.service.export_audit_csv")
def _export_audit_csv(me: Practice, other: Practice) -> None:
    from backend.audit.service import AuditFilter

    name = "backend.audit.service.export_audit_csv"
    _reads_of(me)
    _reads_of(other)
    for kind in ("access", "change"):
        text = _call(name, me.admin, AuditFilter(kind=kind))
        assert str(other.admin_user.id) not in text and str(other.patient.id) not in text
        assert str(other.tenant_id) not in text
    assert _call(name, me.admin, AuditFilter(patient_id=other.patient.id)).count("\n") == 1  # the header only
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor, AuditFilter())


@case("backend.audit.service.audit_filter_options")
def _audit_filter_options(me: Practice, other: Practice) -> None:
    name = "backend.audit.service.audit_filter_options"
    _reads_of(other)
    options = _call(name, me.admin)
    staff = {s.id for s in options.staff}
    assert {me.admin_user.id, me.doctor_user.id} <= staff
    assert not staff & {other.admin_user.id, other.doctor_user.id, other.patient_user.id}
    # Its actions are its own: the other practice's reads name none here.
    assert "appointments.list" not in options.actions
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor)


@case("backend.audit.service.list_audit_events")
def _list_audit_events(me: Practice, other: Practice) -> None:
    name = "backend.audit.service.list_audit_events"
    theirs = {e.id for e in rows(other, AuditEvent)}
    assert theirs  # the other practice does have events to leak
    for actor in (me.admin, me.system):
        events = _call(name, actor, limit=500)
        assert {e.id for e in events} == me.extra["audit_events"]
        assert all(e.tenant_id == me.tenant_id for e in events)
        for event in rows(other, AuditEvent):
            assert _call(name, actor, entity_id=event.entity_id) == []
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor)


def _sso_configs(p: Practice) -> list[tuple[Any, ...]]:
    from backend.identity.models import PracticeSSO

    return sorted((c.id, c.issuer, c.client_id, c.client_secret_encrypted, c.enabled) for c in rows(p, PracticeSSO))


def _sso_config(issuer: str, secret: str | None = "client-secret-value") -> Any:  # noqa: S107 - a test value
    from backend.identity.sso import SsoConfigIn

    return SsoConfigIn(issuer=issuer, client_id="client", client_secret=secret, enabled=True)


@case("backend.identity.sso.get_sso_config")
def _get_sso_config(me: Practice, other: Practice) -> None:
    name = "backend.identity.sso.get_sso_config"
    _call("backend.identity.sso.put_sso_config", other.admin, _sso_config("https://theirs.example"))
    for actor in (me.admin, me.system):
        assert _call(name, actor) is None
    _call("backend.identity.sso.put_sso_config", me.admin, _sso_config("https://mine.example"))
    for actor in (me.admin, me.system):
        assert _call(name, actor).issuer == "https://mine.example"
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor)


@case("backend.identity.sso.put_sso_config")
def _put_sso_config(me: Practice, other: Practice) -> None:
    name = "backend.identity.sso.put_sso_config"
    _call(name, other.admin, _sso_config("https://theirs.example"))
    before = (_sso_configs(other), _snapshot(other))
    for actor in (me.admin, me.system):
        secret = None if actor is me.system else "x"  # the second save keeps the stored secret
        assert _call(name, actor, _sso_config("https://mine.example", secret=secret)).issuer
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor, _sso_config("https://evil.example"))
    assert (_sso_configs(other), _snapshot(other)) == before
    ((_, issuer, _, _, _),) = _sso_configs(me)
    assert issuer == "https://mine.example"


# -- onboarding (backend/identity/onboarding.py) ---------------------------------------------------------


@case("backend.identity.onboarding.invite_person")
def _invite_person(me: Practice, other: Practice) -> None:
    name = "backend.identity.onboarding.invite_person"
    before = (sorted(u.id for u in rows(other, User)), _snapshot(other))
    for actor in (me.admin, me.system):
        for role in ("patient", "doctor"):
            with pytest.raises(NotFound) as foreign:
                _call(name, actor, full_name="Ann Example", email="ann@example.org", role=role,
                      clinic_id=other.clinic.id)  # fmt: skip
            with pytest.raises(NotFound) as missing:
                _call(name, actor, full_name="Ann Example", email="ann@example.org", role=role, clinic_id=uuid.uuid4())
            assert foreign.value.message == missing.value.message
    # Another practice's e-mail is no conflict here: accounts are per practice.
    invited = _call(name, me.admin, full_name="Ann Example", email=other.patient_user.email, clinic_id=me.clinic.id)
    assert invited.user_id in {u.id for u in rows(me, User)}
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor, full_name="Ann Example", email="ann2@example.org")
    assert (sorted(u.id for u in rows(other, User)), _snapshot(other)) == before


@case("backend.identity.onboarding.resend_invitation")
def _resend_invitation(me: Practice, other: Practice) -> None:
    from backend.identity.models import OnboardingLink

    theirs = _call("backend.identity.onboarding.invite_person", other.admin, full_name="Pending Person",
                   email=f"pending@{other.tenant.slug}.org")  # fmt: skip
    links_before = sorted((link.id, link.revoked_at) for link in rows(other, OnboardingLink))
    for actor in (me.admin, me.system):
        for foreign in (theirs.user_id, other.admin_user.id, other.patient_user.id):
            _like_missing("backend.identity.onboarding.resend_invitation", actor, foreign)
    assert sorted((link.id, link.revoked_at) for link in rows(other, OnboardingLink)) == links_before


@case("backend.identity.onboarding.list_people")
def _list_people(me: Practice, other: Practice) -> None:
    name = "backend.identity.onboarding.list_people"
    _call("backend.identity.onboarding.invite_person", other.admin, full_name="Their Invitee",
          email=f"invitee@{other.tenant.slug}.org")  # fmt: skip
    theirs = {u.id for u in rows(other, User)}
    for actor in (me.admin, me.system):
        people = {p.user_id for p in _call(name, actor)}
        assert people == {u.id for u in rows(me, User)} and not people & theirs
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor)


def _registration_setting(p: Practice) -> bool:
    with UnitOfWork(p.system) as uow:
        tenant = uow.session.get(Tenant, p.tenant_id)
        assert tenant is not None
        return tenant.self_registration_enabled


def _set_registration(p: Practice, enabled: bool) -> None:
    _call("backend.identity.onboarding.set_self_registration", p.admin, enabled=enabled)


@case("backend.identity.onboarding.get_self_registration")
def _get_self_registration(me: Practice, other: Practice) -> None:
    name = "backend.identity.onboarding.get_self_registration"
    _set_registration(other, True)
    try:
        for actor in (me.admin, me.system):
            setting = _call(name, actor)
            assert (setting.enabled, setting.practice_slug) == (False, me.tenant.slug)
        for actor in (me.doctor, me.patient_actor):
            with pytest.raises(PermissionDenied):
                _call(name, actor)
    finally:
        _set_registration(other, False)


@case("backend.identity.onboarding.set_self_registration")
def _set_self_registration(me: Practice, other: Practice) -> None:
    name = "backend.identity.onboarding.set_self_registration"
    before = _snapshot(other)
    try:
        assert _call(name, me.admin, enabled=True).enabled is True
        assert _registration_setting(me) is True and _registration_setting(other) is False
        for actor in (me.doctor, me.patient_actor):
            with pytest.raises(PermissionDenied):
                _call(name, actor, enabled=False)
    finally:
        _set_registration(me, False)
    # Its audit rows are the practice's own.
    assert _snapshot(other) == before


@case("backend.identity.onboarding.request_registration")
def _request_registration(me: Practice, other: Practice) -> None:
    from backend.identity.models import Registration
    from backend.identity.onboarding import RegistrationClosed

    name = "backend.identity.onboarding.request_registration"
    form = {"full_name": "Nora Newcomer", "password": "lantern orchard velvet 42", "accept_terms": True}
    _set_registration(other, True)
    try:
        # The other practice's setting opens nothing here.
        with pytest.raises(RegistrationClosed):
            _call(name, me.system, email="nora@example.org", **form)
        _set_registration(me, True)
        before = (sorted(u.id for u in rows(other, User)), sorted(r.id for r in rows(other, Registration)),
                  _snapshot(other))  # fmt: skip
        # An e-mail with an account only at the other practice is a new one here (and its owner there hears nothing).
        receipt = _call(name, me.system, email=other.patient_user.email, **form)
        assert receipt.kind == "verify"
        assert receipt.registration_id in {r.id for r in rows(me, Registration)}
        # Staff and patients do not register people: the anonymous visitor acts as the practice's system actor.
        for actor in (me.admin, me.doctor, me.patient_actor):
            with pytest.raises(PermissionDenied):
                _call(name, actor, email="nora2@example.org", **form)
        after = (sorted(u.id for u in rows(other, User)), sorted(r.id for r in rows(other, Registration)),
                 _snapshot(other))  # fmt: skip
        assert after == before
    finally:
        _set_registration(other, False)
        _set_registration(me, False)


@case("backend.identity.onboarding.verify_registration")
def _verify_registration(me: Practice, other: Practice) -> None:
    from backend.identity import onboarding
    from backend.identity.models import Registration

    name = "backend.identity.onboarding.verify_registration"
    password = "lantern orchard velvet 42"
    _set_registration(me, True)
    _set_registration(other, True)
    try:
        theirs = _call("backend.identity.onboarding.request_registration", other.system, full_name="Their Newcomer",
                       email="newcomer@example.org", password=password, accept_terms=True)  # fmt: skip
        before = (sorted(u.id for u in rows(other, User)), sorted((r.id, r.used_at) for r in rows(other, Registration)))
        # Another practice's registration is refused exactly like a missing one.
        answers = []
        for registration_id in (theirs.registration_id, uuid.uuid4()):
            with pytest.raises(onboarding.LinkInvalid) as refused:
                _call(name, me.system, registration_id, password=password)
            answers.append((refused.value.status_code, refused.value.message))
        assert answers[0] == answers[1]
        for actor in (me.admin, me.doctor, me.patient_actor):
            with pytest.raises(PermissionDenied):
                _call(name, actor, theirs.registration_id, password=password)
        assert (sorted(u.id for u in rows(other, User)),
                sorted((r.id, r.used_at) for r in rows(other, Registration))) == before  # fmt: skip
        # Its own registration makes a patient of its own practice only.
        mine = _call("backend.identity.onboarding.request_registration", me.system, full_name="My Newcomer",
                     email="newcomer@example.org", password=password, accept_terms=True)  # fmt: skip
        actor = _call(name, me.system, mine.registration_id, password=password)
        assert actor.tenant_id == me.tenant_id and actor.role == Role.PATIENT
        assert actor.user_id in {u.id for u in rows(me, User)}
        assert actor.user_id not in {u.id for u in rows(other, User)}
    finally:
        _set_registration(me, False)
        _set_registration(other, False)


@case("backend.insights.service.practice_insights")
def _practice_insights(me: Practice, other: Practice) -> None:
    name = "backend.insights.service.practice_insights"
    # The other practice cancels its appointment (a cancellation in range) and has a dead letter; mine has neither.
    with UnitOfWork(other.system) as uow:
        uow.session.execute(update(Appointment).where(Appointment.id.in_(other.extra["appointments"]))  # type: ignore[attr-defined]
                            .values(status="cancelled", cancelled_at=utcnow()))  # fmt: skip
        uow.commit()
    _notification_in(other, dead=True)
    for actor in (me.admin, me.system):
        found = _call(name, actor)
        assert found.totals.cancellations == 0 and found.dead_letters_total == 0 and found.dead_letters == []
        assert {c.clinic_id for c in found.clinics} <= {me.clinic.id, me.clinic2.id}
        assert {p.provider_id for p in found.providers} == {me.provider.id}
        # Another practice's clinic or provider is refused exactly like a missing one.
        for key, theirs in (("clinic_id", other.clinic.id), ("provider_id", other.provider.id)):
            answers = []
            for target in (theirs, uuid.uuid4()):
                with pytest.raises(NotFound) as refused:
                    _call(name, actor, **{key: target})
                answers.append((refused.value.status_code, refused.value.message))
            assert answers[0] == answers[1]
    theirs = _call(name, other.admin)
    assert theirs.totals.cancellations == 1 and theirs.dead_letters_total == 1
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor)


# -- the registry walk ---------------------------------------------------------------------------------


def test_registry_holds_every_known_service() -> None:
    # Guards the walk itself: an import failure or an empty registry would silently test nothing.
    assert {
        "backend.tenancy.service.get_clinic",
        "backend.identity.service.get_patient",
        "backend.scheduling.service.list_appointments",
        "backend.waitlist.service.list_entries",
        "backend.audit.service.list_audit_events",
    } <= set(REGISTERED)


def test_every_registered_service_has_a_case_and_every_case_a_service() -> None:
    missing = sorted(set(REGISTERED) - set(CASES))
    stale = sorted(set(CASES) - set(REGISTERED))
    assert not missing, f"registered service functions without a cross-tenant case in CASES: {missing}"
    assert not stale, f"cases for functions that are no longer registered: {stale}"


@pytest.mark.parametrize("direction", ["A->B", "B->A"])
@pytest.mark.parametrize("name", REGISTERED)
def test_service_never_crosses_tenants(name: str, direction: str, world: dict[str, Practice]) -> None:
    check = CASES.get(name)
    assert check is not None, f"{name} is a registered service function without a cross-tenant case: add one"
    me, other = (world["A"], world["B"]) if direction == "A->B" else (world["B"], world["A"])
    check(me, other)


@pytest.mark.parametrize("name", REGISTERED)
def test_service_refuses_a_unit_of_work_of_another_tenant(name: str, world: dict[str, Practice]) -> None:
    a, b = world["A"], world["B"]
    fn = SERVICE_FUNCTIONS[name]
    for actor in (a.admin, a.system, a.patient_actor):
        with UnitOfWork(b.system) as uow, pytest.raises(TenantScopeError, match="another tenant"):
            fn(actor, uow)
        with UnitOfWork(system=True) as uow, pytest.raises(TenantScopeError):
            fn(actor, uow)


# -- the unit of work and its listeners ----------------------------------------------------------------


def test_unit_of_work_without_actor_is_refused(db: sa.Engine) -> None:
    with pytest.raises(TenantScopeError, match="needs an actor"):
        UnitOfWork()
    with pytest.raises(TenantScopeError):
        UnitOfWork(None)


def test_orm_query_in_a_session_without_tenant_raises(world: dict[str, Practice], engine: sa.Engine) -> None:
    with Session(engine) as session:
        for query in (
            select(Clinic),
            select(Appointment.id),
            select(Tenant),
            select(sa.func.count()).select_from(User),
        ):
            with pytest.raises(TenantScopeError, match="outside a tenant scope"):
                session.exec(query)
        with pytest.raises(TenantScopeError):
            session.get(Clinic, world["A"].clinic.id)
        with pytest.raises(TenantScopeError):
            session.execute(delete(ProviderClinic))
    assert len(rows(world["A"], ProviderClinic)) == 1


def test_the_orm_hook_alone_scopes_every_shape_of_statement(world: dict[str, Practice], engine: sa.Engine) -> None:
    """The ORM wall without the database's: on the owner's engine (a superuser, which row-level security does not
    stop), a unit of work of practice A sees and changes only A's rows, wherever a tenant table sits in a statement:
    selected, joined, in a subquery, a CTE, an EXISTS, counted, updated, deleted."""
    a, b = world["A"], world["B"]
    mine = {c.id for c in rows(a, Clinic)}
    theirs = {c.id for c in rows(b, Clinic)}
    linked = {pc.clinic_id for pc in rows(a, ProviderClinic)}
    assert mine and theirs and linked and not mine & theirs
    b_links = len(rows(b, ProviderClinic))
    sub = select(Clinic.id).subquery()
    cte = select(Clinic.id).cte()
    with UnitOfWork(a.system, engine=engine) as uow:
        session = uow.session
        assert set(session.exec(select(Clinic.id))) == mine
        joined = select(ProviderClinic.clinic_id).join(Clinic, Clinic.id == ProviderClinic.clinic_id)
        assert set(session.exec(joined)) == linked
        assert set(session.exec(select(Clinic.id).where(Clinic.id.in_(select(ProviderClinic.clinic_id))))) == linked
        assert (
            set(session.exec(select(ProviderClinic.clinic_id).join(sub, sub.c.id == ProviderClinic.clinic_id)))
            == linked
        )
        assert (
            set(session.exec(select(ProviderClinic.clinic_id).join(cte, cte.c.id == ProviderClinic.clinic_id)))
            == linked
        )
        exists_b = sa.exists().where(Clinic.id.in_(theirs))
        assert session.exec(select(sa.literal(1)).where(exists_b)).first() is None
        assert session.exec(select(sa.func.count()).select_from(Clinic)).one() == len(mine)
        assert session.execute(update(Clinic).values(name=Clinic.name + " (A)")).rowcount == len(mine)  # type: ignore[attr-defined]
        gone = session.execute(delete(ProviderClinic).where(ProviderClinic.clinic_id.in_(theirs)))
        assert gone.rowcount == 0  # type: ignore[attr-defined]
        uow.commit()
    assert not any(c.name.endswith(" (A)") for c in rows(b, Clinic))
    assert len(rows(b, ProviderClinic)) == b_links


def test_unscoped_unit_of_work_sees_every_tenant(world: dict[str, Practice]) -> None:
    # The control for the refusals: the data of both practices is really there.
    with UnitOfWork(system=True) as uow:
        tenants = {c.tenant_id for c in uow.session.exec(select(Clinic))}
    assert tenants == {world["A"].tenant_id, world["B"].tenant_id}


def test_write_in_a_session_without_tenant_raises(world: dict[str, Practice], engine: sa.Engine) -> None:
    with Session(engine) as session:
        session.add(Clinic(tenant_id=world["A"].tenant_id, name="Nowhere", timezone="UTC"))
        with pytest.raises(TenantScopeError, match="write outside a tenant scope"):
            session.flush()


def test_new_row_gets_the_unit_of_work_tenant(world: dict[str, Practice]) -> None:
    a = world["A"]
    with UnitOfWork(a.admin) as uow:
        clinic = Clinic(name="Stamped", timezone="UTC")
        uow.session.add(clinic)
        uow.commit()
    assert clinic.tenant_id == a.tenant_id


def test_flushing_a_row_of_another_tenant_raises(world: dict[str, Practice]) -> None:
    a, b = world["A"], world["B"]
    before = _snapshot(b)
    with UnitOfWork(a.admin) as uow:
        uow.session.add(Clinic(tenant_id=b.tenant_id, name="Planted", timezone="UTC"))
        with pytest.raises(TenantScopeError, match="another tenant's row"):
            uow.flush()
    assert _snapshot(b) == before


def test_moving_a_row_to_another_tenant_raises(world: dict[str, Practice]) -> None:
    a, b = world["A"], world["B"]
    with UnitOfWork(a.admin) as uow:
        clinic = uow.session.get(Clinic, a.clinic.id)
        assert clinic is not None
        clinic.tenant_id = b.tenant_id
        uow.session.add(clinic)
        with pytest.raises(TenantScopeError, match="another tenant's row"):
            uow.commit()
    assert {c.id for c in rows(a, Clinic)} == {a.clinic.id, a.clinic2.id}


def test_orm_bulk_update_and_delete_are_scoped(world: dict[str, Practice]) -> None:
    a, b = world["A"], world["B"]
    with UnitOfWork(a.admin) as uow:
        uow.session.execute(update(Patient).values(phone="555-0100"))
        uow.session.execute(delete(ProviderClinic))
        uow.commit()
    assert [p.phone for p in rows(a, Patient)] == ["555-0100"]
    assert rows(a, ProviderClinic) == []
    assert [p.phone for p in rows(b, Patient)] == [""]
    assert len(rows(b, ProviderClinic)) == 1


def test_get_by_primary_key_is_scoped(world: dict[str, Practice]) -> None:
    a, b = world["A"], world["B"]
    with UnitOfWork(a.system) as uow:
        assert uow.session.get(Clinic, a.clinic.id) is not None
        assert uow.session.get(Clinic, b.clinic.id) is None
        assert uow.session.get(Patient, b.patient.id) is None
        assert uow.session.get(User, b.admin_user.id) is None


def test_scoping_survives_the_statement_cache(world: dict[str, Practice]) -> None:
    # The same statement shapes, alternating between tenants: a cached criterion must not keep a tenant id.
    a, b = world["A"], world["B"]
    for _ in range(3):
        for me in (a, b, b, a):
            with UnitOfWork(me.patient_actor) as uow:
                assert {c.id for c in uow.session.exec(select(Clinic))} == {me.clinic.id, me.clinic2.id}
                assert uow.session.get(Patient, me.patient.id) is not None
            assert {c.id for c in _call("backend.tenancy.service.list_clinics", me.admin)} == {me.clinic.id}


@case("backend.tenancy.service.practice_totals")
def _practice_totals(me: Practice, other: Practice) -> None:
    totals = _call("backend.tenancy.service.practice_totals", me.admin)
    assert (totals.providers, totals.patients, totals.upcoming_appointments, totals.waiting_entries) == (1, 1, 1, 2)
    # More of the other practice's rows change nothing here.
    add_appointment(other, future(days=9, hour=10))
    add_waitlist_entry(other, specialty="Anxiety")
    again = _call("backend.tenancy.service.practice_totals", me.admin)
    assert again == totals


# -- provider search and availability (backend/scheduling/search.py, availability.py) -------------------


@case("backend.scheduling.search.search_providers")
def _search_providers(me: Practice, other: Practice) -> None:
    name = "backend.scheduling.search.search_providers"
    for actor in _all_actors(me) * 2:  # the second round is served from the cache
        cards = _call(name, actor)
        assert [c.id for c in cards] == [me.provider.id]
        assert {c["id"] for c in cards[0].clinics} == {str(me.clinic.id)}
        assert _call(name, actor, clinic_id=other.clinic.id) == []
        assert _call(name, actor, q=other.tenant.slug) == []  # the other practice's doctor has its slug in the name


@case("backend.scheduling.search.search_facets")
def _search_facets(me: Practice, other: Practice) -> None:
    from backend.identity.models import Provider

    with UnitOfWork(other.system) as uow:
        theirs = uow.session.get(Provider, other.provider.id)
        assert theirs is not None
        theirs.specialties, theirs.languages = ["xenology"], ["Klingon"]
        uow.commit()
    for actor in _all_actors(me):
        facets = _call("backend.scheduling.search.search_facets", actor)
        assert facets == {"specialties": ["psychiatry"], "languages": []}


def _availability_rows(p: Practice) -> tuple[list[Any], list[Any]]:
    from backend.scheduling.models import AvailabilityRule, TimeOff

    rules = sorted((r.id, r.weekday, r.start_time) for r in rows(p, AvailabilityRule))
    return rules, sorted((t.id, t.start_at, t.end_at) for t in rows(p, TimeOff))


@case("backend.scheduling.availability.list_availability")
def _list_availability(me: Practice, other: Practice) -> None:
    name = "backend.scheduling.availability.list_availability"
    for actor in (me.admin, me.doctor, me.system):
        view = _call(name, actor, me.provider.id)
        assert [c.id for c in view.clinics] == [me.clinic.id]
        _like_missing(name, actor, other.provider.id)
    with pytest.raises(PermissionDenied):
        _call(name, me.patient_actor, other.provider.id)


@case("backend.scheduling.availability.replace_availability")
def _replace_availability(me: Practice, other: Practice) -> None:
    from datetime import time

    from backend.errors import ValidationFailed
    from backend.scheduling.availability import RuleInput

    name = "backend.scheduling.availability.replace_availability"
    before = _availability_rows(other)
    for actor in (me.admin, me.doctor, me.system):
        _like_missing(name, actor, other.provider.id, [])
        # Another practice's clinic is refused exactly like an unknown one.
        refusals = []
        for clinic_id in (other.clinic.id, uuid.uuid4()):
            with pytest.raises(ValidationFailed) as refused:
                _call(name, actor, me.provider.id, [RuleInput(clinic_id, 0, time(9), time(12))])
            refusals.append(refused.value.message)
        assert refusals[0] == refusals[1]
    assert _availability_rows(other) == before


@case("backend.scheduling.availability.add_time_off")
def _add_time_off(me: Practice, other: Practice) -> None:
    name = "backend.scheduling.availability.add_time_off"
    before = _availability_rows(other)
    span = {"start": future(days=2, hour=9), "end": future(days=2, hour=12)}
    for actor in (me.admin, me.doctor, me.system):
        with pytest.raises(NotFound) as foreign:
            _call(name, actor, other.provider.id, **span)
        with pytest.raises(NotFound) as missing:
            _call(name, actor, uuid.uuid4(), **span)
        assert foreign.value.message == missing.value.message
    assert _availability_rows(other) == before


@case("backend.scheduling.availability.preview_time_off")
def _preview_time_off(me: Practice, other: Practice) -> None:
    name = "backend.scheduling.availability.preview_time_off"
    span = {"start": future(days=2, hour=0), "end": future(days=6, hour=0)}
    for actor in (me.admin, me.doctor, me.system):
        # Only this practice's own session in that span shows (the other's, a day apart, never); the other
        # practice's provider is a missing one.
        assert {x.appointment_id for x in _call(name, actor, me.provider.id, **span)} == me.extra["appointments"]
        with pytest.raises(NotFound) as foreign:
            _call(name, actor, other.provider.id, **span)
        with pytest.raises(NotFound) as missing:
            _call(name, actor, uuid.uuid4(), **span)
        assert foreign.value.message == missing.value.message


@case("backend.scheduling.availability.remove_time_off")
def _remove_time_off(me: Practice, other: Practice) -> None:
    name = "backend.scheduling.availability.remove_time_off"
    theirs = _call(
        "backend.scheduling.availability.add_time_off",
        other.admin,
        other.provider.id,
        start=future(days=2, hour=9),
        end=future(days=2, hour=12),
    )
    before = _availability_rows(other)
    for actor in (me.admin, me.doctor, me.system):
        _like_missing(name, actor, theirs.id)
    assert _availability_rows(other) == before


# -- booking, slots and weekly series (backend/scheduling/booking.py, series.py, service.list_slots) ------


def _bookable(*practices: Practice) -> Any:
    """Open every practice's doctor every day 08:00-20:00 at its first clinic; return one instant that is a
    session start in each (10:00 New York is 08:00 Denver), six days from now."""
    from tests.factories import add_availability, local_start

    for p in practices:
        add_availability(p)
    return local_start(6, 10, zone="America/New_York")


def _missing_alike(name: str, actor: Actor, foreign_id: uuid.UUID, *, at: str | None = None, **kwargs: Any) -> None:
    """Like `_like_missing`, with keyword arguments; `at` names the keyword that takes the id (else first)."""

    def call(some_id: uuid.UUID) -> Any:
        return _call(name, actor, **{at: some_id}, **kwargs) if at else _call(name, actor, some_id, **kwargs)

    with pytest.raises(NotFound) as foreign:
        call(foreign_id)
    with pytest.raises(NotFound) as missing:
        call(uuid.uuid4())
    assert foreign.value.message == missing.value.message


def _appointments(p: Practice) -> list[tuple[uuid.UUID, str]]:
    return sorted((a.id, str(a.status)) for a in rows(p, Appointment))


def _booking_actors(p: Practice) -> list[tuple[Actor, dict[str, Any]]]:
    """Who may book, with what each must add to name the patient."""
    return [(p.patient_actor, {}), (p.admin, {"patient_id": p.patient.id}), (p.system, {"patient_id": p.patient.id})]


def _refuses_their_provider_and_patient(name: str, me: Practice, other: Practice, **kwargs: Any) -> None:
    """Another practice's provider (any booking actor) and patient (staff naming one) are like missing ones."""
    for actor, naming in _booking_actors(me):
        _missing_alike(name, actor, other.provider.id, at="provider_id", **kwargs, **naming)
    for actor in (me.admin, me.system):
        _missing_alike(name, actor, other.patient.id, at="patient_id", provider_id=me.provider.id, **kwargs)


@case("backend.scheduling.booking.book_appointment")
def _book_appointment(me: Practice, other: Practice) -> None:
    name = "backend.scheduling.booking.book_appointment"
    start = _bookable(me, other)
    before = _appointments(other)
    _refuses_their_provider_and_patient(name, me, other, start=start)
    assert _appointments(other) == before
    # Idempotency keys are per practice: the other practice's key neither replays nor blocks mine.
    theirs = _call(name, other.patient_actor, provider_id=other.provider.id, start=start, idempotency_key="k-1")
    mine = _call(name, me.patient_actor, provider_id=me.provider.id, start=start, idempotency_key="k-1")
    assert not mine.replayed and mine.appointment.id != theirs.appointment.id
    assert mine.appointment.tenant_id == me.tenant_id and mine.appointment.provider_id == me.provider.id


@case("backend.scheduling.booking.hold_slot")
def _hold_slot(me: Practice, other: Practice) -> None:
    name = "backend.scheduling.booking.hold_slot"
    start = _bookable(me, other)
    before = _appointments(other)
    _refuses_their_provider_and_patient(name, me, other, start=start)
    assert _appointments(other) == before
    # The other practice's hold at the same instant does not block mine.
    _call(name, other.patient_actor, provider_id=other.provider.id, start=start)
    assert _call(name, me.patient_actor, provider_id=me.provider.id, start=start).tenant_id == me.tenant_id


def _their_hold(me: Practice, other: Practice) -> Appointment:
    return _call(  # type: ignore[no-any-return]
        "backend.scheduling.booking.hold_slot",
        other.patient_actor,
        provider_id=other.provider.id,
        start=_bookable(me, other),
    )


@case("backend.scheduling.booking.confirm_hold")
def _confirm_hold(me: Practice, other: Practice) -> None:
    hold = _their_hold(me, other)
    for actor in _all_actors(me):
        _missing_alike("backend.scheduling.booking.confirm_hold", actor, hold.id, version=hold.version)
    assert (hold.id, "held") in _appointments(other)


@case("backend.scheduling.booking.release_hold")
def _release_hold(me: Practice, other: Practice) -> None:
    hold = _their_hold(me, other)
    for actor in _all_actors(me):
        _missing_alike("backend.scheduling.booking.release_hold", actor, hold.id)
    assert (hold.id, "held") in _appointments(other)


@case("backend.scheduling.booking.cancel_appointment")
def _cancel_appointment(me: Practice, other: Practice) -> None:
    before = _appointments(other)
    for actor in _all_actors(me):
        for theirs in other.extra["appointments"]:
            _missing_alike("backend.scheduling.booking.cancel_appointment", actor, theirs, reason="hijack")
    assert _appointments(other) == before


@case("backend.scheduling.booking.reschedule_appointment")
def _reschedule_appointment(me: Practice, other: Practice) -> None:
    start = _bookable(me, other)
    before = _appointments(other)
    for actor in _all_actors(me):
        for theirs in other.extra["appointments"]:
            _missing_alike("backend.scheduling.booking.reschedule_appointment", actor, theirs, new_start=start)
    assert _appointments(other) == before


@case("backend.scheduling.booking.mark_attendance")
def _mark_attendance(me: Practice, other: Practice) -> None:
    from datetime import timedelta

    name = "backend.scheduling.booking.mark_attendance"
    started = add_appointment(other, utcnow() - timedelta(minutes=30))
    before = _appointments(other)
    for actor in (me.doctor, me.admin, me.system):
        _missing_alike(name, actor, started.id, outcome="no_show")
    with pytest.raises(PermissionDenied):
        _call(name, me.patient_actor, started.id, outcome="no_show")
    assert _appointments(other) == before


@case("backend.scheduling.service.list_slots")
def _list_slots(me: Practice, other: Practice) -> None:
    from datetime import timedelta

    name = "backend.scheduling.service.list_slots"
    start = _bookable(me, other)
    add_appointment(other, start)  # the other practice's booking at the same instant
    window = {"start": start - timedelta(hours=1), "end": start + timedelta(hours=2)}
    for actor in _all_actors(me):
        slots = _call(name, actor, me.provider.id, **window)
        assert slots and {s.clinic_id for s in slots} == {me.clinic.id}
        assert [s.status for s in slots if s.start == start] == ["free"]
        _missing_alike(name, actor, other.provider.id, **window)


@case("backend.scheduling.series.preview_series")
def _preview_series(me: Practice, other: Practice) -> None:
    from datetime import timedelta

    name = "backend.scheduling.series.preview_series"
    start = _bookable(me, other)
    add_appointment(other, start + timedelta(weeks=1))  # taken there, free here
    _refuses_their_provider_and_patient(name, me, other, first_start=start, count=2)
    for actor, naming in _booking_actors(me):
        occurrences = _call(name, actor, provider_id=me.provider.id, first_start=start, count=2, **naming)
        assert [o.available for o in occurrences] == [True, True]


@case("backend.scheduling.series.book_series")
def _book_series(me: Practice, other: Practice) -> None:
    name = "backend.scheduling.series.book_series"
    start = _bookable(me, other)
    before = _appointments(other)
    _refuses_their_provider_and_patient(name, me, other, first_start=start, count=2)
    assert _appointments(other) == before
    result = _call(name, me.patient_actor, provider_id=me.provider.id, first_start=start, count=2)
    assert {a.tenant_id for a in result.booked} == {me.tenant_id}
    assert _appointments(other) == before


@case("backend.scheduling.series.cancel_series")
def _cancel_series(me: Practice, other: Practice) -> None:
    start = _bookable(me, other)
    theirs = _call(
        "backend.scheduling.series.book_series",
        other.patient_actor,
        provider_id=other.provider.id,
        first_start=start,
        count=2,
    )
    before = _appointments(other)
    for actor in _all_actors(me):
        for scope in ("this", "following"):
            _missing_alike("backend.scheduling.series.cancel_series", actor, theirs.booked[0].id, scope=scope)
    assert _appointments(other) == before


# -- waitlist offers (backend/waitlist/offers.py) ---------------------------------------------------------


def _offers_eager() -> Any:
    """Run the after-commit cascade inline (the test settings would publish to a broker without a worker)."""
    import contextlib

    from backend.worker import celery_app

    @contextlib.contextmanager
    def eager() -> Any:
        before = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = True
        try:
            yield
        finally:
            celery_app.conf.task_always_eager = before

    return eager()


def _offer_in(p: Practice, *, due: bool = False) -> Any:
    """A pending invitation in practice `p` for a new any-time entry (its expiry in the past when `due`)."""
    from datetime import timedelta

    from backend.waitlist.models import WaitlistOffer
    from tests.factories import add_patient

    start = _bookable(p)
    entry = add_waitlist_entry(p, patient=add_patient(p, "Offered Olga"), windows=[])
    offer = _call("backend.waitlist.offers.invite_entry", p.admin, entry.id, start=start)
    if due:
        with UnitOfWork(p.system) as uow:
            uow.session.execute(
                update(WaitlistOffer).where(WaitlistOffer.id == offer.id)  # type: ignore[arg-type]
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )  # fmt: skip
            uow.commit()
    return offer


def _offer_rows(p: Practice) -> list[tuple[uuid.UUID, str]]:
    from backend.waitlist.models import WaitlistOffer

    return sorted((o.id, str(o.status)) for o in rows(p, WaitlistOffer))


@case("backend.waitlist.offers.offer_freed_slot")
def _offer_freed_slot(me: Practice, other: Practice) -> None:
    from tests.factories import add_patient

    name = "backend.waitlist.offers.offer_freed_slot"
    with _offers_eager():
        start = _bookable(me, other)
        mine = add_waitlist_entry(me, patient=add_patient(me, "Mine Any"), windows=[])
        add_waitlist_entry(other, patient=add_patient(other, "Theirs Any"), windows=[], urgency=4)
        before = (_offer_rows(other), _appointments(other))
        for actor in (me.admin, me.system):
            _missing_alike(name, actor, other.provider.id, at="provider_id", start=start)
        offer = _call(name, me.system, provider_id=me.provider.id, start=start)
        assert offer is not None and offer.entry_id == mine.id and offer.tenant_id == me.tenant_id
        assert (_offer_rows(other), _appointments(other)) == before


@case("backend.waitlist.offers.accept_offer")
def _accept_offer(me: Practice, other: Practice) -> None:
    with _offers_eager():
        theirs = _offer_in(other)
        before = (_offer_rows(other), _appointments(other))
        for actor in _all_actors(me):
            _like_missing("backend.waitlist.offers.accept_offer", actor, theirs.id)
        assert (_offer_rows(other), _appointments(other)) == before


@case("backend.waitlist.offers.decline_offer")
def _decline_offer(me: Practice, other: Practice) -> None:
    with _offers_eager():
        theirs = _offer_in(other)
        before = (_offer_rows(other), _appointments(other))
        for actor in _all_actors(me):
            _like_missing("backend.waitlist.offers.decline_offer", actor, theirs.id)
        assert (_offer_rows(other), _appointments(other)) == before


@case("backend.waitlist.offers.expire_due_offers")
def _expire_due_offers(me: Practice, other: Practice) -> None:
    with _offers_eager():
        theirs = _offer_in(other, due=True)
        mine = _offer_in(me, due=True)
        before = (_offer_rows(other), _appointments(other))
        assert _call("backend.waitlist.offers.expire_due_offers", me.system) == [mine.id]
        assert _call("backend.waitlist.offers.expire_due_offers", me.admin) == []
        assert (_offer_rows(other), _appointments(other)) == before
        assert (theirs.id, "pending") in _offer_rows(other)


@case("backend.waitlist.offers.promote_entry")
def _promote_entry(me: Practice, other: Practice) -> None:
    with _offers_eager():
        _bookable(me, other)
        before = (_offer_rows(other), _appointments(other))
        for actor in (me.admin, me.doctor, me.system):
            for theirs in other.extra["entries"]:
                _like_missing("backend.waitlist.offers.promote_entry", actor, theirs)
        with pytest.raises(PermissionDenied):
            _call("backend.waitlist.offers.promote_entry", me.patient_actor, next(iter(other.extra["entries"])))
        assert (_offer_rows(other), _appointments(other)) == before


@case("backend.waitlist.offers.invite_entry")
def _invite_entry(me: Practice, other: Practice) -> None:
    from tests.factories import add_patient

    name = "backend.waitlist.offers.invite_entry"
    with _offers_eager():
        start = _bookable(me, other)
        before = (_offer_rows(other), _appointments(other))
        mine = add_waitlist_entry(me, patient=add_patient(me, "Mine Invited"), windows=[])
        for actor in (me.admin, me.doctor, me.system):
            for theirs in other.extra["entries"]:
                _missing_alike(name, actor, theirs, start=start)
        for actor in (me.admin, me.system):
            _missing_alike(name, actor, other.provider.id, at="provider_id", entry_id=mine.id, start=start)
        assert (_offer_rows(other), _appointments(other)) == before
        offer = _call(name, me.admin, mine.id, start=start)
        assert offer.tenant_id == me.tenant_id and offer.provider_id == me.provider.id


@case("backend.waitlist.offers.patient_busy_times")
def _patient_busy_times(me: Practice, other: Practice) -> None:
    from datetime import timedelta

    from tests.factories import add_appointment, add_patient, local_start

    name = "backend.waitlist.offers.patient_busy_times"
    span = {"start": utcnow(), "end": utcnow() + timedelta(days=14)}
    for hour, theirs in enumerate(other.extra["entries"], start=11):
        add_appointment(other, local_start(3, hour), patient=_entry_patient(other, theirs))
    for actor in (me.admin, me.doctor, me.system):
        for theirs in other.extra["entries"]:
            _missing_alike(name, actor, theirs, **span)
    patient = add_patient(me, "Mine Busy")
    mine = add_waitlist_entry(me, patient=patient, windows=[])
    add_appointment(me, local_start(3, 10), patient=patient)
    assert [start for start, _ in _call(name, me.admin, mine.id, **span)] == [local_start(3, 10)]


def _entry_patient(p: Practice, entry_id: uuid.UUID) -> Any:
    from backend.identity.models import Patient
    from backend.waitlist.models import WaitlistEntry

    with UnitOfWork(p.system) as uow:
        entry = uow.session.get(WaitlistEntry, entry_id)
        assert entry is not None
        return uow.session.get(Patient, entry.patient_id)


@case("backend.waitlist.offers.list_offers")
def _list_offers(me: Practice, other: Practice) -> None:
    with _offers_eager():
        theirs = _offer_in(other)
        mine = _offer_in(me)
        for actor in _all_actors(me):
            seen = {o.id for o in _call("backend.waitlist.offers.list_offers", actor)}
            assert theirs.id not in seen
            assert seen == ({mine.id} if actor.role != Role.PATIENT else set())
            assert _call("backend.waitlist.offers.list_offers", actor, entry_id=theirs.entry_id) == []


# -- notification preferences, history and the outbox (backend/notifications/service.py) -------------------


def _notification_in(p: Practice, *, dead: bool = False) -> uuid.UUID:
    """A committed notification for the practice's patient about their appointment (dead-lettered if `dead`)."""
    from backend.notifications import outbox
    from backend.notifications.models import Notification, NotificationDelivery

    with _offers_eager(), UnitOfWork(p.system) as uow:
        (note,) = outbox.notify(p.system, uow, patient_id=p.patient.id, event_type="appointment_booked",
                                payload={"appointment_id": str(next(iter(p.extra["appointments"])))})  # fmt: skip
        uow.commit()
    if dead:
        with UnitOfWork(p.system) as uow:
            uow.session.execute(update(Notification).where(Notification.id == note.id)  # type: ignore[arg-type]
                                .values(status="dead", attempts=5))  # fmt: skip
            uow.session.execute(update(NotificationDelivery)
                                .where(NotificationDelivery.notification_id == note.id)  # type: ignore[arg-type]
                                .values(status="dead", attempts=5))  # fmt: skip
            uow.commit()
    return note.id


def _notification_rows(p: Practice) -> tuple[list[tuple[Any, ...]], ...]:
    from backend.notifications.models import Notification, NotificationDelivery, NotificationPreference

    notes = [(n.id, str(n.status), n.attempts, n.next_attempt_at) for n in rows(p, Notification)]
    ledger = [(d.notification_id, str(d.status), d.attempts, d.next_attempt_at) for d in rows(p, NotificationDelivery)]
    prefs = [(r.patient_id, r.email_opt_in, r.sms_opt_in, r.unsubscribed_at) for r in rows(p, NotificationPreference)]
    return sorted(notes), sorted(ledger), sorted(prefs)


@case("backend.notifications.service.get_preferences")
def _get_preferences(me: Practice, other: Practice) -> None:
    name = "backend.notifications.service.get_preferences"
    # The doctor may read me.patient: _populate gave them an appointment together.
    for actor in (me.admin, me.doctor, me.system, me.patient_actor):
        _like_missing(name, actor, other.patient.id)
        assert _call(name, actor, me.patient.id).patient_id == me.patient.id
    assert _call(name, me.patient_actor).patient_id == me.patient.id


@case("backend.notifications.service.update_preferences")
def _update_preferences(me: Practice, other: Practice) -> None:
    from backend.notifications.service import PreferencesUpdate

    name = "backend.notifications.service.update_preferences"
    update_ = PreferencesUpdate(email_opt_in=False, sms_opt_in=False, whatsapp_opt_in=False,
                                quiet_hours_start="21:00", quiet_hours_end="07:00")  # fmt: skip
    before = (_notification_rows(other), _snapshot(other))
    for actor in (me.admin, me.doctor, me.system):
        with pytest.raises(PermissionDenied):
            _call(name, actor, update_)
    view = _call(name, me.patient_actor, update_)
    assert (view.patient_id, view.email_opt_in, view.quiet_hours_start) == (me.patient.id, False, "21:00")
    assert (_notification_rows(other), _snapshot(other)) == before
    assert [r[0] for r in _notification_rows(me)[2]] == [me.patient.id]


@case("backend.notifications.preferences.set_language")
def _set_language(me: Practice, other: Practice) -> None:
    name = "backend.notifications.preferences.set_language"

    def locales(p: Practice) -> list[tuple[uuid.UUID, str]]:
        return sorted((pt.id, pt.locale) for pt in rows(p, Patient))

    before = (locales(other), _snapshot(other))
    for actor in (me.admin, me.doctor, me.system):
        with pytest.raises(PermissionDenied):
            _call(name, actor, "es")
    # A patient actor naming the other practice's patient still reaches only their own row in their own practice.
    stray = Actor(tenant_id=me.tenant.id, role=Role.PATIENT, user_id=me.patient_actor.user_id,
                  patient_id=other.patient.id)  # fmt: skip
    with pytest.raises(NotFound):
        _call(name, stray, "es")
    assert _call(name, me.patient_actor, "es") == "es"
    assert dict(locales(me))[me.patient.id] == "es"
    assert (locales(other), _snapshot(other)) == before


@case("backend.notifications.service.unsubscribe")
def _unsubscribe(me: Practice, other: Practice) -> None:
    name = "backend.notifications.service.unsubscribe"
    before = (_notification_rows(other), _snapshot(other))
    _missing_alike(name, me.system, other.patient.id, everything=True)
    for actor in (me.admin, me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor, me.patient.id)
    assert (_notification_rows(other), _snapshot(other)) == before
    assert _call(name, me.system, me.patient.id, everything=True).unsubscribed is True
    assert _notification_rows(other) == before[0]


@case("backend.notifications.service.list_notifications")
def _list_notifications(me: Practice, other: Practice) -> None:
    name = "backend.notifications.service.list_notifications"
    theirs = _notification_in(other, dead=True)
    mine = _notification_in(me)
    for actor in (me.admin, me.system, me.patient_actor):
        assert [v.id for v in _call(name, actor)] == [mine]
        assert all(v.id != theirs for v in _call(name, actor, status="dead"))
    for actor in (me.admin, me.system):
        assert _call(name, actor, patient_id=other.patient.id) == []
    _missing_alike(name, me.patient_actor, other.patient.id, at="patient_id")
    with pytest.raises(PermissionDenied):
        _call(name, me.doctor)


@case("backend.notifications.service.outbox_counts")
def _outbox_counts(me: Practice, other: Practice) -> None:
    name = "backend.notifications.service.outbox_counts"
    _notification_in(other, dead=True)
    _notification_in(other)
    _notification_in(me)
    for actor in (me.admin, me.system):
        counts = _call(name, actor)
        assert sum(counts.values()) == 1 and counts["dead"] == 0
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor)


@case("backend.notifications.service.read_message")
def _read_message(me: Practice, other: Practice) -> None:
    name = "backend.notifications.service.read_message"
    theirs = _notification_in(other)
    mine = _notification_in(me)
    for actor in (me.admin, me.system, me.patient_actor):
        _like_missing(name, actor, theirs)
        message = _call(name, actor, mine)
        assert message.notification.id == mine and other.tenant.name not in message.text
    for notification_id in (theirs, mine):
        with pytest.raises(PermissionDenied):
            _call(name, me.doctor, notification_id)


@case("backend.notifications.service.retry_notification")
def _retry_notification(me: Practice, other: Practice) -> None:
    name = "backend.notifications.service.retry_notification"
    theirs = _notification_in(other, dead=True)
    mine = _notification_in(me, dead=True)
    before = (_notification_rows(other), _snapshot(other))
    for actor in (me.admin, me.system):
        _like_missing(name, actor, theirs)
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor, theirs)
    assert (_notification_rows(other), _snapshot(other)) == before
    with _offers_eager():
        assert _call(name, me.admin, mine).status == "pending"
    assert (_notification_rows(other), _snapshot(other)) == before


# -- payments ------------------------------------------------------------------------------------------


def _fee_world(p: Practice) -> tuple[uuid.UUID, uuid.UUID]:
    """A fee policy the patient accepted, a card on file and one failed no-show fee: (policy id, payment id)."""
    from backend.payments.models import FeePolicy, Payment, PaymentMethod, PolicyAcceptance

    (appointment_id,) = p.extra["appointments"]
    payment_id = uuid.uuid4()
    with UnitOfWork(p.system) as uow:
        policy = FeePolicy(tenant_id=p.tenant_id, no_show_fee_minor=5000, policy_text=f"{p.tenant.name} fees.")
        uow.session.add(policy)
        uow.session.add(PaymentMethod(tenant_id=p.tenant_id, patient_id=p.patient.id, provider_customer_id="cus_x",
                                      provider_method_id=f"pm_{p.tenant_id}", brand="visa", last4="4242"))  # fmt: skip
        uow.session.add(Payment(id=payment_id, tenant_id=p.tenant_id, patient_id=p.patient.id,
                                appointment_id=appointment_id, kind="no_show_fee", status="failed", amount_minor=5000,
                                currency="usd", idempotency_key=f"payment:{payment_id}:1"))  # fmt: skip
        uow.flush()
        uow.session.add(PolicyAcceptance(tenant_id=p.tenant_id, patient_id=p.patient.id, policy_id=policy.id,
                                         policy_version=1))  # fmt: skip
        uow.commit()
        return policy.id, payment_id


def _payment_rows(p: Practice) -> list[tuple[Any, ...]]:
    from backend.payments.models import FeePolicy, Payment, PaymentMethod, PolicyAcceptance

    return [
        sorted((r.id, r.status, r.waive_reason) for r in rows(p, Payment)),
        sorted((r.id, r.version, r.no_show_fee_minor, r.policy_text) for r in rows(p, FeePolicy)),
        sorted((r.id, r.removed_at) for r in rows(p, PaymentMethod)),
        sorted(r.id for r in rows(p, PolicyAcceptance)),
    ]


@case("backend.payments.service.get_fee_policy")
def _get_fee_policy(me: Practice, other: Practice) -> None:
    name = "backend.payments.service.get_fee_policy"
    _fee_world(other)
    for actor in _all_actors(me):
        assert _call(name, actor).source == "none"
        with pytest.raises(NotFound):
            _call(name, actor, clinic_id=other.clinic.id)


@case("backend.payments.service.update_fee_policy")
def _update_fee_policy(me: Practice, other: Practice) -> None:
    name = "backend.payments.service.update_fee_policy"
    _fee_world(other)
    before = (_payment_rows(other), _snapshot(other))
    with pytest.raises(NotFound):
        _call(name, me.admin, clinic_id=other.clinic.id, changes={"no_show_fee_minor": 1})
    assert _call(name, me.admin, changes={"no_show_fee_minor": 700}).no_show_fee_minor == 700
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor, changes={"no_show_fee_minor": 1})
    assert (_payment_rows(other), _snapshot(other)) == before


@case("backend.payments.service.accept_fee_policy")
def _accept_fee_policy(me: Practice, other: Practice) -> None:
    name = "backend.payments.service.accept_fee_policy"
    theirs, _ = _fee_world(other)
    mine, _ = _fee_world(me)
    before = (_payment_rows(other), _snapshot(other))
    with pytest.raises(NotFound):
        _call(name, me.patient_actor, policy_id=theirs, version=1)
    assert _call(name, me.patient_actor, policy_id=mine, version=1).accepted_at is not None
    with pytest.raises(PermissionDenied):
        _call(name, me.admin, policy_id=mine, version=1)
    assert (_payment_rows(other), _snapshot(other)) == before


@case("backend.payments.service.list_payment_methods")
def _list_payment_methods(me: Practice, other: Practice) -> None:
    name = "backend.payments.service.list_payment_methods"
    _fee_world(other)
    assert _call(name, me.patient_actor) == []
    with pytest.raises(PermissionDenied):
        _call(name, me.admin)


@case("backend.payments.service.start_card_setup")
def _start_card_setup(me: Practice, other: Practice) -> None:
    name = "backend.payments.service.start_card_setup"
    _fee_world(other)
    before = (_payment_rows(other), _snapshot(other))
    setup = _call(name, me.patient_actor)
    assert setup.mode == "fake" and setup.setup_intent_id.startswith("seti_")
    with pytest.raises(PermissionDenied):
        _call(name, me.doctor)
    assert (_payment_rows(other), _snapshot(other)) == before


@case("backend.payments.service.confirm_card_setup")
def _confirm_card_setup(me: Practice, other: Practice) -> None:
    name = "backend.payments.service.confirm_card_setup"
    theirs = _call("backend.payments.service.start_card_setup", other.patient_actor).setup_intent_id
    before = (_payment_rows(other), _snapshot(other))
    with pytest.raises(NotFound):  # a SetupIntent of another practice's patient saves nothing here
        _call(name, me.patient_actor, setup_intent_id=theirs)
    assert (_payment_rows(other), _snapshot(other)) == before
    mine = _call("backend.payments.service.start_card_setup", me.patient_actor).setup_intent_id
    assert _call(name, me.patient_actor, setup_intent_id=mine).last4 == "4242"


@case("backend.payments.service.check_card_to_book")
def _check_card_to_book(me: Practice, other: Practice) -> None:
    name = "backend.payments.service.check_card_to_book"
    _fee_world(other)  # their patient has a card: it must not count for ours
    _call("backend.payments.service.update_fee_policy", me.admin, changes={"card_required": True})
    with pytest.raises(ValidationFailed):
        _call(name, me.patient_actor, clinic_id=me.clinic.id)
    _call(name, me.admin, clinic_id=me.clinic.id)  # staff booking for a patient are not held to it


@case("backend.payments.service.list_payments")
def _list_payments(me: Practice, other: Practice) -> None:
    name = "backend.payments.service.list_payments"
    _fee_world(other)
    _, mine = _fee_world(me)
    for actor in (me.admin, me.patient_actor, me.doctor):
        assert [v.id for v in _call(name, actor)] == [mine]


@case("backend.payments.service.export_payments_csv")
def _export_payments_csv(me: Practice, other: Practice) -> None:
    name = "backend.payments.service.export_payments_csv"
    _, theirs = _fee_world(other)
    _, mine = _fee_world(me)
    body = _call(name, me.admin)
    assert str(mine) in body and str(theirs) not in body and other.patient.full_name not in body
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor)


@case("backend.payments.service.waive_payment")
def _waive_payment(me: Practice, other: Practice) -> None:
    name = "backend.payments.service.waive_payment"
    _, theirs = _fee_world(other)
    _, mine = _fee_world(me)
    before = (_payment_rows(other), _snapshot(other))
    for actor in (me.admin, me.doctor):
        _like_missing(name, actor, theirs)
    with pytest.raises(PermissionDenied):
        _call(name, me.patient_actor, mine)
    assert _call(name, me.admin, mine, reason="first visit").status == "waived"
    assert (_payment_rows(other), _snapshot(other)) == before


@case("backend.payments.service.refund_payment")
def _refund_payment(me: Practice, other: Practice) -> None:
    from backend.payments.models import Payment

    name = "backend.payments.service.refund_payment"
    _, theirs = _fee_world(other)
    _, mine = _fee_world(me)
    for p, payment_id in ((other, theirs), (me, mine)):
        with UnitOfWork(p.system) as uow:
            uow.session.execute(
                update(Payment)
                .where(Payment.id == payment_id)  # type: ignore[arg-type]
                .values(status="succeeded", provider_payment_intent_id=f"pi_fake_{payment_id.hex}")
            )
            uow.commit()
    before = (_payment_rows(other), _snapshot(other))
    _like_missing(name, me.admin, theirs)
    for actor in (me.doctor, me.patient_actor):
        with pytest.raises(PermissionDenied):
            _call(name, actor, mine)
    assert _call(name, me.admin, mine).status == "refunded"
    assert (_payment_rows(other), _snapshot(other)) == before

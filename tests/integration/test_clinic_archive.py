"""Archiving a clinic safely (issue 10 item 5): the preview of what it affects, the admin's choice for the
waitlist (move to another open clinic, or close and notify), appointments kept, nothing changed on a refusal,
and no blank clinic left behind in search or the join form."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import Code, Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import ProviderClinic
from backend.notifications.models import Notification
from backend.scheduling import search
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.tenancy import service as tenancy
from backend.tenancy.models import Clinic, ClinicUpdate
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
from tests.factories import (
    Practice,
    add_appointment,
    add_patient,
    add_provider,
    add_waitlist_entry,
    bearer,
    call,
    future,
    make_practice,
    rows,
)
from tests.integration.test_offers import (  # noqa: F401  (eager_celery is an autouse fixture)
    cancel,
    eager_celery,
    no_quiet_hours,
    pending_offers,
    scene_with_three,
    slot_at,
)

CLINICS = "/api/v1/clinics"


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    return p


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c



def clinic_row(p: Practice, clinic_id: uuid.UUID) -> Clinic:
    (row,) = rows(p, Clinic, id=clinic_id)
    return row


def entries(p: Practice) -> dict[uuid.UUID, WaitlistEntry]:
    return {e.id: e for e in rows(p, WaitlistEntry)}


def state(p: Practice) -> Any:
    """Everything an archive could change."""
    return (
        sorted((c.id, c.archived_at) for c in rows(p, Clinic)),
        sorted((e.id, e.status, e.clinic_id, e.provider_id, e.version) for e in rows(p, WaitlistEntry)),
        sorted((o.id, o.status) for o in rows(p, WaitlistOffer)),
        sorted((a.id, a.status) for a in rows(p, Appointment)),
        len(rows(p, AuditEvent)),
        len(rows(p, Notification)),
    )


def scene(p: Practice) -> dict[str, Any]:
    """At the Downtown clinic: a booked appointment two days ahead, a live offer to Una (after a cancellation),
    two more entries waiting for the doctor, and one entry for any provider."""
    start = slot_at()
    booked, people = scene_with_three(p, start)
    kept = add_appointment(p, future(days=5, hour=15), patient=add_patient(p, "Kim Kept"))
    cancel(p, booked)
    (offer,) = pending_offers(p)
    anyone = add_waitlist_entry(p, patient=add_patient(p, "Ari Any"), any_provider=True)
    return {"kept": kept, "offer": offer, "people": people, "anyone": anyone}


# -- the preview ---------------------------------------------------------------------------------------------


def test_preview_counts_what_archiving_affects(harbor: Practice) -> None:
    s = scene(harbor)
    preview = call(harbor.admin, tenancy.preview_archive, harbor.clinic.id)
    assert (preview.name, preview.archived) == (harbor.clinic.name, False)
    assert preview.upcoming_appointments == 1  # the kept one (the cancelled one is not upcoming)
    assert (preview.active_entries, preview.offered_entries) == (4, 1)
    (target,) = preview.move_targets
    # Three entries wait for the doctor, who does not work Uptown; the fourth waits for anyone.
    assert (target.clinic_id, target.entries_losing_provider) == (harbor.clinic2.id, 3)
    assert s["kept"].id in {a.id for a in rows(harbor, Appointment, status=AppointmentStatus.BOOKED)}


@pytest.mark.parametrize("role", ["doctor", "patient_actor"])
def test_only_admins_preview_and_archive(harbor: Practice, role: str) -> None:
    actor = getattr(harbor, role)
    with pytest.raises(PermissionDenied):
        call(actor, tenancy.preview_archive, harbor.clinic.id)
    with pytest.raises(PermissionDenied):
        call(actor, tenancy.archive_clinic, harbor.clinic.id, waitlist="close")
    assert clinic_row(harbor, harbor.clinic.id).archived_at is None


# -- refusals change nothing ---------------------------------------------------------------------------------


def test_archiving_with_waiting_patients_and_no_choice_is_refused_and_changes_nothing(harbor: Practice) -> None:
    scene(harbor)
    before = state(harbor)
    with pytest.raises(Conflict) as refused:
        call(harbor.admin, tenancy.archive_clinic, harbor.clinic.id)
    assert refused.value.code == Code.CLINIC_ARCHIVE_CHOICE_REQUIRED
    assert refused.value.params == {"active_entries": 4, "upcoming_appointments": 1}
    assert "4 active waitlist entries" in refused.value.message
    # The old one-click path (PATCH archived=true) is refused the same way.
    with pytest.raises(Conflict) as patched:
        call(harbor.admin, tenancy.update_clinic, harbor.clinic.id, ClinicUpdate(archived=True))
    assert patched.value.code == Code.CLINIC_ARCHIVE_CHOICE_REQUIRED
    assert state(harbor) == before


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"waitlist": "move"}, ValidationFailed, "move_to_clinic_id"),
        ({"waitlist": "move", "move_to_clinic_id": "self"}, ValidationFailed, "move_to_clinic_id"),
        ({"waitlist": "move", "move_to_clinic_id": "archived"}, ValidationFailed, "move_to_clinic_id"),
        ({"waitlist": "close", "move_to_clinic_id": "clinic2"}, ValidationFailed, "move_to_clinic_id"),
        ({"waitlist": "sideways"}, ValidationFailed, "waitlist"),
        ({"waitlist": "move", "move_to_clinic_id": "missing"}, NotFound, None),
    ],
)
def test_bad_choices_are_refused_and_change_nothing(harbor: Practice, kwargs: dict, error: type, field: str) -> None:
    scene(harbor)
    with UnitOfWork(harbor.system) as uow:
        shut = Clinic(tenant_id=harbor.tenant_id, name="Harbor Shut", timezone="UTC", archived_at=future(days=-1))
        uow.session.add(shut)
        uow.commit()
    ids = {"self": harbor.clinic.id, "archived": shut.id, "clinic2": harbor.clinic2.id, "missing": uuid.uuid4()}
    if "move_to_clinic_id" in kwargs:
        kwargs = {**kwargs, "move_to_clinic_id": ids[kwargs["move_to_clinic_id"]]}
    before = state(harbor)
    with pytest.raises(error) as refused:
        call(harbor.admin, tenancy.archive_clinic, harbor.clinic.id, **kwargs)
    if field is not None:
        assert refused.value.field == field
    assert state(harbor) == before


def test_another_practice_clinic_is_refused_like_a_missing_one(harbor: Practice, summit: Practice) -> None:
    scene(harbor)
    before = state(harbor), state(summit)
    for foreign in (summit.clinic.id, uuid.uuid4()):
        with pytest.raises(NotFound) as as_target:
            call(harbor.admin, tenancy.archive_clinic, harbor.clinic.id, waitlist="move", move_to_clinic_id=foreign)
        assert as_target.value.message == "clinic not found"
        with pytest.raises(NotFound):
            call(harbor.admin, tenancy.archive_clinic, foreign, waitlist="close")
        with pytest.raises(NotFound):
            call(harbor.admin, tenancy.preview_archive, foreign)
    assert (state(harbor), state(summit)) == before


# -- move ----------------------------------------------------------------------------------------------------


def test_move_keeps_appointments_moves_entries_withdraws_the_offer_and_notifies(harbor: Practice) -> None:
    s = scene(harbor)
    offer = s["offer"]
    # Sam already waits for anyone Uptown as well: his entry there is where he waits from now on.
    sam = s["people"][2][0]
    sam_uptown = add_waitlist_entry(harbor, patient=sam, any_provider=True, clinic=harbor.clinic2)

    result = call(harbor.admin, tenancy.archive_clinic, harbor.clinic.id, waitlist="move",
                  move_to_clinic_id=harbor.clinic2.id)  # fmt: skip

    assert (result.appointments_kept, result.entries_moved, result.entries_closed) == (1, 4, 0)
    assert clinic_row(harbor, harbor.clinic.id).archived_at is not None
    (kept,) = rows(harbor, Appointment, id=s["kept"].id)
    assert kept.status == AppointmentStatus.BOOKED and kept.clinic_id == harbor.clinic.id
    # The live offer is withdrawn and its hold released; no new offer is made at the archived clinic.
    (withdrawn,) = rows(harbor, WaitlistOffer, id=offer.id)
    assert withdrawn.status == OfferStatus.WITHDRAWN
    (hold,) = rows(harbor, Appointment, id=offer.appointment_id)
    assert hold.status == AppointmentStatus.CANCELLED
    assert pending_offers(harbor) == []

    now = entries(harbor)
    una, pia = s["people"][0][1].id, s["people"][1][1].id
    for moved_id in (una, pia, s["anyone"].id):
        moved = now[moved_id]
        assert (moved.status, moved.clinic_id) == (EntryStatus.WAITING, harbor.clinic2.id)
        assert moved.timezone == harbor.clinic2.timezone
        # The doctor does not work Uptown: the entry now waits for any provider there.
        assert moved.provider_id is None
    assert now[s["people"][2][1].id].status == EntryStatus.REMOVED  # merged into Sam's entry Uptown
    assert now[sam_uptown.id].status == EntryStatus.WAITING

    moved_notes = rows(harbor, Notification, event_type="waitlist_entry_moved")
    assert sorted(str(n.patient_id) for n in moved_notes) == sorted(
        str(pid) for pid in (s["people"][0][0].id, s["people"][1][0].id, sam.id, s["anyone"].patient_id)
    )
    assert rows(harbor, Notification, event_type="waitlist_entry_closed") == []
    (archived,) = rows(harbor, AuditEvent, action="clinic.archived")
    assert archived.data == {"upcoming_appointments_kept": 1, "entries_moved": 4, "entries_closed": 0,
                             "waitlist": "move", "move_to_clinic_id": str(harbor.clinic2.id)}  # fmt: skip
    assert len(rows(harbor, AuditEvent, action="waitlist.moved")) == 3
    (merged,) = rows(harbor, AuditEvent, action="waitlist.removed", entity_id=s["people"][2][1].id)
    assert merged.data["merged_into_clinic_id"] == str(harbor.clinic2.id)
    assert "waitlist.offer_withdrawn" in {e.action for e in rows(harbor, AuditEvent, entity_id=offer.id)}


def test_move_keeps_the_provider_who_works_at_the_destination(harbor: Practice) -> None:
    entry = add_waitlist_entry(harbor)
    with UnitOfWork(harbor.system) as uow:
        uow.session.add(ProviderClinic(tenant_id=harbor.tenant_id, provider_id=harbor.provider.id,
                                       clinic_id=harbor.clinic2.id))  # fmt: skip
        uow.commit()
    preview = call(harbor.admin, tenancy.preview_archive, harbor.clinic.id)
    assert preview.move_targets[0].entries_losing_provider == 0
    call(harbor.admin, tenancy.archive_clinic, harbor.clinic.id, waitlist="move", move_to_clinic_id=harbor.clinic2.id)
    moved = entries(harbor)[entry.id]
    assert (moved.clinic_id, moved.provider_id) == (harbor.clinic2.id, harbor.provider.id)


# -- close ---------------------------------------------------------------------------------------------------


def test_close_removes_the_entries_and_notifies_the_patients(harbor: Practice) -> None:
    s = scene(harbor)
    result = call(harbor.admin, tenancy.archive_clinic, harbor.clinic.id, waitlist="close")
    assert (result.appointments_kept, result.entries_moved, result.entries_closed) == (1, 0, 4)
    assert {e.status for e in rows(harbor, WaitlistEntry)} == {EntryStatus.REMOVED}
    assert pending_offers(harbor) == []
    closed = rows(harbor, Notification, event_type="waitlist_entry_closed")
    assert len({n.patient_id for n in closed}) == 4
    assert all(n.payload["clinic_id"] == str(harbor.clinic.id) for n in closed)
    removed = rows(harbor, AuditEvent, action="waitlist.removed")
    assert len(removed) == 4 and {e.data["reason"] for e in removed} == {"clinic_archived"}
    (kept,) = rows(harbor, Appointment, id=s["kept"].id)
    assert kept.status == AppointmentStatus.BOOKED


def test_a_clinic_with_no_waiting_patient_archives_without_a_choice(harbor: Practice) -> None:
    add_appointment(harbor, future(days=3))
    result = call(harbor.admin, tenancy.archive_clinic, harbor.clinic.id)
    assert (result.appointments_kept, result.entries_moved, result.entries_closed) == (1, 0, 0)
    with pytest.raises(Conflict) as again:
        call(harbor.admin, tenancy.archive_clinic, harbor.clinic.id, waitlist="close")
    assert again.value.code == Code.CLINIC_ALREADY_ARCHIVED


# -- no blank clinic afterwards --------------------------------------------------------------------------------


def test_a_provider_left_without_an_open_clinic_leaves_search(harbor: Practice) -> None:
    both = add_provider(harbor, "Bo Both")
    with UnitOfWork(harbor.system) as uow:
        uow.session.add(ProviderClinic(tenant_id=harbor.tenant_id, provider_id=both.id, clinic_id=harbor.clinic2.id))
        uow.commit()
    before = {c.id: c for c in call(harbor.patient_actor, search.search_providers)}
    assert harbor.provider.id in before and both.id in before
    call(harbor.admin, tenancy.archive_clinic, harbor.clinic.id)
    after = {c.id: c for c in call(harbor.patient_actor, search.search_providers)}
    # The doctor worked only Downtown: no card with a blank clinic (and so no join form for nowhere).
    assert harbor.provider.id not in after
    assert [c["name"] for c in after[both.id].clinics] == [harbor.clinic2.name]
    assert all(card.clinics for card in after.values())


# -- REST ----------------------------------------------------------------------------------------------------


def test_rest_preview_refusal_and_archive(client: TestClient, harbor: Practice, summit: Practice) -> None:
    s = scene(harbor)
    admin = bearer(client, harbor.emails["admin"])
    doctor_auth = bearer(client, harbor.emails["doctor"])  # signing in is audited: before the snapshot
    url = f"{CLINICS}/{harbor.clinic.id}"

    preview = client.get(f"{url}/archive-preview", headers=admin)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["upcoming_appointments"], body["active_entries"], body["offered_entries"]) == (1, 4, 1)
    assert [t["clinic_id"] for t in body["move_targets"]] == [str(harbor.clinic2.id)]

    before = state(harbor)
    for refused in (
        client.patch(url, json={"archived": True}, headers=admin),
        client.post(f"{url}/archive", json={}, headers=admin),
    ):
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == Code.CLINIC_ARCHIVE_CHOICE_REQUIRED
    bad = client.post(f"{url}/archive", json={"waitlist": "move"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["code"] == Code.CLINIC_ARCHIVE_TARGET_INVALID
    foreign = client.post(f"{url}/archive", json={"waitlist": "move", "move_to_clinic_id": str(summit.clinic.id)},
                          headers=admin)  # fmt: skip
    missing = client.post(f"{url}/archive", json={"waitlist": "move", "move_to_clinic_id": str(uuid.uuid4())},
                          headers=admin)  # fmt: skip
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"]
    doctor = client.post(f"{url}/archive", json={"waitlist": "close"}, headers=doctor_auth)
    assert doctor.status_code == 403
    assert state(harbor) == before

    done = client.post(
        f"{url}/archive", json={"waitlist": "move", "move_to_clinic_id": str(harbor.clinic2.id)}, headers=admin
    )
    assert done.status_code == 200, done.text
    assert done.json()["clinic"]["archived"] is True
    assert (done.json()["appointments_kept"], done.json()["entries_moved"], done.json()["entries_closed"]) == (1, 4, 0)
    (kept,) = rows(harbor, Appointment, id=s["kept"].id)
    assert kept.status == AppointmentStatus.BOOKED
    again = client.post(f"{url}/archive", json={"waitlist": "close"}, headers=admin)
    assert again.status_code == 409 and again.json()["code"] == Code.CLINIC_ALREADY_ARCHIVED

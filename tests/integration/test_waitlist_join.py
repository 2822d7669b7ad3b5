"""Joining, leaving and confirming waitlist entries; limits, the burst-safe counters, ranking and visibility."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.identity.service import issue_token
from backend.redis_client import get_redis
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from backend.waitlist import counters
from backend.waitlist import service as waitlist
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
from backend.waitlist.service import JoinRequest
from tests.factories import (
    Practice,
    add_appointment,
    add_patient,
    add_provider,
    add_user,
    add_waitlist_entry,
    future,
    make_practice,
    rows,
)


@pytest.fixture
def p(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


def run(actor: Actor, fn: Any, *args: Any, **kwargs: Any) -> Any:
    with UnitOfWork(actor) as uow:
        result = fn(actor, uow, *args, **kwargs)
        uow.commit()
        return result


def join(p: Practice, actor: Actor | None = None, **fields: Any) -> WaitlistEntry:
    fields.setdefault("clinic_id", p.clinic.id)
    fields.setdefault("provider_id", p.provider.id)
    return run(actor or p.patient_actor, waitlist.join_waitlist, JoinRequest(**fields))  # type: ignore[no-any-return]


def set_policy(p: Practice, **changes: Any) -> None:
    run(p.admin, waitlist.put_waitlist_policy, None, changes)


def patient_actor(p: Practice, name: str) -> Actor:
    patient = add_patient(p, name)
    return Actor(tenant_id=p.tenant_id, role=Role.PATIENT, user_id=uuid.uuid4(), patient_id=patient.id)


def counter(p: Practice, kind: str, obj_id: uuid.UUID) -> int | None:
    return counters.current(p.tenant_id, kind, obj_id)


# -- joining -------------------------------------------------------------------------------------------


def test_join_happy_path_writes_entry_audit_and_counters(p: Practice) -> None:
    windows = [{"weekday": 1, "start": "09:00:00", "end": "12:30"}, {"weekday": 3, "start": "14:00", "end": "17:00"}]
    entry = join(p, windows=windows, modality="telehealth", urgency=3, reason="panic attacks at night")
    assert entry.status == EntryStatus.WAITING and entry.patient_id == p.patient.id
    assert entry.timezone == "America/New_York"  # the clinic's zone
    assert entry.preferred_windows[0] == {"weekday": 1, "start": "09:00", "end": "12:30"}
    assert entry.expires_at is not None
    assert timedelta(days=89) < entry.expires_at - utcnow() <= timedelta(days=90)
    assert entry.target_key.endswith("|modality:telehealth")
    (event,) = rows(p, AuditEvent, action="waitlist.joined")
    assert event.entity_id == entry.id and event.actor_role == "patient"
    assert "panic" not in str(event.data)  # the reason is never audited
    assert set(event.data) == {"patient_id", "clinic_id", "provider_id", "by_role"}
    assert counter(p, "provider", p.provider.id) == 1 and counter(p, "clinic", p.clinic.id) == 1


def test_staff_join_for_a_patient_and_may_mark_urgent(p: Practice) -> None:
    other = add_patient(p, "Oscar Other")
    entry = join(p, p.doctor, patient_id=other.id, urgency=4)
    assert entry.patient_id == other.id and entry.urgency == 4
    with pytest.raises(ValidationFailed, match="patient_id is required"):
        join(p, p.admin, modality="in_person")
    with pytest.raises(NotFound):
        join(p, p.admin, patient_id=uuid.uuid4())


def test_patient_joins_for_themself_only(p: Practice) -> None:
    other = add_patient(p, "Oscar Other")
    with pytest.raises(PermissionDenied):
        join(p, patient_id=other.id)
    assert rows(p, WaitlistEntry) == []


def _archive(p: Practice) -> None:
    from backend.tenancy.models import Clinic

    with UnitOfWork(p.system) as uow:
        clinic = uow.session.get(Clinic, p.clinic2.id)
        assert clinic is not None
        clinic.archived_at = utcnow()
        uow.commit()


MONDAY_MORNING = {"weekday": 0, "start": "09:00", "end": "10:00"}
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"provider_id": "clinic2"}, "provider does not work at this clinic"),
    ({"modality": "carrier pigeon"}, "modality must be one of"),
    ({"specialty": "dentistry"}, "this provider does not offer dentistry"),
    ({"provider_id": None, "specialty": "dentistry"}, "no provider at this clinic offers dentistry"),
    ({"windows": [MONDAY_MORNING, {"weekday": 2, "start": "11:00", "end": "10:00"}]}, "window 2: a window must end"),
    ({"windows": [{"weekday": 7, "start": "09:00", "end": "10:00"}]}, "window 1: weekday must be 0"),
    ({"windows": [{"weekday": 1, "start": "9am", "end": "10:00"}]}, "window 1: "),
    ({"windows": [{"weekday": 1, "end": "10:00"}]}, "window 1: missing start"),
    ({"windows": [{"weekday": d % 7, "start": "09:00", "end": "10:00"} for d in range(15)]}, "at most 14 windows"),
    ({"earliest_date": "+5", "latest_date": "+2"}, "earliest_date must not be after latest_date"),
    ({"latest_date": "-2"}, "latest_date is in the past"),
    ({"urgency": 0}, "urgency must be 1"),
    ({"urgency": 5}, "urgency must be 1"),
    ({"urgency": 4}, "urgency 4 (urgent) is set by the practice"),
    ({"reason": "x" * 501}, "reason must have at most 500"),
    ({"clinic_id": "clinic2"}, "archived"),
]


# The refusals the join page words on its own carry a specific code; the rest the class default.
INVALID_CODES = {
    "window 2: a window must end": "waitlist.window_invalid",
    "window 1: weekday must be 0": "waitlist.window_invalid",
    "window 1: ": "waitlist.window_invalid",
    "window 1: missing start": "waitlist.window_invalid",
    "earliest_date must not be after latest_date": "waitlist.dates_reversed",
    "latest_date is in the past": "waitlist.latest_date_past",
    "reason must have at most 500": "waitlist.reason_too_long",
}


@pytest.mark.parametrize(("fields", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_join_is_refused_and_writes_nothing(p: Practice, fields: dict[str, Any], message: str) -> None:
    _archive(p)
    today = utcnow().date()
    resolved = dict(fields)
    for name, value in fields.items():
        if value == "clinic2":
            resolved[name] = p.clinic2.id if name == "clinic_id" else add_provider(p, "Elsewhere", clinic=p.clinic2).id
        if isinstance(value, str) and name.endswith("_date"):
            resolved[name] = today + timedelta(days=int(value))
    with pytest.raises(ValidationFailed) as refused:
        join(p, **resolved)
    assert message in refused.value.message
    assert refused.value.status_code == 422
    assert refused.value.code == INVALID_CODES.get(message, "validation_failed")
    assert rows(p, WaitlistEntry) == [] and rows(p, AuditEvent) == []
    assert counter(p, "provider", p.provider.id) in (None, 0)


def test_unknown_clinic_or_provider_is_not_found(p: Practice) -> None:
    with pytest.raises(NotFound, match="clinic"):
        join(p, clinic_id=uuid.uuid4())
    with pytest.raises(NotFound, match="provider"):
        join(p, provider_id=uuid.uuid4())


def test_duplicate_active_entry_is_a_conflict(p: Practice) -> None:
    join(p, specialty="Psychiatry")
    with pytest.raises(Conflict, match="You are already on this waitlist") as duplicate:
        join(p, specialty="psychiatry ")  # the same target, spelled differently
    assert duplicate.value.code == "waitlist.already_on"
    assert len(rows(p, WaitlistEntry)) == 1
    assert counter(p, "provider", p.provider.id) == 1  # the refused join gave its place back
    join(p, modality="telehealth")  # another target is fine


def test_duplicate_caught_by_the_unique_index_is_a_conflict_too(p: Practice, monkeypatch: pytest.MonkeyPatch) -> None:
    join(p)
    monkeypatch.setattr(waitlist, "_active_count", lambda *_a, **_k: 0)  # as if a racing join had not committed yet
    with pytest.raises(Conflict, match="You are already on this waitlist"):
        join(p)
    assert len(rows(p, WaitlistEntry)) == 1
    assert counter(p, "provider", p.provider.id) == 1


def test_per_patient_limit(p: Practice) -> None:
    set_policy(p, max_entries_per_patient=2)
    join(p)
    join(p, provider_id=None)
    with pytest.raises(ValidationFailed, match=r"max_entries_per_patient \(2\) reached") as full:
        join(p, modality="telehealth")
    assert (full.value.code, full.value.params) == ("waitlist.max_entries_per_patient", {"limit": 2})
    # Ended entries do not count.
    add_waitlist_entry(p, modality="in_person", status=EntryStatus.CANCELLED)
    assert len(rows(p, WaitlistEntry)) == 3


def test_per_provider_and_per_clinic_limits(p: Practice) -> None:
    set_policy(p, max_active_per_provider=2, max_active_per_clinic=3)
    first, second, third, fourth = (patient_actor(p, f"P{i}") for i in range(4))
    join(p, first)
    join(p, second)
    with pytest.raises(ValidationFailed, match=r"max_active_per_provider \(2\) reached for this provider") as full:
        join(p, third)
    assert full.value.code == "waitlist.max_active_per_provider"
    join(p, third, provider_id=None)
    with pytest.raises(ValidationFailed, match=r"max_active_per_clinic \(3\) reached") as full:
        join(p, fourth, provider_id=None)
    assert full.value.code == "waitlist.max_active_per_clinic"
    assert counter(p, "provider", p.provider.id) == 2 and counter(p, "clinic", p.clinic.id) == 3


def test_limits_hold_without_redis(p: Practice, monkeypatch: pytest.MonkeyPatch) -> None:
    set_policy(p, max_active_per_provider=1)
    monkeypatch.setattr(get_settings(), "redis_url", None)
    join(p)
    with pytest.raises(ValidationFailed, match="max_active_per_provider"):
        join(p, patient_actor(p, "Second"))
    assert len(rows(p, WaitlistEntry)) == 1


def test_rolled_back_join_gives_its_place_back(p: Practice) -> None:
    with UnitOfWork(p.patient_actor) as uow:
        waitlist.join_waitlist(p.patient_actor, uow, JoinRequest(clinic_id=p.clinic.id, provider_id=p.provider.id))
        assert counter(p, "provider", p.provider.id) == 1
        # no commit
    assert counter(p, "provider", p.provider.id) == 0
    assert rows(p, WaitlistEntry) == []


def test_missing_counter_is_seeded_from_the_database_and_reconcile_recounts(p: Practice) -> None:
    for i in range(3):
        add_waitlist_entry(p, patient=add_patient(p, f"Seed {i}"))  # written around the counters
    add_waitlist_entry(p, patient=add_patient(p, "Gone"), status=EntryStatus.CANCELLED)
    get_redis().delete(counters.key(p.tenant_id, "provider", p.provider.id))
    join(p)
    assert counter(p, "provider", p.provider.id) == 4  # three from the database, plus this join
    get_redis().set(counters.key(p.tenant_id, "provider", p.provider.id), 99)
    get_redis().set(counters.key(p.tenant_id, "provider", uuid.uuid4()), 7)  # nothing behind it
    values = counters.reconcile(p.tenant_id)
    assert counter(p, "provider", p.provider.id) == 4 and counter(p, "clinic", p.clinic.id) == 4
    assert set(values) == {
        counters.key(p.tenant_id, "provider", p.provider.id),
        counters.key(p.tenant_id, "clinic", p.clinic.id),
    }
    assert len(list(get_redis().scan_iter(f"clinic:{p.tenant_id}:waitlist:active:*"))) == 2


# -- the burst -----------------------------------------------------------------------------------------

CLIENTS, LIMIT = 20, 5




def test_burst_of_joins_admits_exactly_the_provider_limit(p: Practice, base_url: str) -> None:
    set_policy(p, max_active_per_provider=LIMIT)
    headers = []
    for i in range(CLIENTS):
        patient = add_patient(p, f"Racer {i:02d}")
        user = add_user(p, f"racer{i:02d}@harbor.test", Role.PATIENT, patient_id=patient.id)
        actor = Actor(tenant_id=p.tenant_id, role=Role.PATIENT, user_id=user.id, patient_id=patient.id)
        headers.append({"Authorization": f"Bearer {issue_token(actor)[0]}"})
    clients = [httpx.Client(base_url=base_url, timeout=60) for _ in range(CLIENTS)]
    for client in clients:
        assert client.get("/api/health").status_code == 200
    barrier = threading.Barrier(CLIENTS)
    body = {"clinic_id": str(p.clinic.id), "provider_id": str(p.provider.id)}

    def one(i: int) -> tuple[int, str]:
        barrier.wait(timeout=30)
        response = clients[i].post("/api/v1/waitlists", json=body, headers=headers[i])
        return response.status_code, response.json().get("detail", "")

    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            results = list(pool.map(one, range(CLIENTS)))
    finally:
        for client in clients:
            client.close()
    codes = Counter(code for code, _ in results)
    assert codes == {201: LIMIT, 422: CLIENTS - LIMIT}, results
    assert {d for c, d in results if c == 422} == {f"max_active_per_provider ({LIMIT}) reached for this provider"}
    active = [e for e in rows(p, WaitlistEntry) if e.status == EntryStatus.WAITING]
    assert len(active) == LIMIT
    assert (
        counter(p, "provider", p.provider.id)
        == LIMIT
        == counters.reconcile(p.tenant_id)[counters.key(p.tenant_id, "provider", p.provider.id)]
    )
    assert counter(p, "clinic", p.clinic.id) == LIMIT


# -- leaving, removing, confirming ---------------------------------------------------------------------


def test_patient_leaves_and_staff_remove(p: Practice) -> None:
    mine = join(p)
    other = join(p, p.admin, patient_id=add_patient(p, "Oscar").id)
    left = run(p.patient_actor, waitlist.leave_waitlist, mine.id)
    assert left.status == EntryStatus.CANCELLED
    removed = run(p.doctor, waitlist.leave_waitlist, other.id)
    assert removed.status == EntryStatus.REMOVED
    assert counter(p, "provider", p.provider.id) == 0
    with pytest.raises(Conflict, match="already cancelled"):
        run(p.patient_actor, waitlist.leave_waitlist, mine.id)
    actions = sorted(e.action for e in rows(p, AuditEvent) if e.entity_type == "waitlist_entry")
    assert actions == ["waitlist.cancelled", "waitlist.joined", "waitlist.joined", "waitlist.removed"]
    assert counter(p, "provider", p.provider.id) == 0  # the refused second leave released nothing
    join(p)  # the patient may join again


def test_leaving_withdraws_the_live_offer_and_releases_its_hold(p: Practice) -> None:
    entry = join(p)
    start = future(days=3, hour=15)
    hold = add_appointment(p, start, status=AppointmentStatus.HELD)
    with UnitOfWork(p.system) as uow:
        offer = WaitlistOffer(
            tenant_id=p.tenant_id,
            entry_id=entry.id,
            appointment_id=hold.id,
            provider_id=p.provider.id,
            clinic_id=p.clinic.id,
            slot_start=start,
            slot_end=start + timedelta(minutes=50),
            expires_at=utcnow() + timedelta(minutes=30),
        )
        uow.session.add(offer)
        stored = uow.session.get(WaitlistEntry, entry.id)
        assert stored is not None
        stored.status = EntryStatus.OFFERED
        held_slot = uow.session.get(Appointment, hold.id)
        assert held_slot is not None
        held_slot.modality = "telehealth"
        uow.commit()
    view = run(p.patient_actor, waitlist.get_entry, entry.id)
    assert view.live_offer is not None and view.live_offer["offer_id"] == offer.id
    assert view.live_offer["modality"] == "telehealth"  # the held slot's, for the offer card
    assert run(p.patient_actor, waitlist.leave_waitlist, entry.id).status == EntryStatus.CANCELLED
    (after,) = rows(p, WaitlistOffer)
    assert after.status == OfferStatus.WITHDRAWN
    (held,) = rows(p, Appointment, id=hold.id)
    assert held.status == AppointmentStatus.CANCELLED
    assert run(p.patient_actor, waitlist.get_entry, entry.id).live_offer is None


def test_confirm_interest_restarts_the_time_to_live(p: Practice) -> None:
    entry = add_waitlist_entry(p)
    asked = utcnow() - timedelta(days=40)
    with UnitOfWork(p.system) as uow:
        stored = uow.session.get(WaitlistEntry, entry.id)
        assert stored is not None
        stored.last_confirmed_at, stored.reconfirm_requested_at = asked, asked
        stored.expires_at = utcnow() + timedelta(days=1)
        uow.commit()
    set_policy(p, entry_ttl_days=30)
    confirmed = run(p.patient_actor, waitlist.confirm_interest, entry.id)
    assert confirmed.reconfirm_requested_at is None
    assert utcnow() - confirmed.last_confirmed_at < timedelta(minutes=1)
    assert confirmed.expires_at is not None
    assert timedelta(days=29) < confirmed.expires_at - utcnow() <= timedelta(days=30)
    assert [e.action for e in rows(p, AuditEvent, entity_id=entry.id)] == ["waitlist.confirmed"]
    run(p.admin, waitlist.leave_waitlist, entry.id)
    with pytest.raises(Conflict):
        run(p.patient_actor, waitlist.confirm_interest, entry.id)


# -- visibility, ranking -------------------------------------------------------------------------------


def test_visibility_of_single_entries(p: Practice) -> None:
    colleague = add_provider(p, "Colleague", clinic=p.clinic)
    stranger = patient_actor(p, "Stranger")
    theirs = add_waitlist_entry(p, provider=colleague)
    mine = add_waitlist_entry(p)
    for actor, entry in ((stranger, mine), (p.doctor, theirs)):
        with pytest.raises(NotFound, match="waitlist entry not found"):
            run(actor, waitlist.get_entry, entry.id)
        with pytest.raises(NotFound):
            run(actor, waitlist.leave_waitlist, entry.id)
        with pytest.raises(NotFound):
            run(actor, waitlist.confirm_interest, entry.id)
    view = run(p.patient_actor, waitlist.get_entry, mine.id)
    assert view.reason == "" and view.position == 1 and view.position_band == "Near the top"
    assert run(p.admin, waitlist.get_entry, theirs.id).provider_name == "Colleague"


def _age(entry: WaitlistEntry, p: Practice, days: int) -> None:
    with UnitOfWork(p.system) as uow:
        stored = uow.session.get(WaitlistEntry, entry.id)
        assert stored is not None
        stored.created_at = utcnow() - timedelta(days=days)
        uow.commit()


def test_ranked_entries_best_first_with_reasons_and_positions(p: Practice) -> None:
    old_routine = add_waitlist_entry(p, patient=add_patient(p, "Old"), urgency=1)
    _age(old_routine, p, 70)  # 10 weeks: +10, urgency 1: +10 -> 20
    urgent = add_waitlist_entry(p, patient=add_patient(p, "Urgent"), urgency=4)  # 40
    soon = add_waitlist_entry(p, patient=add_patient(p, "Soon"), urgency=2)  # 20 minus a bit: younger
    _age(soon, p, 7)  # 1 week: 21
    add_waitlist_entry(p, patient=add_patient(p, "Gone"), urgency=4, status=EntryStatus.CANCELLED)
    ranked = run(p.doctor, waitlist.ranked_entries, provider_id=p.provider.id)
    assert [v.id for v in ranked] == [urgent.id, soon.id, old_routine.id]
    assert [v.position for v in ranked] == [1, 2, 3]
    assert ranked[0].reasons[0] == "Urgent urgency (+40)"
    assert ranked[2].reasons[1].startswith("Waiting 10 weeks")
    assert ranked[1].score == pytest.approx(21, abs=0.01)
    set_policy(p, urgency_weight=0)  # now only time waited counts
    assert [v.id for v in run(p.admin, waitlist.ranked_entries)] == [old_routine.id, soon.id, urgent.id]
    with pytest.raises(PermissionDenied):
        run(p.patient_actor, waitlist.ranked_entries)


def _filled(p: Practice, waited_days: float, booked_days_ago: float, *, any_provider: bool = False) -> None:
    """An entry of the queue booked from the waitlist `booked_days_ago`, after waiting `waited_days`."""
    booked = utcnow() - timedelta(days=booked_days_ago)
    patient = add_patient(p, "Filled")
    entry = add_waitlist_entry(p, patient=patient, any_provider=any_provider, status=EntryStatus.BOOKED)
    with UnitOfWork(p.system) as uow:
        stored = uow.session.get(WaitlistEntry, entry.id)
        assert stored is not None
        stored.created_at = booked - timedelta(days=waited_days)
        start = future(days=30, hour=14) + timedelta(minutes=int(booked_days_ago * 24 * 60))
        uow.session.add(
            WaitlistOffer(
                tenant_id=p.tenant_id, entry_id=entry.id, provider_id=p.provider.id, clinic_id=p.clinic.id,
                slot_start=start, slot_end=start + timedelta(minutes=50), status=OfferStatus.ACCEPTED,
                expires_at=booked + timedelta(hours=1), responded_at=booked,
            )
        )  # fmt: skip
        uow.commit()


def test_estimated_wait_from_the_queues_actual_fills(p: Practice) -> None:
    """Regression (issue 10, item 6): "about a day" for a patient who had waited 12 days. Freed slots
    alone give no estimate; the queue's fills do, and a patient who has waited longer than they did gets
    none ("hard to estimate yet") rather than a confident short number."""
    entry = add_waitlist_entry(p)
    assert run(p.admin, waitlist.get_entry, entry.id).estimated_wait_days is None
    now = utcnow()
    for i, days_ago in enumerate((20, 16, 12, 2, 1)):  # slots freed often, none taken from the waitlist
        a = add_appointment(p, future(days=5 + i, hour=14), status=AppointmentStatus.CANCELLED)
        with UnitOfWork(p.system) as uow:
            stored = uow.session.get(Appointment, a.id)
            assert stored is not None
            stored.cancelled_at = now - timedelta(days=days_ago)
            uow.commit()
    assert run(p.admin, waitlist.get_entry, entry.id).estimated_wait_days is None
    for waited, ago in ((1, 50), (2, 40), (3, 30), (4, 20), (5, 10), (6, 5)):  # 6 fills in 60 days
        _filled(p, waited, ago)
    _filled(p, 1, 3, any_provider=True)  # another queue's fills do not count
    _filled(p, 1, 70)  # nor fills older than the look-back
    add_waitlist_entry(p, patient=add_patient(p, "Ahead"), urgency=4)
    view = run(p.admin, waitlist.get_entry, entry.id)
    assert view.position == 2 and view.estimated_wait_days == 20  # 2 × (60 days / 6 fills)
    _age(entry, p, 12)  # waited longer than every fill: the data says nothing about this patient
    assert run(p.admin, waitlist.get_entry, entry.id).estimated_wait_days is None


def test_list_entries_filters(p: Practice) -> None:
    old = add_waitlist_entry(p, urgency=3)
    _age(old, p, 30)
    new = add_waitlist_entry(p, any_provider=True)
    assert {v.id for v in run(p.admin, waitlist.list_entries, urgency=3)} == {old.id}
    assert {v.id for v in run(p.admin, waitlist.list_entries, min_age_days=10)} == {old.id}
    assert {v.id for v in run(p.admin, waitlist.list_entries, min_age_days=0)} == {old.id, new.id}

"""Weekly availability and time off: permissions, validation (422, nothing written), slots, audit, events, API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend import events
from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import Provider, ProviderClinic
from backend.redis_client import get_redis
from backend.scheduling import cache
from backend.scheduling.availability import (
    AvailabilityView,
    RuleInput,
    add_time_off,
    list_availability,
    remove_time_off,
    replace_availability,
)
from backend.scheduling.models import Appointment, AvailabilityRule, TimeOff
from backend.scheduling.service import list_slots
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.types import utcnow
from tests.factories import (
    Practice,
    add_appointment,
    add_provider,
    add_user,
    bearer,
    call,
    drop_redis_keys,
    make_practice,
    rows,
)

NEW_YORK = ZoneInfo("America/New_York")


# -- fixtures and helpers ------------------------------------------------------------------------------


@pytest.fixture
def harbor(db: sa.Engine) -> Iterator[Practice]:
    p = make_practice("Harbor Mental Health", "harbor")
    # The doctor also works Uptown (Berlin); a third clinic, in New York, is not theirs.
    with UnitOfWork(p.system) as uow:
        uow.session.add(ProviderClinic(tenant_id=p.tenant_id, provider_id=p.provider.id, clinic_id=p.clinic2.id))
        elsewhere = Clinic(tenant_id=p.tenant_id, name="Harbor Elsewhere", timezone="America/New_York")
        uow.session.add(elsewhere)
        uow.commit()
    p.extra["elsewhere"] = elsewhere
    second = add_provider(p, "Sam Second")
    p.extra["second"] = second
    add_user(p, "doctor2@harbor.test", Role.DOCTOR, full_name="Sam Second", provider_id=second.id)
    p.extra["second_doctor"] = Actor(tenant_id=p.tenant_id, role=Role.DOCTOR, provider_id=second.id)
    yield p
    drop_redis_keys(p)


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[events.DomainEvent]:
    sent: list[events.DomainEvent] = []
    monkeypatch.setattr(events, "publish", sent.append)
    return sent


def rule(clinic: Clinic, weekday: int = 0, start: str = "09:00", end: str = "12:00", **kw: Any) -> RuleInput:
    return RuleInput(clinic_id=clinic.id, weekday=weekday, start=time.fromisoformat(start),
                     end=time.fromisoformat(end), **kw)  # fmt: skip



def state(p: Practice) -> tuple[Any, ...]:
    """Everything an availability change writes."""
    return (
        sorted((r.provider_id, r.clinic_id, r.weekday, r.start_time, r.end_time) for r in rows(p, AvailabilityRule)),
        sorted((t.provider_id, t.start_at, t.end_at) for t in rows(p, TimeOff)),
        len(rows(p, AuditEvent)),
    )


def next_weekday(weekday: int, weeks: int = 1) -> date:
    """The date of `weekday` at least a few days ahead (beyond the minimum notice)."""
    start = utcnow().date() + timedelta(days=3)
    return start + timedelta(days=(weekday - start.weekday()) % 7 + 7 * (weeks - 1))


def at(day: date, hhmm: str, zone: ZoneInfo = NEW_YORK) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=zone).astimezone(UTC)


def free_starts(p: Practice, provider_id: uuid.UUID, day: date) -> list[datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    with UnitOfWork(p.patient_actor) as uow:
        slots = list_slots(p.patient_actor, uow, provider_id, start=start, end=start + timedelta(days=1))
    return [s.start for s in slots if s.status == "free"]


# -- replace_availability ------------------------------------------------------------------------------


def test_doctor_replaces_their_own_rules(harbor: Practice, published: list) -> None:
    p = harbor
    call(p.doctor, replace_availability, p.provider.id, [rule(p.clinic, 0), rule(p.clinic, 2, "13:00", "17:00")])
    created = call(
        p.doctor,
        replace_availability,
        p.provider.id,
        [rule(p.clinic, 1, "09:00", "11:00", session_minutes=60, buffer_minutes=0, modality="telehealth"),
         rule(p.clinic2, 0, "08:00", "10:00")],
    )  # fmt: skip
    assert [(r.weekday, r.clinic_id, r.start_time) for r in created] == [
        (0, p.clinic2.id, time(8)),
        (1, p.clinic.id, time(9)),
    ]
    stored = rows(p, AvailabilityRule, provider_id=p.provider.id)
    assert {r.id for r in stored} == {r.id for r in created}  # the first set is gone
    tuesday = next(r for r in stored if r.weekday == 1)
    assert (tuesday.session_minutes, tuesday.buffer_minutes, tuesday.modality) == (60, 0, "telehealth")

    (audit, _) = sorted(
        rows(p, AuditEvent, action="availability.replaced"), key=lambda e: e.occurred_at, reverse=True
    )
    assert audit.entity_id == p.provider.id and audit.actor_user_id == p.doctor.user_id
    assert set(audit.data) == {"removed_rule_ids", "rule_ids", "appointments_outside_availability"}
    assert sorted(audit.data["rule_ids"]) == sorted(str(r.id) for r in created)
    assert [(e.name, e.data["provider_id"]) for e in published] == [("availability.changed", str(p.provider.id))] * 2

    day = next_weekday(1)
    assert free_starts(p, p.provider.id, day) == [at(day, "09:00"), at(day, "10:00")]


def test_admin_replaces_anyones_rules_and_may_clear_them(harbor: Practice) -> None:
    p, second = harbor, harbor.extra["second"]
    call(p.admin, replace_availability, second.id, [rule(p.clinic, 4)])
    assert [r.weekday for r in rows(p, AvailabilityRule, provider_id=second.id)] == [4]
    assert call(p.admin, replace_availability, second.id, []) == []
    assert rows(p, AvailabilityRule, provider_id=second.id) == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (lambda p: [rule(p.extra["elsewhere"])], "rule 1 (Monday 09:00-12:00): the provider does not work at this"),
        (lambda p: [rule(p.clinic), RuleInput(uuid.uuid4(), 1, time(9), time(10))],
         "rule 2 (Tuesday 09:00-10:00): the provider does not"),
        (lambda p: [rule(p.clinic, 7)], "rule 1: weekday must be 0 (Monday) to 6 (Sunday)"),
        (lambda p: [rule(p.clinic, -1)], "weekday must be 0 (Monday) to 6 (Sunday)"),
        (lambda p: [rule(p.clinic, 0, "12:00", "09:00")], "rule 1 (Monday 12:00-09:00 at Harbor Mental Health "
         "Downtown): start must be before end"),
        (lambda p: [rule(p.clinic, 0, "09:00", "09:00")], "start must be before end"),
        (lambda p: [rule(p.clinic, session_minutes=5)], "session length must be 10 to 240 minutes"),
        (lambda p: [rule(p.clinic, 0, "08:00", "17:00", session_minutes=241)], "session length must be 10 to 240"),
        (lambda p: [rule(p.clinic, buffer_minutes=-1)], "buffer must be 0 to 120 minutes"),
        (lambda p: [rule(p.clinic, buffer_minutes=121)], "buffer must be 0 to 120 minutes"),
        (lambda p: [rule(p.clinic, modality="video")], "modality must be in_person or telehealth"),
        (lambda p: [rule(p.clinic, 0, "09:00", "09:30")], "no 50-minute session fits between start and end"),
        (lambda p: [rule(p.clinic, valid_from=date(2030, 2, 1), valid_until=date(2030, 1, 1))],
         "valid_from must not be after valid_until"),
        (lambda p: [rule(p.clinic, 0, "09:00", "12:00"), rule(p.clinic, 0, "11:00", "13:00")],
         "rule 2 (Monday 11:00-13:00 at Harbor Mental Health Downtown) overlaps rule 1 (Monday 09:00-12:00"),
        (lambda p: [rule(p.clinic, 0, "11:00", "13:00"), rule(p.clinic, 0, "09:00", "12:00")],
         "rule 2 (Monday 09:00-12:00 at Harbor Mental Health Downtown) overlaps rule 1 (Monday 11:00-13:00"),
        (lambda p: [rule(p.clinic, 3, "09:00", "12:00"), rule(p.clinic2, 3, "10:00", "11:00")],
         "rule 2 (Thursday 10:00-11:00 at Harbor Mental Health Uptown) overlaps rule 1"),
        (lambda p: [rule(p.clinic, 3, "09:00", "17:00"), rule(p.clinic, 1), rule(p.clinic2, 3, "09:00", "17:00")],
         "rule 3 (Thursday 09:00-17:00 at Harbor Mental Health Uptown) overlaps rule 1"),
        # 09:00-12:00 in New York is 15:00-18:00 in Berlin: no wall-clock overlap, but the same real time.
        (lambda p: [rule(p.clinic, 0, "09:00", "12:00"), rule(p.clinic2, 0, "15:00", "18:00")],
         "overlaps rule 1 (Monday 09:00-12:00 at Harbor Mental Health Downtown) in real time"),
        (lambda p: [rule(p.clinic, d % 7, f"{8 + d // 7:02d}:00", f"{9 + d // 7:02d}:00", session_minutes=30)
                    for d in range(51)], "at most 50 weekly rules"),
    ],
)
def test_invalid_rules_are_a_422_naming_the_rule_and_change_nothing(
    harbor: Practice, published: list, rules: Any, message: str
) -> None:
    p = harbor
    call(p.doctor, replace_availability, p.provider.id, [rule(p.clinic, 5)])
    published.clear()
    before = state(p)
    with pytest.raises(ValidationFailed) as refused:
        call(p.doctor, replace_availability, p.provider.id, rules(p))
    assert message in refused.value.message
    assert refused.value.status_code == 422
    assert state(p) == before
    assert published == []


@pytest.mark.parametrize(
    "rules",
    [
        # Touching blocks, the same hours on other days, and disjoint validity on one weekday are all fine.
        lambda p: [rule(p.clinic, 0, "09:00", "12:00"), rule(p.clinic2, 0, "12:00", "14:00")],
        lambda p: [rule(p.clinic, 0), rule(p.clinic, 1), rule(p.clinic2, 2)],
        lambda p: [rule(p.clinic, 0, valid_until=date(2030, 1, 31)), rule(p.clinic2, 0, valid_from=date(2030, 2, 1))],
        # Different zones, different real times: Berlin 08:00-11:00 is New York's night.
        lambda p: [rule(p.clinic, 0, "13:00", "17:00"), rule(p.clinic2, 0, "08:00", "11:00")],
    ],
)
def test_rules_that_do_not_overlap_are_accepted(harbor: Practice, rules: Any) -> None:
    created = call(harbor.doctor, replace_availability, harbor.provider.id, rules(harbor))
    assert len(created) == len(rules(harbor))


def test_a_doctor_may_not_edit_another_doctors_availability(harbor: Practice) -> None:
    p, second = harbor, harbor.extra["second"]
    call(p.admin, add_time_off, second.id, start=at(next_weekday(0), "09:00"), end=at(next_weekday(0), "12:00"))
    (time_off,) = rows(p, TimeOff, provider_id=second.id)
    before = state(p)
    with pytest.raises(PermissionDenied, match="only their own"):
        call(p.doctor, replace_availability, second.id, [rule(p.clinic)])
    with pytest.raises(PermissionDenied):
        call(p.doctor, add_time_off, second.id, start=at(next_weekday(1), "09:00"), end=at(next_weekday(1), "10:00"))
    with pytest.raises(PermissionDenied):
        call(p.doctor, remove_time_off, time_off.id)
    assert state(p) == before
    # Reading a colleague's availability is fine for staff.
    assert call(p.doctor, list_availability, second.id).time_off[0].id == time_off.id


def test_patients_may_neither_read_nor_write(harbor: Practice) -> None:
    p = harbor
    call(p.admin, add_time_off, p.provider.id, start=at(next_weekday(0), "09:00"), end=at(next_weekday(0), "12:00"))
    (time_off,) = rows(p, TimeOff)
    before = state(p)
    for attempt in (
        lambda: call(p.patient_actor, list_availability, p.provider.id),
        lambda: call(p.patient_actor, replace_availability, p.provider.id, [rule(p.clinic)]),
        lambda: call(p.patient_actor, add_time_off, p.provider.id, start=at(next_weekday(1), "09:00"),
                     end=at(next_weekday(1), "10:00")),
        lambda: call(p.patient_actor, remove_time_off, time_off.id),
    ):  # fmt: skip
        with pytest.raises(PermissionDenied):
            attempt()
    assert state(p) == before


def test_unknown_provider_and_time_off_are_404(harbor: Practice) -> None:
    with pytest.raises(NotFound, match="provider not found"):
        call(harbor.admin, replace_availability, uuid.uuid4(), [])
    with pytest.raises(NotFound, match="provider not found"):
        call(harbor.doctor, list_availability, uuid.uuid4())
    with pytest.raises(NotFound, match="time off not found"):
        call(harbor.doctor, remove_time_off, uuid.uuid4())


def test_booked_appointments_stay_when_availability_shrinks(harbor: Practice) -> None:
    p = harbor
    call(p.admin, replace_availability, p.provider.id, [rule(p.clinic, 0)])
    monday = next_weekday(0)
    booked = add_appointment(p, at(monday, "09:00"))
    call(p.admin, replace_availability, p.provider.id, [rule(p.clinic, 1)])
    (kept,) = rows(p, Appointment)
    assert (kept.id, kept.status) == (booked.id, "booked")
    latest = max(rows(p, AuditEvent, action="availability.replaced"), key=lambda e: e.occurred_at)
    assert latest.data["appointments_outside_availability"] == 1
    call(p.admin, replace_availability, p.provider.id, [rule(p.clinic, 0), rule(p.clinic, 1)])
    latest = max(rows(p, AuditEvent, action="availability.replaced"), key=lambda e: e.occurred_at)
    assert latest.data["appointments_outside_availability"] == 0


def test_rules_at_an_archived_clinic_are_left_alone(harbor: Practice) -> None:
    p = harbor
    call(p.admin, replace_availability, p.provider.id, [rule(p.clinic, 0), rule(p.clinic2, 1)])
    with UnitOfWork(p.system) as uow:
        clinic2 = uow.session.get(Clinic, p.clinic2.id)
        assert clinic2 is not None
        clinic2.archived_at = utcnow()
        uow.commit()
    view = call(p.doctor, list_availability, p.provider.id)
    assert [c.id for c in view.clinics] == [p.clinic.id]
    assert [r.clinic_id for r in view.rules] == [p.clinic.id]
    with pytest.raises(ValidationFailed, match="does not work at this clinic"):
        call(p.doctor, replace_availability, p.provider.id, [rule(p.clinic2, 2)])
    call(p.doctor, replace_availability, p.provider.id, [rule(p.clinic, 3)])
    assert sorted((r.clinic_id == p.clinic.id, r.weekday) for r in rows(p, AvailabilityRule)) == [(False, 1), (True, 3)]


def test_list_availability(harbor: Practice) -> None:
    p = harbor
    call(p.admin, replace_availability, p.provider.id, [rule(p.clinic, 2), rule(p.clinic2, 0), rule(p.clinic, 0,
         "13:00", "15:00")])  # fmt: skip
    later, sooner = at(next_weekday(0, 2), "09:00"), at(next_weekday(0), "09:00")
    for start in (later, sooner):
        call(p.doctor, add_time_off, p.provider.id, start=start, end=start + timedelta(hours=3), reason="leave")
    with UnitOfWork(p.system) as uow:  # time off that is over is not shown
        uow.session.add(TimeOff(tenant_id=p.tenant_id, provider_id=p.provider.id,
                                start_at=utcnow() - timedelta(days=3), end_at=utcnow() - timedelta(days=2)))
        uow.commit()  # fmt: skip
    view = call(p.admin, list_availability, p.provider.id)
    assert isinstance(view, AvailabilityView) and view.provider_id == p.provider.id
    assert [(r.weekday, r.start_time) for r in view.rules] == [(0, time(9)), (0, time(13)), (2, time(9))]
    assert [t.start_at for t in view.time_off] == [sooner, later]
    assert [c.name for c in view.clinics] == [p.clinic.name, p.clinic2.name]


# -- time off ------------------------------------------------------------------------------------------


def test_time_off_removes_slots_and_removing_it_restores_them(harbor: Practice, published: list) -> None:
    p = harbor
    call(p.doctor, replace_availability, p.provider.id, [rule(p.clinic, 0)])
    monday = next_weekday(0)
    every = [at(monday, "09:00"), at(monday, "10:00"), at(monday, "11:00")]
    assert free_starts(p, p.provider.id, monday) == every
    time_off = call(p.doctor, add_time_off, p.provider.id, start=at(monday, "09:30"), end=at(monday, "10:30"),
                    reason="dentist")  # fmt: skip
    assert (time_off.provider_id, time_off.reason) == (p.provider.id, "dentist")
    assert free_starts(p, p.provider.id, monday) == [at(monday, "11:00")]
    (added,) = rows(p, AuditEvent, action="time_off.added")
    assert added.entity_id == time_off.id and "dentist" not in str(added.data)

    call(p.doctor, remove_time_off, time_off.id)
    assert free_starts(p, p.provider.id, monday) == every
    assert rows(p, TimeOff) == []
    (removed,) = rows(p, AuditEvent, action="time_off.removed")
    assert removed.entity_id == time_off.id
    assert [e.name for e in published][-2:] == ["availability.changed", "availability.changed"]


def test_time_off_over_a_booked_appointment_keeps_it(harbor: Practice) -> None:
    p = harbor
    call(p.admin, replace_availability, p.provider.id, [rule(p.clinic, 0)])
    monday = next_weekday(0)
    add_appointment(p, at(monday, "10:00"))
    # Over a booked session the admin must choose (tests/integration/test_time_off_conflicts.py): here, keep it.
    call(p.admin, add_time_off, p.provider.id, start=at(monday, "00:00"), end=at(monday, "23:00"),
         booked_sessions="keep")  # fmt: skip
    assert [a.status for a in rows(p, Appointment)] == ["booked"]
    (added,) = rows(p, AuditEvent, action="time_off.added")
    assert added.data["appointments_outside_availability"] == 1


def _span(days: float, hours: float = 0) -> tuple[datetime, datetime]:
    start = utcnow() + timedelta(days=1)
    return start, start + timedelta(days=days, hours=hours)


@pytest.mark.parametrize(
    ("start", "end", "reason", "message"),
    [
        (_span(1)[0].replace(tzinfo=None), _span(1)[1], "", "time off start needs a time zone offset"),
        (_span(1)[0], _span(1)[1].replace(tzinfo=None), "", "time off end needs a time zone offset"),
        (_span(1)[1], _span(1)[0], "", "time off must end after it starts"),
        (_span(1)[0],) * 2 + ("", "time off must end after it starts"),
        (*_span(366, 1), "", "at most 366 days"),
        (*_span(1), "x" * 201, "at most 200 characters"),
        (utcnow() - timedelta(days=2), utcnow() - timedelta(days=1), "", "must end in the future"),
    ],
)
def test_invalid_time_off_is_a_422_and_changes_nothing(
    harbor: Practice, start: datetime, end: datetime, reason: str, message: str
) -> None:
    before = state(harbor)
    with pytest.raises(ValidationFailed) as refused:
        call(harbor.doctor, add_time_off, harbor.provider.id, start=start, end=end, reason=reason)
    assert message in refused.value.message
    assert state(harbor) == before


def test_a_year_of_time_off_and_a_long_reason_are_accepted(harbor: Practice) -> None:
    start, end = _span(366)
    time_off = call(harbor.doctor, add_time_off, harbor.provider.id, start=start, end=end, reason=" y" * 100)
    assert time_off.reason == ("y " * 100).strip()  # surrounding blanks go, 199 characters stay


def test_edits_forget_the_cached_next_free_slot(harbor: Practice) -> None:
    p, t = harbor, harbor.tenant_id
    key = cache.next_free_key(t, p.provider.id)
    other = cache.next_free_key(t, p.extra["second"].id)
    for change in (
        lambda: call(p.doctor, replace_availability, p.provider.id, [rule(p.clinic)]),
        lambda: call(p.doctor, add_time_off, p.provider.id, start=_span(1)[0], end=_span(1)[1]),
        lambda: call(p.doctor, remove_time_off, rows(p, TimeOff)[0].id),
    ):
        cache.set_many({key: {"start": None}, other: {"start": None}})
        change()
        assert get_redis().exists(key) == 0
        assert get_redis().exists(other) == 1


# -- the REST API --------------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


@pytest.fixture
def auth(client: TestClient, harbor: Practice) -> dict[str, dict[str, str]]:
    headers = {role: bearer(client, email) for role, email in harbor.emails.items()}
    headers["doctor2"] = bearer(client, "doctor2@harbor.test")
    return headers


def test_api_round_trip(client: TestClient, harbor: Practice, auth: dict) -> None:
    p = harbor
    url = f"/api/v1/providers/{p.provider.id}/availability"
    body = [
        {"clinic_id": str(p.clinic.id), "weekday": 0, "start": "09:00", "end": "12:00"},
        {"clinic_id": str(p.clinic2.id), "weekday": 2, "start": "13:00", "end": "15:00", "session_minutes": 30,
         "buffer_minutes": 0, "modality": "telehealth", "valid_from": "2020-01-01"},
    ]  # fmt: skip
    put = client.put(url, json=body, headers=auth["doctor"])
    assert put.status_code == 200, put.text
    assert [(r["weekday"], r["start"], r["end"], r["session_minutes"]) for r in put.json()] == [
        (0, "09:00:00", "12:00:00", 50),
        (2, "13:00:00", "15:00:00", 30),
    ]
    got = client.get(url, headers=auth["admin"])
    assert got.status_code == 200
    assert [r["id"] for r in got.json()["rules"]] == [r["id"] for r in put.json()]
    assert {c["id"] for c in got.json()["clinics"]} == {str(p.clinic.id), str(p.clinic2.id)}

    monday = next_weekday(0)
    posted = client.post(
        f"/api/v1/providers/{p.provider.id}/time-off",
        json={"start": at(monday, "09:00").isoformat(), "end": at(monday, "11:00").isoformat(), "reason": "course"},
        headers=auth["doctor"],
    )
    assert posted.status_code == 201, posted.text
    time_off_id = posted.json()["id"]
    slots = client.get(
        f"/api/v1/providers/{p.provider.id}/slots",
        params={"start": at(monday, "00:00").isoformat(), "end": at(monday, "23:00").isoformat()},
        headers=auth["patient"],
    )
    assert [s["start"] for s in slots.json()] == [at(monday, "11:00").isoformat().replace("+00:00", "Z")]
    assert [t["id"] for t in client.get(url, headers=auth["doctor"]).json()["time_off"]] == [time_off_id]

    assert client.delete(f"/api/v1/time-off/{time_off_id}", headers=auth["doctor"]).status_code == 204
    assert client.get(url, headers=auth["doctor"]).json()["time_off"] == []
    assert client.delete(f"/api/v1/time-off/{time_off_id}", headers=auth["doctor"]).status_code == 404


def test_api_refusals(client: TestClient, harbor: Practice, summit: Practice, auth: dict) -> None:
    p = harbor
    url = f"/api/v1/providers/{p.provider.id}/availability"
    good = [{"clinic_id": str(p.clinic.id), "weekday": 0, "start": "09:00", "end": "12:00"}]
    before = state(p)

    bad = client.put(url, json=[{**good[0], "session_minutes": 5}], headers=auth["admin"])
    assert bad.status_code == 422
    assert bad.json() == {
        "detail": "rule 1 (Monday 09:00-12:00 at Harbor Mental Health Downtown): session length must be 10 to 240 "
        "minutes",
        "field": "rules[0].session_minutes",
        "code": "validation_failed",
    }
    assert client.put(url, json=[{"weekday": 0}], headers=auth["admin"]).status_code == 422
    assert client.put(url, json=good, headers=auth["doctor2"]).status_code == 403
    assert client.put(url, json=good, headers=auth["patient"]).status_code == 403
    assert client.get(url, headers=auth["patient"]).status_code == 403
    assert client.get(url, headers=auth["doctor2"]).status_code == 200
    naive = {"start": "2030-01-01T09:00:00", "end": "2030-01-01T10:00:00"}
    refused = client.post(f"/api/v1/providers/{p.provider.id}/time-off", json=naive, headers=auth["admin"])
    assert refused.status_code == 422 and "time zone offset" in refused.json()["detail"]
    assert client.put(url, json=good, headers={}).status_code == 401

    # Another practice's provider looks exactly like a missing one.
    for provider_id in (summit.provider.id, uuid.uuid4()):
        other = f"/api/v1/providers/{provider_id}/availability"
        assert client.get(other, headers=auth["admin"]).json() == {"detail": "provider not found", "code": "not_found"}
        assert client.put(other, json=[], headers=auth["admin"]).status_code == 404
    assert state(p) == before
    assert rows(summit, AvailabilityRule) == []


def test_api_search_and_facets(client: TestClient, harbor: Practice, summit: Practice, auth: dict) -> None:
    p = harbor
    call(p.admin, replace_availability, p.provider.id, [rule(p.clinic, d, "09:00", "17:00") for d in range(7)])
    with UnitOfWork(p.system) as uow:
        provider = uow.session.get(Provider, p.extra["second"].id)
        assert provider is not None
        provider.specialties, provider.languages = ["Anxiety"], ["Spanish"]
        uow.commit()
    for role in ("patient", "doctor", "admin"):
        found = client.get("/api/v1/providers", headers=auth[role])
        assert found.status_code == 200, found.text
        assert [c["id"] for c in found.json()] == [str(p.provider.id), str(p.extra["second"].id)]
        first = found.json()[0]
        assert first["next_free_start"] is not None and first["next_free_clinic_id"] == str(p.clinic.id)
        assert first["clinics"][0] == {"id": str(p.clinic.id), "name": p.clinic.name, "timezone": "America/New_York"}
    filtered = client.get(
        "/api/v1/providers", params={"specialty": "anxiety", "language": "SPANISH"}, headers=auth["patient"]
    )
    assert [c["full_name"] for c in filtered.json()] == ["Sam Second"]
    soon = client.get(
        "/api/v1/providers", params={"free_before": str(utcnow().date() + timedelta(days=3))}, headers=auth["patient"]
    )
    assert [c["id"] for c in soon.json()] == [str(p.provider.id)]
    elsewhere = client.get("/api/v1/providers", params={"clinic_id": str(summit.clinic.id)}, headers=auth["admin"])
    assert elsewhere.json() == []
    assert client.get("/api/v1/providers", params={"free_before": "soon"}, headers=auth["admin"]).status_code == 422

    facets = client.get("/api/v1/providers/facets", headers=auth["patient"])
    assert facets.status_code == 200
    assert facets.json() == {"specialties": ["Anxiety", "psychiatry"], "languages": ["Spanish"]}
    assert client.get("/api/v1/providers", headers={}).status_code == 401

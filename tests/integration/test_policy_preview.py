"""The policy page's preview (backend/waitlist/preview.py): the practice's own last weeks replayed under the saved and
the proposed settings, in the background; figures for a small known practice, the same figures for the same
history, nothing written to the practice's database, admins only, another practice's job unknown, bad settings
refused before anything starts, one preview at a time, and too little history said as such."""

from __future__ import annotations

import time as clock
import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import col

from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.notifications.models import Notification
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.tenancy.context import Actor
from backend.types import utcnow, virtual_clock
from backend.waitlist import preview
from backend.waitlist.models import WaitlistEntry, WaitlistOffer, WaitlistPolicy
from tests.factories import (
    Practice,
    add_appointment,
    add_availability,
    add_patient,
    add_waitlist_entry,
    make_practice,
    rows,
)

NY = ZoneInfo("America/New_York")


def _start(actor: Actor, changes: dict[str, Any], clinic_id: uuid.UUID | None = None, **kwargs: Any) -> uuid.UUID:
    with UnitOfWork(actor) as uow:
        return preview.preview_policy(actor, uow, clinic_id, changes, **kwargs)


def _status(actor: Actor, job_id: uuid.UUID) -> preview.PreviewStatus:
    with UnitOfWork(actor) as uow:
        return preview.preview_status(actor, uow, job_id)


def wait_for(actor: Actor, job_id: uuid.UUID, seconds: float = 90) -> preview.PreviewStatus:
    """Poll the job until it is finished (it runs on a thread of its own here: Celery is eager)."""
    deadline = clock.monotonic() + seconds
    seen: list[float] = []
    while True:
        status = _status(actor, job_id)
        seen.append(status.progress)
        if status.state in preview.FINISHED:
            assert seen == sorted(seen), "progress never goes back"
            return status
        assert clock.monotonic() < deadline, f"the preview did not finish in {seconds}s"
        clock.sleep(0.1)


def _history_practice(slug: str = "harbor") -> Practice:
    """A practice whose last weeks hold four booked sessions (three cancelled days before) and three patients
    waiting since before the weeks, every one of it written five weeks ago."""
    now = utcnow()

    def ny_at(days_ago: int, hour: int) -> datetime:
        day = (now - timedelta(days=days_ago)).astimezone(NY).date()
        return datetime.combine(day, time(hour), tzinfo=NY).astimezone(ZoneInfo("UTC"))

    with virtual_clock(lambda: now - timedelta(weeks=5)):
        p = make_practice("Harbor Mental Health", slug)
        add_availability(p)
        booked = [
            add_appointment(p, ny_at(days, 10), patient=add_patient(p, f"Booked {i}"))
            for i, days in enumerate((20, 15, 10, 5))
        ]
        for i in range(3):
            add_waitlist_entry(p, patient=add_patient(p, f"Waiting {i}"), urgency=2 + i % 2)
    with UnitOfWork(p.system) as uow:
        for appointment in booked[:3]:
            uow.session.execute(
                sa.update(Appointment)
                .where(col(Appointment.id) == appointment.id)
                .values(status=AppointmentStatus.CANCELLED, cancelled_at=appointment.start_at - timedelta(days=2))
            )
        uow.commit()
    return p


def _database_rows(p: Practice) -> dict[str, Any]:
    """What a preview must never change in the practice's own database."""
    return {
        "appointments": sorted((a.id, a.status, a.start_at) for a in rows(p, Appointment)),
        "entries": sorted((e.id, e.status) for e in rows(p, WaitlistEntry)),
        "offers": len(rows(p, WaitlistOffer)),
        "outbox": len(rows(p, Notification)),
        "audit": len(rows(p, AuditEvent)),
        "policies": len(rows(p, WaitlistPolicy)),
    }


def test_a_small_practice_s_weeks_give_figures_for_both_settings_and_nothing_is_written(db: sa.Engine) -> None:
    p = _history_practice()
    before = _database_rows(p)

    job = _start(p.admin, {"offer_hold_minutes": 10, "cutoff_minutes_before_slot": 60})
    done = wait_for(p.admin, job)

    assert done.state == "done" and done.progress == 1.0 and done.error is None
    result = done.result
    assert result is not None and result["enough"] is True
    assert (result["weeks"], result["cancellations"], result["entries"]) == (4, 3, 3)
    for side in ("current", "proposed"):
        figures = result[side]
        assert figures["freed"] == 3  # every cancellation of the weeks replayed, under both settings
        assert 0 <= figures["filled"] <= 3 and figures["fill_rate"] == round(figures["filled"] / 3, 3)
    # Nothing saved, nothing sent: the practice's rows are as they were (the replay ran in a scratch database).
    assert _database_rows(p) == before
    # Same history, same seed: the same figures again.
    again = wait_for(p.admin, _start(p.admin, {"offer_hold_minutes": 10, "cutoff_minutes_before_slot": 60}))
    assert again.result == result


def test_a_clinic_s_preview_replays_that_clinic_alone(db: sa.Engine) -> None:
    p = _history_practice()
    uptown = wait_for(p.admin, _start(p.admin, {"offer_hold_minutes": 15}, p.clinic2.id))
    assert uptown.result is not None and uptown.result["enough"] is False  # nothing happened there
    assert (uptown.result["cancellations"], uptown.result["entries"]) == (0, 0)
    downtown = wait_for(p.admin, _start(p.admin, {"offer_hold_minutes": 15}, p.clinic.id))
    assert downtown.result is not None and downtown.result["enough"] is True


def test_too_little_history_is_said_as_such(db: sa.Engine) -> None:
    p = make_practice("Summit Counseling", "summit")
    done = wait_for(p.admin, _start(p.admin, {"offer_hold_minutes": 20}))
    assert done.state == "done"
    assert done.result == {"weeks": 4, "cancellations": 0, "entries": 0, "enough": False, "too_large": False}


def test_only_admins_preview_or_read_a_preview(db: sa.Engine) -> None:
    p = make_practice("Harbor Mental Health", "harbor")
    job = _start(p.admin, {"offer_hold_minutes": 20})
    for actor in (p.doctor, p.patient_actor):
        with pytest.raises(PermissionDenied):
            _start(actor, {"offer_hold_minutes": 20})
        with pytest.raises(PermissionDenied):
            _status(actor, job)
    wait_for(p.admin, job)


def test_another_practice_s_job_is_as_unknown_as_a_random_one(db: sa.Engine) -> None:
    a = make_practice("Harbor Mental Health", "harbor")
    b = make_practice("Summit Counseling", "summit")
    job = _start(a.admin, {"offer_hold_minutes": 20})
    for actor in (b.admin, b.system):
        with pytest.raises(NotFound) as theirs:
            _status(actor, job)
        with pytest.raises(NotFound) as random:
            _status(actor, uuid.uuid4())
        assert theirs.value.message == random.value.message
    with pytest.raises(NotFound):  # nor another practice's clinic
        _start(b.admin, {"offer_hold_minutes": 20}, a.clinic.id)
    assert wait_for(a.admin, job).state == "done"


@pytest.mark.parametrize(
    ("changes", "weeks", "field"),
    [
        ({"offer_hold_minutes": 2}, 4, "offer_hold_minutes"),
        ({"offer_hold_minutes": float("nan")}, 4, "offer_hold_minutes"),
        ({"urgency_weight": "heavy"}, 4, "urgency_weight"),
        ({"quiet_hours_start": "25:00"}, 4, "quiet_hours_start"),
        ({"quiet_hours_start": "22:00", "quiet_hours_end": "22:00"}, 4, "quiet_hours_end"),
        ({"no_such_setting": 1}, 4, "no_such_setting"),
        ({"offer_hold_minutes": 20}, 0, "weeks"),
        ({"offer_hold_minutes": 20}, 99, "weeks"),
    ],
)
def test_bad_settings_are_refused_and_start_nothing(db: sa.Engine, changes: dict[str, Any], weeks: int,
                                                    field: str) -> None:  # fmt: skip
    p = make_practice("Harbor Mental Health", "harbor")
    with pytest.raises(ValidationFailed) as refused:
        _start(p.admin, changes, weeks=weeks)
    assert refused.value.field == field and refused.value.status_code == 422
    # No job was started: the practice's one preview slot is free.
    assert wait_for(p.admin, _start(p.admin, {"offer_hold_minutes": 20})).state == "done"


def test_one_preview_at_a_time_per_practice(db: sa.Engine) -> None:
    a = make_practice("Harbor Mental Health", "harbor")
    b = make_practice("Summit Counseling", "summit")
    running = uuid.uuid4()
    store = preview._store()
    store.set(preview._run_key(a.tenant_id), str(running), 60, only_new=True)  # a preview running elsewhere
    try:
        with pytest.raises(Conflict):
            _start(a.admin, {"offer_hold_minutes": 20})
        assert wait_for(b.admin, _start(b.admin, {"offer_hold_minutes": 20})).state == "done"  # not another's
    finally:
        store.delete_if(preview._run_key(a.tenant_id), str(running))
    assert wait_for(a.admin, _start(a.admin, {"offer_hold_minutes": 20})).state == "done"


def test_a_practice_too_large_for_its_weeks_is_previewed_over_fewer_then_refused(
    db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _history_practice()  # sessions 20, 15, 10 and 5 days ago; the first three cancelled
    monkeypatch.setattr(preview, "MAX_APPOINTMENTS", 2)
    fewer = wait_for(p.admin, _start(p.admin, {"offer_hold_minutes": 15}))
    assert fewer.result is not None
    assert (fewer.result["weeks"], fewer.result["cancellations"]) == (2, 1)  # the last two weeks fit
    monkeypatch.setattr(preview, "MAX_APPOINTMENTS", 0)
    refused = wait_for(p.admin, _start(p.admin, {"offer_hold_minutes": 15}))
    assert refused.result is not None and refused.result["too_large"] is True and refused.result["enough"] is False


def test_the_rest_routes_start_a_preview_and_read_it_in_the_practice_only(db: sa.Engine) -> None:
    from fastapi.testclient import TestClient

    from backend.api.app import api
    from tests.factories import bearer

    p = _history_practice()
    other = make_practice("Summit Counseling", "summit")
    with TestClient(api) as client:
        auth = {role: bearer(client, email) for role, email in p.emails.items()}
        theirs = bearer(client, other.admin_user.email)
        url = "/api/v1/waitlist-policy/preview"
        started = client.post(url, json={"offer_hold_minutes": 15, "weeks": 4}, headers=auth["admin"])
        assert started.status_code == 202, started.text
        job = started.json()["job_id"]
        wait_for(p.admin, uuid.UUID(job))
        read = client.get(f"{url}/{job}", headers=auth["admin"])
        assert read.status_code == 200 and read.json()["state"] == "done"
        result = read.json()["result"]
        assert result["enough"] is True and result["current"]["freed"] == result["proposed"]["freed"] == 3
        # Another practice's admin: as unknown as a random id. Other roles: refused. Bad input: 422, no job.
        assert (
            client.get(f"{url}/{job}", headers=theirs).json()
            == client.get(f"{url}/{uuid.uuid4()}", headers=theirs).json()
        )
        assert client.get(f"{url}/{job}", headers=theirs).status_code == 404
        for role in ("doctor", "patient"):
            assert client.post(url, json={"offer_hold_minutes": 15}, headers=auth[role]).status_code == 403
            assert client.get(f"{url}/{job}", headers=auth[role]).status_code == 403
        for bad in ({"offer_hold_minutes": 1}, {"weeks": 9}, {"quiet_hours_start": "7pm"}, {"surprise": 1}):
            assert client.post(url, json=bad, headers=auth["admin"]).status_code == 422
        foreign_clinic = client.post(url, json={"clinic_id": str(other.clinic.id)}, headers=auth["admin"])
        assert foreign_clinic.status_code == 404

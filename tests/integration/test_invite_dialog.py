"""The doctor's Invite dialog (portal/state/waitlist_console.py) on the real services.

Regression (issue 10, item 6): the dialog listed times at which the patient was already booked, and a refused
invitation was only reported after the dialog had closed."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from backend.db import UnitOfWork
from backend.errors import NotFound, PermissionDenied
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from backend.waitlist import offers
from backend.waitlist.models import OfferStatus, WaitlistOffer
from portal.state.waitlist_console import WaitlistConsoleState
from tests.factories import (
    Practice,
    add_appointment,
    add_availability,
    add_provider,
    add_waitlist_entry,
    make_practice,
    rows,
)
from tests.integration.test_offers import call, no_quiet_hours, slot_at

BUSY = "The patient already has an appointment at that time."


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    add_availability(p)  # the doctor: every day 08:00-20:00 New York, on the hour
    return p


def _with_chen(p: Practice, start: datetime, status: AppointmentStatus, hold_minutes: int | None = None) -> None:
    """The waitlisted patient's appointment (or hold) with another provider at `start`."""
    chen = p.extra.get("chen") or add_provider(p, "Dr. Chen")
    p.extra["chen"] = chen
    a = add_appointment(p, start, provider=chen, status=status)
    if hold_minutes is not None:
        with UnitOfWork(p.system) as uow:
            stored = uow.session.get(Appointment, a.id)
            assert stored is not None
            stored.hold_expires_at = utcnow() + timedelta(minutes=hold_minutes)
            uow.commit()


def _busy_scene(p: Practice) -> None:
    _with_chen(p, slot_at(days=3, hour=15), AppointmentStatus.BOOKED)
    _with_chen(p, slot_at(days=3, hour=17), AppointmentStatus.HELD, hold_minutes=30)  # a live hold
    _with_chen(p, slot_at(days=3, hour=18), AppointmentStatus.HELD, hold_minutes=-5)  # its time is up
    _with_chen(p, slot_at(days=3, hour=19), AppointmentStatus.CANCELLED)


def test_patient_busy_times_are_the_booked_appointments_and_live_holds(harbor: Practice) -> None:
    entry = add_waitlist_entry(harbor, windows=[])
    _busy_scene(harbor)
    now = utcnow()
    busy = call(harbor.doctor, offers.patient_busy_times, entry.id, start=now, end=now + timedelta(days=14))
    assert [b[0] for b in busy] == [slot_at(days=3, hour=15), slot_at(days=3, hour=17)]
    stranger = Actor(tenant_id=harbor.tenant_id, role=Role.DOCTOR, user_id=uuid.uuid4(), provider_id=uuid.uuid4())
    with pytest.raises(NotFound):
        call(stranger, offers.patient_busy_times, entry.id, start=now, end=now + timedelta(days=14))
    with pytest.raises(PermissionDenied):
        call(harbor.patient_actor, offers.patient_busy_times, entry.id, start=now, end=now + timedelta(days=14))


class ConsolePage(SimpleNamespace):
    """Stands in for the console's state: the real handlers and helpers, the doctor's session."""

    def __init__(self, p: Practice, entry_id: uuid.UUID) -> None:
        super().__init__(
            invite_id="", invite_patient="", invite_clinic="", invite_reach="", invite_days=[], invite_day="",
            invite_slots=[], invite_start="", invite_error="", invite_loading=False, queried=0,
        )  # fmt: skip
        self._p = p
        self.row = SimpleNamespace(id=str(entry_id), patient="Pat Patient", clinic=p.clinic.name,
                                   clinic_id=str(p.clinic.id))  # fmt: skip

    def _doctor(self) -> Actor:
        return self._p.doctor

    def _find(self, entry_id: str) -> Any:
        return self.row if entry_id == self.row.id else None

    def _act(self, actor: Actor, action: Any) -> str | None:
        return WaitlistConsoleState._act(self, actor, action)  # type: ignore[arg-type]

    def close_invite(self) -> None:
        WaitlistConsoleState.close_invite.fn(self)  # type: ignore[arg-type]

    async def _mark_live_seen(self) -> None:
        return None

    def _query(self, actor: Actor) -> None:
        self.queried += 1


def _drive(handler: Any, page: ConsolePage, *args: Any) -> list[Any]:
    async def go() -> list[Any]:
        return [update async for update in handler.fn(page, *args)]

    return asyncio.run(go())


def test_the_invite_dialog_lists_only_times_the_patient_can_take(harbor: Practice) -> None:
    entry = add_waitlist_entry(harbor, windows=[])
    _busy_scene(harbor)
    page = ConsolePage(harbor, entry.id)
    assert WaitlistConsoleState.open_invite.fn(page, str(entry.id)) is None  # type: ignore[arg-type]
    offered = {datetime.fromisoformat(s["value"]) for s in page.invite_slots}
    assert slot_at(days=3, hour=14) in offered and slot_at(days=3, hour=16) in offered
    assert slot_at(days=3, hour=15) not in offered  # booked with Dr. Chen
    assert slot_at(days=3, hour=17) not in offered  # a live hold
    assert slot_at(days=3, hour=18) in offered and slot_at(days=3, hour=19) in offered  # expired hold, cancelled
    assert page.invite_id == str(entry.id) and page.invite_error == ""


def test_a_refused_invitation_keeps_the_dialog_open_with_the_reason(harbor: Practice) -> None:
    entry = add_waitlist_entry(harbor, windows=[])
    page = ConsolePage(harbor, entry.id)
    WaitlistConsoleState.open_invite.fn(page, str(entry.id))  # type: ignore[arg-type]
    taken = slot_at(days=3, hour=15)
    assert taken.isoformat() in {s["value"] for s in page.invite_slots}
    _with_chen(harbor, taken, AppointmentStatus.BOOKED)  # booked elsewhere while the dialog was open
    page.invite_start = taken.isoformat()
    _drive(WaitlistConsoleState.confirm_invite, page)
    assert page.invite_id == str(entry.id)  # still open, the choice kept
    assert page.invite_error == BUSY and page.invite_loading is False
    assert rows(harbor, WaitlistOffer) == [] and page.queried == 0
    page.invite_start = slot_at(days=3, hour=16).isoformat()
    updates = _drive(WaitlistConsoleState.confirm_invite, page)
    assert page.invite_id == "" and page.invite_error == ""  # sent: closed
    (offer,) = rows(harbor, WaitlistOffer)
    assert offer.status == OfferStatus.PENDING and offer.slot_start == slot_at(days=3, hour=16)
    assert page.queried == 1 and updates[-1] is not None  # the success toast

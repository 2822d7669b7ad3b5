"""The doctor home: today's schedule in each clinic's own zone, the week ahead, who is waiting."""

from __future__ import annotations

from datetime import datetime, timedelta

import reflex as rx

from backend.db import UnitOfWork
from backend.scheduling.models import AppointmentStatus
from backend.scheduling.service import AppointmentView, list_appointments
from backend.tenancy.context import Role
from backend.types import utcnow
from backend.waitlist.models import EntryStatus
from backend.waitlist.service import list_entries
from portal.components import format as fmt
from portal.state.live import LiveProvider, LiveRefreshMixin
from portal.state.session import SessionState

# A held slot on a doctor's schedule is a waitlist offer the patient has not answered yet: not a booked session.
HELD_LABEL = "Held for an offer"
Row = dict[str, str]


def _row(a: AppointmentView, now: datetime) -> Row:
    status = HELD_LABEL if a.status == AppointmentStatus.HELD else fmt.STATUS_LABELS.get(a.status, a.status)
    return {
        "id": str(a.id),
        "day": fmt.day_label(a.start_at, a.clinic_timezone),
        "time": fmt.time_range(a.start_at, a.end_at, a.clinic_timezone),
        # Whom a slot is held for stays off the schedule until they take it (as on the Schedule page).
        "patient": "Held slot" if a.status == AppointmentStatus.HELD else (a.patient_name or "Held slot"),
        "clinic": a.clinic_name,
        "modality": fmt.MODALITY_LABELS.get(a.modality, a.modality),
        "status": status,
        "past": "1" if a.end_at <= now else "",
    }


def doctor_day(appointments: list[AppointmentView], now: datetime) -> tuple[list[Row], list[Row], int]:
    """Today's sessions, the ones coming up after today, and how many booked sessions the next 7 days hold.

    Today lists every session of the clinic's local day with its status (completed, no-show and late
    cancellations included; a plain cancellation freed the time and is not a session). Held offers show as held
    and are never counted as booked."""
    today: list[Row] = []
    later: list[Row] = []
    booked_ahead = 0
    for a in sorted(appointments, key=lambda a: a.start_at):
        if a.status == AppointmentStatus.CANCELLED:
            continue
        is_today = fmt.local(a.start_at, a.clinic_timezone).date() == fmt.local(now, a.clinic_timezone).date()
        upcoming = a.end_at > now and a.status == AppointmentStatus.BOOKED and a.start_at <= now + timedelta(days=7)
        booked_ahead += int(upcoming)
        if is_today:
            today.append(_row(a, now))
        elif a.start_at > now and a.status in (AppointmentStatus.BOOKED, AppointmentStatus.HELD):
            later.append(_row(a, now))
    return today, later, booked_ahead


class DoctorHomeState(LiveRefreshMixin, SessionState):
    """Live on the doctor's own provider audience: a booking, cancellation or hold shows without a reload."""

    today_label: str = ""
    today: list[dict[str, str]] = []
    week_count: int = 0
    waiting_count: int = 0
    next_days: list[dict[str, str]] = []

    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        return (LiveProvider,)

    def _live_actor(self):
        return self._actor(Role.DOCTOR)

    def _live_reload(self, actor) -> None:
        self._refresh(actor)

    @rx.event
    async def load(self):
        actor = self._actor(Role.DOCTOR)
        if actor is None:
            return
        await self._mark_live_seen()
        self._refresh(actor)

    def _refresh(self, actor) -> None:
        now = utcnow()
        with UnitOfWork(actor) as uow:
            # Wide enough to hold "today" in every zone from UTC-12 to UTC+14; every status, not only active ones.
            appointments = list_appointments(actor, uow, start=now - timedelta(days=1), end=now + timedelta(days=8))
            waiting = list_entries(actor, uow, status=EntryStatus.WAITING)
        today_rows, later, booked_ahead = doctor_day(appointments, now)
        self.today = today_rows
        self.next_days = later[:8]
        self.week_count = booked_ahead
        self.waiting_count = len(waiting)
        self.today_label = now.strftime("%A %d %B %Y")

"""The doctor's schedule: a day or a week of their appointments, attendance and cancellation.

"Today" is reckoned in the doctor's main clinic zone; each appointment belongs to the day it falls on in its
own clinic's zone and shows its times there, with the zone named.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.scheduling.availability import list_availability
from backend.scheduling.booking import cancel_appointment, mark_attendance
from backend.scheduling.service import AppointmentView, list_appointments
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from portal.components import format as fmt
from portal.state.live import LiveProvider, LiveRefreshMixin
from portal.state.session import SESSION_ENDED, SessionState

# Cancelled appointments free the time; the schedule shows what occupies it or what took place.
SHOWN_STATUSES = {"held", "booked", "completed", "no_show"}
VIEWS = ("day", "week")


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


@dataclasses.dataclass
class DayColumn:
    """One day of the week view: its header and its compact appointment chips."""

    key: str = ""
    weekday: str = ""
    date: str = ""
    is_today: bool = False
    chips: list[dict[str, str]] = dataclasses.field(default_factory=list)


def main_zone(actor: Actor, uow: UnitOfWork) -> str:
    """The zone the doctor's "today" is reckoned in: their first clinic's, else their next appointment's, else UTC."""
    if actor.provider_id is not None:
        clinics = list_availability(actor, uow, actor.provider_id).clinics
        if clinics:
            return clinics[0].timezone
    nearest = list_appointments(actor, uow, start=utcnow() - timedelta(days=1), limit=1)
    return nearest[0].clinic_timezone if nearest else "UTC"


def _midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _parse_day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _row(a: AppointmentView, now: datetime) -> dict[str, str]:
    held = a.status == "held"
    started = a.start_at <= now
    local_start = fmt.local(a.start_at, a.clinic_timezone)
    return {
        "id": str(a.id),
        "day": local_start.date().isoformat(),
        "time": fmt.time_range(a.start_at, a.end_at, a.clinic_timezone),
        "short_time": f"{local_start:%H:%M} {local_start.tzname()}",
        # A hold is a patient mid-booking or an open offer: not yet theirs to show.
        "patient": "Held slot" if held else (a.patient_name or "Unnamed patient"),
        "clinic": a.clinic_name,
        "modality": fmt.MODALITY_LABELS.get(a.modality, a.modality),
        "status_key": a.status,
        "status": fmt.STATUS_LABELS.get(a.status, a.status),
        "can_attend": "1" if started and a.status in {"booked", "completed", "no_show"} else "",
        "can_cancel": "1" if not started and a.status == "booked" else "",
        "past": "1" if a.end_at <= now else "",
    }


class ScheduleState(LiveRefreshMixin, SessionState):
    """Live on the doctor's own provider audience: bookings, cancellations and holds show without a reload."""

    view: str = "day"
    # The day shown (day view) or a day of the week shown (week view), ISO date in the main zone.
    anchor: str = ""
    today: str = ""
    zone_name: str = ""
    day_rows: list[dict[str, str]] = []
    week: list[DayColumn] = []
    loaded: bool = False

    cancel_id: str = ""
    cancel_label: str = ""
    cancel_reason: str = ""
    cancel_error: str = ""

    def _doctor(self) -> Actor | None:
        return self._actor(Role.DOCTOR)

    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        return (LiveProvider,)

    def _live_actor(self) -> Actor | None:
        return self._doctor()

    def _live_reload(self, actor: Actor) -> None:
        self._refresh(actor)

    def _days(self) -> list[date]:
        anchor = _parse_day(self.anchor) or _parse_day(self.today) or utcnow().date()
        if self.view == "week":
            monday = anchor - timedelta(days=anchor.weekday())
            return [monday + timedelta(days=i) for i in range(7)]
        return [anchor]

    def _refresh(self, actor: Actor) -> None:
        now = utcnow()
        with UnitOfWork(actor) as uow:
            zone = main_zone(actor, uow)
            today = fmt.local(now, zone).date()
            if not self.today or not _parse_day(self.anchor):
                self.anchor = today.isoformat()
            self.today = today.isoformat()
            days = self._days()
            # A day longer on each side: a clinic in another zone may put an appointment on these dates.
            appointments = list_appointments(
                actor,
                uow,
                start=_midnight(days[0], zone) - timedelta(days=1),
                end=_midnight(days[-1] + timedelta(days=1), zone) + timedelta(days=1),
                limit=1000,
            )
        self.zone_name = zone
        keys = {d.isoformat() for d in days}
        rows = [_row(a, now) for a in appointments if a.status in SHOWN_STATUSES]
        rows = [r for r in rows if r["day"] in keys]
        if self.view == "day":
            self.day_rows = rows
            self.week = []
        else:
            self.day_rows = []
            self.week = [
                DayColumn(
                    key=d.isoformat(),
                    weekday=d.strftime("%a"),
                    date=d.strftime("%d %b"),
                    is_today=d.isoformat() == self.today,
                    chips=[r for r in rows if r["day"] == d.isoformat()],
                )
                for d in days
            ]
        self.loaded = True

    @rx.event
    async def load(self):
        actor = self._doctor()
        if actor is None:
            return None
        # Every visit opens on today; the chosen view is kept.
        self.today = ""
        self.anchor = ""
        self.cancel_id = ""
        await self._mark_live_seen()
        self._refresh(actor)
        return None

    def _move(self, anchor: date | None):
        actor = self._doctor()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        self.anchor = anchor.isoformat() if anchor else ""
        self._refresh(actor)
        return None

    @rx.event
    def set_view(self, value: str | list[str]):
        view = value if isinstance(value, str) else (value[0] if value else "day")
        if view not in VIEWS:
            return None
        self.view = view
        return self._move(_parse_day(self.anchor))

    @rx.event
    def previous(self):
        step = timedelta(days=7 if self.view == "week" else 1)
        return self._move(self._days()[0] - step)

    @rx.event
    def next(self):
        step = timedelta(days=7 if self.view == "week" else 1)
        return self._move(self._days()[0] + step)

    @rx.event
    def go_today(self):
        return self._move(_parse_day(self.today))

    @rx.event
    def go_to(self, value: str):
        day = _parse_day(value)
        if day is None:
            return None
        return self._move(day)

    @rx.event
    def open_day(self, value: str):
        """From a week column to that day."""
        self.view = "day"
        return self.go_to(value)

    @rx.var
    def heading(self) -> str:
        day = _parse_day(self.anchor)
        if day is None:
            return ""
        if self.view == "week":
            monday = day - timedelta(days=day.weekday())
            sunday = monday + timedelta(days=6)
            start = f"{monday:%d %b}" if monday.year == sunday.year else f"{monday:%d %b %Y}"
            return f"Week of {start} – {sunday:%d %b %Y}"
        return day.strftime("%A %d %B %Y")

    @rx.var
    def zone_caption(self) -> str:
        if not self.zone_name:
            return ""
        return f"Today is {self.today_label} in {fmt.zone_label(self.zone_name)} ({self.zone_name})"

    @rx.var
    def today_label(self) -> str:
        day = _parse_day(self.today)
        return day.strftime("%a %d %b %Y") if day else ""

    @rx.var
    def showing_today(self) -> bool:
        if self.view == "week":
            return any(c.is_today for c in self.week)
        return self.anchor == self.today and self.today != ""

    # --- attendance --------------------------------------------------------------------------------

    def _attend(self, appointment_id: str, outcome: str, done: str):
        actor = self._doctor()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                mark_attendance(actor, uow, uuid.UUID(appointment_id), outcome=outcome)
                uow.commit()
        except DomainError as exc:
            self._refresh(actor)
            return rx.toast.error(_sentence(exc.message))
        except ValueError:
            return rx.toast.error("That appointment no longer exists.")
        self._refresh(actor)
        return rx.toast.success(done)

    @rx.event
    def mark_completed(self, appointment_id: str):
        return self._attend(appointment_id, "completed", "Marked as completed.")

    @rx.event
    def mark_no_show(self, appointment_id: str):
        return self._attend(appointment_id, "no_show", "Marked as a no-show.")

    # --- cancellation ------------------------------------------------------------------------------

    @rx.event
    def ask_cancel(self, appointment_id: str, label: str):
        self.cancel_id, self.cancel_label = appointment_id, label
        self.cancel_reason = self.cancel_error = ""

    @rx.event
    def keep_appointment(self):
        self.cancel_id = self.cancel_label = self.cancel_reason = self.cancel_error = ""

    @rx.event
    def set_cancel_reason(self, value: str):
        self.cancel_reason = value[:500]

    @rx.event
    def confirm_cancel(self):
        actor = self._doctor()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                cancel_appointment(actor, uow, uuid.UUID(self.cancel_id), reason=self.cancel_reason)
                uow.commit()
        except DomainError as exc:
            self.cancel_error = _sentence(exc.message)
            return None
        except ValueError:
            self.cancel_error = "That appointment no longer exists."
            return None
        self.cancel_id = self.cancel_label = self.cancel_reason = self.cancel_error = ""
        self._refresh(actor)
        return rx.toast.success("Appointment cancelled.")

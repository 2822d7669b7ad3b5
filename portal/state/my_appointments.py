"""My appointments: what is coming up (cancel, reschedule) and what has been."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import reflex as rx
from sqlmodel import col, select

from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.scheduling import booking, series
from backend.scheduling.models import Appointment
from backend.scheduling.policy import booking_rules, visible_appointment
from backend.scheduling.service import list_appointments
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from portal.components import format as fmt
from portal.i18n import N_, tr, trn
from portal.state.errors import words_for
from portal.state.live import LivePatient, LiveRefreshMixin
from portal.state.session import SESSION_ENDED, SessionState

GONE = N_("That appointment is no longer available. The list has been refreshed.")
PAST_SHOWN = 50
# Cancel reasons the booking service gives a hold that ends without becoming an appointment.
HOLD_ENDINGS = {"hold released", "hold expired"}


def hours_label(window: timedelta, lang: str = "en") -> str:
    """'24 hours', '1 hour', '90 minutes'."""
    minutes = int(window.total_seconds() // 60)
    if minutes % 60 == 0:
        return trn(lang, "{n} hour", "{n} hours", minutes // 60)
    return trn(lang, "{n} minute", "{n} minutes", minutes)


def window_label(window: timedelta, lang: str = "en") -> str:
    """'24 hours', '90 minutes', '3 days' (whole days from 48 hours on)."""
    hours, rest = divmod(int(window.total_seconds() // 60), 60)
    if not rest and hours >= 48 and hours % 24 == 0:
        return trn(lang, "{n} day", "{n} days", hours // 24)
    return hours_label(window, lang)


def change_rule(
    start: datetime, window: timedelta, now: datetime, zone: str, *, booking: bool = False, lang: str = "en"
) -> tuple[str, bool]:
    """What the patient may still do online with an appointment at `start`, said before they click, and whether it
    is already inside the clinic's cancellation window (a cancellation is late; a move needs a call).
    `booking`: worded for a time not booked yet (the confirm dialog)."""
    deadline = start - window
    span = window_label(window, lang)
    if now >= deadline:
        if booking:
            text = tr(
                lang,
                "This time is less than {window} away: once booked, cancelling it counts as a late cancellation, "
                "and to move it you call the clinic.",
                window=span,
            )
            return text, True
        text = tr(
            lang,
            "Less than {window} to go: cancelling now counts as a late cancellation, "
            "and to move it please call the clinic.",
            window=span,
        )
        return text, True
    until = fmt.moment(deadline, zone, lang)
    values = {"deadline": until, "window": span}
    if booking:
        text = tr(lang, "You can cancel or move it online until {deadline} ({window} before).", **values)
    else:
        text = tr(lang, "Free to cancel or move online until {deadline} ({window} before).", **values)
    after = tr(lang, "After that a cancellation counts as late, and a move needs a call to the clinic.")
    return f"{text} {after}", False


# A session still "booked" once it has started: the clinic has not recorded how it went yet. Saying "Booked" there
# told the patient something else than the doctor saw (issue 10 item 6).
IN_PROGRESS = N_("In progress")
NOT_RECORDED = N_("Ended, not yet recorded")
PAST_TONES = {"completed": "green", "no_show": "red", "late_cancelled": "red"}


def past_status(
    status: str, start: datetime, end: datetime, now: datetime, cancel_reason: str = "", *, lang: str = "en"
) -> tuple[str, str]:
    """The label and badge colour of an appointment in the patient's history: the same word the doctor's pages use
    (Completed, No-show, ...; portal/components/format.py STATUS_LABELS), and honest about a session that has
    started or ended without being marked."""
    if status == "booked" and start <= now:
        return (tr(lang, IN_PROGRESS), "teal") if now < end else (tr(lang, NOT_RECORDED), "gray")
    if status == "cancelled" and cancel_reason == "rescheduled":
        return tr(lang, "Moved"), "gray"
    label = fmt.label(lang, fmt.STATUS_LABELS, status, status.replace("_", " ").capitalize())
    return label, PAST_TONES.get(status, "gray")


def _extras(uow: UnitOfWork, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[uuid.UUID | None, str]]:
    """Series id and cancel reason of the patient's own appointments, which AppointmentView does not carry.

    One query in the actor's tenant-scoped unit of work; `ids` come from list_appointments (the patient's own).
    """
    if not ids:
        return {}
    rows = uow.session.exec(
        select(Appointment.id, Appointment.series_id, Appointment.cancel_reason).where(col(Appointment.id).in_(ids))
    )
    return {row[0]: (row[1], row[2] or "") for row in rows}


class MyAppointmentsState(LiveRefreshMixin, SessionState):
    """The patient's appointments; the cancel dialog's details are read fresh when it opens.

    Live on the patient's own audience: a cancellation by the clinic or a booking from another tab shows at once.
    """

    upcoming: list[dict[str, str]] = []
    past: list[dict[str, str]] = []
    loaded: bool = False
    page_error: str = ""

    cancel_open: bool = False
    cancel_id: str = ""
    cancel_when: str = ""
    cancel_provider: str = ""
    cancel_in_series: bool = False
    cancel_late_warning: str = ""
    cancel_reason: str = ""
    cancel_error: str = ""
    cancel_busy: bool = False

    def _refresh(self, actor: Actor) -> None:
        now = utcnow()
        with UnitOfWork(actor) as uow:
            appointments = list_appointments(actor, uow, limit=1000)
            extras = _extras(uow, [a.id for a in appointments])
            upcoming = [a for a in appointments if a.status == "booked" and a.start_at >= now]
            windows = {c: booking_rules(uow, c).cancellation_window for c in {a.clinic_id for a in upcoming}}
        lang = self.lang
        rules = {
            a.id: change_rule(a.start_at, windows[a.clinic_id], now, a.clinic_timezone, lang=lang) for a in upcoming
        }
        self.upcoming = [
            {
                "id": str(a.id),
                "rule": rules[a.id][0],
                "late": "1" if rules[a.id][1] else "",
                "day": fmt.day_label(a.start_at, a.clinic_timezone, lang),
                "time": fmt.time_range(a.start_at, a.end_at, a.clinic_timezone, lang),
                "zone": fmt.zone_label(a.clinic_timezone, lang),
                "provider": a.provider_name,
                "clinic": a.clinic_name,
                "modality": fmt.label(lang, fmt.MODALITY_LABELS, a.modality),
                "series": "1" if extras.get(a.id, (None, ""))[0] is not None else "",
            }
            for a in upcoming
        ]
        upcoming_ids = {a.id for a in upcoming}
        # A hold that was given back or lapsed never was an appointment: it is not history.
        earlier = [
            a for a in appointments if a.id not in upcoming_ids and extras.get(a.id, (None, ""))[1] not in HOLD_ENDINGS
        ]
        earlier.sort(key=lambda a: a.start_at, reverse=True)
        self.past = []
        for a in earlier[:PAST_SHOWN]:
            label, tone = past_status(a.status, a.start_at, a.end_at, now, extras.get(a.id, (None, ""))[1], lang=lang)
            self.past.append(
                {
                    "id": str(a.id),
                    "day": fmt.day_label(a.start_at, a.clinic_timezone, lang),
                    "time": fmt.time_range(a.start_at, a.end_at, a.clinic_timezone, lang),
                    "provider": a.provider_name,
                    "clinic": a.clinic_name,
                    "status": label,
                    "tone": tone,
                }
            )
        self.loaded = True

    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        return (LivePatient,)

    def _live_actor(self) -> Actor | None:
        return self._actor(Role.PATIENT)

    def _live_reload(self, actor: Actor) -> None:
        self._refresh(actor)

    @rx.event
    async def load(self):
        self.page_error = ""
        self.cancel_open = False
        actor = self._actor(Role.PATIENT)
        if actor is None:
            # A person of another role is told by the page itself whom it is for (SessionState.guard).
            return None if self.denied_role else rx.toast.error(tr(self.lang, SESSION_ENDED))
        await self._mark_live_seen()
        self._refresh(actor)
        return None

    @rx.event
    def open_cancel(self, appointment_id: str):
        """Open the cancel dialog, warning when the cancellation would be late under the clinic's policy."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        try:
            with UnitOfWork(actor) as uow:
                appointment = visible_appointment(actor, uow, uuid.UUID(appointment_id))
                window = booking_rules(uow, appointment.clinic_id).cancellation_window
        except (DomainError, ValueError):
            self._refresh(actor)
            return rx.toast.error(tr(self.lang, GONE))
        row = next((r for r in self.upcoming if r["id"] == appointment_id), None)
        now = utcnow()
        if row is None or appointment.status != "booked" or appointment.start_at <= now:
            self._refresh(actor)
            return rx.toast.error(tr(self.lang, GONE))
        self.cancel_id = appointment_id
        self.cancel_when = f"{row['day']}, {row['time']}"
        self.cancel_provider = row["provider"]
        self.cancel_in_series = appointment.series_id is not None
        late = appointment.start_at - now < window
        self.cancel_late_warning = (
            tr(
                self.lang,
                "This is within {window} of your appointment and will be recorded as a late cancellation.",
                window=hours_label(window, self.lang),
            )
            if late
            else ""
        )
        self.cancel_reason = ""
        self.cancel_error = ""
        self.cancel_busy = False
        self.cancel_open = True
        return None

    @rx.event
    def set_cancel_open(self, value: bool):
        self.cancel_open = value
        if not value:
            self.cancel_error = ""

    @rx.event
    def set_cancel_reason(self, value: str):
        self.cancel_reason = value[:500]

    @rx.event
    def confirm_cancel(self, scope: str):
        """Cancel this appointment (scope "this") or it and the rest of its series (scope "following")."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if self.cancel_busy or not self.cancel_id:
            return None
        self.cancel_busy = True
        yield
        try:
            with UnitOfWork(actor) as uow:
                appointment_id = uuid.UUID(self.cancel_id)
                if self.cancel_in_series:
                    series.cancel_series(
                        actor,
                        uow,
                        appointment_id,
                        scope="following" if scope == "following" else "this",
                        reason=self.cancel_reason,
                    )
                else:
                    booking.cancel_appointment(actor, uow, appointment_id, reason=self.cancel_reason)
                uow.commit()
        except DomainError as exc:
            self.cancel_error = words_for(exc, self.lang)
            self.cancel_busy = False
            return None
        except ValueError:
            self.cancel_error = tr(self.lang, GONE)
            self.cancel_busy = False
            return None
        self.cancel_busy = False
        self.cancel_open = False
        self._refresh(actor)
        if scope == "following" and self.cancel_in_series:
            return rx.toast.success(tr(self.lang, "This and the following appointments of the series were cancelled."))
        return rx.toast.success(tr(self.lang, "Appointment cancelled."))

    @rx.event
    def start_reschedule(self, appointment_id: str):
        """Open the provider's week to pick a new time, unless the appointment can no longer be moved online."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        try:
            with UnitOfWork(actor) as uow:
                appointment = visible_appointment(actor, uow, uuid.UUID(appointment_id))
                window = booking_rules(uow, appointment.clinic_id).cancellation_window
        except (DomainError, ValueError):
            self._refresh(actor)
            return rx.toast.error(tr(self.lang, GONE))
        if appointment.status != "booked" or appointment.start_at <= utcnow():
            self._refresh(actor)
            return rx.toast.error(tr(self.lang, GONE))
        if appointment.start_at - utcnow() < window:
            self.page_error = tr(
                self.lang,
                "Appointments within {window} cannot be moved online. Please call the clinic.",
                window=hours_label(window, self.lang),
            )
            return None
        self.page_error = ""
        return rx.redirect(f"/patient/provider/{appointment.provider_id}?reschedule={appointment.id}")

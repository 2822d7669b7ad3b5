"""The doctor's weekly hours (edited as a whole and saved at once) and their time off."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import Code, DomainError
from backend.scheduling.availability import (
    RuleInput,
    SessionInTimeOff,
    add_time_off,
    list_availability,
    preview_time_off,
    remove_time_off,
    replace_availability,
)
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from portal.components import format as fmt
from portal.state.session import SESSION_ENDED, SessionState

MODALITIES = [{"value": "in_person", "label": "In person"}, {"value": "telehealth", "label": "Telehealth"}]
RULE_FIELDS = {"weekday", "clinic_id", "start", "end", "session", "buffer", "modality"}
TIME_OFF_FIELDS = {"start_date", "start_time", "end_date", "end_time", "reason"}
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The service names a refused rule's field as "rules[2].end".
_RULE_FIELD = re.compile(r"^rules\[(\d+)\]")


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def _hhmm(value: time) -> str:
    return f"{value:%H:%M}"


def _parse_time(value: str) -> time | None:
    try:
        parsed = time.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(second=0, microsecond=0)


def _parse_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def _parse_minutes(value: str) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        return None


def period_label(start: datetime, end: datetime, zone: str) -> str:
    """'Tue 14 Jul 2026, 09:00–17:00 MDT' or 'Mon 13 Jul 2026, 09:00 MDT – Fri 17 Jul 2026, 17:00 MDT'."""
    s, e = fmt.local(start, zone), fmt.local(end, zone)
    if s.date() == e.date():
        return fmt.when(start, end, zone)
    return f"{fmt.day_label(start, zone)}, {s:%H:%M} {s.tzname()} – {fmt.day_label(end, zone)}, {e:%H:%M} {e.tzname()}"


def session_row(session: SessionInTimeOff, time_off_id: str = "") -> dict[str, str]:
    """A booked (or held) session in time off, as the time-off dialog and list show it (in its clinic's zone)."""
    held = session.status == "held"
    return {
        "id": str(session.appointment_id),
        "time_off_id": time_off_id,
        "when": fmt.when(session.start_at, session.end_at, session.clinic_timezone),
        # Whom a slot is held for stays off the doctor's pages until they take it.
        "patient": "Held for a waitlist offer" if held else (session.patient_name or "Booked session"),
        "clinic": session.clinic_name,
        "modality": fmt.MODALITY_LABELS.get(session.modality, session.modality),
        "status": "Held" if held else "Booked",
    }


class AvailabilityState(SessionState):
    clinics: list[dict[str, str]] = []
    # The zone time off is entered and shown in: the doctor's first clinic's.
    zone_name: str = "UTC"
    # Rows as typed (strings), so a half-edited table survives a refused save.
    rules: list[dict[str, str]] = []
    rules_error: str = ""
    # The row the error is about (-1: none or the whole table), highlighted in the editor.
    rules_error_row: int = -1
    rules_dirty: bool = False
    time_off: list[dict[str, str]] = []
    to_form: dict[str, str] = {}
    to_errors: dict[str, str] = {}
    loaded: bool = False
    # Time off over booked sessions: the dialog that lists them and asks to cancel or keep them.
    conflicts: list[dict[str, str]] = []
    conflict_open: bool = False
    conflict_busy: bool = False
    conflict_error: str = ""
    _pending_period: tuple[str, str] = ("", "")
    # Sessions kept booked during upcoming time off (each names its time off), listed under it.
    kept_sessions: list[dict[str, str]] = []

    def _doctor(self) -> Actor | None:
        return self._actor(Role.DOCTOR)

    def _load(self, actor: Actor, *, rules: bool = True) -> None:
        """Read hours (unless `rules` is False: keep the edits) and time off from the server."""
        if actor.provider_id is None:  # a clinician login not linked to a provider: nothing to edit
            self.loaded = True
            return
        with UnitOfWork(actor) as uow:
            view = list_availability(actor, uow, actor.provider_id)
        self.clinics = [
            {"id": str(c.id), "name": c.name, "timezone": c.timezone, "zone": fmt.zone_label(c.timezone)}
            for c in view.clinics
        ]
        self.zone_name = view.clinics[0].timezone if view.clinics else "UTC"
        if rules:
            ordered = sorted(view.rules, key=lambda r: (r.weekday, r.start_time, str(r.clinic_id)))
            self.rules = [
                {
                    "weekday": str(r.weekday),
                    "clinic_id": str(r.clinic_id),
                    "start": _hhmm(r.start_time),
                    "end": _hhmm(r.end_time),
                    "session": str(r.session_minutes),
                    "buffer": str(r.buffer_minutes),
                    "modality": r.modality,
                    # Kept as they are: the editor does not show them, saving must not drop them.
                    "valid_from": r.valid_from.isoformat() if r.valid_from else "",
                    "valid_until": r.valid_until.isoformat() if r.valid_until else "",
                }
                for r in ordered
            ]
            self.rules_dirty = False
            self.rules_error = ""
            self.rules_error_row = -1
        now = utcnow()
        self.time_off = [
            {
                "id": str(t.id),
                "when": period_label(t.start_at, t.end_at, self.zone_name),
                "reason": t.reason,
                "current": "1" if t.start_at <= now else "",
            }
            for t in sorted(view.time_off, key=lambda t: t.start_at)
            if t.end_at > now
        ]
        kept: list[dict[str, str]] = []
        for session in view.sessions_in_time_off:
            span = next((t for t in view.time_off if t.start_at < session.end_at and session.start_at < t.end_at), None)
            kept.append(session_row(session, str(span.id) if span is not None else ""))
        self.kept_sessions = kept
        self.loaded = True

    @rx.event
    def load(self):
        actor = self._doctor()
        if actor is None:
            return
        self.to_form = {"start_date": "", "start_time": "09:00", "end_date": "", "end_time": "17:00", "reason": ""}
        self.to_errors = {}
        self._load(actor)

    # --- weekly hours ------------------------------------------------------------------------------

    @rx.var
    def zone_label(self) -> str:
        return f"{fmt.zone_label(self.zone_name)} ({self.zone_name})"

    @rx.var
    def rule_rows(self) -> list[dict[str, str]]:
        zones = {c["id"]: c["zone"] for c in self.clinics}
        return [
            {**r, "zone": zones.get(r["clinic_id"], ""), "error": "1" if i == self.rules_error_row else ""}
            for i, r in enumerate(self.rules)
        ]

    @rx.var
    def modalities(self) -> list[dict[str, str]]:
        return MODALITIES

    @rx.event
    def set_rule_field(self, index: int, field: str, value: str):
        if field not in RULE_FIELDS or not 0 <= index < len(self.rules):
            return
        rules = [dict(r) for r in self.rules]
        rules[index][field] = str(value)[:20]
        self.rules = rules
        self.rules_dirty = True

    @rx.event
    def add_rule(self):
        last = self.rules[-1] if self.rules else None
        clinic = last["clinic_id"] if last else (self.clinics[0]["id"] if self.clinics else "")
        weekday = str((int(last["weekday"]) + 1) % 7) if last and last["weekday"].isdigit() else "0"
        self.rules = [
            *self.rules,
            {
                "weekday": weekday,
                "clinic_id": clinic,
                "start": last["start"] if last else "09:00",
                "end": last["end"] if last else "17:00",
                "session": last["session"] if last else "50",
                "buffer": last["buffer"] if last else "10",
                "modality": last["modality"] if last else "in_person",
                "valid_from": "",
                "valid_until": "",
            },
        ]
        self.rules_dirty = True

    @rx.event
    def remove_rule(self, index: int):
        if 0 <= index < len(self.rules):
            self.rules = [r for i, r in enumerate(self.rules) if i != index]
            self.rules_dirty = True
            if self.rules_error_row == index:
                self.rules_error_row = -1
            elif self.rules_error_row > index:
                self.rules_error_row -= 1

    @rx.event
    def discard_rules(self):
        actor = self._doctor()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        self._load(actor)
        return None

    def _rule_inputs(self) -> list[RuleInput] | tuple[int, str]:
        """The rows as service input, or the first row that cannot be read and why."""
        result: list[RuleInput] = []
        for i, row in enumerate(self.rules):
            day = WEEKDAY_NAMES[int(row["weekday"])] if row["weekday"].isdigit() and int(row["weekday"]) < 7 else "?"
            where = f"Rule {i + 1} ({day})"
            problem = ""
            start, end = _parse_time(row["start"]), _parse_time(row["end"])
            session, buffer = _parse_minutes(row["session"]), _parse_minutes(row["buffer"])
            if day == "?":
                problem = "choose a weekday"
            elif not row["clinic_id"]:
                problem = "choose a clinic"
            elif start is None or end is None:
                problem = "enter start and end as HH:MM"
            elif session is None or buffer is None:
                problem = "session and buffer minutes must be whole numbers"
            if problem or start is None or end is None or session is None or buffer is None:
                return i, f"{where}: {problem}."
            try:
                result.append(
                    RuleInput(
                        clinic_id=uuid.UUID(row["clinic_id"]),
                        weekday=int(row["weekday"]),
                        start=start,
                        end=end,
                        session_minutes=session,
                        buffer_minutes=buffer,
                        modality=row["modality"],
                        valid_from=_parse_date(row.get("valid_from", "")),
                        valid_until=_parse_date(row.get("valid_until", "")),
                    )
                )
            except ValueError as exc:
                return i, f"{where}: {exc}"
        return result

    @rx.event
    def save_rules(self):
        """Replace the weekly hours with the table as it stands; on refusal keep the edits and say why."""
        actor = self._doctor()
        if actor is None or actor.provider_id is None:
            return rx.toast.error(SESSION_ENDED)
        inputs = self._rule_inputs()
        if isinstance(inputs, tuple):
            self.rules_error_row, self.rules_error = inputs
            return None
        try:
            with UnitOfWork(actor) as uow:
                replace_availability(actor, uow, actor.provider_id, inputs)
                uow.commit()
        except DomainError as exc:
            self.rules_error = _sentence(exc.message)
            match = _RULE_FIELD.match(exc.field or "")
            self.rules_error_row = int(match.group(1)) if match else -1
            return None
        self._load(actor)
        return rx.toast.success("Weekly hours saved.")

    # --- time off ----------------------------------------------------------------------------------

    @rx.event
    def set_time_off_field(self, field: str, value: str):
        if field in TIME_OFF_FIELDS:
            self.to_form = {**self.to_form, field: str(value)[:200]}

    def _time_off_period(self) -> tuple[datetime, datetime] | dict[str, str]:
        form, errors = self.to_form, {}
        zone = ZoneInfo(self.zone_name)
        parts: dict[str, Any] = {}
        for side in ("start", "end"):
            day, at = _parse_date(form.get(f"{side}_date", "")), _parse_time(form.get(f"{side}_time", ""))
            if day is None:
                errors[f"{side}_date"] = f"Choose the {side} date."
            if at is None:
                errors[f"{side}_time"] = f"Enter the {side} time as HH:MM."
            if day is not None and at is not None:
                # Wall-clock time in the main clinic's zone, stored as aware UTC.
                parts[side] = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
        if errors:
            return errors
        if parts["end"] <= parts["start"]:
            return {"end_date": "The end must be after the start."}
        return parts["start"], parts["end"]

    @rx.event
    def submit_time_off(self, form: dict[str, Any]):
        """Add the period typed in the form (read from the form itself: it is what the doctor sees). When it covers
        booked sessions, nothing is added yet: the dialog lists them and asks to cancel or keep them."""
        actor = self._doctor()
        if actor is None or actor.provider_id is None:
            return rx.toast.error(SESSION_ENDED)
        self.to_form = {k: str(form.get(k, self.to_form.get(k, "")))[:200] for k in TIME_OFF_FIELDS}
        period = self._time_off_period()
        if isinstance(period, dict):
            self.to_errors = period
            return None
        try:
            with UnitOfWork(actor) as uow:
                sessions = preview_time_off(actor, uow, actor.provider_id, start=period[0], end=period[1])
        except DomainError as exc:
            self._show_time_off_error(exc)
            return None
        self.to_errors = {}
        if sessions:
            self.conflicts = [session_row(x) for x in sessions]
            self._pending_period = (period[0].isoformat(), period[1].isoformat())
            self.conflict_error = ""
            self.conflict_busy = False
            self.conflict_open = True
            return None
        return self._add_time_off(actor, period[0], period[1], None)

    def _show_time_off_error(self, exc: DomainError) -> None:
        field = {"start": "start_date", "end": "end_date", "reason": "reason"}.get(exc.field or "", "form")
        self.to_errors = {field: _sentence(exc.message)}

    def _add_time_off(self, actor: Actor, start: datetime, end: datetime, choice: str | None):
        if actor.provider_id is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                add_time_off(
                    actor,
                    uow,
                    actor.provider_id,
                    start=start,
                    end=end,
                    reason=self.to_form.get("reason", ""),
                    booked_sessions=choice,
                )
                uow.commit()
        except DomainError as exc:
            if exc.code == Code.TIME_OFF_OVERLAPS_SESSIONS:
                # A session was booked in that period meanwhile: list what is there now and ask.
                with UnitOfWork(actor) as uow:
                    sessions = preview_time_off(actor, uow, actor.provider_id, start=start, end=end)
                self.conflicts = [session_row(x) for x in sessions]
                self._pending_period = (start.isoformat(), end.isoformat())
                self.conflict_error = "A session was booked in that period meanwhile: choose again."
                self.conflict_open = True
                return None
            if self.conflict_open:
                self.conflict_error = _sentence(exc.message)
            else:
                self._show_time_off_error(exc)
            return None
        n = len(self.conflicts) if choice else 0
        self.to_errors = {}
        self.to_form = {**self.to_form, "start_date": "", "end_date": "", "reason": ""}
        self.conflicts = []
        self.conflict_open = False
        self._pending_period = ("", "")
        self._load(actor, rules=False)
        sessions = f"{n} session{'s' if n != 1 else ''}"
        if choice == "cancel":
            return rx.toast.success(f"Time off added. {sessions} cancelled; the patients are notified.")
        if choice == "keep":
            return rx.toast.success(
                f"Time off added. {sessions} {'stays' if n == 1 else 'stay'} booked, listed under the time off."
            )
        return rx.toast.success("Time off added. No one can book you in that period.")

    @rx.event
    def resolve_time_off(self, choice: str):
        """The dialog's answer: "cancel" the sessions (patients notified) or "keep" them; the time off is added."""
        actor = self._doctor()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        if choice not in ("cancel", "keep") or self.conflict_busy or not self._pending_period[0]:
            return None
        start, end = (datetime.fromisoformat(v) for v in self._pending_period)
        self.conflict_busy = True
        try:
            return self._add_time_off(actor, start, end, choice)
        finally:
            self.conflict_busy = False

    @rx.event
    def close_conflicts(self):
        """Back to the form: nothing was added."""
        self.conflict_open = False
        self.conflicts = []
        self.conflict_error = ""
        self._pending_period = ("", "")

    @rx.event
    def delete_time_off(self, time_off_id: str):
        actor = self._doctor()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                remove_time_off(actor, uow, uuid.UUID(time_off_id))
                uow.commit()
        except DomainError as exc:
            self._load(actor, rules=False)
            return rx.toast.error(_sentence(exc.message))
        except ValueError:
            return rx.toast.error("That time off no longer exists.")
        self._load(actor, rules=False)
        return rx.toast.success("Time off removed.")

"""Notification pages: the patient's preferences and history, the admin outbox, the unsubscribe link."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import reflex as rx
from sqlmodel import select

from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.identity.models import Patient
from backend.notifications import reminders, reports
from backend.notifications import service as notes
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.types import utcnow
from portal.components import format as fmt
from portal.state.admin import AdminState
from portal.state.live import LivePatient, LiveRefreshMixin
from portal.state.options import option_or
from portal.state.session import SESSION_ENDED, SessionState

ALL = "all"
CHANNEL_LABELS = {"email": "E-mail", "sms": "SMS", "whatsapp": "WhatsApp", "console": "In-app outbox"}
STATUS_LABELS = {
    "pending": "Waiting to send",
    "sending": "Sending",
    "sent": "Sent",
    "failed": "Failed, will retry",
    "dead": "Dead letter",
    "unknown": "Checking with provider",
}
STATUS_COLORS = {"sent": "green", "pending": "gray", "sending": "blue", "failed": "amber", "dead": "red"}
STATUS_FILTERS = [
    {"id": ALL, "name": "Any status"},
    {"id": "dead", "name": "Dead letter"},
    {"id": "failed", "name": "Failed, will retry"},
    {"id": "sent", "name": "Sent"},
    {"id": "pending", "name": "Waiting to send"},
    {"id": "sending", "name": "Sending"},
    {"id": "unknown", "name": "Checking with provider"},
]
CHANNEL_FILTERS = [{"id": ALL, "name": "Any channel"}] + [{"id": k, "name": v} for k, v in CHANNEL_LABELS.items()]
EVENT_FILTERS = [{"id": ALL, "name": "Any message"}] + [{"id": k, "name": v} for k, v in notes.EVENT_LABELS.items()]


_UNITS = {"d": 1440, "h": 60, "m": 1}


def offsets_label(minutes: list[int]) -> str:
    """[2880, 120] -> '48h, 2h'; [90] -> '90m'."""

    def one(value: int) -> str:
        if value % 60 == 0:
            return f"{value // 60}h"
        return f"{value}m"

    return ", ".join(one(v) for v in minutes)


def parse_offsets_text(raw: str) -> list[int]:
    """'48h, 2h' or '2d 30m' -> minutes; a bare number is hours. ValueError with a message for people."""
    values: list[int] = []
    for part in raw.replace(";", ",").replace(" ", ",").split(","):
        part = part.strip().lower()
        if not part:
            continue
        unit = part[-1] if part[-1] in _UNITS else "h"
        number = part[:-1] if part[-1] in _UNITS else part
        if not number.isdigit():
            raise ValueError(f"‘{part}’ is not a time. Write hours or minutes, like 48h, 2h or 30m.")
        values.append(int(number) * _UNITS[unit])
    return values


def _sentence(message: str) -> str:
    message = message.strip()
    return (message[:1].upper() + message[1:]) if message else message


def _when(moment: datetime | None, zone: str) -> str:
    return fmt.moment(moment, zone) if moment is not None else ""


def _zone_for_patient(uow: UnitOfWork, patient_id: uuid.UUID | None) -> str:
    """The patient's home clinic's zone, else the practice's first clinic's, else UTC."""
    patient = uow.session.get(Patient, patient_id) if patient_id else None
    clinic = uow.session.get(Clinic, patient.home_clinic_id) if patient and patient.home_clinic_id else None
    if clinic is None:
        clinic = uow.session.exec(select(Clinic).order_by(Clinic.name)).first()
    return clinic.timezone if clinic is not None else "UTC"


# The patient reads their own history in plain words; the admin outbox keeps the operational ones.
PATIENT_STATUS_LABELS = {**STATUS_LABELS, "failed": "Trying again", "dead": "Not delivered", "unknown": "Sending"}


def note_row(view: notes.NotificationView, zone: str, *, for_patient: bool = False) -> dict[str, str]:
    status = view.status
    if status == "failed":
        detail = f"Attempt {view.attempts}; next try {_when(view.next_attempt_at, zone)}"
    elif status == "pending" and view.next_attempt_at > utcnow():
        detail = f"Held for quiet hours until {_when(view.next_attempt_at, zone)}"
    elif status == "sent":
        detail = f"Sent {_when(view.sent_at, zone)}"
    elif status == "dead" and for_patient:
        detail = "We could not deliver this message."
    elif status == "dead" and view.provider_status in reports.NEGATIVE:
        detail = f"Reported by the provider {_when(view.provider_status_at, zone)}"  # the error line says what
    elif status == "dead":
        detail = f"Gave up after {view.attempts} attempt{'s' if view.attempts != 1 else ''}"
    else:
        detail = ""
    # After a send, what the provider later reported (Delivered, Read, Delayed ...), from its callbacks.
    report = ""
    if status == "sent" and view.provider_status:
        report = f"{view.provider_status_label} {_when(view.provider_status_at, zone)}"
    return {
        "id": str(view.id),
        "patient_id": str(view.patient_id) if view.patient_id else "",
        "patient": view.patient_name,
        "event": view.event_label,
        "channel": CHANNEL_LABELS.get(view.channel, view.channel),
        "status": (PATIENT_STATUS_LABELS if for_patient else STATUS_LABELS).get(status, status),
        "status_key": status,
        "status_color": STATUS_COLORS.get(status, "gray"),
        "created": _when(view.created_at, zone),
        "detail": detail,
        "report": report,
        "report_color": "green" if view.provider_status in ("delivered", "read") else "gray",
        "error": view.last_error,
        "retryable": "1" if status in ("failed", "dead") else "",
    }


class MessageMixin(rx.State, mixin=True):
    """The dialog that shows one message as the patient got it."""

    message_open: bool = False
    message_title: str = ""
    message_to: str = ""
    message_subject: str = ""
    message_text: str = ""
    message_meta: str = ""

    def _message_actor(self) -> Actor | None:
        raise NotImplementedError

    @rx.event
    def open_message(self, notification_id: str):
        actor = self._message_actor()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                message = notes.read_message(actor, uow, uuid.UUID(notification_id))
                zone = _zone_for_patient(uow, message.notification.patient_id)
        except (DomainError, ValueError) as exc:
            return rx.toast.error(_sentence(getattr(exc, "message", "This message cannot be shown.")))
        view = message.notification
        self.message_title = view.event_label
        self.message_to = message.to
        self.message_subject = message.subject
        self.message_text = message.text
        channel = CHANNEL_LABELS.get(view.channel, view.channel)
        self.message_meta = (
            f"{channel} · {STATUS_LABELS.get(view.status, view.status)} · {_when(view.created_at, zone)}"
        )
        self.message_open = True
        return None

    @rx.event
    def set_message_open(self, value: bool):
        self.message_open = value


class PatientNotificationsState(MessageMixin, LiveRefreshMixin, SessionState):
    """/patient/notifications: how I want to be told, and what I was told."""

    email_opt_in: bool = True
    sms_opt_in: bool = False
    whatsapp_opt_in: bool = False
    quiet_enabled: bool = False
    quiet_start: str = ""
    quiet_end: str = ""
    has_email: bool = True
    has_phone: bool = False
    unsubscribed: bool = False
    console_mode: bool = True
    zone: str = "UTC"
    errors: dict[str, str] = {}
    saved: str = ""
    form_key: int = 0
    history: list[dict[str, str]] = []
    loaded: bool = False

    def _message_actor(self) -> Actor | None:
        return self._actor(Role.PATIENT)

    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        return (LivePatient,)

    def _live_actor(self) -> Actor | None:
        return self._actor(Role.PATIENT)

    def _live_reload(self, actor: Actor) -> None:
        self._load_history(actor)

    def _apply(self, view: notes.PreferencesView) -> None:
        self.email_opt_in = view.email_opt_in
        self.sms_opt_in = view.sms_opt_in
        self.whatsapp_opt_in = view.whatsapp_opt_in
        self.quiet_enabled = view.quiet_hours_start is not None
        self.quiet_start = view.quiet_hours_start or "21:00"
        self.quiet_end = view.quiet_hours_end or "08:00"
        self.has_email = view.has_email
        self.has_phone = view.has_phone
        self.unsubscribed = view.unsubscribed
        self.console_mode = view.channel_mode == "console"
        self.form_key += 1

    def _load_history(self, actor: Actor) -> None:
        with UnitOfWork(actor) as uow:
            views = notes.list_notifications(actor, uow, limit=50)
            self.zone = _zone_for_patient(uow, actor.patient_id)
        self.history = [note_row(v, self.zone, for_patient=True) for v in views]

    @rx.event
    async def load(self):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return
        self.message_open = False
        await self._mark_live_seen()
        with UnitOfWork(actor) as uow:
            view = notes.get_preferences(actor, uow)
        self._apply(view)
        self.errors, self.saved = {}, ""
        self._load_history(actor)
        self.loaded = True

    @rx.event
    def set_email_opt_in(self, value: bool):
        self.email_opt_in, self.saved = value, ""

    @rx.event
    def set_sms_opt_in(self, value: bool):
        self.sms_opt_in, self.saved = value, ""

    @rx.event
    def set_whatsapp_opt_in(self, value: bool):
        self.whatsapp_opt_in, self.saved = value, ""

    @rx.event
    def set_quiet_enabled(self, value: bool):
        self.quiet_enabled, self.saved = value, ""

    @rx.event
    def save(self, form: dict[str, Any]):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        start = str(form.get("quiet_hours_start") or "").strip() if self.quiet_enabled else ""
        end = str(form.get("quiet_hours_end") or "").strip() if self.quiet_enabled else ""
        update = notes.PreferencesUpdate(
            email_opt_in=self.email_opt_in,
            sms_opt_in=self.sms_opt_in,
            whatsapp_opt_in=self.whatsapp_opt_in,
            quiet_hours_start=start or None,
            quiet_hours_end=end or None,
        )
        if self.quiet_enabled:
            self.quiet_start, self.quiet_end = start, end
        try:
            with UnitOfWork(actor) as uow:
                view = notes.update_preferences(actor, uow, update)
                uow.commit()
        except DomainError as exc:
            self.errors = {exc.field or "form": _sentence(exc.message)}
            self.saved = ""
            return None
        self.errors = {}
        self._apply(view)
        self.saved = "Saved. New messages follow these choices."
        return None

    @rx.var
    def nothing_chosen(self) -> bool:
        return not (self.email_opt_in or self.sms_opt_in or self.whatsapp_opt_in)

    @rx.var
    def zone_label(self) -> str:
        return fmt.zone_label(self.zone)


class OutboxState(MessageMixin, LiveRefreshMixin, AdminState):
    """/admin/outbox: every message of the practice with its delivery state; dead letters can be sent again."""

    rows: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    status_filter: str = ALL
    channel_filter: str = ALL
    event_filter: str = ALL
    patient_filter: str = ""
    patient_name: str = ""
    # The filtered patient's preferences, read-only: staff see them, never change them.
    patient_prefs: dict[str, str] = {}
    zone: str = "UTC"
    loaded: bool = False
    load_error: str = ""
    # Practice settings: reminder times and the quiet-hours rule.
    reminder_text: str = ""
    reminder_source: str = ""
    email_now: bool = True
    settings_error: str = ""
    settings_saved: str = ""
    settings_key: int = 0

    def _message_actor(self) -> Actor | None:
        return self._admin()

    def _load_settings(self, actor: Actor) -> None:
        with UnitOfWork(actor) as uow:
            view = reminders.get_notification_settings(actor, uow)
        self._apply_settings(view)

    def _apply_settings(self, view: reminders.NotificationSettingsView) -> None:
        self.reminder_text = offsets_label(view.reminder_offsets_minutes)
        self.reminder_source = "Practice setting" if view.source == "practice" else "Default"
        self.email_now = view.quiet_hours_email_now
        self.settings_key += 1

    @rx.event
    def set_email_now(self, value: bool):
        self.email_now, self.settings_saved = value, ""

    @rx.event
    def save_settings(self, form: dict[str, Any]):
        actor = self._admin()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        raw = str(form.get("reminder_offsets") or "")
        try:
            offsets = parse_offsets_text(raw)
            with UnitOfWork(actor) as uow:
                view = reminders.update_notification_settings(
                    actor, uow, reminder_offsets_minutes=offsets, quiet_hours_email_now=self.email_now
                )
                uow.commit()
        except ValueError as exc:
            self.settings_error, self.settings_saved = _sentence(str(exc)), ""
            return None
        except DomainError as exc:
            self.settings_error, self.settings_saved = _sentence(exc.message), ""
            return None
        self.settings_error = ""
        self._apply_settings(view)
        self.settings_saved = "Saved."
        return None

    def _live_actor(self) -> Actor | None:
        return self._admin()

    def _live_reload(self, actor: Actor) -> None:
        self._query(actor)

    def _query(self, actor: Actor) -> None:
        patient_id = uuid.UUID(self.patient_filter) if self.patient_filter else None
        try:
            with UnitOfWork(actor) as uow:
                views = notes.list_notifications(
                    actor,
                    uow,
                    status=None if self.status_filter == ALL else self.status_filter,
                    channel=None if self.channel_filter == ALL else self.channel_filter,
                    event_type=None if self.event_filter == ALL else self.event_filter,
                    patient_id=patient_id,
                    limit=notes.MAX_PAGE,
                )
                self.counts = notes.outbox_counts(actor, uow)
                self.zone = _zone_for_patient(uow, None)
                if patient_id is not None:
                    pv = notes.get_preferences(actor, uow, patient_id)
                    patient = uow.session.get(Patient, patient_id)
                    self.patient_name = patient.full_name if patient else ""
                    self.patient_prefs = _prefs_summary(pv)
                else:
                    self.patient_name, self.patient_prefs = "", {}
        except DomainError as exc:
            self.load_error, self.rows, self.loaded = _sentence(exc.message), [], True
            return
        self.rows = [note_row(v, self.zone) for v in views]
        self.load_error = ""
        self.loaded = True

    @rx.event
    async def load(self):
        actor = self._admin()
        if actor is None:
            return
        self._refresh(actor)  # the shared clinic list (the shell's selector)
        self.message_open = False
        self.settings_error = self.settings_saved = ""
        await self._mark_live_seen()
        self._query(actor)
        self._load_settings(actor)

    @rx.event
    async def set_status_filter(self, value: str):
        self.status_filter = option_or(value, STATUS_FILTERS, ALL)
        return await self._reload_now()

    @rx.event
    async def set_channel_filter(self, value: str):
        self.channel_filter = option_or(value, CHANNEL_FILTERS, ALL)
        return await self._reload_now()

    @rx.event
    async def set_event_filter(self, value: str):
        self.event_filter = option_or(value, EVENT_FILTERS, ALL)
        return await self._reload_now()

    @rx.event
    async def show_patient(self, patient_id: str):
        try:
            self.patient_filter = str(uuid.UUID(patient_id))
        except ValueError:
            self.patient_filter = ""
        return await self._reload_now()

    @rx.event
    async def clear_filters(self):
        self.status_filter = self.channel_filter = self.event_filter = ALL
        self.patient_filter = ""
        return await self._reload_now()

    @rx.event
    async def retry(self, notification_id: str):
        actor = self._admin()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                notes.retry_notification(actor, uow, uuid.UUID(notification_id))
                uow.commit()
        except (DomainError, ValueError) as exc:
            await self._reload_now()
            return rx.toast.error(_sentence(getattr(exc, "message", "This message cannot be sent again.")))
        await self._reload_now()
        return rx.toast.success("Queued to send again.")

    @rx.var
    def status_options(self) -> list[dict[str, str]]:
        return [
            {"id": f["id"], "name": f["name"] + (f" ({self.counts.get(f['id'], 0)})" if f["id"] != ALL else "")}
            for f in STATUS_FILTERS
        ]

    @rx.var
    def channel_options(self) -> list[dict[str, str]]:
        return CHANNEL_FILTERS

    @rx.var
    def event_options(self) -> list[dict[str, str]]:
        return EVENT_FILTERS

    @rx.var
    def dead_count(self) -> int:
        return int(self.counts.get("dead", 0))

    @rx.var
    def failed_count(self) -> int:
        return int(self.counts.get("failed", 0))

    @rx.var
    def sent_count(self) -> int:
        return int(self.counts.get("sent", 0))

    @rx.var
    def waiting_count(self) -> int:
        return (
            int(self.counts.get("pending", 0)) + int(self.counts.get("sending", 0)) + int(self.counts.get("unknown", 0))
        )

    @rx.var
    def summary(self) -> str:
        shown = len(self.rows)
        if shown >= notes.MAX_PAGE:
            return f"Showing the newest {shown} messages that match."
        return "1 message matches." if shown == 1 else f"{shown} messages match."


def _prefs_summary(view: notes.PreferencesView) -> dict[str, str]:
    chosen = ", ".join(CHANNEL_LABELS[c] for c in view.chosen_channels) or "None"
    if view.unsubscribed:
        chosen = "None: unsubscribed from everything"
    quiet = (
        f"{view.quiet_hours_start}–{view.quiet_hours_end}"
        if view.quiet_hours_start and view.quiet_hours_end
        else "None"
    )
    return {
        "channels": chosen,
        "quiet": quiet,
        "contact": ("e-mail on file" if view.has_email else "no e-mail")
        + (", mobile on file" if view.has_phone else ", no mobile"),
    }


class UnsubscribeState(rx.State):
    """/unsubscribe/[token]: no sign-in; the signed token names the patient and the practice."""

    practice: str = ""
    valid: bool = False
    done: str = ""
    checked: bool = False

    def _token(self) -> str:
        parts = [p for p in (self.router.url.path or "").split("/") if p]
        return parts[1] if len(parts) >= 2 and parts[0] == "unsubscribe" else ""

    @rx.event
    def load(self):
        self.done = ""
        try:
            self.practice = notes.practice_for_token(self._token())
            self.valid = True
        except ValueError:
            self.practice, self.valid = "", False
        self.checked = True

    @rx.event
    def stop(self, everything: bool):
        try:
            self.practice = notes.unsubscribe_with_token(self._token(), everything=everything)
        except ValueError:
            self.valid = False
            return
        if everything:
            self.done = f"{self.practice} will not send you any more e-mails or text messages."
        else:
            self.done = f"{self.practice} will not send you any more e-mails."

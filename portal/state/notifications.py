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
from backend.notifications import preferences as prefs
from backend.notifications import reminders, reports
from backend.notifications import service as notes
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.types import utcnow
from portal import i18n
from portal.components import format as fmt
from portal.i18n import N_, tr, trn
from portal.state.admin import AdminState
from portal.state.live import LivePatient, LiveRefreshMixin
from portal.state.options import option_or
from portal.state.session import SESSION_ENDED, SessionState

ALL = "all"
CHANNEL_LABELS = {"email": N_("E-mail"), "sms": N_("SMS"), "whatsapp": N_("WhatsApp"), "console": N_("In-app outbox")}
STATUS_LABELS = {
    "pending": N_("Waiting to send"),
    "sending": N_("Sending"),
    "sent": N_("Sent"),
    "failed": N_("Failed, will retry"),
    "dead": N_("Dead letter"),
    "unknown": N_("Checking with provider"),
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


# The preferences service's refusals (backend/notifications/service.py update_preferences), as sentences, for the
# patient's language; any other message is shown as the service worded it.
PREFERENCE_ERRORS = {
    N_("Give both the start and the end of your quiet hours, or neither"),
    N_("Quiet hours must not start and end at the same time"),
    N_("Add a mobile number to your record before choosing text messages"),
    N_("Add an e-mail address to your record before choosing e-mail"),
    N_("Quiet hours start must be a time like 21:00"),
    N_("Quiet hours end must be a time like 21:00"),
}


def _preference_error(message: str, lang: str) -> str:
    said = _sentence(message)
    return tr(lang, said) if said in PREFERENCE_ERRORS else said


def _when(moment: datetime | None, zone: str, lang: str = "en") -> str:
    return fmt.moment(moment, zone, lang) if moment is not None else ""


def _zone_for_patient(uow: UnitOfWork, patient_id: uuid.UUID | None) -> str:
    """The patient's home clinic's zone, else the practice's first clinic's, else UTC."""
    patient = uow.session.get(Patient, patient_id) if patient_id else None
    clinic = uow.session.get(Clinic, patient.home_clinic_id) if patient and patient.home_clinic_id else None
    if clinic is None:
        clinic = uow.session.exec(select(Clinic).order_by(Clinic.name)).first()
    return clinic.timezone if clinic is not None else "UTC"


# The patient reads their own history in plain words; the admin outbox keeps the operational ones.
PATIENT_STATUS_LABELS = {
    **STATUS_LABELS,
    "failed": N_("Trying again"),
    "dead": N_("Not delivered"),
    "unknown": N_("Sending"),
}
# What a message was about, as the patient reads it in their language (backend EVENT_LABELS words it in English).
PATIENT_EVENT_LABELS = {
    "appointment_booked": N_("Appointment booked"),
    "appointment_cancelled": N_("Appointment cancelled"),
    "appointment_rescheduled": N_("Appointment moved"),
    "appointment_reminder": N_("Appointment reminder"),
    "waitlist_offer": N_("Waitlist offer"),
    "waitlist_offer_expired": N_("Offer expired"),
    "waitlist_entry_expired": N_("Waitlist entry expired"),
    "waitlist_reconfirm": N_("Still interested?"),
    "waitlist_entry_moved": N_("Waitlist moved (clinic archived)"),
    "waitlist_entry_closed": N_("Waitlist closed (clinic archived)"),
    "account_invite": N_("Invitation to set a password"),
    "password_reset": N_("Password reset link"),
}
# What the provider reported after a send (backend/notifications/reports.py LABELS), for the patient's language.
REPORT_LABELS = {
    "accepted": N_("Accepted by the provider"),
    "deferred": N_("Delayed by the receiving server"),
    "sent": N_("Sent to the carrier"),
    "delivered": N_("Delivered"),
    "read": N_("Read"),
    "undelivered": N_("Not delivered"),
    "failed": N_("Failed at the provider"),
    "bounce": N_("Bounced"),
    "dropped": N_("Dropped by SendGrid"),
}


def note_row(
    view: notes.NotificationView, zone: str, *, for_patient: bool = False, lang: str = "en"
) -> dict[str, str]:
    status = view.status
    if status == "failed":
        when = _when(view.next_attempt_at, zone, lang)
        detail = tr(lang, "Attempt {n}; next try {when}", n=view.attempts, when=when)
    elif status == "pending" and view.next_attempt_at > utcnow():
        detail = tr(lang, "Held for quiet hours until {when}", when=_when(view.next_attempt_at, zone, lang))
    elif status == "sent":
        detail = tr(lang, "Sent {when}", when=_when(view.sent_at, zone, lang))
    elif status == "dead" and for_patient:
        detail = tr(lang, "We could not deliver this message.")
    elif status == "dead" and view.provider_status in reports.NEGATIVE:
        # the error line says what
        detail = tr(lang, "Reported by the provider {when}", when=_when(view.provider_status_at, zone, lang))
    elif status == "dead":
        detail = trn(lang, "Gave up after {n} attempt", "Gave up after {n} attempts", view.attempts)
    else:
        detail = ""
    # After a send, what the provider later reported (Delivered, Read, Delayed ...), from its callbacks.
    report = ""
    if status == "sent" and view.provider_status:
        said = fmt.label(lang, REPORT_LABELS, view.provider_status, view.provider_status_label)
        report = f"{said} {_when(view.provider_status_at, zone, lang)}"
    return {
        "id": str(view.id),
        "patient_id": str(view.patient_id) if view.patient_id else "",
        "patient": view.patient_name,
        "event": fmt.label(lang, PATIENT_EVENT_LABELS, view.event_type, view.event_label),
        "channel": fmt.label(lang, CHANNEL_LABELS, view.channel),
        "status": fmt.label(lang, PATIENT_STATUS_LABELS if for_patient else STATUS_LABELS, status),
        "status_key": status,
        "status_color": STATUS_COLORS.get(status, "gray"),
        "created": _when(view.created_at, zone, lang),
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
        lang = self.lang
        if actor is None:
            return rx.toast.error(tr(lang, SESSION_ENDED))
        try:
            with UnitOfWork(actor) as uow:
                message = notes.read_message(actor, uow, uuid.UUID(notification_id))
                zone = _zone_for_patient(uow, message.notification.patient_id)
        except (DomainError, ValueError) as exc:
            if isinstance(exc, DomainError) and lang == "en":
                return rx.toast.error(_sentence(exc.message))
            return rx.toast.error(tr(lang, "This message cannot be shown."))
        view = message.notification
        self.message_title = fmt.label(lang, PATIENT_EVENT_LABELS, view.event_type, view.event_label)
        self.message_to = message.to
        self.message_subject = message.subject
        self.message_text = message.text
        channel = fmt.label(lang, CHANNEL_LABELS, view.channel)
        status = fmt.label(lang, STATUS_LABELS, view.status)
        self.message_meta = f"{channel} · {status} · {_when(view.created_at, zone, lang)}"
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
    # Said under the language select once a choice is saved (in the language chosen).
    language_saved: str = ""

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
        self.history = [note_row(v, self.zone, for_patient=True, lang=self.lang) for v in views]

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
        # The language as saved now (another tab may have changed it since this page's guard ran).
        self.lang = i18n.normalise(view.language)
        self.errors, self.saved, self.language_saved = {}, "", ""
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
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
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
            self.errors = {exc.field or "form": _preference_error(exc.message, self.lang)}
            self.saved = ""
            return None
        self.errors = {}
        self._apply(view)
        self.saved = tr(self.lang, "Saved. New messages follow these choices.")
        return None

    @rx.event
    def choose_language(self, value: str):
        """Save the language of the pages and messages; the pages switch at once, this one included."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        try:
            with UnitOfWork(actor) as uow:
                chosen = prefs.set_language(actor, uow, value)
                uow.commit()
        except DomainError as exc:
            self.errors = {**self.errors, "language": _sentence(exc.message)}
            self.language_saved = ""
            return None
        self.errors = {k: v for k, v in self.errors.items() if k != "language"}
        self.lang = i18n.normalise(chosen)
        # The texts this page built on the server follow too; the browser's follow `lang` by themselves.
        self.saved = ""
        self.language_saved = tr(self.lang, "Saved: your pages and messages are now in {language}.",
                                 language=i18n.languages()[self.lang])  # fmt: skip
        self._load_history(actor)
        return None

    @rx.var
    def language_options(self) -> list[dict[str, str]]:
        return [{"id": code, "name": name} for code, name in i18n.languages().items()]

    @rx.var
    def nothing_chosen(self) -> bool:
        return not (self.email_opt_in or self.sms_opt_in or self.whatsapp_opt_in)

    @rx.var
    def zone_label(self) -> str:
        return fmt.zone_label(self.zone, self.lang)


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

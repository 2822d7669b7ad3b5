"""The doctor's live waitlist console: who waits for them, ranked, and why; promote, invite or remove.

Actions are optimistic: the row changes at once ("Offer sending…", or disappears), the service is called,
and a refusal puts the row back as it was and shows the server's message. The list re-queries itself when
anything in the practice changes (see portal.state.live).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.scheduling.availability import list_availability
from backend.scheduling.service import list_slots
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from backend.waitlist import offers as waitlist_offers
from backend.waitlist import service as waitlist
from portal.components import format as fmt
from portal.state.live import LiveProvider, LiveRefreshMixin
from portal.state.options import option_or
from portal.state.session import SESSION_ENDED, SessionState
from portal.state.waitlist_patient import HARD_TO_ESTIMATE, wait_label

GONE = "That waitlist entry no longer exists."
ALL = "all"
ACTIVE = "active"
ACTIVE_STATUSES = ("waiting", "offered")
STATUS_FILTERS: list[dict[str, str]] = [
    {"id": ACTIVE, "name": "Active (waiting or offered)"},
    {"id": "waiting", "name": "Waiting"},
    {"id": "offered", "name": "Offer pending"},
    {"id": "booked", "name": "Booked"},
    {"id": "expired", "name": "Expired"},
    {"id": "cancelled", "name": "Left the waitlist"},
    {"id": "removed", "name": "Removed"},
]
URGENCY_COLORS = {1: "gray", 2: "blue", 3: "amber", 4: "red"}
INVITE_DAYS = 14
ENTRY_STATUS_LABELS = {**fmt.STATUS_LABELS, "cancelled": "Left the waitlist", "offered": "Offer pending"}


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def waited_label(since: datetime, now: datetime) -> str:
    days = max(0, (now - since).days)
    if days < 1:
        return "less than a day"
    if days < 14:
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{days // 7} weeks"


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo("UTC"))
    return None


def offer_fields(offer: dict[str, Any] | None, zone: str) -> dict[str, str]:
    """The live offer as display strings: which slot, until when (in the clinic's zone), ISO for the timer."""
    if not offer:
        return {"offer_slot": "", "offer_until": "", "offer_until_iso": ""}
    start, end = _as_datetime(offer.get("slot_start")), _as_datetime(offer.get("slot_end"))
    expires = _as_datetime(offer.get("expires_at"))
    slot = fmt.when(start, end, zone) if start and end else ""
    until = ""
    if expires:
        local = fmt.local(expires, zone)
        until = (
            f"{local:%H:%M} {local.tzname()}"
            if local.date() == fmt.local(utcnow(), zone).date()
            else (f"{local:%a %d %b, %H:%M} {local.tzname()}")
        )
    return {"offer_slot": slot, "offer_until": until, "offer_until_iso": expires.isoformat() if expires else ""}


@dataclasses.dataclass
class EntryRow:
    """One waitlist entry as the viewer may see it: display strings and string ids only."""

    id: str = ""
    position: str = ""
    patient: str = ""
    patient_id: str = ""
    urgency: str = ""
    urgency_color: str = "gray"
    waiting: str = ""
    since: str = ""
    windows: str = ""
    zone: str = ""
    clinic_id: str = ""
    clinic: str = ""
    provider_id: str = ""
    provider: str = ""
    reason: str = ""
    status_key: str = ""
    status: str = ""
    reasons: list[str] = dataclasses.field(default_factory=list)
    estimated: str = ""
    offer_slot: str = ""
    offer_until: str = ""
    offer_until_iso: str = ""
    # Optimistic feedback while the doctor's action is on its way ("Offer sending…").
    pending: str = ""
    active: bool = False


def _reach(actor: Actor, uow: UnitOfWork, entry_id: uuid.UUID) -> str:
    """'They hear by e-mail and SMS. Quiet hours 22:00–07:30: …' from the patient's own choices."""
    from backend.notifications.service import get_preferences

    entry = waitlist.get_entry(actor, uow, entry_id)
    prefs = get_preferences(actor, uow, entry.patient_id)
    names = {"email": "e-mail", "sms": "SMS", "whatsapp": "WhatsApp"}
    chosen = [names[c] for c in prefs.chosen_channels]
    if not chosen:
        text = "They chose no messages: they will see the offer only in the app."
    else:
        listed = chosen[0] if len(chosen) == 1 else ", ".join(chosen[:-1]) + " and " + chosen[-1]
        text = f"They hear by {listed}."
    if prefs.quiet_hours_start and prefs.quiet_hours_end:
        text += f" Quiet hours {prefs.quiet_hours_start}–{prefs.quiet_hours_end}: offers by text wait until they end."
    return text


def entry_row(view: Any, now: datetime, position: int | None = None) -> EntryRow:
    """Turn a service EntryView into a row; tolerant of fields a given view may not carry."""
    zone = view.timezone
    status = str(view.status)
    reasons = [str(r) for r in (getattr(view, "reasons", None) or [])]
    # The console numbers rows in the order shown (best first across all queues); a view's own position
    # counts within its queue only, so two queues would both show "#1".
    pos = position
    est = getattr(view, "estimated_wait_days", None)
    created = view.created_at
    return EntryRow(
        id=str(view.id),
        position=str(pos) if pos and status in ACTIVE_STATUSES else "",
        patient=view.patient_name,
        patient_id=str(view.patient_id),
        urgency=fmt.URGENCY_LABELS.get(view.urgency, str(view.urgency)),
        urgency_color=URGENCY_COLORS.get(view.urgency, "gray"),
        waiting=waited_label(created, now),
        since=f"{fmt.local(created, zone):%d %b %Y}",
        windows=fmt.windows_label(list(view.preferred_windows or [])),
        zone=fmt.zone_label(zone),
        clinic_id=str(view.clinic_id),
        clinic=view.clinic_name,
        provider_id=str(view.provider_id) if view.provider_id else "",
        provider=view.provider_name or "Any provider",
        reason=getattr(view, "reason", "") or "",
        status_key=status,
        status=ENTRY_STATUS_LABELS.get(status, status.capitalize()),
        reasons=reasons,
        # The patient's own words for it (My waitlist): "About 5 days", or "Hard to estimate yet" when the queue's
        # fills cannot honestly say (backend/waitlist/estimate.py); nothing for entries that are not waiting.
        estimated=(
            wait_label(est) or (HARD_TO_ESTIMATE if getattr(view, "position", None) else "")
            if status == "waiting"
            else ""
        ),
        active=status in ACTIVE_STATUSES,
        **offer_fields(getattr(view, "live_offer", None), zone),
    )


def invite_options(
    slots: Iterable[Any], clinic_id: str, busy: Iterable[tuple[datetime, datetime]], now: datetime
) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The Invite dialog's times and days: the doctor's free slots at the entry's clinic that start later
    than now and overlap none of the patient's active appointments (`busy`, (start, end) pairs)."""
    taken = list(busy)
    options: list[dict[str, str]] = []
    days: dict[str, str] = {}
    for s in slots:
        if s.status != "free" or str(s.clinic_id) != clinic_id or s.start <= now:
            continue
        if any(start < s.end and s.start < end for start, end in taken):
            continue  # the patient is already booked then: the invite would be refused
        local = fmt.local(s.start, s.timezone)
        key = local.date().isoformat()
        days.setdefault(key, fmt.day_label(s.start, s.timezone))
        options.append(
            {
                "day": key,
                "value": s.start.isoformat(),
                "label": fmt.time_range(s.start, s.end, s.timezone)
                + f" · {fmt.MODALITY_LABELS.get(s.modality, s.modality)}",
            }
        )
    return options, days


def number_rows(rows: Iterable[EntryRow]) -> list[EntryRow]:
    """Positions count active entries only, in the order shown."""
    out, n = [], 0
    for row in rows:
        if row.active and not row.position:
            n += 1
            row.position = str(n)
        out.append(row)
    return out


class WaitlistConsoleState(LiveRefreshMixin, SessionState):
    """The doctor's console: ranked entries, filters, and the three actions."""

    rows: list[EntryRow] = []
    clinic_options: list[dict[str, str]] = []
    clinic_filter: str = ALL
    status_filter: str = ACTIVE
    loaded: bool = False
    load_error: str = ""

    # Invite dialog
    invite_id: str = ""
    invite_patient: str = ""
    invite_clinic: str = ""
    # How the invited patient will hear of it (their choices, read-only).
    invite_reach: str = ""
    invite_days: list[dict[str, str]] = []
    invite_day: str = ""
    invite_slots: list[dict[str, str]] = []  # {"day", "value" (ISO start), "label"}
    invite_start: str = ""
    invite_error: str = ""
    invite_loading: bool = False

    # Remove dialog
    remove_id: str = ""
    remove_patient: str = ""

    # The row taken out optimistically, with its index, to put back on refusal (server only).
    _undo: dict[str, Any] = {}

    def _doctor(self) -> Actor | None:
        return self._actor(Role.DOCTOR)

    def _query(self, actor: Actor) -> None:
        now = utcnow()
        clinic_id = uuid.UUID(self.clinic_filter) if self.clinic_filter != ALL else None
        try:
            with UnitOfWork(actor) as uow:
                if not self.clinic_options and actor.provider_id is not None:
                    clinics = list_availability(actor, uow, actor.provider_id).clinics
                    self.clinic_options = [{"id": ALL, "name": "All my clinics"}] + [
                        {"id": str(c.id), "name": c.name} for c in clinics
                    ]
                if self.status_filter in (ACTIVE, *ACTIVE_STATUSES):
                    views = waitlist.ranked_entries(actor, uow, provider_id=None, clinic_id=clinic_id)
                    rows = [entry_row(v, now) for v in views]
                    if self.status_filter != ACTIVE:
                        rows = [r for r in rows if r.status_key == self.status_filter]
                else:
                    views = waitlist.list_entries(actor, uow, clinic_id=clinic_id, status=self.status_filter)
                    rows = [entry_row(v, now) for v in views]
        except DomainError as exc:
            self.load_error = sentence(exc.message)
            self.rows = []
            self.loaded = True
            return
        self.load_error = ""
        self.rows = number_rows(rows)
        self.loaded = True

    @rx.event
    async def load(self):
        actor = self._doctor()
        if actor is None:
            return
        self.remove_id = self.invite_id = ""
        await self._mark_live_seen()
        self._query(actor)

    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        return (LiveProvider,)  # their own entries, and "any provider" ones at their clinics (portal/live_bridge.py)

    def _live_topics(self) -> tuple[str, ...]:
        # Entries, their offers and ranks change only by waitlist events (a clinic's archive moves or closes them);
        # the provider's appointments and slots are other pages' business.
        return ("waitlist.", "clinic.")

    def _live_actor(self) -> Actor | None:
        return self._doctor()

    def _live_reload(self, actor: Actor) -> None:
        self._query(actor)

    @rx.event
    async def set_clinic_filter(self, value: str):
        self.clinic_filter = value if value == ALL or value in {c["id"] for c in self.clinic_options} else ALL
        actor = self._doctor()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        await self._mark_live_seen()
        self._query(actor)
        return None

    @rx.event
    async def set_status_filter(self, value: str):
        self.status_filter = option_or(value, STATUS_FILTERS, ACTIVE)
        actor = self._doctor()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        await self._mark_live_seen()
        self._query(actor)
        return None

    @rx.var
    def status_options(self) -> list[dict[str, str]]:
        return STATUS_FILTERS

    @rx.var
    def count_label(self) -> str:
        n = len(self.rows)
        return f"{n} entr{'y' if n == 1 else 'ies'}"

    # --- optimistic bookkeeping ------------------------------------------------------------------

    def _find(self, entry_id: str) -> EntryRow | None:
        return next((r for r in self.rows if r.id == entry_id), None)

    def _mark_pending(self, entry_id: str, label: str) -> None:
        self.rows = [dataclasses.replace(r, pending=label) if r.id == entry_id else r for r in self.rows]

    def _take_out(self, entry_id: str) -> None:
        for i, row in enumerate(self.rows):
            if row.id == entry_id:
                self._undo = {"index": i, "row": row}
                self.rows = self.rows[:i] + self.rows[i + 1 :]
                return

    def _put_back(self) -> None:
        if self._undo:
            i, row = self._undo["index"], self._undo["row"]
            if self._find(row.id) is None:
                self.rows = [*self.rows[:i], row, *self.rows[i:]]
        self._undo = {}

    def _act(self, actor: Actor, action) -> str | None:
        """Run `action(uow)` in its own unit of work; the refusal's message, or None when it went through."""
        try:
            with UnitOfWork(actor) as uow:
                action(uow)
                uow.commit()
        except DomainError as exc:
            return sentence(exc.message)
        except ValueError:
            return GONE
        return None

    # --- promote ---------------------------------------------------------------------------------

    @rx.event
    async def promote(self, entry_id: str):
        """Offer this entry the best free slot now."""
        actor = self._doctor()
        if actor is None:
            yield rx.toast.error(SESSION_ENDED)
            return
        row = self._find(entry_id)
        if row is None:
            yield rx.toast.error(GONE)
            return
        self._mark_pending(entry_id, "Offer sending…")
        yield
        error = self._act(actor, lambda uow: waitlist_offers.promote_entry(actor, uow, uuid.UUID(entry_id)))
        if error:
            self._mark_pending(entry_id, "")
            yield rx.toast.error(error)
            return
        await self._mark_live_seen()
        self._query(actor)
        yield rx.toast.success(f"Offer sent to {row.patient}.")

    # --- invite ----------------------------------------------------------------------------------

    @rx.event
    def open_invite(self, entry_id: str):
        """Open the invite dialog with the doctor's free slots of the next two weeks at the entry's clinic."""
        actor = self._doctor()
        if actor is None or actor.provider_id is None:
            return rx.toast.error(SESSION_ENDED)
        row = self._find(entry_id)
        if row is None:
            return rx.toast.error(GONE)
        now = utcnow()
        until = now + timedelta(days=INVITE_DAYS)
        try:
            with UnitOfWork(actor) as uow:
                slots = list_slots(actor, uow, actor.provider_id, start=now, end=until, include_taken=False)
                busy = waitlist_offers.patient_busy_times(actor, uow, uuid.UUID(entry_id), start=now, end=until)
                self.invite_reach = _reach(actor, uow, uuid.UUID(entry_id))
        except DomainError as exc:
            return rx.toast.error(sentence(exc.message))
        options, days = invite_options(slots, row.clinic_id, busy, now)
        self.invite_id, self.invite_patient, self.invite_clinic = entry_id, row.patient, row.clinic
        self.invite_slots = options
        self.invite_days = [{"id": k, "name": v} for k, v in days.items()]
        self.invite_day = self.invite_days[0]["id"] if self.invite_days else ""
        self.invite_start = ""
        self.invite_loading = False
        self.invite_error = (
            ""
            if options
            else f"You have no free slots at {row.clinic} in the next {INVITE_DAYS} days"
            + (" that the patient can take." if busy else ".")
        )
        return None

    @rx.event
    def set_invite_day(self, value: str):
        self.invite_day = value
        self.invite_start = ""

    @rx.event
    def set_invite_start(self, value: str):
        self.invite_start = value

    @rx.event
    def close_invite(self):
        self.invite_id = self.invite_patient = self.invite_start = self.invite_error = ""
        self.invite_slots = []
        self.invite_days = []

    @rx.var
    def invite_times(self) -> list[dict[str, str]]:
        return [s for s in self.invite_slots if s["day"] == self.invite_day]

    @rx.event
    async def confirm_invite(self):
        """Offer the chosen slot to the entry."""
        actor = self._doctor()
        if actor is None:
            yield rx.toast.error(SESSION_ENDED)
            return
        if not self.invite_start:
            self.invite_error = "Choose a time first."
            return
        entry_id, patient = self.invite_id, self.invite_patient
        try:
            start = datetime.fromisoformat(self.invite_start)
        except ValueError:
            self.invite_error = "Choose a time first."
            return
        # The dialog stays open while the invitation is sent: a refusal is shown in it, with the times.
        self.invite_error = ""
        self.invite_loading = True
        yield
        error = self._act(
            actor,
            lambda uow: waitlist_offers.invite_entry(
                actor, uow, uuid.UUID(entry_id), start=start, provider_id=actor.provider_id
            ),
        )
        self.invite_loading = False
        if error:
            self.invite_error = error
            return
        self.close_invite()
        await self._mark_live_seen()
        self._query(actor)
        yield rx.toast.success(f"Invitation sent to {patient}.")

    # --- remove ----------------------------------------------------------------------------------

    @rx.event
    def ask_remove(self, entry_id: str, patient: str):
        self.remove_id, self.remove_patient = entry_id, patient

    @rx.event
    def keep_entry(self):
        self.remove_id = self.remove_patient = ""

    @rx.event
    async def confirm_remove(self):
        """Take the entry off the waitlist (as staff: status "removed")."""
        actor = self._doctor()
        if actor is None:
            yield rx.toast.error(SESSION_ENDED)
            return
        entry_id, patient = self.remove_id, self.remove_patient
        self.remove_id = self.remove_patient = ""
        self._take_out(entry_id)
        yield
        error = self._act(actor, lambda uow: waitlist.leave_waitlist(actor, uow, uuid.UUID(entry_id)))
        if error:
            self._put_back()
            yield rx.toast.error(error)
            return
        self._undo = {}
        await self._mark_live_seen()
        self._query(actor)
        yield rx.toast.success(f"{patient} removed from the waitlist.")

"""The patient's waitlist: the join form (target, weekly time windows, dates, urgency) and "My waitlist".

Every handler re-resolves the actor and runs the service in its own unit of work. Provider, clinic and entry ids
travel as strings; everything else the browser gets is a display string. Times are shown in the clinic's zone,
with the zone named. An offer's countdown ticks in the browser (portal/components/countdown.py) from the
offer's expiry as an ISO instant.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import Conflict, DomainError
from backend.notifications import formatting
from backend.scheduling import search
from backend.tenancy import service as tenancy
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from backend.waitlist import offers as wl_offers
from backend.waitlist import service as wl
from backend.waitlist.policy import effective_policy
from portal.components import format as fmt
from portal.i18n import N_, tr, trn
from portal.state.errors import words_for
from portal.state.live import LivePatient, LiveRefreshMixin
from portal.state.ratelimit import WAITLIST_JOIN, limited
from portal.state.session import SESSION_ENDED, SessionState

ANY = "any"
ALREADY_ON = N_("You are already on this waitlist.")
GONE = N_("That waitlist entry is no longer available. The list has been refreshed.")
OFFER_GONE = N_("This offer is no longer available. The list has been refreshed.")
MAX_REASON = 500
URGENCY_CHOICES = [("1", N_("Routine")), ("2", N_("Soon")), ("3", N_("Priority"))]
URGENCY_HINTS = {
    "1": N_("Any time in the coming weeks is fine."),
    "2": N_("You would like to be seen in the next couple of weeks."),
    "3": N_("Your care team asked you to be seen soon."),
}
# The service's name for an entry open to anyone at the clinic (backend/waitlist/service.py).
ANY_PROVIDER = "Any provider"
# Where the patient stands, as the ranking words it (backend/waitlist/ranking.py position_band), for translation.
BANDS = {N_("Near the top"), N_("In the top 10"), N_("In the top 25"), N_("Further down")}
# name -> (weekdays, start, end), all in the clinic's local time.
PRESETS: dict[str, tuple[tuple[int, ...], str, str]] = {
    "mornings": ((0, 1, 2, 3, 4), "08:00", "12:00"),
    "afternoons": ((0, 1, 2, 3, 4), "12:00", "17:00"),
    "evenings": ((0, 1, 2, 3, 4), "17:00", "20:00"),
}
DEFAULT_START, DEFAULT_END = "09:00", "17:00"
ACTIVE = ("waiting", "offered")
REMIND_BEFORE_EXPIRY = timedelta(days=14)
OFFER_OUTCOMES = {
    "pending": N_("Waiting for your answer"),
    "accepted": N_("Accepted"),
    "declined": N_("Declined"),
    "expired": N_("Expired (no answer in time)"),
    "withdrawn": N_("Withdrawn by the clinic"),
}
# Which form field a service error names (DomainError.field) -> the field the form shows it beside.
FIELD_KEYS = {
    "clinic_id": "clinic",
    "clinic": "clinic",
    "provider_id": "provider",
    "patient_id": "",
    "provider": "provider",
    "specialty": "specialty",
    "modality": "modality",
    "windows": "windows",
    "preferred_windows": "windows",
    "earliest_date": "dates",
    "latest_date": "dates",
    "dates": "dates",
    "urgency": "urgency",
    "reason": "reason",
}


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError):
        return None


def _date(value: str) -> date | None:
    value = (value or "").strip()
    return date.fromisoformat(value) if value else None


def _hm(value: str) -> str:
    """'9:05' / '09:05:00' -> '09:05'; '' stays ''."""
    value = (value or "").strip()
    if not value:
        return ""
    parts = value.split(":")
    try:
        return f"{int(parts[0]):02d}:{int(parts[1]):02d}"
    except (IndexError, ValueError):
        return value


def _zone_name(zone: str) -> str:
    """'MST' / 'MDT' now, in that zone."""
    return fmt.local(utcnow(), zone).tzname() or zone if zone else ""


def clock(dt: datetime, zone: str, lang: str = "en") -> str:
    return fmt.clock(dt, zone, lang)


def short_when(dt: datetime, zone: str, lang: str = "en") -> str:
    return fmt.short_when(dt, zone, lang)


def any_provider_label(lang: str, provider_name: str, clinic_name: str = "") -> str:
    """The provider an entry waits for; an entry open to anyone says so ('Any provider at Harbor Downtown')."""
    if provider_name != ANY_PROVIDER:
        return provider_name
    return tr(lang, "Any provider at {clinic}", clinic=clinic_name) if clinic_name else tr(lang, "Any provider")


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a view object or dict (the live offer arrives as a dict)."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _as_dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


HARD_TO_ESTIMATE = N_("Hard to estimate yet")


def wait_label(days: Any, lang: str = "en") -> str:
    if days is None or days == "":
        return ""
    try:
        n = int(days)
    except (TypeError, ValueError):
        return str(days)
    if n <= 1:
        return tr(lang, "About a day")
    if n < 14:
        return trn(lang, "About {n} day", "About {n} days", n)
    return trn(lang, "About {n} week", "About {n} weeks", round(n / 7))


# --- the join form -------------------------------------------------------------------------------------


@dataclasses.dataclass
class DayWindow:
    weekday: int = 0
    label: str = ""
    name: str = ""  # 'Monday'
    on: bool = False
    start: str = DEFAULT_START
    end: str = DEFAULT_END


DAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _blank_days(lang: str = "en") -> list[DayWindow]:
    if lang == "en":
        return [DayWindow(weekday=i, label=fmt.WEEKDAYS[i], name=DAY_NAMES[i]) for i in range(7)]
    short, wide = formatting.weekday_names(lang), formatting.weekday_names(lang, "wide")
    return [DayWindow(weekday=i, label=short[i], name=wide[i]) for i in range(7)]


class PatientWaitlistJoinState(SessionState):
    """The join form. Selects and the window picker are controlled; dates and reason are read on submit."""

    loaded: bool = False
    clinic_options: list[dict[str, str]] = []
    provider_options: list[dict[str, str]] = []
    specialty_options: list[str] = []
    j_clinic: str = ""
    j_provider: str = ANY
    j_specialty: str = ANY
    j_modality: str = ANY
    j_urgency: str = "2"
    days: list[DayWindow] = _blank_days()
    preset: str = ""
    min_date: str = ""
    clinic_zone: str = ""  # 'Denver time (MST)'
    clinic_phone: str = ""
    clinic_name: str = ""
    wanted_name: str = ""  # the provider the patient came from, for the heading
    field_errors: dict[str, str] = {}
    form_error: str = ""
    duplicate: bool = False
    busy: bool = False
    rate_limited: str = ""  # "Too many requests — try again in N s." (portal/state/ratelimit.py)

    _providers: list[dict[str, Any]] = []
    _clinics: dict[str, dict[str, str]] = {}

    @rx.var
    def chosen_count(self) -> int:
        return sum(1 for d in self.days if d.on)

    @rx.var
    def any_provider(self) -> bool:
        return self.j_provider == ANY

    @rx.var
    def urgency_hint(self) -> str:
        return tr(self.lang, URGENCY_HINTS.get(self.j_urgency, ""))

    @rx.event
    def load(self):
        self.loaded = False
        actor = self._actor(Role.PATIENT)
        if actor is None:
            # A person of another role is told by the page itself whom it is for (SessionState.guard).
            return None if self.denied_role else rx.toast.error(tr(self.lang, SESSION_ENDED))
        params = self.router.url.query_parameters
        with UnitOfWork(actor) as uow:
            clinics = tenancy.list_clinics(actor, uow)
            cards = search.search_providers(actor, uow)
        self._clinics = {str(c.id): {"name": c.name, "timezone": c.timezone, "phone": c.phone or ""} for c in clinics}
        self.clinic_options = [{"id": str(c.id), "name": c.name} for c in clinics]
        self._providers = [
            {
                "id": str(card.id),
                "name": f"{card.full_name}, {card.title}" if card.title else card.full_name,
                "clinics": [str(c["id"]) for c in card.clinics],
                "specialties": list(card.specialties),
                "modalities": list(card.modalities),
            }
            for card in cards
        ]
        wanted = params.get("provider_id", "")
        wanted_card = next((p for p in self._providers if p["id"] == wanted), None)
        clinic = params.get("clinic_id", "")
        if clinic not in self._clinics:
            clinic = wanted_card["clinics"][0] if wanted_card and wanted_card["clinics"] else ""
        if wanted_card and clinic not in wanted_card["clinics"] and wanted_card["clinics"]:
            clinic = wanted_card["clinics"][0]
        if not clinic and self.clinic_options:
            clinic = self.clinic_options[0]["id"]
        self.wanted_name = wanted_card["name"] if wanted_card else ""
        self.j_clinic = clinic
        self.j_provider = wanted_card["id"] if wanted_card else ANY
        self.j_specialty = self.j_modality = ANY
        self.j_urgency = "2"
        self.days = _blank_days(self.lang)
        self.preset = ""
        self.min_date = utcnow().date().isoformat()
        self.field_errors = {}
        self.form_error = ""
        self.duplicate = False
        self.busy = False
        self._fill_clinic()
        self.loaded = True
        return None

    def _fill_clinic(self) -> None:
        info = self._clinics.get(self.j_clinic, {})
        zone = info.get("timezone", "")
        self.clinic_name = info.get("name", "")
        self.clinic_phone = info.get("phone", "")
        self.clinic_zone = f"{fmt.zone_label(zone, self.lang)} ({_zone_name(zone)})" if zone else ""
        here = [p for p in self._providers if self.j_clinic in p["clinics"]]
        self.provider_options = [{"id": p["id"], "name": p["name"]} for p in here]
        self.specialty_options = sorted({s for p in here for s in p["specialties"]})
        if self.j_provider != ANY and self.j_provider not in {p["id"] for p in here}:
            self.j_provider = ANY
        if self.j_specialty != ANY and self.j_specialty not in self.specialty_options:
            self.j_specialty = ANY

    @rx.event
    def set_j_clinic(self, value: str):
        if value in self._clinics:
            self.j_clinic = value
            self._fill_clinic()
            self.field_errors = {k: v for k, v in self.field_errors.items() if k not in ("clinic", "provider")}

    @rx.event
    def set_j_provider(self, value: str):
        self.j_provider = value if value == ANY or value in {p["id"] for p in self.provider_options} else ANY
        self.field_errors = {k: v for k, v in self.field_errors.items() if k != "provider"}

    @rx.event
    def set_j_specialty(self, value: str):
        self.j_specialty = value if value == ANY or value in self.specialty_options else ANY

    @rx.event
    def set_j_modality(self, value: str):
        self.j_modality = value if value in (ANY, "in_person", "telehealth") else ANY

    @rx.event
    def set_j_urgency(self, value: str):
        self.j_urgency = value if value in {v for v, _ in URGENCY_CHOICES} else "2"

    def _clear_windows_error(self) -> None:
        self.field_errors = {k: v for k, v in self.field_errors.items() if k != "windows"}

    @rx.event
    def toggle_day(self, weekday: int):
        days = list(self.days)
        for d in days:
            if d.weekday == int(weekday):
                d.on = not d.on
        self.days = days
        self.preset = ""
        self._clear_windows_error()

    @rx.event
    def set_day_start(self, weekday: int, value: str):
        days = list(self.days)
        for d in days:
            if d.weekday == int(weekday):
                d.start = _hm(value)
        self.days = days
        self.preset = ""

    @rx.event
    def set_day_end(self, weekday: int, value: str):
        days = list(self.days)
        for d in days:
            if d.weekday == int(weekday):
                d.end = _hm(value)
        self.days = days
        self.preset = ""

    @rx.event
    def apply_preset(self, name: str):
        if name not in PRESETS:
            return
        weekdays, start, end = PRESETS[name]
        self.days = [
            DayWindow(
                weekday=d.weekday,
                label=d.label,
                name=d.name,
                on=d.weekday in weekdays,
                start=start if d.weekday in weekdays else d.start,
                end=end if d.weekday in weekdays else d.end,
            )
            for d in self.days
        ]
        self.preset = name
        self._clear_windows_error()

    @rx.event
    def clear_days(self):
        self.days = _blank_days(self.lang)
        self.preset = ""

    def _local_checks(self, earliest: str, latest: str, reason: str) -> dict[str, str]:
        errors: dict[str, str] = {}
        lang = self.lang
        if self.j_clinic not in self._clinics:
            errors["clinic"] = tr(lang, "Choose a clinic.")
        chosen = [d for d in self.days if d.on]
        if not chosen:
            errors["windows"] = tr(lang, "Choose at least one day, or a quick choice, with the times that suit you.")
        for d in chosen:
            if not d.start or not d.end:
                errors["windows"] = tr(lang, "Enter a start and an end time for {day}.", day=d.name)
                break
            if d.end <= d.start:
                errors["windows"] = tr(lang, "On {day}, the end time must be after the start time.", day=d.name)
                break
        try:
            first, last = _date(earliest), _date(latest)
        except ValueError:
            errors["dates"] = tr(lang, "Enter the dates as calendar dates, e.g. 2026-03-31.")
        else:
            today = utcnow().date()
            if last is not None and last < today:
                errors["dates"] = tr(lang, "The latest date has already passed.")
            elif first is not None and last is not None and last < first:
                errors["dates"] = tr(lang, "The latest date must be on or after the earliest date.")
        if len(reason) > MAX_REASON:
            errors["reason"] = tr(lang, "Keep the reason to {limit} characters or fewer.", limit=MAX_REASON)
        return errors

    @rx.event
    def submit(self, form: dict[str, Any]):
        """Join the waitlist; errors appear beside their fields, a duplicate as an alert with a link."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if self.busy:
            return None
        earliest = str(form.get("earliest_date", "") or "")
        latest = str(form.get("latest_date", "") or "")
        reason = str(form.get("reason", "") or "").strip()
        self.form_error = ""
        self.duplicate = False
        self.field_errors = self._local_checks(earliest, latest, reason)
        if self.field_errors or limited(self, WAITLIST_JOIN, actor):
            return None
        any_provider = self.j_provider == ANY
        request = wl.JoinRequest(
            clinic_id=uuid.UUID(self.j_clinic),
            provider_id=None if any_provider else _uuid(self.j_provider),
            specialty=self.j_specialty if any_provider and self.j_specialty != ANY else None,
            modality=self.j_modality if any_provider and self.j_modality != ANY else None,
            windows=[{"weekday": d.weekday, "start": d.start, "end": d.end} for d in self.days if d.on],
            earliest_date=_date(earliest),
            latest_date=_date(latest),
            urgency=int(self.j_urgency),
            reason=reason,
        )
        self.busy = True
        yield
        try:
            with UnitOfWork(actor) as uow:
                wl.join_waitlist(actor, uow, request)
                uow.commit()
        except Conflict as exc:
            self.busy = False
            self.duplicate = True
            self.form_error = (words_for(exc, self.lang) if exc.message else "") or tr(self.lang, ALREADY_ON)
            return None
        except DomainError as exc:
            self.busy = False
            key = FIELD_KEYS.get(str(exc.field or ""), "")
            if key:
                self.field_errors = {key: words_for(exc, self.lang)}
            else:
                self.form_error = words_for(exc, self.lang)
            return None
        self.busy = False
        lang = self.lang
        name = next((p["name"] for p in self.provider_options if p["id"] == self.j_provider), "")
        if not any_provider and name:
            joined = tr(lang, "You joined the waitlist for {name}.", name=name)
        elif any_provider:
            joined = tr(lang, "You joined the waitlist at {clinic}.", clinic=self.clinic_name)
        elif self.wanted_name:
            joined = tr(lang, "You joined the waitlist for {name}.", name=self.wanted_name)
        else:
            joined = tr(lang, "You joined the waitlist.")
        yield rx.toast.success(joined + " " + tr(lang, "We will offer you the first time that fits."))
        yield rx.redirect("/patient/waitlist")
        return None


# --- My waitlist ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class OfferRow:
    when: str = ""
    outcome: str = ""
    at: str = ""
    tone: str = "gray"


@dataclasses.dataclass
class EntryCard:
    id: str = ""
    target: str = ""
    clinic: str = ""
    detail: str = ""  # 'Trauma · In person'
    status: str = ""
    status_label: str = ""
    tone: str = "gray"
    urgency: str = ""
    band: str = ""
    position: str = ""
    wait: str = ""
    windows: str = ""
    zone: str = ""
    since: str = ""
    dates: str = ""
    reason: str = ""
    expires: str = ""
    reconfirm: bool = False
    # The live offer, when there is one.
    offer_id: str = ""
    offer_day: str = ""
    offer_time: str = ""
    offer_zone: str = ""
    offer_modality: str = ""  # 'In person' / 'Telehealth'
    offer_until: str = ""
    offer_until_iso: str = ""
    offer_expired_note: str = ""  # shown (and Accept disabled) by the browser once the countdown reaches 0:00
    # After the practice let an offer lapse: says so, instead of the card silently flipping back to Waiting.
    notice: str = ""
    history: list[OfferRow] = dataclasses.field(default_factory=list)


def needs_reconfirm(e: Any, expires_at: datetime | None, now: datetime, reconfirm: dict[str, timedelta]) -> bool:
    """Asked "still interested?": the clinic's reconfirm interval passed, or the entry ends within 2 weeks."""
    if expires_at is not None and expires_at - now < REMIND_BEFORE_EXPIRY:
        return True
    confirmed = _as_dt(_get(e, "last_confirmed_at"))
    interval = reconfirm.get(str(e.clinic_id))
    return bool(confirmed and interval and now - confirmed >= interval)


def entry_card(
    e: Any, offers: list[Any], now: datetime, reconfirm: dict[str, timedelta], lang: str = "en"
) -> EntryCard:
    """One card of the My waitlist page from a service EntryView and the entry's offers."""
    zone = e.timezone
    modality_key = _get(e, "modality") or ""
    detail = " · ".join(
        x for x in (_get(e, "specialty") or "", fmt.label(lang, fmt.MODALITY_LABELS, modality_key)) if x
    )
    first, last = _get(e, "earliest_date"), _get(e, "latest_date")

    def on(day: date) -> str:
        return fmt.date_label(day, lang, weekday=False)

    if first and last:
        dates = tr(lang, "Between {first} and {last}", first=on(first), last=on(last))
    elif first:
        dates = tr(lang, "From {first}", first=on(first))
    elif last:
        dates = tr(lang, "Until {last}", last=on(last))
    else:
        dates = ""
    expires_at = _as_dt(_get(e, "expires_at"))
    live = _get(e, "live_offer")
    card = EntryCard(
        id=str(e.id),
        target=any_provider_label(lang, e.provider_name, e.clinic_name),
        clinic=e.clinic_name,
        detail=detail,
        status=str(e.status),
        status_label=fmt.label(lang, fmt.STATUS_LABELS, str(e.status), str(e.status).title())
        if str(e.status) != "cancelled"
        else tr(lang, "Left"),
        tone={"waiting": "amber", "offered": "teal", "booked": "green"}.get(str(e.status), "gray"),
        urgency=fmt.label(lang, fmt.URGENCY_LABELS, int(e.urgency)),
        band=band if (band := str(_get(e, "position_band") or "")) not in BANDS else tr(lang, band),
        wait=wait_label(_get(e, "estimated_wait_days"), lang)
        or (tr(lang, HARD_TO_ESTIMATE) if str(e.status) == "waiting" and _get(e, "position") else ""),
        windows=fmt.windows_label(e.preferred_windows, lang),
        zone=f"{fmt.zone_label(zone, lang)} ({_zone_name(zone)})",
        since=fmt.day_label(e.created_at, zone, lang),
        dates=dates,
        reason=_get(e, "reason") or "",
        expires=fmt.moment(expires_at, zone, lang) if expires_at and str(e.status) in ACTIVE else "",
        reconfirm=str(e.status) == "waiting" and needs_reconfirm(e, expires_at, now, reconfirm),
    )
    if live and str(_get(live, "status", "pending")) == "pending":
        start, end = _as_dt(_get(live, "slot_start")), _as_dt(_get(live, "slot_end"))
        until = _as_dt(_get(live, "expires_at"))
        if start and end and until:
            card.offer_id = str(_get(live, "offer_id") or _get(live, "id") or "")
            card.offer_day = fmt.day_label(start, zone, lang)
            card.offer_time = fmt.time_range(start, end, zone, lang)
            card.offer_zone = fmt.zone_label(zone, lang)
            modality = str(_get(live, "modality") or "")
            fallback = modality.replace("_", " ").capitalize()
            card.offer_modality = fmt.label(lang, fmt.MODALITY_LABELS, modality, fallback)
            card.offer_until = clock(until, zone, lang)
            card.offer_until_iso = until.isoformat()
            card.offer_expired_note = tr(lang, "This offer expired at {time}.", time=card.offer_until)
    history = sorted(
        (o for o in offers if str(o.status) != "pending"),
        key=lambda o: o.created_at,
        reverse=True,
    )
    card.history = [
        OfferRow(
            when=short_when(o.slot_start, zone, lang),
            outcome=fmt.label(lang, OFFER_OUTCOMES, str(o.status), str(o.status).title()),
            at=tr(
                lang,
                "Offered {offered}, answered {answered}",
                offered=short_when(o.created_at, zone, lang),
                answered=short_when(o.responded_at, zone, lang),
            )
            if o.responded_at
            else tr(lang, "Offered {offered}", offered=short_when(o.created_at, zone, lang)),
            tone={"accepted": "green", "declined": "gray", "expired": "amber", "withdrawn": "gray"}.get(
                str(o.status), "gray"
            ),
        )
        for o in history
    ]
    card.notice = expired_offer_notice(str(e.status), history, now, zone, lang) if not card.offer_id else ""
    return card


EXPIRED_NOTICE_FOR = timedelta(days=1)


def expired_offer_notice(status: str, history: list[Any], now: datetime, zone: str, lang: str = "en") -> str:
    """'Your offer of Tue 12 Mar 10:00 expired at 14:32. ...' when the latest answered offer lapsed within a day."""
    if not history or str(history[0].status) != "expired":
        return ""
    latest = history[0]
    expired_at = _as_dt(_get(latest, "expires_at"))
    if expired_at is None or now - expired_at > EXPIRED_NOTICE_FOR:
        return ""
    text = tr(
        lang,
        "Your offer of {when} expired at {time}.",
        when=short_when(latest.slot_start, zone, lang),
        time=clock(expired_at, zone, lang),
    )
    if status == "waiting":
        return text + " " + tr(lang, "You keep your place on the waitlist.")
    if status == "expired":
        return text + " " + tr(lang, "Your place on this waitlist ended with it.")
    return text


class MyWaitlistState(LiveRefreshMixin, SessionState):
    """The patient's entries with their live offers; dialogs to leave and to decline.

    Linked to the patient's own live audience (portal/state/live.py): a new offer, an expiry or a staff action
    re-reads the entries without a reload.
    """

    loaded: bool = False
    page_error: str = ""
    active: list[EntryCard] = []
    past: list[EntryCard] = []
    show_past: bool = False
    just_booked: str = ""

    leave_open: bool = False
    leave_id: str = ""
    leave_target: str = ""
    decline_open: bool = False
    decline_offer_id: str = ""
    decline_when: str = ""
    busy: str = ""  # the id (entry or offer) an action is running for

    _reconfirm: dict[str, timedelta] = {}

    @rx.var
    def offer_count(self) -> int:
        return sum(1 for e in self.active if e.offer_id)

    def _refresh(self, actor) -> None:
        now = utcnow()
        with UnitOfWork(actor) as uow:
            entries = wl.list_entries(actor, uow)
            try:
                offers = wl_offers.list_offers(actor, uow)
            except DomainError:
                offers = []
            self._reconfirm = {
                str(cid): effective_policy(uow, cid).reconfirm_interval
                for cid in {e.clinic_id for e in entries if e.status == "waiting"}
            }
        by_entry: dict[str, list[Any]] = {}
        for o in offers:
            by_entry.setdefault(str(o.entry_id), []).append(o)
        active: list[EntryCard] = []
        past: list[EntryCard] = []
        for e in entries:
            card = entry_card(e, by_entry.get(str(e.id), []), now, self._reconfirm, self.lang)
            (active if e.status in ACTIVE else past).append(card)
        # Offers first, then the rest as the service ordered them.
        active.sort(key=lambda c: 0 if c.offer_id else 1)
        self.active = active
        self.past = past
        self.loaded = True

    @rx.event
    async def load(self):
        self.page_error = ""
        self.leave_open = self.decline_open = False
        self.busy = ""
        self.just_booked = ""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        await self._mark_live_seen()
        self._refresh(actor)
        return None

    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        return (LivePatient,)

    def _live_actor(self) -> Actor | None:
        return self._actor(Role.PATIENT)

    def _live_reload(self, actor: Actor) -> None:
        self._refresh(actor)

    @rx.event
    def refresh(self):
        """Re-read the entries (the countdown reaching zero calls this)."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return None
        self._refresh(actor)
        return None

    @rx.event
    def toggle_past(self):
        self.show_past = not self.show_past

    # --- still interested? -----------------------------------------------------------------------------

    @rx.event
    def confirm_interest(self, entry_id: str):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        entry = _uuid(entry_id)
        if entry is None or self.busy:
            return None
        self.busy = entry_id
        yield
        try:
            with UnitOfWork(actor) as uow:
                wl.confirm_interest(actor, uow, entry)
                uow.commit()
        except DomainError as exc:
            self.busy = ""
            self._refresh(actor)
            yield rx.toast.error(words_for(exc, self.lang))
            return None
        self.busy = ""
        self._refresh(actor)
        yield rx.toast.success(tr(self.lang, "Thanks, you stay on the waitlist."))
        return None

    # --- leave -----------------------------------------------------------------------------------------

    @rx.event
    def open_leave(self, entry_id: str):
        card = next((c for c in self.active if c.id == entry_id), None)
        if card is None:
            return None
        self.leave_id = entry_id
        self.leave_target = card.target
        self.leave_open = True
        return None

    @rx.event
    def set_leave_open(self, value: bool):
        self.leave_open = bool(value)

    @rx.event
    def leave(self):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        entry = _uuid(self.leave_id)
        if entry is None or self.busy:
            return None
        self.busy = self.leave_id
        yield
        try:
            with UnitOfWork(actor) as uow:
                wl.leave_waitlist(actor, uow, entry)
                uow.commit()
        except DomainError as exc:
            self.busy = ""
            self.leave_open = False
            self._refresh(actor)
            yield rx.toast.error(words_for(exc, self.lang))
            return None
        self.busy = ""
        self.leave_open = False
        self._refresh(actor)
        yield rx.toast.success(tr(self.lang, "You left the waitlist."))
        return None

    # --- offers ----------------------------------------------------------------------------------------

    @rx.event
    def accept(self, offer_id: str):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        offer = _uuid(offer_id)
        card = next((c for c in self.active if c.offer_id == offer_id), None)
        if offer is None or card is None or self.busy:
            return None
        self.busy = offer_id
        yield
        try:
            with UnitOfWork(actor) as uow:
                wl_offers.accept_offer(actor, uow, offer)
                uow.commit()
        except DomainError as exc:
            self.busy = ""
            self._refresh(actor)
            yield rx.toast.error((words_for(exc, self.lang) if exc.message else "") or tr(self.lang, OFFER_GONE))
            return None
        self.busy = ""
        self.just_booked = tr(
            self.lang, "{day}, {time} with {provider}", day=card.offer_day, time=card.offer_time, provider=card.target
        )
        self._refresh(actor)
        yield rx.toast.success(tr(self.lang, "Booked: {what}. It is now under My appointments.", what=self.just_booked))
        return None

    @rx.event
    def open_decline(self, offer_id: str):
        card = next((c for c in self.active if c.offer_id == offer_id), None)
        if card is None:
            return None
        self.decline_offer_id = offer_id
        self.decline_when = f"{card.offer_day}, {card.offer_time}"
        self.decline_open = True
        return None

    @rx.event
    def set_decline_open(self, value: bool):
        self.decline_open = bool(value)

    @rx.event
    def decline(self):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        offer = _uuid(self.decline_offer_id)
        if offer is None or self.busy:
            return None
        self.busy = self.decline_offer_id
        yield
        try:
            with UnitOfWork(actor) as uow:
                wl_offers.decline_offer(actor, uow, offer)
                uow.commit()
        except DomainError as exc:
            self.busy = ""
            self.decline_open = False
            self._refresh(actor)
            yield rx.toast.error((words_for(exc, self.lang) if exc.message else "") or tr(self.lang, OFFER_GONE))
            return None
        self.busy = ""
        self.decline_open = False
        self._refresh(actor)
        yield rx.toast.success(tr(self.lang, "Offer declined. We will offer you another time when one fits."))
        return None

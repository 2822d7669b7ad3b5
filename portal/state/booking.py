"""Booking for patients: find care, a provider's week of slots, hold -> confirm (or a weekly series), reschedule.

Every handler re-resolves the actor and runs the service in its own unit of work. Hold ids, versions and slot
starts stay on the server (underscore vars); the browser gets display strings only, plus slot starts as ISO
strings so a click can name the slot it means.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import Conflict, DomainError
from backend.payments.service import check_card_to_book
from backend.scheduling import booking, search, series
from backend.scheduling.policy import booking_rules
from backend.scheduling.service import list_appointments, list_slots
from backend.scheduling.slots import Slot
from backend.tenancy import service as tenancy
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from portal.components import format as fmt
from portal.i18n import N_, tr, trn
from portal.state.errors import words_for
from portal.state.live import LiveProvider, LiveRefreshMixin
from portal.state.my_appointments import change_rule
from portal.state.ratelimit import BOOKING, SEARCH, SLOTS, limited
from portal.state.session import SESSION_ENDED, SessionState

ANY = "any"
PROVIDER_GONE = N_("This provider is not available for online booking.")
# How far ahead the week view goes when a provider has no clinic policy to say (the service still decides).
DEFAULT_HORIZON_DAYS = 90
SERIES_SIZES = [str(n) for n in range(2, 13)]
KIND_LABELS = {"doctor": N_("Doctor"), "therapist": N_("Therapist")}
SLOT_LABELS = {"held": N_("Held"), "booked": N_("Taken"), "mine": N_("Yours"), "current": N_("Current")}
# Why a date of a weekly series cannot be booked (backend/scheduling/series.py words them), for translation.
SERIES_REASONS = {
    series.TAKEN: N_("Already booked"),
    series.TIME_OFF: N_("Provider on time off"),
    series.OUTSIDE: N_("Outside availability"),
    series.PATIENT_BUSY: N_("You already have an appointment then"),
    series.BEYOND_HORIZON: N_("Beyond the booking horizon"),
}


# --- formatting ----------------------------------------------------------------------------------------


def short_when(dt: datetime, zone: str, lang: str = "en") -> str:
    """'Tue 24 Nov, 15:00 EST' in the zone."""
    return fmt.short_when(dt, zone, lang)


def next_free_label(start: datetime, zone: str, lang: str = "en") -> str:
    """'Tue 24 Nov, 15:00 EST (New York time)'."""
    return f"{short_when(start, zone, lang)} ({fmt.zone_label(zone, lang)})"


def clock(dt: datetime, zone: str, lang: str = "en") -> str:
    """'15:00 EST' in the zone."""
    return fmt.clock(dt, zone, lang)


def series_reason(reason: str, lang: str) -> str:
    """Why a series date cannot be booked, in `lang` (a reason we do not know stays as worded)."""
    known = SERIES_REASONS.get(reason)
    return tr(lang, known) if known else reason


def initials(full_name: str) -> str:
    """'Dr. Elena Rivera' -> 'ER'."""
    parts = [p for p in full_name.split() if p[:1].isalpha() and not p.endswith(".")]
    return "".join(p[0] for p in (parts[:1] + parts[-1:] if len(parts) > 1 else parts)).upper() or "?"


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


# --- find care -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class ProviderResult:
    """One provider card of the search (display strings only, plus the id for links)."""

    id: str = ""
    name: str = ""
    initials: str = ""
    kind: str = ""
    specialties: list[str] = dataclasses.field(default_factory=list)
    languages: list[str] = dataclasses.field(default_factory=list)
    modalities: list[str] = dataclasses.field(default_factory=list)
    clinics: str = ""
    next_free: str = ""


class FindCareState(SessionState):
    """Filters and results of the provider search."""

    clinic_options: list[dict[str, str]] = []
    specialty_options: list[str] = []
    language_options: list[str] = []
    f_clinic: str = ANY
    f_specialty: str = ANY
    f_modality: str = ANY
    f_language: str = ANY
    f_q: str = ""
    f_free_before: str = ""
    min_date: str = ""
    results: list[ProviderResult] = []
    searched: bool = False
    searching: bool = False
    search_error: str = ""
    rate_limited: str = ""  # "Too many requests — try again in N s." (portal/state/ratelimit.py)

    @rx.var
    def any_free(self) -> bool:
        return any(r.next_free for r in self.results)

    @rx.var
    def empty_title(self) -> str:
        if self.results:
            return tr(self.lang, "No free time matches your search")
        if self.f_free_before:
            try:
                day = date.fromisoformat(self.f_free_before)
            except ValueError:
                return tr(self.lang, "No provider matches your search")
            return tr(
                self.lang,
                "No provider matching your search is free before {day}",
                day=fmt.date_label(day, self.lang),
            )
        return tr(self.lang, "No provider matches your search")

    @rx.var
    def result_count_label(self) -> str:
        return trn(self.lang, "{n} provider", "{n} providers", len(self.results))

    @rx.event
    def load(self):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            # A person of another role is told by the page itself whom it is for (SessionState.guard).
            return None if self.denied_role else rx.toast.error(tr(self.lang, SESSION_ENDED))
        if limited(self, SEARCH, actor):
            return None
        with UnitOfWork(actor) as uow:
            clinics = tenancy.list_clinics(actor, uow)
            facets = search.search_facets(actor, uow)
        self.clinic_options = [{"id": ANY, "name": tr(self.lang, "Any clinic")}] + [
            {"id": str(c.id), "name": c.name} for c in clinics
        ]
        self.specialty_options = list(facets.get("specialties", []))
        self.language_options = list(facets.get("languages", []))
        self.min_date = utcnow().date().isoformat()
        valid_clinics = {c["id"] for c in self.clinic_options}
        if self.f_clinic not in valid_clinics:
            self.f_clinic = ANY
        if self.f_specialty != ANY and self.f_specialty not in self.specialty_options:
            self.f_specialty = ANY
        if self.f_language != ANY and self.f_language not in self.language_options:
            self.f_language = ANY
        self._search(actor)
        return None

    @rx.event
    def set_f_clinic(self, value: str):
        self.f_clinic = value

    @rx.event
    def set_f_specialty(self, value: str):
        self.f_specialty = value

    @rx.event
    def set_f_modality(self, value: str):
        self.f_modality = value

    @rx.event
    def set_f_language(self, value: str):
        self.f_language = value

    @rx.event
    def submit(self, form: dict[str, str]):
        """Search with the form's text fields and the selects' current values."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if limited(self, SEARCH, actor):
            return None
        self.f_q = str(form.get("q", "")).strip()[:100]
        self.f_free_before = str(form.get("free_before", "")).strip()
        self.searching = True
        yield
        self._search(actor)
        self.searching = False
        return None

    @rx.event
    def clear(self):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if limited(self, SEARCH, actor):
            return None
        self.f_clinic = self.f_specialty = self.f_modality = self.f_language = ANY
        self.f_q = self.f_free_before = ""
        self._search(actor)
        # The text fields are uncontrolled (typing costs no round trips): empty them in the browser too.
        return [rx.set_value("find-q", ""), rx.set_value("find-free-before", "")]

    def _search(self, actor: Actor) -> None:
        self.search_error = ""
        free_before: date | None = None
        if self.f_free_before:
            try:
                free_before = date.fromisoformat(self.f_free_before)
            except ValueError:
                self.search_error = tr(self.lang, "Enter the “free before” date as a calendar date, e.g. 2026-03-31.")
                return
            if free_before <= utcnow().date():
                self.search_error = tr(self.lang, "Choose a “free before” date after today.")
                return
        clinic_id = _uuid(self.f_clinic) if self.f_clinic != ANY else None
        try:
            with UnitOfWork(actor) as uow:
                cards = search.search_providers(
                    actor,
                    uow,
                    clinic_id=clinic_id,
                    specialty=None if self.f_specialty == ANY else self.f_specialty,
                    modality=None if self.f_modality == ANY else self.f_modality,
                    language=None if self.f_language == ANY else self.f_language,
                    q=self.f_q or None,
                    free_before=free_before,
                )
        except DomainError as exc:
            self.search_error = words_for(exc, self.lang)
            return
        lang = self.lang
        self.results = [
            ProviderResult(
                id=str(card.id),
                name=f"{card.full_name}, {card.title}" if card.title else card.full_name,
                initials=initials(card.full_name),
                kind=fmt.label(lang, KIND_LABELS, card.kind, card.kind.title()),
                specialties=list(card.specialties),
                languages=list(card.languages),
                modalities=[fmt.label(lang, fmt.MODALITY_LABELS, m) for m in card.modalities],
                clinics=", ".join(str(c["name"]) for c in card.clinics),
                next_free=(
                    next_free_label(card.next_free_start, card.next_free_timezone, lang)
                    if card.next_free_start is not None and card.next_free_timezone
                    else ""
                ),
            )
            for card in cards
        ]
        self.searched = True


# --- a provider's week ---------------------------------------------------------------------------------


@dataclasses.dataclass
class WeekSlot:
    """One session start in the week grid."""

    start: str = ""  # ISO, UTC: names the slot to the handler
    time: str = ""  # '09:00' in the slot's clinic zone
    status: str = "free"  # free | held | booked | mine | current
    label: str = ""  # 'Held', 'Taken', 'Yours', 'Current' (empty when free)
    telehealth: bool = False
    aria: str = ""


@dataclasses.dataclass
class WeekDay:
    """One day column: its header, its zone and its slots."""

    key: str = ""
    weekday: str = ""
    date: str = ""
    zone: str = ""
    is_today: bool = False
    slots: list[WeekSlot] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ClinicTab:
    """One clinic the appointment could move to: the current one first, every other labelled as a change."""

    id: str = ""
    label: str = ""  # 'Summit Boulder · Denver time (current)' or 'Another clinic: Summit Online, Los Angeles time'
    current: bool = False


@dataclasses.dataclass
class SeriesRow:
    when: str = ""
    ok: bool = True
    reason: str = ""


class ProviderWeekState(LiveRefreshMixin, SessionState):
    """The week view of one provider's slots, the hold-and-confirm dialog, weekly series and rescheduling."""

    provider_found: bool = False
    provider_ref: str = ""  # the provider's id, for links
    provider_name: str = ""
    provider_kind: str = ""
    provider_specialties: list[str] = []
    provider_clinics: str = ""
    provider_has_free: bool = True  # anything free within the booking horizon at all
    loaded: bool = False

    week_offset: int = 0
    max_offset: int = 12
    week_label: str = ""
    zone_note: str = ""
    days: list[WeekDay] = []
    free_count: int = 0
    alert: str = ""
    rate_limited: str = ""  # "Too many requests — try again in N s." (portal/state/ratelimit.py)

    # Rescheduling (?reschedule=<appointment id>).
    reschedule_from: str = ""
    reschedule_error: str = ""
    reschedule_where: str = ""  # 'Summit Boulder · In person': where and how the appointment is now
    # The week shows one clinic at a time when moving: the appointment's own first, the others as a change.
    clinic_tabs: list[ClinicTab] = []
    clinic_choice: str = ""
    other_clinic_note: str = ""  # set while another clinic than the appointment's is shown
    # What the chosen slot changes besides the time ('Clinic: A → B', ...); each needs the patient's explicit yes.
    change_rows: list[str] = []
    change_ack: bool = False
    move_label: str = "Move appointment"

    # The confirmation dialog.
    dialog_open: bool = False
    step: str = "confirm"  # confirm | done
    sel_when: str = ""
    sel_zone: str = ""
    sel_clinic: str = ""
    sel_modality: str = ""
    # The clinic's cancellation window for the chosen time, said before the patient confirms.
    sel_rule: str = ""
    hold_until: str = ""
    dialog_error: str = ""
    busy: bool = False
    done_title: str = ""
    done_text: str = ""
    done_skipped: list[str] = []

    # Repeat weekly.
    repeat: bool = False
    every_weeks: str = "1"
    sessions: str = "6"
    series_preview: list[SeriesRow] = []
    series_checked: bool = False

    _provider_id: str = ""
    _anchor_zone: str = "UTC"
    _reschedule_id: str = ""
    _reschedule_modality: str = ""
    _reschedule_clinic: str = ""
    _reschedule_zone: str = ""
    _hold_id: str = ""
    _hold_version: int = 0
    _sel_start: str = ""
    _sel_tz: str = ""
    _clinic_names: dict[str, str] = {}
    _clinic_zones: dict[str, str] = {}

    @rx.var
    def is_reschedule(self) -> bool:
        return self.reschedule_from != ""

    @rx.var
    def has_change(self) -> bool:
        return len(self.change_rows) > 0

    @rx.var
    def can_prev(self) -> bool:
        return self.week_offset > 0

    @rx.var
    def can_next(self) -> bool:
        return self.week_offset < self.max_offset

    @rx.var
    def series_sizes(self) -> list[str]:
        return SERIES_SIZES

    @rx.var
    def series_bookable(self) -> int:
        return sum(1 for r in self.series_preview if r.ok)

    @rx.var
    def series_summary(self) -> str:
        total, ok = len(self.series_preview), sum(1 for r in self.series_preview if r.ok)
        if total and ok == total:
            return tr(self.lang, "All {total} dates are free.", total=total)
        if ok:
            return tr(self.lang, "{ok} of {total} dates are free; the others will be skipped.", ok=ok, total=total)
        return tr(self.lang, "None of these dates is free. Try another time or fewer sessions.")

    # --- loading ---------------------------------------------------------------------------------------

    # Live on the provider's audience (linked from the route): another patient's hold, booking or release, or an
    # availability change, redraws the week without a reload.
    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        return (LiveProvider,)

    def _live_actor(self) -> Actor | None:
        return self._actor(Role.PATIENT)

    def _live_reload(self, actor: Actor) -> None:
        if self.provider_found:
            self._load_week(actor)

    def _route_provider_id(self) -> str:
        """The [provider_id] segment of /patient/provider/[provider_id]."""
        parts = [p for p in (self.router.url.path or "").split("/") if p]
        if len(parts) >= 3 and parts[0] == "patient" and parts[1] == "provider":
            return parts[2]
        return ""

    @rx.event
    def load(self):
        self.loaded = False
        self.provider_found = False
        self.alert = self.reschedule_error = self.reschedule_from = ""
        self.reschedule_where = self.clinic_choice = self.other_clinic_note = ""
        self.clinic_tabs = []
        self.dialog_open = False
        self._reset_selection()
        self.week_offset = 0
        self.days = []
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if limited(self, SLOTS, actor):
            return None
        provider_id = _uuid(self._route_provider_id())
        self._provider_id = self.provider_ref = str(provider_id) if provider_id else ""
        self._reschedule_id = self._reschedule_modality = self._reschedule_clinic = self._reschedule_zone = ""
        with UnitOfWork(actor) as uow:
            card = None
            if provider_id is not None:
                card = next((c for c in search.search_providers(actor, uow) if c.id == provider_id), None)
            clinics = tenancy.list_clinics(actor, uow)
            horizon = max(
                (booking_rules(uow, _uuid(str(c["id"]))).horizon for c in card.clinics) if card else (),
                default=timedelta(days=DEFAULT_HORIZON_DAYS),
            )
        self._clinic_names = {str(c.id): c.name for c in clinics}
        self._clinic_zones = {str(c.id): c.timezone for c in clinics}
        self.loaded = True
        if card is None:
            return None
        self.provider_found = True
        self.provider_name = f"{card.full_name}, {card.title}" if card.title else card.full_name
        self.provider_kind = fmt.label(self.lang, KIND_LABELS, card.kind, card.kind.title())
        self.provider_specialties = list(card.specialties)
        self.provider_clinics = ", ".join(str(c["name"]) for c in card.clinics)
        self.provider_has_free = card.next_free_start is not None
        zones = [str(c["timezone"]) for c in card.clinics if c.get("timezone")]
        self._anchor_zone = zones[0] if zones else (card.next_free_timezone or "UTC")
        today = datetime.now(ZoneInfo(self._anchor_zone)).date()
        self.max_offset = ((today + horizon) - _monday(today)).days // 7
        params = self.router.url.query_parameters
        if params.get("reschedule"):
            self._load_reschedule(actor, params["reschedule"], today)
            self._set_clinic_tabs([str(c["id"]) for c in card.clinics])
        elif params.get("week"):
            self.week_offset = self._offset_of(params["week"], today)
        elif card.next_free_start is not None:
            # Open where the first free time is (this week may have none left).
            self.week_offset = self._offset_of(fmt.local(card.next_free_start, self._anchor_zone).date(), today)
        self._load_week(actor)
        return None

    def _load_reschedule(self, actor: Actor, appointment_id: str, today: date) -> None:
        target = _uuid(appointment_id)
        view = None
        if target is not None:
            with UnitOfWork(actor) as uow:
                view = next((a for a in list_appointments(actor, uow, limit=1000) if a.id == target), None)
        if view is None or str(view.provider_id) != self._provider_id:
            self.reschedule_error = tr(
                self.lang, "That appointment was not found. Pick a time to book a new one instead."
            )
            return
        if view.status != "booked" or view.start_at <= utcnow():
            self.reschedule_error = tr(self.lang, "That appointment can no longer be moved.")
            return
        self._reschedule_id = str(view.id)
        self._reschedule_modality = view.modality
        self._reschedule_clinic = self.clinic_choice = str(view.clinic_id)
        self._reschedule_zone = view.clinic_timezone
        self.reschedule_from = fmt.when(view.start_at, view.end_at, view.clinic_timezone, self.lang)
        self.reschedule_where = f"{view.clinic_name} · {fmt.label(self.lang, fmt.MODALITY_LABELS, view.modality)}"
        # Open on the week of the current appointment, where its neighbours are.
        self.week_offset = self._offset_of(fmt.local(view.start_at, self._anchor_zone).date(), today)

    # --- rescheduling: one clinic at a time, a change of clinic said out loud ------------------------------

    def _set_clinic_tabs(self, clinic_ids: list[str]) -> None:
        """The appointment's clinic first, then the provider's other clinics, each labelled as a change."""
        if not self._reschedule_clinic:
            self.clinic_tabs = []
            return
        ordered = [self._reschedule_clinic] + [c for c in clinic_ids if c != self._reschedule_clinic]
        self.clinic_tabs = [self._clinic_tab(c) for c in dict.fromkeys(ordered)]

    def _clinic_tab(self, clinic_id: str) -> ClinicTab:
        lang = self.lang
        name = self._clinic_names.get(clinic_id) or tr(lang, "Another clinic")
        zone = fmt.zone_label(self._clinic_zones.get(clinic_id, "UTC"), lang)
        if clinic_id == self._reschedule_clinic:
            label = tr(lang, "{clinic} · {zone} (current)", clinic=name, zone=zone)
            return ClinicTab(id=clinic_id, label=label, current=True)
        return ClinicTab(id=clinic_id, label=tr(lang, "Another clinic: {clinic}, {zone}", clinic=name, zone=zone))

    def _other_clinic_note(self) -> str:
        if not self._reschedule_id or self.clinic_choice in ("", self._reschedule_clinic):
            return ""
        lang = self.lang
        name = self._clinic_names.get(self.clinic_choice) or tr(lang, "another clinic")
        zone = fmt.zone_label(self._clinic_zones.get(self.clinic_choice, "UTC"), lang)
        here = self._clinic_names.get(self._reschedule_clinic) or tr(lang, "its clinic")
        return tr(
            lang,
            "Another clinic: {clinic}, {zone}. Your appointment is at {here}; "
            "a time here moves it to this clinic, and you will be asked to confirm the change.",
            clinic=name,
            zone=zone,
            here=here,
        )

    @rx.event
    def choose_clinic(self, clinic_id: str):
        """Show another of the provider's clinics while moving an appointment (a change, labelled as one)."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if not self._reschedule_id or clinic_id not in {t.id for t in self.clinic_tabs}:
            return None
        if limited(self, SLOTS, actor):
            return None
        self.clinic_choice = clinic_id
        self.other_clinic_note = self._other_clinic_note()
        self.alert = ""
        self._load_week(actor)
        return None

    def _visit_changes(self, clinic_id: str, zone: str, modality: str) -> list[str]:
        """'Clinic: A → B', 'Time zone: Denver time → Los Angeles time', 'Visit type: In person → Telehealth'."""
        if not self._reschedule_id:
            return []
        rows: list[str] = []
        lang = self.lang
        if clinic_id != self._reschedule_clinic:
            old = self._clinic_names.get(self._reschedule_clinic) or tr(lang, "current clinic")
            new = self._clinic_names.get(clinic_id) or tr(lang, "another clinic")
            rows.append(tr(lang, "Clinic: {old} → {new}", old=old, new=new))
        if self._reschedule_zone and zone != self._reschedule_zone:
            old, new = fmt.zone_label(self._reschedule_zone, lang), fmt.zone_label(zone, lang)
            rows.append(tr(lang, "Time zone: {old} → {new}", old=old, new=new))
        if modality != self._reschedule_modality:
            old = fmt.label(lang, fmt.MODALITY_LABELS, self._reschedule_modality)
            new = fmt.label(lang, fmt.MODALITY_LABELS, modality)
            rows.append(tr(lang, "Visit type: {old} → {new}", old=old, new=new))
        return rows

    @rx.event
    def set_change_ack(self, value: bool):
        self.change_ack = bool(value)
        if self.change_ack:
            self.dialog_error = ""

    def _offset_of(self, day: date | str, today: date) -> int:
        """Weeks from this week to the week of `day` (an ISO date from the URL is accepted), within range."""
        if isinstance(day, str):
            try:
                day = date.fromisoformat(day)
            except ValueError:
                return 0
        return max(0, min((_monday(day) - _monday(today)).days // 7, self.max_offset))

    def _load_week(self, actor: Actor) -> None:
        """Fill the seven day columns; each slot sits on its local date in its own clinic's zone."""
        provider_id = _uuid(self._provider_id)
        if provider_id is None:
            return
        anchor = ZoneInfo(self._anchor_zone)
        today = datetime.now(anchor).date()
        monday = _monday(today) + timedelta(weeks=self.week_offset)
        week = [monday + timedelta(days=i) for i in range(7)]
        # A day either side, so the columns of a clinic in another zone are complete.
        start = datetime.combine(monday, time(0, 0), tzinfo=anchor).astimezone(UTC) - timedelta(days=1)
        end = start + timedelta(days=9)
        try:
            with UnitOfWork(actor) as uow:
                slots = list_slots(actor, uow, provider_id, start=start, end=end)
                mine = {
                    a.start_at: str(a.id)
                    for a in list_appointments(actor, uow, provider_id=provider_id, start=start, end=end)
                    if a.status == "booked"
                }
        except DomainError as exc:
            self.alert = words_for(exc, self.lang)
            slots, mine = [], {}
        lang = self.lang
        by_day: dict[date, list[WeekSlot]] = {d: [] for d in week}
        zones_by_day: dict[date, list[str]] = {d: [] for d in week}
        free = 0
        if self._reschedule_id:
            # A clinic the week shows that the provider's card did not list still gets its (labelled) tab.
            known = {t.id for t in self.clinic_tabs}
            extra = [str(s.clinic_id) for s in slots if str(s.clinic_id) not in known]
            if extra:
                self.clinic_tabs = self.clinic_tabs + [self._clinic_tab(c) for c in dict.fromkeys(extra)]
        for s in slots:
            local = fmt.local(s.start, s.timezone)
            if local.date() not in by_day:
                continue
            if self._reschedule_id and self.clinic_choice and str(s.clinic_id) != self.clinic_choice:
                continue  # one clinic at a time when moving: the appointment's own unless another is chosen
            status = s.status
            if status == "booked" and s.start in mine:
                status = "current" if mine[s.start] == self._reschedule_id else "mine"
            free += status == "free"
            label = fmt.label(lang, SLOT_LABELS, status, "")
            modality = fmt.label(lang, fmt.MODALITY_LABELS, s.modality)
            clinic = self._clinic_names.get(str(s.clinic_id), "")
            values = {
                "slot": f"{fmt.day_label(s.start, s.timezone, lang)}, {fmt.clock(s.start, s.timezone, lang)}",
                "modality": modality,
                "clinic": clinic,
                "status": label.lower() if label else tr(lang, "free"),
            }
            by_day[local.date()].append(
                WeekSlot(
                    start=s.start.astimezone(UTC).isoformat(),
                    time=fmt.time_of_day(s.start, s.timezone, lang),
                    status=status,
                    label=label,
                    telehealth=s.modality == "telehealth",
                    aria=tr(lang, "{slot}, {modality} at {clinic}, {status}", **values)
                    if clinic and s.modality != "telehealth"
                    else tr(lang, "{slot}, {modality}, {status}", **values),
                )
            )
            if fmt.zone_label(s.timezone, lang) not in zones_by_day[local.date()]:
                zones_by_day[local.date()].append(fmt.zone_label(s.timezone, lang))
        self.days = [
            WeekDay(
                key=d.isoformat(),
                weekday=fmt.weekday(d, lang),
                date=fmt.date_label(d, lang, weekday=False, year=False),
                zone=" / ".join(zones_by_day[d]),
                is_today=d == today,
                slots=sorted(by_day[d], key=lambda w: w.start),
            )
            for d in week
        ]
        all_zones = {z for zs in zones_by_day.values() for z in zs}
        if len(all_zones) == 1:
            self.zone_note = tr(lang, "Times are in {zone}.", zone=next(iter(all_zones)))
        elif all_zones:
            self.zone_note = tr(lang, "Times are in each clinic's local time, named under each day.")
        else:
            self.zone_note = ""
        self.free_count = free
        self.week_label = fmt.week_range(monday, week[-1], lang)

    @rx.event
    def prev_week(self):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if limited(self, SLOTS, actor):
            return None
        self.week_offset = max(0, self.week_offset - 1)
        self.alert = ""
        self._load_week(actor)
        return None

    @rx.event
    def next_week(self):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if limited(self, SLOTS, actor):
            return None
        self.week_offset = min(self.max_offset, self.week_offset + 1)
        self.alert = ""
        self._load_week(actor)
        return None

    @rx.event
    def this_week(self):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if limited(self, SLOTS, actor):
            return None
        self.week_offset = 0
        self.alert = ""
        self._load_week(actor)
        return None

    # --- choosing a slot -------------------------------------------------------------------------------

    def _reset_selection(self) -> None:
        self._hold_id = ""
        self._hold_version = 0
        self._sel_start = ""
        self._sel_tz = ""
        self.step = "confirm"
        self.sel_when = self.sel_zone = self.sel_clinic = self.sel_modality = self.hold_until = ""
        self.sel_rule = ""
        self.dialog_error = ""
        self.change_rows = []
        self.change_ack = False
        self.move_label = tr(self.lang, "Move appointment")
        self.busy = False
        self.done_title = self.done_text = ""
        self.done_skipped = []
        self.repeat = False
        self.every_weeks = "1"
        self.sessions = "6"
        self.series_preview = []
        self.series_checked = False

    def _describe(self, start: datetime, end: datetime, zone: str, clinic_id: uuid.UUID, modality: str) -> None:
        self._sel_tz = zone
        self.sel_when = fmt.when(start, end, zone, self.lang)
        self.sel_zone = fmt.zone_label(zone, self.lang)
        self.sel_clinic = self._clinic_names.get(str(clinic_id), "")
        self.sel_modality = fmt.label(self.lang, fmt.MODALITY_LABELS, modality)

    def _describe_rule(self, actor: Actor, start: datetime, clinic_id: uuid.UUID, zone: str) -> None:
        """The clinic's cancellation window for this time, shown in the dialog before the patient confirms."""
        with UnitOfWork(actor) as uow:
            window = booking_rules(uow, clinic_id).cancellation_window
        self.sel_rule = change_rule(start, window, utcnow(), zone, booking=True, lang=self.lang)[0]

    def _taken(self, actor: Actor, message: str) -> None:
        """The slot went to someone else: say so above the grid and show the week as it is now."""
        self.dialog_open = False
        self._reset_selection()
        self.alert = message
        self._load_week(actor)

    @rx.event
    def pick_slot(self, start_iso: str):
        """Hold the slot for this patient (or, when rescheduling, just ask to confirm the move)."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        provider_id = _uuid(self._provider_id)
        try:
            start = datetime.fromisoformat(start_iso)
        except ValueError:
            return None
        if provider_id is None or self.busy or limited(self, BOOKING, actor):
            return None
        self._reset_selection()
        self.alert = ""
        self.busy = True
        yield
        if self._reschedule_id:
            slot = self._find_slot(actor, provider_id, start)
            self.busy = False
            if slot is None:
                self._taken(actor, tr(self.lang, "That time was just taken. Please choose another slot."))
                return None
            self._sel_start = start_iso
            self._describe(slot.start, slot.end, slot.timezone, slot.clinic_id, slot.modality)
            self._describe_rule(actor, slot.start, slot.clinic_id, slot.timezone)
            self.change_rows = self._visit_changes(str(slot.clinic_id), slot.timezone, slot.modality)
            if str(slot.clinic_id) != self._reschedule_clinic:
                where = self.sel_clinic or tr(self.lang, "another clinic")
                self.move_label = tr(self.lang, "Move to {place}", place=where)
            elif slot.modality != self._reschedule_modality:
                self.move_label = tr(self.lang, "Move to {place}", place=self.sel_modality.lower())
            self.dialog_open = True
            return None
        try:
            with UnitOfWork(actor) as uow:
                hold = booking.hold_slot(actor, uow, provider_id=provider_id, start=start)
                check_card_to_book(actor, uow, clinic_id=hold.clinic_id)  # the fee policy's card on file
                uow.commit()
                hold_id, version = hold.id, hold.version
                hold_start, hold_end, expires = hold.start_at, hold.end_at, hold.hold_expires_at
                clinic_id, modality = hold.clinic_id, hold.modality
        except Conflict as exc:
            self._taken(actor, words_for(exc, self.lang))
            return None
        except DomainError as exc:
            self.busy = False
            self.alert = words_for(exc, self.lang)
            self._load_week(actor)
            return None
        self.busy = False
        self._hold_id = str(hold_id)
        self._hold_version = version
        self._sel_start = start_iso
        zone = self._clinic_zones.get(str(clinic_id), self._anchor_zone)
        self._describe(hold_start, hold_end, zone, clinic_id, modality)
        self._describe_rule(actor, hold_start, clinic_id, zone)
        self.hold_until = clock(expires, zone, self.lang) if expires else ""
        self.dialog_open = True
        self._load_week(actor)
        return None

    def _find_slot(self, actor: Actor, provider_id: uuid.UUID, start: datetime) -> Slot | None:
        with UnitOfWork(actor) as uow:
            slots = list_slots(actor, uow, provider_id, start=start, end=start + timedelta(minutes=1))
        return next((s for s in slots if s.start == start and s.status == "free"), None)

    @rx.event
    def confirm(self):
        """Book the held slot (or move the appointment); a lost race closes the dialog and says so."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if self.busy or not self._sel_start or limited(self, BOOKING, actor):
            return None
        if self._reschedule_id and self.change_rows and not self.change_ack:
            self.dialog_error = tr(
                self.lang, "This move changes your visit as listed above: tick the box to confirm the change."
            )
            return None
        self.busy = True
        self.dialog_error = ""
        yield
        try:
            with UnitOfWork(actor) as uow:
                if self._reschedule_id:
                    booking.reschedule_appointment(
                        actor,
                        uow,
                        uuid.UUID(self._reschedule_id),
                        new_start=datetime.fromisoformat(self._sel_start),
                        confirm_change=self.change_ack,
                    )
                else:
                    booking.confirm_hold(actor, uow, uuid.UUID(self._hold_id), version=self._hold_version)
                uow.commit()
        except Conflict as exc:
            self._taken(actor, words_for(exc, self.lang))
            return None
        except DomainError as exc:
            self.busy = False
            self.dialog_error = words_for(exc, self.lang)
            return None
        self.busy = False
        if self._reschedule_id:
            self.dialog_open = False
            if self.change_rows and self.sel_clinic:
                moved = tr(
                    self.lang, "Appointment moved to {when} at {clinic}.", when=self.sel_when, clinic=self.sel_clinic
                )
            else:
                moved = tr(self.lang, "Appointment moved to {when}.", when=self.sel_when)
            self._reset_selection()
            self._reschedule_id = ""
            self.reschedule_from = ""
            yield rx.toast.success(moved)
            yield rx.redirect("/patient/appointments")
            return None
        self._hold_id = ""
        self.step = "done"
        self.done_title = tr(self.lang, "Appointment confirmed")
        self.done_text = tr(self.lang, "{when} with {provider}.", when=self.sel_when, provider=self.provider_name)
        self._load_week(actor)
        return None

    @rx.event
    def dismiss(self):
        """Close the dialog; a hold still open is given back so others can book the time."""
        actor = self._actor(Role.PATIENT)
        if self._hold_id and actor is not None:
            try:
                with UnitOfWork(actor) as uow:
                    booking.release_hold(actor, uow, uuid.UUID(self._hold_id))
                    uow.commit()
            except DomainError:
                pass  # expired or already gone: nothing to give back
        self.dialog_open = False
        self._reset_selection()
        if actor is not None:
            self._load_week(actor)

    @rx.event
    def set_dialog_open(self, value: bool):
        if not value:
            return ProviderWeekState.dismiss
        return None

    # --- repeat weekly ---------------------------------------------------------------------------------

    @rx.event
    def set_repeat(self, value: bool):
        self.repeat = bool(value)
        self.series_preview = []
        self.series_checked = False

    @rx.event
    def set_every_weeks(self, value: str):
        self.every_weeks = value if value in ("1", "2") else "1"
        self.series_preview = []
        self.series_checked = False

    @rx.event
    def set_sessions(self, value: str):
        self.sessions = value if value in SERIES_SIZES else "6"
        self.series_preview = []
        self.series_checked = False

    def _series_args(self) -> dict[str, object]:
        return {
            "provider_id": uuid.UUID(self._provider_id),
            "first_start": datetime.fromisoformat(self._sel_start),
            "every_weeks": int(self.every_weeks),
            "count": int(self.sessions),
        }

    @rx.event
    def check_dates(self):
        """Show each date of the series with a tick or the reason it cannot be booked."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if not self._sel_start or not self._provider_id:
            return None
        self.dialog_error = ""
        try:
            with UnitOfWork(actor) as uow:
                occurrences = series.preview_series(actor, uow, **self._series_args())  # type: ignore[arg-type]
        except DomainError as exc:
            self.dialog_error = words_for(exc, self.lang)
            return None
        zone = self._sel_tz or self._anchor_zone
        first = datetime.fromisoformat(self._sel_start)
        self.series_preview = [
            SeriesRow(
                when=fmt.when(o.start, o.end, zone, self.lang),
                # The first date is the one this patient holds right now.
                ok=bool(o.available) or (o.start == first and self._hold_id != ""),
                reason=""
                if o.available or o.start == first
                else (series_reason(o.reason, self.lang) if o.reason else tr(self.lang, "Not available")),
            )
            for o in occurrences
        ]
        self.series_checked = True
        return None

    @rx.event
    def book_series(self):
        """Give back the single hold and book the series, skipping the dates the patient saw were unavailable."""
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if self.busy or not self.series_checked or not self._sel_start or limited(self, BOOKING, actor):
            return None
        self.busy = True
        self.dialog_error = ""
        yield
        try:
            with UnitOfWork(actor) as uow:
                if self._hold_id:
                    try:
                        booking.release_hold(actor, uow, uuid.UUID(self._hold_id))
                    except Conflict:
                        pass  # the hold lapsed: the series books the first date like any other
                result = series.book_series(
                    actor,
                    uow,
                    skip_unavailable=True,
                    **self._series_args(),  # type: ignore[arg-type]
                )
                uow.commit()
        except Conflict as exc:
            self._taken(actor, words_for(exc, self.lang))
            return None
        except DomainError as exc:
            self.busy = False
            self.dialog_error = words_for(exc, self.lang)
            return None
        self.busy = False
        self._hold_id = ""
        zone = self._sel_tz or self._anchor_zone
        booked = len(result.booked)
        total = booked + len(result.skipped)
        self.step = "done"
        lang = self.lang
        self.done_title = tr(lang, "Weekly series booked") if booked else tr(lang, "No session could be booked")
        every = tr(lang, "every week") if self.every_weeks == "1" else tr(lang, "every 2 weeks")
        self.done_text = tr(
            lang,
            "{booked} of {total} sessions with {provider}, {every}, from {when}.",
            booked=booked,
            total=total,
            provider=self.provider_name,
            every=every,
            when=self.sel_when,
        )
        self.done_skipped = [
            f"{fmt.when(o.start, o.end, zone, lang)}: "
            + (series_reason(o.reason, lang) if o.reason else tr(lang, "not available"))
            for o in result.skipped
        ]
        self._load_week(actor)
        return None

"""Admin waitlist pages: oversight across clinics (live) and the waitlist policy editor."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.scheduling.search import search_providers
from backend.tenancy.context import Actor
from backend.types import utcnow
from backend.waitlist import preview as policy_preview
from backend.waitlist import service as waitlist
from backend.waitlist.models import EntryStatus
from backend.waitlist.policy import POLICY_BOUNDS
from portal.i18n import tr
from portal.state.admin import ALL_CLINICS, AdminState
from portal.state.live import LiveRefreshMixin
from portal.state.options import option_or
from portal.state.session import SESSION_ENDED
from portal.state.waitlist_console import ACTIVE, ACTIVE_STATUSES, ALL, STATUS_FILTERS, EntryRow, entry_row, sentence

URGENCY_FILTERS = [
    {"id": ALL, "name": "Any urgency"},
    {"id": "4", "name": "Urgent"},
    {"id": "3", "name": "Priority"},
    {"id": "2", "name": "Soon"},
    {"id": "1", "name": "Routine"},
]
AGE_FILTERS = [
    {"id": "0", "name": "Any wait"},
    {"id": "7", "name": "Waiting 7+ days"},
    {"id": "14", "name": "Waiting 14+ days"},
    {"id": "30", "name": "Waiting 30+ days"},
    {"id": "60", "name": "Waiting 60+ days"},
]
ADMIN_STATUS_FILTERS = [*STATUS_FILTERS, {"id": ALL, "name": "Any status"}]


class WaitlistOversightState(LiveRefreshMixin, AdminState):
    """Every waitlist of the practice; the clinic comes from the shared selector, the rest from filters."""

    entries: list[EntryRow] = []
    providers: list[dict[str, str]] = []  # {"id", "name", "clinics": comma-joined clinic ids}
    status_filter: str = ACTIVE
    provider_filter: str = ALL
    urgency_filter: str = ALL
    age_filter: str = "0"
    loaded: bool = False
    load_error: str = ""

    def _query(self, actor: Actor) -> None:
        now = utcnow()
        status = self.status_filter
        provider_id = uuid.UUID(self.provider_filter) if self.provider_filter != ALL else None
        urgency = int(self.urgency_filter) if self.urgency_filter != ALL else None
        min_age = int(self.age_filter) if self.age_filter.isdigit() and int(self.age_filter) > 0 else None
        try:
            with UnitOfWork(actor) as uow:
                if not self.providers:
                    self.providers = [
                        {"id": str(p.id), "name": p.full_name, "clinics": ",".join(c["id"] for c in p.clinics)}
                        for p in sorted(search_providers(actor, uow), key=lambda p: p.full_name)
                    ]
                if status in (ACTIVE, ALL):
                    statuses: list[EntryStatus | None] = (
                        [EntryStatus(s) for s in ACTIVE_STATUSES] if status == ACTIVE else [None]
                    )
                else:
                    statuses = [EntryStatus(status)]
                views = [
                    v
                    for s in statuses
                    for v in waitlist.list_entries(
                        actor,
                        uow,
                        provider_id=provider_id,
                        status=s,
                        urgency=urgency,
                        min_age_days=min_age,
                        limit=1000,
                    )
                ]
        except DomainError as exc:
            self.load_error, self.entries, self.loaded = sentence(exc.message), [], True
            return
        views.sort(key=lambda v: (-v.urgency, v.created_at))
        self.entries = [entry_row(v, now) for v in views]
        self.load_error = ""
        self.loaded = True

    @rx.event
    async def load(self):
        actor = self._admin()
        if actor is None:
            return
        self._refresh(actor)  # the clinic selector's clinics
        await self._mark_live_seen()
        self._query(actor)

    def _live_actor(self) -> Actor | None:
        return self._admin()

    def _live_reload(self, actor: Actor) -> None:
        self._query(actor)

    @rx.event
    async def set_status_filter(self, value: str):
        self.status_filter = option_or(value, ADMIN_STATUS_FILTERS, ACTIVE)
        return await self._reload_now()

    @rx.event
    async def set_provider_filter(self, value: str):
        self.provider_filter = option_or(value, self.providers, ALL)
        return await self._reload_now()

    @rx.event
    async def set_urgency_filter(self, value: str):
        self.urgency_filter = option_or(value, URGENCY_FILTERS, ALL)
        return await self._reload_now()

    @rx.event
    async def set_age_filter(self, value: str):
        self.age_filter = option_or(value, AGE_FILTERS, "0")
        return await self._reload_now()

    @rx.event
    async def clear_filters(self):
        self.status_filter, self.provider_filter, self.urgency_filter, self.age_filter = ACTIVE, ALL, ALL, "0"
        return await self._reload_now()

    @rx.var
    def visible_entries(self) -> list[EntryRow]:
        if self.selected_clinic_id == ALL_CLINICS:
            return self.entries
        return [e for e in self.entries if e.clinic_id == self.selected_clinic_id]

    @rx.var
    def provider_options(self) -> list[dict[str, str]]:
        """Providers of the selected clinic (all of them for "All clinics")."""
        rows = [p for p in self.providers if self.selected_clinic_id == ALL_CLINICS
                or self.selected_clinic_id in p["clinics"].split(",")]  # fmt: skip
        return [{"id": ALL, "name": "Any provider"}] + [{"id": p["id"], "name": p["name"]} for p in rows]

    @rx.var
    def status_options(self) -> list[dict[str, str]]:
        return ADMIN_STATUS_FILTERS

    @rx.var
    def urgency_options(self) -> list[dict[str, str]]:
        return URGENCY_FILTERS

    @rx.var
    def age_options(self) -> list[dict[str, str]]:
        return AGE_FILTERS

    @rx.var
    def summary(self) -> str:
        rows = self.visible_entries
        waiting = sum(1 for r in rows if r.status_key == "waiting")
        offered = sum(1 for r in rows if r.status_key == "offered")
        return f"{len(rows)} shown · {waiting} waiting · {offered} with an offer pending"


# --- policy --------------------------------------------------------------------------------------------

PRACTICE = "practice"
# (field, label, unit, kind) in the order the editor shows them, grouped.
POLICY_GROUPS: list[tuple[str, list[tuple[str, str, str]]]] = [
    (
        "Capacity",
        [
            ("max_active_per_provider", "Active entries per provider", "entries"),
            ("max_active_per_clinic", "Active entries per clinic", "entries"),
            ("max_entries_per_patient", "Waitlists per patient", "entries"),
        ],
    ),
    (
        "Time to live",
        [
            ("entry_ttl_days", "Entry time to live", "days"),
            ("reconfirm_interval_days", "Ask to re-confirm every", "days"),
        ],
    ),
    (
        "Offers",
        [
            ("offer_hold_minutes", "Offer hold", "minutes"),
            # offers_per_batch is not shown: a freed slot has exactly one live, exclusive offer at a time.
            ("cutoff_minutes_before_slot", "Stop offering before the slot", "minutes"),
        ],
    ),
    (
        "Ranking weights",
        [
            ("urgency_weight", "Urgency weight", "points per level"),
            ("wait_weight", "Waiting-time weight", "points per week"),
            ("fit_weight", "Preferred-time fit weight", "points"),
            ("continuity_weight", "Continuity weight", "points"),
        ],
    ),
]
NUMBER_FIELDS = [name for _, fields in POLICY_GROUPS for name, _, _ in fields]
INT_FIELDS = {n for n in NUMBER_FIELDS if not n.endswith("_weight")}
LABELS = {name: label for _, fields in POLICY_GROUPS for name, label, _ in fields} | {
    "quiet_hours_start": "Quiet hours start",
    "quiet_hours_end": "Quiet hours end",
    "auto_offer": "Automatic offers",
    "expire_entry_on_decline": "On decline",
}
SOURCE_LABELS = {
    "clinic": "This clinic's own policy",
    "practice": "Following the practice default",
    "default": "Built-in defaults (nothing saved yet)",
}


def _bound_label(name: str) -> str:
    low, high = POLICY_BOUNDS[name]
    return f"{low:g}–{high:,g}"


def _humanise(message: str, field: str | None) -> str:
    if field and field in LABELS:
        message = message.replace(field, LABELS[field])
    return sentence(message)


def _fmt_number(name: str, value: Any) -> str:
    return str(int(value)) if name in INT_FIELDS else f"{float(value):g}"


FLAG_FIELDS = ("quiet_enabled", "auto_offer", "expire_on_decline")
TIME_FIELDS = ("quiet_hours_start", "quiet_hours_end")
PREVIEW_POLL_SECONDS = 0.4
PREVIEW_GIVE_UP_SECONDS = 300


def _parse_form(form: dict[str, Any], quiet_enabled: bool) -> tuple[dict[str, str], dict[str, Any]]:
    """(errors by field, the changes put_waitlist_policy takes) from the form's raw values."""
    errors: dict[str, str] = {}
    changes: dict[str, Any] = {}
    for name in NUMBER_FIELDS:
        raw = str(form.get(name, "")).strip()
        try:
            number = float(raw)
        except ValueError:
            errors[name] = "Enter a number."
            continue
        changes[name] = int(number) if name in INT_FIELDS and number == int(number) else number
    if quiet_enabled:
        for name in TIME_FIELDS:
            raw = str(form.get(name, "")).strip()
            if not raw:
                errors[name] = "Enter a time, or switch quiet hours off."
            changes[name] = raw
    else:
        changes["quiet_hours_start"] = changes["quiet_hours_end"] = None
    return errors, changes


def _same(name: str, a: str, b: str) -> bool:
    """Whether two raw values of field `name` say the same ("30" and "30.0" do)."""
    if name in NUMBER_FIELDS:
        try:
            return float(a) == float(b)
        except ValueError:
            return a.strip() == b.strip()
    return a.strip() == b.strip()


def _percent(value: Any) -> str:
    return "–" if value is None else f"{float(value):.0%}"


def _minutes(lang: str, value: Any) -> str:
    return "–" if value is None else tr(lang, "{n} min", n=f"{float(value):.0f}")


def _ratio(value: Any) -> str:
    return "–" if value is None else f"{float(value):.1f}"


def preview_lines(lang: str, result: dict[str, Any], clinic: bool) -> dict[str, str]:
    """The preview's figures and the sentences around them, worded for the page."""
    weeks = int(result.get("weeks", 0))
    counts = {"n": weeks, "c": result.get("cancellations", 0), "e": result.get("entries", 0)}
    if not result.get("enough"):
        if result.get("too_large"):
            text = tr(lang, "This practice is too large to preview in under a minute. Preview one clinic at a time.")
        else:
            text = tr(
                lang,
                "Too little history to preview: the last {n} weeks hold {c} cancelled appointments and {e} waitlist "
                "entries. A preview needs at least 3 cancellations and someone on a waitlist.",
                **counts,
            )
        return {"headline": "", "detail": text}
    now, new = result["current"], result["proposed"]
    headline = tr(
        lang,
        "Fill rate {a} → {b} · median time to fill {c} → {d} · offers per filled slot {e} → {f}",
        a=_percent(now["fill_rate"]),
        b=_percent(new["fill_rate"]),
        c=_minutes(lang, now["median_minutes_to_fill"]),
        d=_minutes(lang, new["median_minutes_to_fill"]),
        e=_ratio(now["offers_per_fill"]),
        f=_ratio(new["offers_per_fill"]),
    )
    if clinic:
        detail = tr(
            lang,
            "A simulation of this clinic's last {n} weeks ({c} cancelled appointments, {e} waitlist entries) under "
            "the saved and the proposed settings, with modelled patient replies. Nothing was saved or sent.",
            **counts,
        )
    else:
        detail = tr(
            lang,
            "A simulation of the practice's last {n} weeks ({c} cancelled appointments, {e} waitlist entries) "
            "under the saved and the proposed settings, with modelled patient replies. Nothing was saved or sent.",
            **counts,
        )
    return {"headline": headline, "detail": detail}


class PolicyState(AdminState):
    """The waitlist policy of the practice and of each clinic; every save is audited by the service."""

    scope: str = PRACTICE
    values: dict[str, str] = {}
    auto_offer: bool = True
    expire_on_decline: bool = False
    quiet_enabled: bool = True
    source: str = ""
    updated: str = ""
    errors: dict[str, str] = {}
    loaded: bool = False
    # Bumped on each load so the uncontrolled inputs take the loaded values again.
    form_key: int = 0
    # The form as saved and as typed now (each input reports its changes): the preview offers itself when they differ.
    saved: dict[str, str] = {}
    draft: dict[str, str] = {}
    # The preview of the typed settings: "" (none), "running", "done" or "failed"; its progress in percent; its text.
    preview_job: str = ""
    preview_state: str = ""
    preview_progress: int = 0
    preview_headline: str = ""
    preview_detail: str = ""

    def _load_policy(self, actor: Actor) -> None:
        clinic_id = None if self.scope == PRACTICE else uuid.UUID(self.scope)
        with UnitOfWork(actor) as uow:
            view = waitlist.get_waitlist_policy(actor, uow, clinic_id)
        self.values = {name: _fmt_number(name, getattr(view, name)) for name in NUMBER_FIELDS}
        self.values["quiet_hours_start"] = view.quiet_hours_start or "21:00"
        self.values["quiet_hours_end"] = view.quiet_hours_end or "08:00"
        self.quiet_enabled = view.quiet_hours_start is not None and view.quiet_hours_end is not None
        self.auto_offer = view.auto_offer
        self.expire_on_decline = view.expire_entry_on_decline
        self.source = view.source
        self.updated = f"{view.updated_at:%d %b %Y %H:%M} UTC" if view.updated_at else ""
        self.errors = {}
        self.form_key += 1
        self.saved = {name: self.values[name] for name in (*NUMBER_FIELDS, *TIME_FIELDS)} | {
            "quiet_enabled": "1" if self.quiet_enabled else "",
            "auto_offer": "1" if self.auto_offer else "",
            "expire_on_decline": "1" if self.expire_on_decline else "",
        }
        self.draft = dict(self.saved)
        self._clear_preview()
        self.loaded = True

    def _clear_preview(self) -> None:
        self.preview_job = self.preview_state = self.preview_headline = self.preview_detail = ""
        self.preview_progress = 0

    def _typed(self, name: str, value: str) -> None:
        self.draft[name] = value
        if self.preview_state in ("done", "failed"):
            self._clear_preview()  # the figures were for other settings

    @rx.event
    def load(self):
        actor = self._admin()
        if actor is None:
            return None
        self._refresh(actor)
        if self.scope != PRACTICE and self.scope not in {c["id"] for c in self.clinics}:
            self.scope = PRACTICE
        try:
            self._load_policy(actor)
        except (DomainError, ValueError):
            self.scope = PRACTICE
            self._load_policy(actor)
        return None

    @rx.event
    def set_scope(self, value: str):
        actor = self._admin()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        self.scope = value if value == PRACTICE or value in {c["id"] for c in self.clinics} else PRACTICE
        try:
            self._load_policy(actor)
        except (DomainError, ValueError) as exc:
            return rx.toast.error(getattr(exc, "message", "That clinic no longer exists."))
        return None

    @rx.event
    def set_auto_offer(self, value: bool):
        self.auto_offer = value
        self._typed("auto_offer", "1" if value else "")

    @rx.event
    def set_decline(self, value: str):
        self.expire_on_decline = value == "expire"
        self._typed("expire_on_decline", "1" if self.expire_on_decline else "")

    @rx.event
    def set_quiet_enabled(self, value: bool):
        self.quiet_enabled = value
        self._typed("quiet_enabled", "1" if value else "")

    @rx.event
    def set_draft(self, name: str, value: str):
        """An input changed: note it (the preview button shows while the form differs from what is saved)."""
        if name in (*NUMBER_FIELDS, *TIME_FIELDS) and isinstance(value, str) and len(value) <= 40:
            self._typed(name, value)

    @rx.event
    def preview(self):
        """Check the typed settings as a save would and start simulating their effect; nothing is saved."""
        actor = self._admin()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        if self.preview_state == "running":
            return None
        errors, changes = _parse_form(self.draft, self.quiet_enabled)
        changes["auto_offer"] = self.auto_offer
        changes["expire_entry_on_decline"] = self.expire_on_decline
        if errors:
            self.errors = errors
            return None
        clinic_id = None if self.scope == PRACTICE else uuid.UUID(self.scope)
        try:
            with UnitOfWork(actor) as uow:
                job = policy_preview.preview_policy(actor, uow, clinic_id, changes)
        except DomainError as exc:
            self.errors = {exc.field or "form": _humanise(exc.message, exc.field)}
            return None
        self.errors = {}
        self._clear_preview()
        self.preview_job, self.preview_state = str(job), "running"
        return PolicyState.watch_preview

    @rx.event(background=True)
    async def watch_preview(self):
        """Follow the running preview: its progress, then its figures (the simulation runs elsewhere)."""
        async with self:
            job = self.preview_job
        deadline = time.monotonic() + PREVIEW_GIVE_UP_SECONDS
        while job:
            await asyncio.sleep(PREVIEW_POLL_SECONDS)
            async with self:
                if self.preview_job != job:
                    return  # cleared or replaced (another scope, a save, a new preview)
                actor = self._admin()
            status = None
            if actor is not None:
                try:
                    status = await asyncio.to_thread(_preview_status, actor, uuid.UUID(job))
                except DomainError:
                    status = None
            async with self:
                if self.preview_job != job:
                    return
                if status is None or time.monotonic() > deadline or status.state == "failed":
                    self.preview_state = "failed"
                    self.preview_detail = tr(self.lang, "The preview could not be completed. Try again.")
                    return
                self.preview_progress = int(status.progress * 100)
                if status.state == "done" and status.result is not None:
                    lines = preview_lines(self.lang, status.result, clinic=self.scope != PRACTICE)
                    self.preview_headline, self.preview_detail = lines["headline"], lines["detail"]
                    self.preview_state = "done"
                    return

    @rx.event
    def save(self, form: dict[str, Any]):
        """Validate and save; a refusal is shown beside its field and changes nothing."""
        actor = self._admin()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        for name in (*NUMBER_FIELDS, *(TIME_FIELDS if self.quiet_enabled else ())):
            self.values[name] = str(form.get(name, "")).strip()
        errors, changes = _parse_form(form, self.quiet_enabled)
        changes["auto_offer"] = self.auto_offer
        changes["expire_entry_on_decline"] = self.expire_on_decline
        if errors:
            self.errors = errors
            return None
        clinic_id = None if self.scope == PRACTICE else uuid.UUID(self.scope)
        try:
            with UnitOfWork(actor) as uow:
                waitlist.put_waitlist_policy(actor, uow, clinic_id, changes)
                uow.commit()
        except DomainError as exc:
            self.errors = {exc.field or "form": _humanise(exc.message, exc.field)}
            return None
        self._load_policy(actor)
        return rx.toast.success("Waitlist policy saved.")

    @rx.event
    def use_practice_default(self):
        """Drop this clinic's override: it follows the practice default again."""
        actor = self._admin()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        if self.scope == PRACTICE:
            return None
        try:
            with UnitOfWork(actor) as uow:
                waitlist.delete_clinic_waitlist_policy(actor, uow, uuid.UUID(self.scope))
                uow.commit()
        except (DomainError, ValueError) as exc:
            return rx.toast.error(getattr(exc, "message", "That clinic no longer exists."))
        self._load_policy(actor)
        return rx.toast.success("This clinic now follows the practice default.")

    @rx.var
    def scope_options(self) -> list[dict[str, str]]:
        return [{"id": PRACTICE, "name": "Practice default"}] + [
            {"id": c["id"], "name": c["name"]} for c in self.clinics if not c["archived"]
        ]

    @rx.var
    def source_label(self) -> str:
        return SOURCE_LABELS.get(self.source, "")

    @rx.var
    def has_override(self) -> bool:
        return self.scope != PRACTICE and self.source == "clinic"

    @rx.var
    def changed(self) -> bool:
        """Whether the form differs from the saved policy."""
        return any(not _same(name, self.draft.get(name, ""), value) for name, value in self.saved.items())

    @rx.var
    def decline_value(self) -> str:
        return "expire" if self.expire_on_decline else "waiting"


def _preview_status(actor: Actor, job_id: uuid.UUID) -> policy_preview.PreviewStatus:
    with UnitOfWork(actor) as uow:
        return policy_preview.preview_status(actor, uow, job_id)

"""/admin/audit: who looked at which patient's data, and every change, filtered, paged and exported as CSV."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import reflex as rx

from backend.audit import service as audit
from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.identity import service as identity
from backend.tenancy.context import Actor
from portal.state.admin import AdminState
from portal.state.session import SESSION_ENDED

ALL = "all"
PAGE_SIZE = 25
KIND_OPTIONS = [{"id": "access", "name": "Reads of patient data"}, {"id": "change", "name": "Changes"}]
ACTION_LABELS = {
    "appointments.list": "Appointments",
    "waitlist.list": "Waitlist",
    "waitlist.ranked": "Waitlist (ranked)",
    "waitlist.entry": "Waitlist entry",
    "waitlist.patient_busy_times": "Patient's busy times",
    "offers.list": "Waitlist offers",
    "notifications.list": "Messages",
    "notifications.read": "A message",
    "notifications.preferences": "Message preferences",
    "patient.profile": "Patient profile",
    "time_off.preview": "Sessions in time off",
    "audit.list": "Audit page",
    "audit.export": "Audit export",
}
ROLE_LABELS = {"admin": "Administrator", "doctor": "Clinician", "patient": "Patient", "system": "System"}


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


class AuditState(AdminState):
    """The practice's audit trail for its admin. Every load of it is itself a read of patient data (audited)."""

    rows: list[dict[str, str]] = []
    kind: str = "access"
    patient_filter: str = ""
    patient_label: str = ""
    staff_filter: str = ALL
    action_filter: str = ALL
    start_day: str = ""
    end_day: str = ""
    page: int = 0
    has_more: bool = False
    staff_options: list[dict[str, str]] = []
    action_options: list[dict[str, str]] = []
    zone: str = "UTC"
    loaded: bool = False
    load_error: str = ""

    def _filters(self) -> audit.AuditFilter:
        zone = ZoneInfo(self.zone)
        start, end = _day(self.start_day), _day(self.end_day)
        return audit.AuditFilter(
            kind="change" if self.kind == "change" else "access",
            patient_id=uuid.UUID(self.patient_filter) if self.patient_filter else None,
            user_id=uuid.UUID(self.staff_filter) if self.staff_filter != ALL else None,
            action=self.action_filter if self.action_filter != ALL else None,
            start=datetime.combine(start, time(0), zone) if start else None,
            end=datetime.combine(end + timedelta(days=1), time(0), zone) if end else None,
        )

    def _query(self, actor: Actor) -> None:
        try:
            filters = self._filters()
            with UnitOfWork(actor) as uow:  # one unit of work: the page view is one row of the trail
                result = audit.search_audit(actor, uow, filters, offset=self.page * PAGE_SIZE, limit=PAGE_SIZE)
                if filters.patient_id is not None:
                    self.patient_label = identity.get_patient(actor, uow, filters.patient_id).full_name
        except DomainError as exc:
            self.rows, self.has_more, self.loaded, self.load_error = [], False, True, exc.message
            return
        zone = ZoneInfo(self.zone)
        self.rows = [self._row(r, zone) for r in result.rows]
        self.has_more = result.has_more
        self.load_error = ""
        self.loaded = True

    @staticmethod
    def _row(r: audit.AuditRow, zone: ZoneInfo) -> dict[str, str]:
        names = ", ".join(p.name for p in r.patients)
        more = r.patient_count - len(r.patients)
        if more > 0:
            names = f"{names} and {more} more" if names else f"{more} patients"
        first = r.patients[0] if r.patients else None
        target = r.entity_type + (f" {str(r.entity_id)[:8]}" if r.entity_id else "")
        return {
            "id": str(r.id),
            "when": r.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
            "who": r.actor_name or ROLE_LABELS.get(r.actor_role, r.actor_role),
            "role": ROLE_LABELS.get(r.actor_role, r.actor_role),
            "action": ACTION_LABELS.get(r.action, r.action),
            "action_key": r.action,
            "patients": names or ("—" if r.kind == "access" else target),
            "first_patient_id": str(first.id) if first else "",
            "first_patient": first.name if first else "",
            "via": r.via or ("—" if r.kind == "access" else ""),
            "address": r.client_address or "",
            "seq": str(r.chain_seq or ""),
        }

    def _load_options(self, actor: Actor) -> None:
        with UnitOfWork(actor) as uow:
            options = audit.audit_filter_options(actor, uow)
        self.staff_options = [{"id": ALL, "name": "Everyone"}] + [
            {"id": str(s.id), "name": s.name} for s in options.staff
        ]
        self.action_options = [{"id": ALL, "name": "Any action"}] + [
            {"id": a, "name": ACTION_LABELS.get(a, a)} for a in options.actions
        ]

    async def _requery(self):
        actor = self._admin()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        self._query(actor)
        return None

    @rx.event
    def load(self):
        actor = self._admin()
        if actor is None:
            return
        self._refresh(actor)  # the shared clinic list (the shell's selector) and the practice's zone
        self.zone = next((c["timezone"] for c in self.clinics if not c.get("archived")), "UTC")
        patient = self.router.url.query_parameters.get("patient", "") or ""
        try:
            self.patient_filter = str(uuid.UUID(patient)) if patient else ""
        except ValueError:
            self.patient_filter = ""
        self.patient_label, self.page, self.loaded = "", 0, False
        self.staff_filter = self.action_filter = ALL
        self.start_day = self.end_day = ""
        self.kind = "access"
        self._load_options(actor)
        self._query(actor)

    @rx.event
    async def set_kind(self, value: str):
        self.kind, self.page, self.action_filter = ("change" if value == "change" else "access"), 0, ALL
        return await self._requery()

    @rx.event
    async def set_staff_filter(self, value: str):
        known = {o["id"] for o in self.staff_options}
        self.staff_filter, self.page = (value if value in known else ALL), 0
        return await self._requery()

    @rx.event
    async def set_action_filter(self, value: str):
        known = {o["id"] for o in self.action_options}
        self.action_filter, self.page = (value if value in known else ALL), 0
        return await self._requery()

    @rx.event
    async def set_start_day(self, value: str):
        self.start_day, self.page = (value if _day(value) else ""), 0
        return await self._requery()

    @rx.event
    async def set_end_day(self, value: str):
        self.end_day, self.page = (value if _day(value) else ""), 0
        return await self._requery()

    @rx.event
    async def filter_patient(self, patient_id: str):
        try:
            self.patient_filter = str(uuid.UUID(patient_id)) if patient_id else ""
        except ValueError:
            self.patient_filter = ""
        self.patient_label, self.page = "", 0
        return await self._requery()

    @rx.event
    async def clear_filters(self):
        self.patient_filter = self.patient_label = ""
        self.staff_filter = self.action_filter = ALL
        self.start_day = self.end_day = ""
        self.page = 0
        return await self._requery()

    @rx.event
    async def next_page(self):
        if self.has_more:
            self.page += 1
        return await self._requery()

    @rx.event
    async def previous_page(self):
        self.page = max(0, self.page - 1)
        return await self._requery()

    @rx.event
    def export_csv(self):
        """Download the filtered trail as CSV; the export itself is recorded in the trail."""
        actor = self._admin()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                body = audit.export_audit_csv(actor, uow, self._filters())
        except DomainError as exc:
            return rx.toast.error(exc.message)
        stamp = datetime.now(ZoneInfo(self.zone)).strftime("%Y%m%d-%H%M%S")
        return rx.download(data=body, filename=f"audit-{self.kind}-{stamp}.csv")

    @rx.var
    def page_label(self) -> str:
        if not self.rows:
            return ""
        first = self.page * PAGE_SIZE + 1
        return f"Rows {first}–{first + len(self.rows) - 1}"

    @rx.var
    def patient_chip(self) -> str:
        if not self.patient_filter:
            return ""
        return self.patient_label or "this patient"

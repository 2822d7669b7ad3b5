"""The patient home: upcoming and past appointments, waitlist entries."""

from __future__ import annotations

import reflex as rx

from backend.db import UnitOfWork
from backend.scheduling.service import list_appointments
from backend.tenancy.context import Role
from backend.types import utcnow
from backend.waitlist.service import list_entries
from portal.components import format as fmt
from portal.state.live import LivePatient, LiveRefreshMixin
from portal.state.my_appointments import past_status
from portal.state.session import SessionState
from portal.state.waitlist_patient import any_provider_label


class PatientHomeState(LiveRefreshMixin, SessionState):
    """Live on the patient's own audience: their appointments and entries change without a reload."""

    upcoming: list[dict[str, str]] = []
    past: list[dict[str, str]] = []
    entries: list[dict[str, str]] = []

    def _live_audiences(self) -> tuple[type[rx.State], ...]:
        return (LivePatient,)

    def _live_actor(self):
        return self._actor(Role.PATIENT)

    def _live_reload(self, actor) -> None:
        self._refresh(actor)

    @rx.event
    def load(self):
        actor = self._actor(Role.PATIENT)
        if actor is None:
            return
        self._refresh(actor)

    def _refresh(self, actor) -> None:
        with UnitOfWork(actor) as uow:
            appointments = list_appointments(actor, uow)
            entries = list_entries(actor, uow)
        now, lang = utcnow(), self.lang
        rows = [
            {
                "id": str(a.id),
                "day": fmt.day_label(a.start_at, a.clinic_timezone, lang),
                "time": fmt.time_range(a.start_at, a.end_at, a.clinic_timezone, lang),
                "provider": a.provider_name,
                "clinic": a.clinic_name,
                "modality": fmt.label(lang, fmt.MODALITY_LABELS, a.modality),
                # Past ones in the same words as My appointments (a started session is not simply "Booked").
                "status": fmt.label(lang, fmt.STATUS_LABELS, a.status)
                if a.start_at >= now
                else past_status(a.status, a.start_at, a.end_at, now, lang=lang)[0],
                "status_key": a.status,
                "is_future": "1" if a.start_at >= now else "",
            }
            for a in appointments
        ]
        self.upcoming = [r for r in rows if r["is_future"] and r["status_key"] == "booked"]
        self.past = list(reversed([r for r in rows if not r["is_future"]]))[:10]
        self.entries = [
            {
                "id": str(e.id),
                "target": any_provider_label(lang, e.provider_name),
                "clinic": e.clinic_name,
                "status": fmt.label(lang, fmt.STATUS_LABELS, e.status),
                "urgency": fmt.label(lang, fmt.URGENCY_LABELS, e.urgency),
                "windows": fmt.windows_label(e.preferred_windows, lang),
                "since": fmt.day_label(e.created_at, e.timezone, lang),
            }
            for e in entries
            if e.status in ("waiting", "offered")
        ]

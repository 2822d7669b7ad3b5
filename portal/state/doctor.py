"""The doctor home: today's schedule in each clinic's own zone, the week ahead, who is waiting."""

from __future__ import annotations

from datetime import timedelta

import reflex as rx

from backend.db import UnitOfWork
from backend.scheduling.service import list_appointments
from backend.tenancy.context import Role
from backend.types import utcnow
from backend.waitlist.models import EntryStatus
from backend.waitlist.service import list_entries
from portal.components import format as fmt
from portal.state.session import SessionState


class DoctorHomeState(SessionState):
    today_label: str = ""
    today: list[dict[str, str]] = []
    week_count: int = 0
    waiting_count: int = 0
    next_days: list[dict[str, str]] = []

    @rx.event
    def load(self):
        actor = self._actor(Role.DOCTOR)
        if actor is None:
            return
        now = utcnow()
        with UnitOfWork(actor) as uow:
            # Wide enough to hold "today" in every zone from UTC-12 to UTC+14.
            appointments = list_appointments(
                actor, uow, start=now - timedelta(days=1), end=now + timedelta(days=8), active_only=True
            )
            waiting = list_entries(actor, uow, status=EntryStatus.WAITING)
        today_rows, later = [], []
        for a in appointments:
            local_start = fmt.local(a.start_at, a.clinic_timezone)
            row = {
                "id": str(a.id),
                "day": fmt.day_label(a.start_at, a.clinic_timezone),
                "time": fmt.time_range(a.start_at, a.end_at, a.clinic_timezone),
                "patient": a.patient_name or "Held slot",
                "clinic": a.clinic_name,
                "modality": fmt.MODALITY_LABELS.get(a.modality, a.modality),
                "status": fmt.STATUS_LABELS.get(a.status, a.status),
                "past": "1" if a.end_at <= now else "",
            }
            if local_start.date() == fmt.local(now, a.clinic_timezone).date():
                today_rows.append(row)
            elif a.start_at > now:
                later.append(row)
        self.today = today_rows
        self.next_days = later[:8]
        self.week_count = len(later) + sum(1 for r in today_rows if not r["past"])
        self.waiting_count = len(waiting)
        self.today_label = now.strftime("%A %d %B %Y")

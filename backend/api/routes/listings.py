"""Read-only listings in each role's own scope: appointments (waitlists: routes/waitlists.py, audit: audit.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from backend.api.deps import ActorDep, UowDep
from backend.errors import ValidationFailed
from backend.scheduling.service import AppointmentView, list_appointments
from backend.types import ApiDateTime

router = APIRouter(prefix="/api/v1")


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValidationFailed(f"{name} needs a time zone offset, e.g. 2026-03-01T09:00:00Z", field=name)
    return value


@router.get("/appointments", response_model=list[AppointmentView], tags=["appointments"])
def get_appointments(
    actor: ActorDep,
    uow: UowDep,
    start: ApiDateTime | None = None,
    end: ApiDateTime | None = None,
    clinic_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AppointmentView]:
    """Appointments in the caller's scope (a patient's own, a doctor's schedule, or the practice's)."""
    start, end = _aware(start, "start"), _aware(end, "end")
    if start and end and end <= start:
        raise ValidationFailed("end must be after start", field="end")
    return list_appointments(
        actor, uow, start=start, end=end, clinic_id=clinic_id, provider_id=provider_id, limit=limit
    )

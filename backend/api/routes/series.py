"""Recurring weekly sessions: preview the dates, book a series, cancel one or the rest of a series.

Registered before the appointments router, so /appointments/series is never read as an appointment id.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from backend.api.deps import ActorDep, UowDep
from backend.api.routes.appointments import AppointmentOut
from backend.scheduling import series
from backend.scheduling.series import SeriesOccurrence
from backend.types import ApiDate, ApiDateTime, ApiText, Int64

router = APIRouter(prefix="/api/v1", tags=["appointments"])


class SeriesRequest(BaseModel):
    provider_id: uuid.UUID
    first_start: ApiDateTime = Field(description="The first session's start (a slot), with a time zone offset")
    every_weeks: Int64 = Field(default=1, description="1 (weekly) or 2 (every other week)")
    count: Int64 | None = Field(default=None, description="Number of sessions, 1 to 52 (or give until)")
    until: ApiDate | None = Field(default=None, description="Last date, in the clinic's zone (or give count)")
    patient_id: uuid.UUID | None = Field(default=None, description="Required when an admin books")


class BookSeriesRequest(SeriesRequest):
    skip_unavailable: bool = Field(default=False, description="Book the available dates and skip the others")


class OccurrenceOut(BaseModel):
    start: datetime
    end: datetime
    available: bool
    reason: str

    @classmethod
    def of(cls, o: SeriesOccurrence) -> OccurrenceOut:
        return cls(start=o.start, end=o.end, available=o.available, reason=o.reason)


class SeriesOut(BaseModel):
    series_id: uuid.UUID
    booked: list[AppointmentOut]
    skipped: list[OccurrenceOut]


class CancelSeriesRequest(BaseModel):
    scope: Literal["this", "following"] = "following"
    reason: ApiText = Field(default="", max_length=500)


@router.post("/appointments/series/preview", response_model=list[OccurrenceOut])
def preview(body: SeriesRequest, actor: ActorDep, uow: UowDep) -> list[OccurrenceOut]:
    """Each date of a weekly series, available or with the reason it is not. Books nothing."""
    occurrences = series.preview_series(actor, uow, **body.model_dump())
    return [OccurrenceOut.of(o) for o in occurrences]


@router.post("/appointments/series", response_model=SeriesOut, status_code=status.HTTP_201_CREATED)
def book(body: BookSeriesRequest, actor: ActorDep, uow: UowDep) -> SeriesOut:
    """Book a weekly series under one series id: 201, or 409 naming the unavailable dates (nothing booked)
    unless skip_unavailable."""
    result = series.book_series(actor, uow, **body.model_dump())
    uow.commit()
    return SeriesOut(
        series_id=result.series_id,
        booked=[AppointmentOut.of(a) for a in result.booked],
        skipped=[OccurrenceOut.of(o) for o in result.skipped],
    )


@router.post("/appointments/{appointment_id}/cancel-series", response_model=list[AppointmentOut])
def cancel_series(
    appointment_id: uuid.UUID, actor: ActorDep, uow: UowDep, body: CancelSeriesRequest | None = None
) -> list[AppointmentOut]:
    """Cancel this appointment (scope "this") or it and every later booked one of its series ("following")."""
    body = body or CancelSeriesRequest()
    cancelled = series.cancel_series(actor, uow, appointment_id, scope=body.scope, reason=body.reason)
    uow.commit()
    return [AppointmentOut.of(a) for a in cancelled]

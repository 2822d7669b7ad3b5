"""Provider search and facets; a provider's weekly availability and time off."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from backend.api.deps import ActorDep, UowDep
from backend.api.ratelimit import rate_limit
from backend.api.responses import JsonOf
from backend.ratelimit import SEARCH
from backend.scheduling import availability, search
from backend.scheduling.models import AvailabilityRule, TimeOff
from backend.tenancy.models import Clinic
from backend.types import ApiDate, ApiDateTime, ApiText, Int64

router = APIRouter(prefix="/api/v1", tags=["providers"])


class ClinicRef(BaseModel):
    id: uuid.UUID
    name: str
    timezone: str


class ProviderCardOut(BaseModel):
    id: uuid.UUID
    full_name: str
    title: str
    kind: str
    specialties: list[str]
    languages: list[str]
    modalities: list[str]
    clinics: list[ClinicRef]
    next_free_start: datetime | None
    next_free_end: datetime | None
    next_free_clinic_id: uuid.UUID | None
    next_free_timezone: str | None


class FacetsOut(BaseModel):
    specialties: list[str]
    languages: list[str]


class RuleIn(BaseModel):
    """One weekly block: wall-clock times in the clinic's zone; weekday 0 = Monday ... 6 = Sunday."""

    clinic_id: uuid.UUID
    weekday: Int64
    start: time = Field(description="e.g. 09:00")
    end: time = Field(description="e.g. 12:00")
    session_minutes: Int64 = 50
    buffer_minutes: Int64 = 10
    modality: ApiText = Field(default="in_person", max_length=40)
    valid_from: ApiDate | None = None
    valid_until: ApiDate | None = None

    def to_input(self) -> availability.RuleInput:
        return availability.RuleInput(**self.model_dump())


class RuleOut(RuleIn):
    id: uuid.UUID
    provider_id: uuid.UUID

    @classmethod
    def of(cls, rule: AvailabilityRule) -> RuleOut:
        return cls(
            id=rule.id,
            provider_id=rule.provider_id,
            clinic_id=rule.clinic_id,
            weekday=rule.weekday,
            start=rule.start_time,
            end=rule.end_time,
            session_minutes=rule.session_minutes,
            buffer_minutes=rule.buffer_minutes,
            modality=rule.modality,
            valid_from=rule.valid_from,
            valid_until=rule.valid_until,
        )


class TimeOffIn(BaseModel):
    start: ApiDateTime = Field(description="With a time zone offset")
    end: ApiDateTime = Field(description="With a time zone offset")
    reason: ApiText = Field(default="", max_length=500)
    booked_sessions: Literal["cancel", "keep"] | None = Field(
        default=None,
        description="Booked (or held) sessions in the span: cancel them (patients notified) or keep them. "
        "Required when there are any (409 time_off.overlaps_sessions otherwise; see GET .../time-off/conflicts)",
    )


class SessionInTimeOffOut(BaseModel):
    appointment_id: uuid.UUID
    start: datetime
    end: datetime
    status: str
    patient_id: uuid.UUID | None
    patient_name: str
    clinic_id: uuid.UUID
    clinic_name: str
    modality: str

    @classmethod
    def of(cls, s: availability.SessionInTimeOff) -> SessionInTimeOffOut:
        return cls(
            appointment_id=s.appointment_id,
            start=s.start_at,
            end=s.end_at,
            status=s.status,
            patient_id=s.patient_id,
            patient_name=s.patient_name,
            clinic_id=s.clinic_id,
            clinic_name=s.clinic_name,
            modality=s.modality,
        )


class TimeOffOut(BaseModel):
    id: uuid.UUID
    provider_id: uuid.UUID
    start: datetime
    end: datetime
    reason: str

    @classmethod
    def of(cls, t: TimeOff) -> TimeOffOut:
        return cls(id=t.id, provider_id=t.provider_id, start=t.start_at, end=t.end_at, reason=t.reason)


class AvailabilityOut(BaseModel):
    provider_id: uuid.UUID
    rules: list[RuleOut]
    time_off: list[TimeOffOut]
    clinics: list[ClinicRef]
    sessions_in_time_off: list[SessionInTimeOffOut] = Field(
        default_factory=list, description="Sessions kept booked during time off (the provider themself and admins)"
    )

    @classmethod
    def of(cls, view: availability.AvailabilityView) -> AvailabilityOut:
        return cls(
            provider_id=view.provider_id,
            rules=[RuleOut.of(r) for r in view.rules],
            time_off=[TimeOffOut.of(t) for t in view.time_off],
            clinics=[_clinic_ref(c) for c in view.clinics],
            sessions_in_time_off=[SessionInTimeOffOut.of(x) for x in view.sessions_in_time_off],
        )


def _clinic_ref(clinic: Clinic) -> ClinicRef:
    return ClinicRef(id=clinic.id, name=clinic.name, timezone=clinic.timezone)


_CARDS = JsonOf(list[ProviderCardOut])


@router.get("/providers", response_model=list[ProviderCardOut], dependencies=[rate_limit(SEARCH)])
def get_providers(
    actor: ActorDep,
    uow: UowDep,
    clinic_id: uuid.UUID | None = None,
    specialty: Annotated[ApiText | None, Query(max_length=200)] = None,
    modality: Annotated[ApiText | None, Query(max_length=40)] = None,
    language: Annotated[ApiText | None, Query(max_length=100)] = None,
    q: Annotated[ApiText | None, Query(max_length=200)] = None,
    free_before: ApiDate | None = None,
) -> Response:
    """Search the practice's providers; those free soonest first (free_before: free before that UTC date)."""
    cards = search.search_providers(
        actor,
        uow,
        clinic_id=clinic_id,
        specialty=specialty,
        modality=modality,
        language=language,
        q=q,
        free_before=free_before,
    )
    return _CARDS.response([ProviderCardOut.model_validate(card, from_attributes=True) for card in cards])


# Registered before any /providers/{provider_id} route so "facets" is never read as an id.
@router.get("/providers/facets", response_model=FacetsOut, dependencies=[rate_limit(SEARCH)])
def get_facets(actor: ActorDep, uow: UowDep) -> FacetsOut:
    """The specialties and languages to offer as search filters."""
    return FacetsOut(**search.search_facets(actor, uow))


@router.get("/providers/{provider_id}/availability", response_model=AvailabilityOut)
def get_availability(provider_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> AvailabilityOut:
    """A provider's weekly rules, upcoming time off and clinics (staff)."""
    return AvailabilityOut.of(availability.list_availability(actor, uow, provider_id))


@router.put("/providers/{provider_id}/availability", response_model=list[RuleOut])
def put_availability(provider_id: uuid.UUID, body: list[RuleIn], actor: ActorDep, uow: UowDep) -> list[RuleOut]:
    """Replace the weekly rules (the doctor themself, or an admin); booked appointments stay."""
    rules = availability.replace_availability(actor, uow, provider_id, [r.to_input() for r in body])
    uow.commit()
    return [RuleOut.of(r) for r in rules]


@router.get("/providers/{provider_id}/time-off/conflicts", response_model=list[SessionInTimeOffOut])
def get_time_off_conflicts(
    provider_id: uuid.UUID, start: ApiDateTime, end: ApiDateTime, actor: ActorDep, uow: UowDep
) -> list[SessionInTimeOffOut]:
    """The booked (or held) sessions a span of time off would cover (the doctor themself, or an admin)."""
    sessions = availability.preview_time_off(actor, uow, provider_id, start=start, end=end)
    return [SessionInTimeOffOut.of(x) for x in sessions]


@router.post("/providers/{provider_id}/time-off", response_model=TimeOffOut, status_code=status.HTTP_201_CREATED)
def post_time_off(provider_id: uuid.UUID, body: TimeOffIn, actor: ActorDep, uow: UowDep) -> TimeOffOut:
    """Block a span of time (the doctor themself, or an admin). Sessions in it are cancelled (patients notified)
    or kept, as `booked_sessions` says; with sessions and no choice: 409 time_off.overlaps_sessions."""
    time_off = availability.add_time_off(
        actor,
        uow,
        provider_id,
        start=body.start,
        end=body.end,
        reason=body.reason,
        booked_sessions=body.booked_sessions,
    )
    uow.commit()
    return TimeOffOut.of(time_off)


@router.delete("/time-off/{time_off_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_time_off(time_off_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> Response:
    availability.remove_time_off(actor, uow, time_off_id)
    uow.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Waitlists: list, join, read, leave, confirm interest; the waitlist policy of the practice and its clinics."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import ActorDep, UowDep
from backend.api.ratelimit import rate_limit
from backend.ratelimit import WAITLIST_JOIN
from backend.types import ApiDate, ApiText, Int64
from backend.waitlist import preview as policy_preview
from backend.waitlist.models import EntryStatus
from backend.waitlist.policy import POLICY_BOUNDS
from backend.waitlist.service import (
    EntryView,
    JoinRequest,
    PolicyView,
    confirm_interest,
    delete_clinic_waitlist_policy,
    entry_view,
    get_entry,
    get_waitlist_policy,
    join_waitlist,
    leave_waitlist,
    list_entries,
    put_waitlist_policy,
)

router = APIRouter(prefix="/api/v1", tags=["waitlists"])
HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class JoinBody(BaseModel):
    """POST /waitlists: the JoinRequest fields."""

    model_config = ConfigDict(extra="forbid")

    clinic_id: uuid.UUID
    provider_id: uuid.UUID | None = None
    specialty: ApiText | None = Field(default=None, max_length=80)
    modality: ApiText | None = Field(
        default=None, max_length=40, description="in_person, telehealth, or null for either"
    )
    windows: list[dict[str, Any]] = Field(
        default_factory=list, description='[{"weekday": 0-6, "start": "HH:MM", "end": "HH:MM"}] in the clinic zone'
    )
    earliest_date: ApiDate | None = None
    latest_date: ApiDate | None = None
    urgency: Int64 = Field(default=2, description="1 routine .. 4 urgent (4: staff only)")
    reason: ApiText = Field(default="", max_length=500)
    patient_id: uuid.UUID | None = Field(default=None, description="staff: the patient to add")


def _bounded(name: str, kind: type) -> Any:
    low, high = POLICY_BOUNDS[name]
    return Field(default=None, ge=kind(low), le=kind(high))


class PolicyBody(BaseModel):
    """PUT a waitlist policy: every field optional; only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    max_active_per_provider: int | None = _bounded("max_active_per_provider", int)
    max_active_per_clinic: int | None = _bounded("max_active_per_clinic", int)
    max_entries_per_patient: int | None = _bounded("max_entries_per_patient", int)
    entry_ttl_days: int | None = _bounded("entry_ttl_days", int)
    reconfirm_interval_days: int | None = _bounded("reconfirm_interval_days", int)
    offer_hold_minutes: int | None = _bounded("offer_hold_minutes", int)
    offers_per_batch: int | None = _bounded("offers_per_batch", int)
    cutoff_minutes_before_slot: int | None = _bounded("cutoff_minutes_before_slot", int)
    urgency_weight: float | None = _bounded("urgency_weight", float)
    wait_weight: float | None = _bounded("wait_weight", float)
    fit_weight: float | None = _bounded("fit_weight", float)
    continuity_weight: float | None = _bounded("continuity_weight", float)
    quiet_hours_start: str | None = Field(default=None, pattern=HHMM, description="HH:MM or null")
    quiet_hours_end: str | None = Field(default=None, pattern=HHMM, description="HH:MM or null")
    auto_offer: bool | None = None
    expire_entry_on_decline: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The fields sent; null clears quiet hours and is refused (by the service) for anything else."""
        return self.model_dump(exclude_unset=True)


class PreviewBody(PolicyBody):
    """POST /waitlist-policy/preview: the proposed settings (as for PUT), for the practice or one clinic."""

    clinic_id: uuid.UUID | None = Field(default=None, description="a clinic's policy; null for the practice default")
    weeks: int = Field(default=policy_preview.DEFAULT_WEEKS, ge=1, le=policy_preview.MAX_WEEKS)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude={"clinic_id", "weeks"})


class PreviewStarted(BaseModel):
    job_id: uuid.UUID


class PreviewFigures(BaseModel):
    freed: int
    filled: int
    fill_rate: float
    median_minutes_to_fill: float | None
    offers_per_fill: float | None
    messages_per_fill: float | None


class PreviewResult(BaseModel):
    """What the replay found: figures for both settings, or why there are none (too little history, too large)."""

    enough: bool
    too_large: bool = False
    weeks: int
    cancellations: int
    entries: int
    current: PreviewFigures | None = None
    proposed: PreviewFigures | None = None


class PreviewStatusOut(BaseModel):
    job_id: uuid.UUID
    state: str = Field(description="queued, running, done or failed")
    progress: float = Field(description="0..1")
    result: PreviewResult | None


@router.get("/waitlists", response_model=list[EntryView])
def get_waitlists(
    actor: ActorDep,
    uow: UowDep,
    clinic_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    status: EntryStatus | None = None,
    urgency: Annotated[int | None, Query(ge=1, le=4)] = None,
    min_age_days: Annotated[int | None, Query(ge=0, le=3650)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[EntryView]:
    """Waitlist entries in the caller's scope, most urgent first."""
    return list_entries(
        actor,
        uow,
        clinic_id=clinic_id,
        provider_id=provider_id,
        status=status,
        urgency=urgency,
        min_age_days=min_age_days,
        limit=limit,
    )


@router.post(
    "/waitlists",
    response_model=EntryView,
    status_code=status.HTTP_201_CREATED,
    dependencies=[rate_limit(WAITLIST_JOIN)],
)
def post_waitlist(body: JoinBody, actor: ActorDep, uow: UowDep) -> EntryView:
    """Join a waitlist (a patient for themself; staff name the patient)."""
    entry = join_waitlist(actor, uow, JoinRequest(**body.model_dump()))
    view = entry_view(actor, uow, entry)
    uow.commit()
    return view


@router.get("/waitlists/{entry_id}", response_model=EntryView)
def get_waitlist(entry_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> EntryView:
    return get_entry(actor, uow, entry_id)


@router.delete("/waitlists/{entry_id}", response_model=EntryView)
def delete_waitlist(entry_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> EntryView:
    """Leave (the patient: cancelled) or remove (staff: removed) an entry; a live offer is withdrawn."""
    entry = leave_waitlist(actor, uow, entry_id)
    view = entry_view(actor, uow, entry)
    uow.commit()
    return view


@router.post("/waitlists/{entry_id}/confirm", response_model=EntryView)
def confirm_waitlist(entry_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> EntryView:
    """Still interested: the entry's time to live starts again."""
    entry = confirm_interest(actor, uow, entry_id)
    view = entry_view(actor, uow, entry)
    uow.commit()
    return view


@router.get("/waitlist-policy", response_model=PolicyView)
def get_practice_policy(actor: ActorDep, uow: UowDep) -> PolicyView:
    return get_waitlist_policy(actor, uow, None)


@router.put("/waitlist-policy", response_model=PolicyView)
def put_practice_policy(body: PolicyBody, actor: ActorDep, uow: UowDep) -> PolicyView:
    view = put_waitlist_policy(actor, uow, None, body.changes())
    uow.commit()
    return view


@router.get("/clinics/{clinic_id}/waitlist-policy", response_model=PolicyView)
def get_clinic_policy(clinic_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> PolicyView:
    return get_waitlist_policy(actor, uow, clinic_id)


@router.put("/clinics/{clinic_id}/waitlist-policy", response_model=PolicyView)
def put_clinic_policy(clinic_id: uuid.UUID, body: PolicyBody, actor: ActorDep, uow: UowDep) -> PolicyView:
    view = put_waitlist_policy(actor, uow, clinic_id, body.changes())
    uow.commit()
    return view


@router.delete("/clinics/{clinic_id}/waitlist-policy", status_code=status.HTTP_204_NO_CONTENT)
def delete_clinic_policy(clinic_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> Response:
    """Drop the clinic's override: it falls back to the practice default."""
    delete_clinic_waitlist_policy(actor, uow, clinic_id)
    uow.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/waitlist-policy/preview", status_code=status.HTTP_202_ACCEPTED, response_model=PreviewStarted)
def start_policy_preview(body: PreviewBody, actor: ActorDep, uow: UowDep) -> PreviewStarted:
    """Simulate the practice's last weeks under its policy and under these settings, in the background (admin).
    Nothing is saved; poll GET /waitlist-policy/preview/{job_id}. 409 while another preview of the practice runs."""
    job_id = policy_preview.preview_policy(actor, uow, body.clinic_id, body.changes(), weeks=body.weeks)
    return PreviewStarted(job_id=job_id)


@router.get("/waitlist-policy/preview/{job_id}", response_model=PreviewStatusOut)
def get_policy_preview(job_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> PreviewStatusOut:
    """A preview's state and progress, then its figures (admin; kept 30 minutes)."""
    found = policy_preview.preview_status(actor, uow, job_id)
    result = PreviewResult.model_validate(found.result) if found.result is not None else None
    return PreviewStatusOut(job_id=found.job_id, state=found.state, progress=found.progress, result=result)

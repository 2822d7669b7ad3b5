"""Insights (admin): refill of cancelled slots, offers, no-shows, late cancellations and dead letters."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from backend.api.deps import ActorDep, UowDep
from backend.insights.service import Insights, practice_insights
from backend.types import ApiDate

router = APIRouter(prefix="/api/v1", tags=["insights"])


@router.get("/insights", response_model=Insights)
def get_insights(
    actor: ActorDep,
    uow: UowDep,
    start: Annotated[ApiDate | None, Query(alias="from")] = None,
    end: Annotated[ApiDate | None, Query(alias="to")] = None,
    clinic_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
) -> Insights:
    """The practice's figures by week, clinic and provider for the days `from`..`to` (inclusive, UTC; default: the
    last 12 weeks, at most two years), narrowed to one clinic or provider if asked, and its dead letters (admin)."""
    return practice_insights(actor, uow, start=start, end=end, clinic_id=clinic_id, provider_id=provider_id)

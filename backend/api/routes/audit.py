"""The audit trail (admin): changes and reads of patient data, filtered and paged, and as CSV."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from backend.api.deps import ActorDep, UowDep
from backend.audit.service import AuditFilter, AuditRow, Kind, export_audit_csv, search_audit
from backend.types import ApiDateTime, ApiText

router = APIRouter(prefix="/api/v1", tags=["audit"])


def _filters(
    patient_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    action: Annotated[ApiText | None, Query(max_length=80)] = None,
    start: ApiDateTime | None = None,
    end: ApiDateTime | None = None,
    entity_type: Annotated[ApiText | None, Query(max_length=100)] = None,
    entity_id: uuid.UUID | None = None,
) -> AuditFilter:
    """The filters both routes take (query parameters); each route adds `kind` with its own default."""
    return AuditFilter(
        patient_id=patient_id,
        user_id=user_id,
        action=action or None,
        start=start,
        end=end,
        entity_type=entity_type or None,
        entity_id=entity_id,
    )


FiltersDep = Annotated[AuditFilter, Depends(_filters)]


@router.get("/audit-events", response_model=list[AuditRow])
def get_audit_events(
    actor: ActorDep,
    uow: UowDep,
    filters: FiltersDep,
    kind: Kind = "change",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditRow]:
    """The practice's audit trail, newest first (admin): `kind=change` (default) the changes, `kind=access` the
    reads of patient data (who, when, which patients, through what, from where). Filters: patient_id, user_id
    (staff member), action, start/end (time zone offset required), entity_type/entity_id (changes)."""
    return search_audit(actor, uow, filters.model_copy(update={"kind": kind}), offset=offset, limit=limit).rows


@router.get("/audit-events/export.csv", response_class=Response)
def export_audit_events(
    actor: ActorDep,
    uow: UowDep,
    filters: FiltersDep,
    kind: Kind = "access",
) -> Response:
    """The filtered trail as CSV (default: the reads), patient ids only; the export is itself audited (admin)."""
    body = export_audit_csv(actor, uow, filters.model_copy(update={"kind": kind}))
    stamp = datetime.now().astimezone().strftime("%Y%m%d-%H%M%S")
    return Response(
        content=body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{kind}-{stamp}.csv"'},
    )

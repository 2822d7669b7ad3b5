"""The audit trail (admin): changes and reads of patient data, filtered and paged, and as CSV."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from backend.api.deps import ActorDep, UowDep
from backend.audit.service import AuditFilter, AuditRow, Kind, export_audit_csv, search_audit
from backend.types import ApiDateTime, ApiText

router = APIRouter(prefix="/api/v1", tags=["audit"])


def _filters(
    kind: Kind = "change",
    patient_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    action: Annotated[ApiText | None, Query(max_length=80)] = None,
    start: ApiDateTime | None = None,
    end: ApiDateTime | None = None,
    entity_type: Annotated[ApiText | None, Query(max_length=100)] = None,
    entity_id: uuid.UUID | None = None,
) -> AuditFilter:
    return AuditFilter(
        kind=kind,
        patient_id=patient_id,
        user_id=user_id,
        action=action or None,
        start=start,
        end=end,
        entity_type=entity_type or None,
        entity_id=entity_id,
    )


@router.get("/audit-events", response_model=list[AuditRow])
def get_audit_events(
    actor: ActorDep,
    uow: UowDep,
    kind: Kind = "change",
    patient_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    action: Annotated[ApiText | None, Query(max_length=80)] = None,
    start: ApiDateTime | None = None,
    end: ApiDateTime | None = None,
    entity_type: Annotated[ApiText | None, Query(max_length=100)] = None,
    entity_id: uuid.UUID | None = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditRow]:
    """The practice's audit trail, newest first (admin): `kind=change` (default) the changes, `kind=access` the
    reads of patient data (who, when, which patients, through what, from where). Filters: patient_id, user_id
    (staff member), action, start/end (time zone offset required), entity_type/entity_id (changes)."""
    filters = _filters(kind, patient_id, user_id, action, start, end, entity_type, entity_id)
    return search_audit(actor, uow, filters, offset=offset, limit=limit).rows


@router.get("/audit-events/export.csv", response_class=Response)
def export_audit_events(
    actor: ActorDep,
    uow: UowDep,
    kind: Kind = "access",
    patient_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    action: Annotated[ApiText | None, Query(max_length=80)] = None,
    start: ApiDateTime | None = None,
    end: ApiDateTime | None = None,
    entity_type: Annotated[ApiText | None, Query(max_length=100)] = None,
    entity_id: uuid.UUID | None = None,
) -> Response:
    """The filtered trail as CSV (default: the reads), patient ids only; the export is itself audited (admin)."""
    filters = _filters(kind, patient_id, user_id, action, start, end, entity_type, entity_id)
    body = export_audit_csv(actor, uow, filters)
    stamp = datetime.now().astimezone().strftime("%Y%m%d-%H%M%S")
    return Response(
        content=body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{kind}-{stamp}.csv"'},
    )

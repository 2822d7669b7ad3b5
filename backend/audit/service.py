"""Write and read the audit trail: state changes (`record`) and reads of patient data (`record_access`).

A change's row commits or rolls back with the change. A read's row is written whatever the reading transaction
does (reads usually do not commit): with the commit when there is one, else in its own short transaction when
the unit of work closes. Either way each unit of work (one REST request, one page event) writes at most one
read row, naming every patient it showed; its route/page and client address come from backend.audit.context.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Session, col, select

import backend.audit.chain  # noqa: F401 - installs the chain's flush hook wherever audit rows are written
from backend.audit import context
from backend.audit.models import AccessEvent, AuditEvent
from backend.db import _READS_ONLY, UnitOfWork
from backend.errors import ValidationFailed
from backend.identity.models import Patient, User
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role

logger = logging.getLogger(__name__)

_CHANGES_KEY = "audit.pending_changes"
_READS_KEY = "audit.pending_read"
EXPORT_MAX_ROWS = 50_000


def record(
    actor: Actor,
    uow: UnitOfWork,
    *,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the current transaction (it commits or rolls back with the change)."""
    event_row = AuditEvent(
        tenant_id=actor.tenant_id,
        actor_user_id=actor.user_id,
        actor_role=str(actor.role),
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        data=data or {},
    )
    # Joins the session at commit (see _add_pending_rows): the chain lock is then held only by the final flush.
    uow.session.info.setdefault(_CHANGES_KEY, []).append(event_row)
    return event_row


# -- reads ----------------------------------------------------------------------------------------------------


class _PageViews:
    """The patients each page view (tab and path) has already had recorded, so that a live re-read records only
    patients it shows for the first time. Bounded; per process (another worker at worst records once more)."""

    def __init__(self, size: int = 20_000) -> None:
        self._seen: OrderedDict[str, set[str]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, view: str, action: str, ids: set[str], *, only_new: bool) -> set[str]:
        keys = {f"{action}|{i}" for i in ids}  # per kind of data: a patient's details after the list are new
        with self._lock:
            seen = self._seen.pop(view, set())
            new = {k.split("|", 1)[1] for k in keys - seen} if only_new else ids
            seen |= keys
            self._seen[view] = seen
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return new


_page_views = _PageViews()


def record_access(
    actor: Actor,
    uow: UnitOfWork,
    *,
    action: str,
    patient_ids: Iterable[uuid.UUID | str | None],
    even_if_empty: bool = False,
) -> None:
    """Note that `actor` was shown these patients' data in this unit of work (one row per unit of work)."""
    if actor.role == Role.SYSTEM:
        return  # background work shows nothing to a person
    ids = {str(p) for p in patient_ids if p is not None}
    via = context.current(uow)
    live = _READS_ONLY.get()  # a live re-read (portal.state.live) of a page already shown
    if via is not None and via.view:
        ids = _page_views.add(via.view, action, ids, only_new=live)
    if not ids and not even_if_empty:
        return
    pending: AccessEvent | None = uow.session.info.get(_READS_KEY)
    if pending is None:
        route = via.route if via else ""
        if live and route.startswith("page "):
            route = "live " + route[len("page ") :]
        pending = AccessEvent(
            tenant_id=actor.tenant_id,
            actor_user_id=actor.user_id,
            actor_role=str(actor.role),
            action=action[:80],
            via=route,
            client_address=via.address if via else None,
        )
        uow.session.info[_READS_KEY] = pending
        uow.on_close(lambda: _write_unsaved_read(uow, actor))
    merged = set(pending.patient_ids) | ids
    pending.patient_ids = sorted(merged)
    pending.patient_count = len(merged)


def _write_unsaved_read(uow: UnitOfWork, actor: Actor) -> None:
    """The unit of work closed without a commit: write its read row in a transaction of its own."""
    pending = uow.session.info.pop(_READS_KEY, None)
    if pending is None:
        return
    token = _READS_ONLY.set(False)  # SQLite: this one writes, so it takes the write lock from its start
    try:
        with UnitOfWork(actor, engine=uow.session.get_bind()) as writer:  # type: ignore[arg-type]
            writer.session.add(pending)
            writer.commit()
    except Exception:
        # Ids only in the message; the read itself has already been served.
        logger.exception("audit: could not record a read (action %s)", pending.action)
    finally:
        _READS_ONLY.reset(token)


@event.listens_for(Session, "before_commit")
def _add_pending_rows(session: Session) -> None:
    changes = session.info.pop(_CHANGES_KEY, None)
    read = session.info.pop(_READS_KEY, None)
    if not changes and read is None:
        return
    # Everything else first: once the chain's lock is taken (in the next flush) the transaction only inserts its
    # audit rows and commits, so it never waits on another transaction while holding the lock.
    session.flush()
    if changes:
        session.add_all(changes)
    if read is not None:
        session.add(read)


@event.listens_for(Session, "after_rollback")
def _drop_pending_changes(session: Session) -> None:
    session.info.pop(_CHANGES_KEY, None)


# -- the change trail (REST: GET /audit-events?kind=change) ---------------------------------------------------


@service_function
def list_audit_events(
    actor: Actor,
    uow: UnitOfWork,
    *,
    entity_type: str | None = None,
    entity_id: uuid.UUID | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """List the tenant's audit events, newest first."""
    require_role(actor, Role.ADMIN)
    query = select(AuditEvent)
    if entity_type:
        query = query.where(AuditEvent.entity_type == entity_type)
    if entity_id:
        query = query.where(AuditEvent.entity_id == entity_id)
    if since:
        query = query.where(AuditEvent.occurred_at >= since)
    query = query.order_by(col(AuditEvent.occurred_at).desc()).limit(max(1, min(limit, 500)))
    return list(uow.session.exec(query))


# -- the Audit page and REST: both trails, filtered -----------------------------------------------------------

Kind = Literal["access", "change"]


class AuditFilter(BaseModel):
    """What the Audit page and GET /audit-events filter on."""

    kind: Kind = "access"
    patient_id: uuid.UUID | None = None
    entity_type: str | None = None  # changes only
    entity_id: uuid.UUID | None = None  # changes only
    user_id: uuid.UUID | None = None
    action: str | None = None
    start: datetime | None = None
    end: datetime | None = None


class PersonRef(BaseModel):
    id: uuid.UUID
    name: str


class AuditRow(BaseModel):
    """One row of either trail as the Audit page and the API show it."""

    kind: Kind
    id: uuid.UUID
    tenant_id: uuid.UUID
    occurred_at: datetime
    actor_user_id: uuid.UUID | None
    actor_name: str
    actor_role: str
    action: str
    patient_ids: list[uuid.UUID]
    patients: list[PersonRef]
    patient_count: int
    entity_type: str = ""
    entity_id: uuid.UUID | None = None
    data: dict[str, Any] = {}
    via: str = ""
    client_address: str | None = None
    chain_shard: int = 0
    chain_seq: int | None = None


class AuditPage(BaseModel):
    rows: list[AuditRow]
    offset: int
    limit: int
    has_more: bool


class AuditFilterOptions(BaseModel):
    staff: list[PersonRef]
    actions: list[str]


def _check_filter(f: AuditFilter) -> None:
    for name, value in (("start", f.start), ("end", f.end)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValidationFailed(f"{name} needs a time zone offset, e.g. 2026-03-01T09:00:00Z", field=name)
    if f.start and f.end and f.end <= f.start:
        raise ValidationFailed("end must be after start", field="end")


def _patient_clause(uow: UnitOfWork, patient_id: uuid.UUID) -> Any:
    if uow.session.get_bind().dialect.name == "postgresql":
        return sa.type_coerce(col(AccessEvent.patient_ids), JSONB).contains([str(patient_id)])
    return sa.text(
        "EXISTS (SELECT 1 FROM json_each(audit_access_events.patient_ids) AS p WHERE p.value = :audit_patient)"
    ).bindparams(audit_patient=str(patient_id))


def _query(uow: UnitOfWork, f: AuditFilter) -> Any:
    model: Any = AccessEvent if f.kind == "access" else AuditEvent
    query = select(model)
    if f.patient_id is not None:
        if f.kind == "access":
            query = query.where(_patient_clause(uow, f.patient_id))
        else:
            query = query.where(
                sa.or_(
                    col(AuditEvent.entity_id) == f.patient_id,
                    col(AuditEvent.data)["patient_id"].as_string() == str(f.patient_id),
                )
            )
    if f.kind == "change" and f.entity_type:
        query = query.where(col(AuditEvent.entity_type) == f.entity_type)
    if f.kind == "change" and f.entity_id is not None:
        query = query.where(col(AuditEvent.entity_id) == f.entity_id)
    if f.user_id is not None:
        query = query.where(col(model.actor_user_id) == f.user_id)
    if f.action:
        query = query.where(col(model.action) == f.action)
    if f.start is not None:
        query = query.where(col(model.occurred_at) >= f.start)
    if f.end is not None:
        query = query.where(col(model.occurred_at) < f.end)
    return query.order_by(col(model.occurred_at).desc(), col(model.chain_seq).desc())


def _names(uow: UnitOfWork, model: Any, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    return {row.id: row.full_name for row in uow.session.exec(select(model).where(col(model.id).in_(ids)))}


def _rows(uow: UnitOfWork, events: list[Any], kind: Kind, *, names_per_row: int = 5) -> list[AuditRow]:
    def patient_ids_of(e: Any) -> list[uuid.UUID]:
        if kind == "access":
            return [uuid.UUID(p) for p in e.patient_ids]
        if e.entity_type == "patient" and e.entity_id:
            return [e.entity_id]
        found = (e.data or {}).get("patient_id")
        try:
            return [uuid.UUID(str(found))] if found else []
        except ValueError:
            return []

    ids_by_row = [patient_ids_of(e) for e in events]
    users = _names(uow, User, {e.actor_user_id for e in events if e.actor_user_id})
    patients = _names(uow, Patient, {p for ids in ids_by_row for p in ids[:names_per_row]})
    return [
        AuditRow(
            kind=kind,
            id=e.id,
            tenant_id=e.tenant_id,
            occurred_at=e.occurred_at,
            actor_user_id=e.actor_user_id,
            actor_name=users.get(e.actor_user_id, "") if e.actor_user_id else "",
            actor_role=e.actor_role,
            action=e.action,
            patient_ids=ids,
            patients=[PersonRef(id=p, name=patients[p]) for p in ids[:names_per_row] if p in patients],
            patient_count=len(ids),
            entity_type=getattr(e, "entity_type", ""),
            entity_id=getattr(e, "entity_id", None),
            data=getattr(e, "data", None) or {},
            via=getattr(e, "via", ""),
            client_address=getattr(e, "client_address", None),
            chain_shard=e.chain_shard,
            chain_seq=e.chain_seq,
        )
        for e, ids in zip(events, ids_by_row, strict=True)
    ]


@service_function
def search_audit(actor: Actor, uow: UnitOfWork, filters: AuditFilter, *, offset: int = 0, limit: int = 50) -> AuditPage:
    """One page of the practice's audit trail (reads or changes), newest first (admin); the page is itself a read."""
    require_role(actor, Role.ADMIN)
    _check_filter(filters)
    offset, limit = max(0, offset), max(1, min(limit, 500))
    events = list(uow.session.exec(_query(uow, filters).offset(offset).limit(limit + 1)))
    has_more = len(events) > limit
    rows = _rows(uow, events[:limit], filters.kind)
    record_access(actor, uow, action="audit.list", patient_ids=[p.id for r in rows for p in r.patients])
    return AuditPage(rows=rows, offset=offset, limit=limit, has_more=has_more)


CSV_COLUMNS = (
    "occurred_at",
    "kind",
    "actor_user_id",
    "actor_name",
    "actor_role",
    "action",
    "patient_ids",
    "patient_count",
    "entity_type",
    "entity_id",
    "via",
    "client_address",
    "chain_shard",
    "chain_seq",
)


@service_function
def export_audit_csv(actor: Actor, uow: UnitOfWork, filters: AuditFilter) -> str:
    """The filtered trail as CSV (ids, no patient names), up to EXPORT_MAX_ROWS rows (admin); the export is audited."""
    require_role(actor, Role.ADMIN)
    _check_filter(filters)
    events = list(uow.session.exec(_query(uow, filters).limit(EXPORT_MAX_ROWS)))
    rows = _rows(uow, events, filters.kind, names_per_row=0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    exported: set[uuid.UUID] = set()
    for r in rows:
        exported.update(r.patient_ids)
        writer.writerow(
            [
                r.occurred_at.isoformat(),
                r.kind,
                r.actor_user_id or "",
                _csv_safe(r.actor_name),
                r.actor_role,
                r.action,
                " ".join(str(p) for p in r.patient_ids),
                r.patient_count,
                r.entity_type,
                r.entity_id or "",
                _csv_safe(r.via),
                r.client_address or "",
                r.chain_shard,
                r.chain_seq if r.chain_seq is not None else "",
            ]
        )
    if filters.patient_id is not None:
        exported.add(filters.patient_id)
    record_access(actor, uow, action="audit.export", patient_ids=exported, even_if_empty=True)
    return out.getvalue()


def _csv_safe(value: str) -> str:
    """Keep a spreadsheet from reading a cell as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@service_function
def audit_filter_options(actor: Actor, uow: UnitOfWork) -> AuditFilterOptions:
    """The practice's staff (admins and clinicians) and the actions seen in its read trail, for the filters (admin)."""
    from backend.identity.models import Membership

    require_role(actor, Role.ADMIN)
    staff_rows = uow.session.exec(
        select(User)
        .join(Membership, col(Membership.user_id) == User.id)
        .where(col(Membership.role).in_([Role.ADMIN, Role.DOCTOR]))
        .order_by(col(User.full_name))
    )
    seen: dict[uuid.UUID, str] = {}
    for user in staff_rows:
        seen.setdefault(user.id, user.full_name)
    actions = sorted(
        set(uow.session.exec(select(AccessEvent.action).distinct()))
        | set(uow.session.exec(select(AuditEvent.action).distinct()))
    )
    return AuditFilterOptions(staff=[PersonRef(id=k, name=v) for k, v in seen.items()], actions=actions)

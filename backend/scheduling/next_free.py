"""Each provider's next free slot, kept in PostgreSQL: what a search with an empty cache reads.

One row per provider (`provider_next_free`, under row-level security like every tenant table): the earliest free
slot within the booking horizon (or none), when it was computed and until when it holds on its own. Two counters
keep it honest; a change that moves the slot adds one small write to its own transaction, and no work:

* ``version`` is raised by every change that may move the provider's next free slot (booking, hold, release,
  cancellation, availability and time-off edits, clinic changes), in that change's own transaction, just before it
  commits: `backend.scheduling.cache.invalidate_provider` marks it (`mark_in`), so the mark commits with the
  change or not at all.
* ``computed_version`` is the version the stored answer was computed at. A row is current while both are equal,
  ``fresh_until`` (the slot sliding into the minimum notice, a live hold on an earlier slot expiring) has not
  passed, the slot has not started, and it is younger than `MAX_AGE` (a bound for changes that bypass the
  services, such as a booking policy written directly).

A search reads the rows it needs in one indexed statement (`read`); the rows that are not current are computed
again (backend.scheduling.search.next_free_slot) and written back with `store`, conditionally: only when the
version is still the one read before computing. A change that commits meanwhile has raised the version with it
(a store that runs while the change is still open waits for its row lock, then sees the new version), so an
answer computed from before it is never stored as current (and one stored before the mark is marked stale by
it). A worker's sweep (the task ``scheduling.refresh_next_free_tick``, for beat) computes the rows changes
marked, and those whose ``fresh_until`` passed; until it does, the next search that needs one does.
Nothing is enqueued by the change itself: a booking pays for the mark (one HOT update in its transaction: no
indexed column changes), no more.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from backend.db import UnitOfWork, get_engine
from backend.scheduling.models import ProviderNextFree
from backend.tenancy.context import Actor

logger = logging.getLogger(__name__)

# No stored answer is trusted for longer than this, whatever its counters say.
MAX_AGE = timedelta(minutes=15)
REFRESH_TASK = "scheduling.refresh_next_free"
SWEEP_TASK = "scheduling.refresh_next_free_tick"


_TABLE: sa.Table = ProviderNextFree.__table__  # type: ignore[attr-defined]
_C = _TABLE.c
_SLOT_COLUMNS = ("clinic_id", "slot_start", "slot_end", "modality", "timezone")


@dataclass(frozen=True)
class Stored:
    """A provider's row as read: its version, and the stored answer when it is still current (else None)."""

    version: int
    answer: dict[str, Any] | None  # slot columns + fresh_until + computed_at, or None when stale


@dataclass(frozen=True)
class Computed:
    """An answer to store: the slot columns (all None: nothing free) and until when it holds."""

    provider_id: uuid.UUID
    version: int | None  # the version read before computing; None: there was no row
    clinic_id: uuid.UUID | None
    slot_start: datetime | None
    slot_end: datetime | None
    modality: str | None
    timezone: str | None
    fresh_until: datetime | None


def _kept(engine: sa.Engine | None) -> bool:
    """Whether rows are kept on this database: PostgreSQL only. On SQLite (the embedded mode) a search's own
    transaction may hold the database's one write lock (a unit of work that is not read-only) and a write of
    these rows would wait for it; there every search computes what Redis does not have, as before."""
    return (engine or get_engine()).dialect.name == "postgresql"


_READ_COLUMNS = ("version", "computed_version", *_SLOT_COLUMNS, "computed_at", "fresh_until")
_PREFIX = "next_free_"


def engine_of(uow: UnitOfWork) -> sa.Engine:
    """The engine of a unit of work (the app's, or the one it was given)."""
    bind = uow.session.get_bind()
    return bind if isinstance(bind, sa.Engine) else bind.engine


def kept(uow: UnitOfWork) -> bool:
    """Whether this unit of work's database keeps the rows (PostgreSQL)."""
    return uow.tenant_id is not None and _kept(engine_of(uow))


def read(uow: UnitOfWork, provider_ids: Collection[uuid.UUID], *, now: datetime) -> dict[uuid.UUID, Stored]:
    """The rows of these providers (one statement, by primary key); a provider without a row is absent."""
    if not provider_ids or not kept(uow):
        return {}
    query = sa.select(_C.provider_id, *(_C[c] for c in _READ_COLUMNS)).where(
        _C.tenant_id == uow.tenant_id, _C.provider_id.in_(sorted(provider_ids))
    )
    return {row.provider_id: Stored(row.version, _answer(row._mapping, now)) for row in uow.session.execute(query)}


def joined_columns() -> list[sa.ColumnElement[Any]]:
    """The row's columns to select beside a provider's (with `outer_join`), for `stored_of`."""
    return [_C[c].label(_PREFIX + c) for c in _READ_COLUMNS]


def outer_join(query: Any, provider_id: Any) -> Any:
    """`query` LEFT JOIN the provider's row (absent: NULLs)."""
    return query.outerjoin(_TABLE, _C.provider_id == provider_id)


def stored_of(row: Any, now: datetime) -> Stored | None:
    """The row read through `joined_columns` (None: the provider has none)."""
    values = row._mapping
    if values[_PREFIX + "version"] is None:
        return None
    mapped = {c: values[_PREFIX + c] for c in _READ_COLUMNS}
    return Stored(mapped["version"], _answer(mapped, now))


def _answer(row: Any, now: datetime) -> dict[str, Any] | None:
    computed_at: datetime | None = row["computed_at"]
    fresh_until: datetime | None = row["fresh_until"]
    if row["computed_version"] is None or row["computed_version"] != row["version"] or computed_at is None:
        return None
    if computed_at + MAX_AGE <= now or computed_at > now + MAX_AGE:
        return None
    if fresh_until is not None and fresh_until <= now:
        return None
    if row["slot_start"] is not None and row["slot_start"] <= now:
        return None
    answer = {c: row[c] for c in _SLOT_COLUMNS}
    # Until when the answer may be used without reading the row again (a warm layer's entry must not outlive it).
    limit = computed_at + MAX_AGE
    answer["fresh_until"] = min(fresh_until, limit) if fresh_until is not None else limit
    return answer


def store(actor: Actor, computed: Iterable[Computed], *, now: datetime, engine: sa.Engine | None = None) -> None:
    """Write computed answers in one short transaction of their own, each only if its version did not move.

    Losing these writes costs only a recomputation, so the commit does not wait for the disk."""
    items = sorted(computed, key=lambda c: c.provider_id)  # one order for every writer: no deadlock between two
    if not items or not _kept(engine):
        return
    with UnitOfWork(actor, engine=engine) as uow:
        uow.session.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
        for item in items:
            values = {
                "clinic_id": item.clinic_id,
                "slot_start": item.slot_start,
                "slot_end": item.slot_end,
                "modality": item.modality,
                "timezone": item.timezone,
                "computed_at": now,
                "fresh_until": item.fresh_until,
            }
            if item.version is None:  # no row when read: insert, unless a change inserted its mark meanwhile
                statement: Any = (
                    postgresql.insert(_TABLE)
                    .values(
                        tenant_id=actor.tenant_id, provider_id=item.provider_id, version=0, computed_version=0, **values
                    )
                    .on_conflict_do_nothing(index_elements=["provider_id"])
                )
            else:
                statement = (
                    sa.update(_TABLE)
                    .where(
                        _C.tenant_id == actor.tenant_id,
                        _C.provider_id == item.provider_id,
                        _C.version == item.version,
                    )
                    .values(computed_version=item.version, **values)
                )
            uow.session.execute(statement)
        uow.commit()


@functools.lru_cache(maxsize=8)
def _mark_statement(count: int) -> sa.TextClause:
    rows = ", ".join(f"(:tenant_id, :p{i}, 1)" for i in range(count))
    return sa.text(
        f"INSERT INTO provider_next_free (tenant_id, provider_id, version) VALUES {rows} "  # noqa: S608 - binds only
        "ON CONFLICT (provider_id) DO UPDATE SET version = provider_next_free.version + 1"
    )


def mark_in(uow: UnitOfWork, provider_ids: Sequence[uuid.UUID]) -> None:
    """Raise the version of these providers' rows (creating them when missing) inside the change's transaction,
    so the mark commits with the change or not at all. `provider_ids` sorted: every writer of these rows takes
    their locks in one order (see `store`). A search that read the old version cannot store its answer as
    current: its conditional UPDATE waits for this transaction and then sees the new version."""
    if not provider_ids or not kept(uow):
        return
    params: dict[str, Any] = {"tenant_id": uow.tenant_id}
    params.update({f"p{i}": p for i, p in enumerate(provider_ids)})
    uow.session.execute(_mark_statement(len(provider_ids)), params)


def marked_query(limit: int, now: datetime) -> sa.Select[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant_id, provider_id) of the rows that are not current by a change (marked) or by time (their
    `fresh_until` passed)."""
    stale = sa.or_(_C.computed_version.is_distinct_from(_C.version), _C.fresh_until <= now)
    return sa.select(_C.tenant_id, _C.provider_id).where(stale).limit(limit)


def marked(limit: int, *, now: datetime) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Providers whose rows a change marked, or whose answer ran out in time, and nobody computed since, by
    practice, at most `limit` of them (every practice: the system scope). Off the request path (a worker's tick),
    it reads the table, one row per provider of every practice: an index of the marked rows would make each mark,
    on a booking's path, a non-HOT update with index entries to add."""
    found: dict[uuid.UUID, list[uuid.UUID]] = {}
    with UnitOfWork(system=True) as uow:
        if not _kept(engine_of(uow)):
            return {}
        for tenant_id, provider_id in uow.session.execute(marked_query(limit, now)):
            found.setdefault(tenant_id, []).append(provider_id)
    return found

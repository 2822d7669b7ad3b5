"""Preview a waitlist policy change before saving it: the practice's own last weeks replayed by the simulator
(backend/waitlist/simulation.py) under the settings in force and under the proposed ones, in the background.

`preview_policy` (admin) checks the proposed settings exactly as `put_waitlist_policy` would, records a job and
hands it to the Celery task "waitlist.preview_policy" (backend/waitlist/preview_tasks.py). With a broker the
task runs on a worker; in the embedded mode (eager Celery, no broker) it runs on a thread of its own, so the
caller (a page's event handler, a REST request) returns at once and can show the progress. One preview runs at a
time per practice. `preview_status` (admin) reads a job of the actor's own practice; another practice's job id is
as unknown as a random one (every key carries the tenant).

Jobs live in Redis under `<prefix>:<tenant>:policy-preview:<job>` with a TTL (in the process without Redis). The
run reads the weeks as the practice's system actor (ids and times only), moves them past the present on the
clinics' wall clocks (`shift_world`: the booking rules look for session starts after the real present) and
replays them on a scratch SQLite database for each of the two settings, same world and seed. Nothing is written
to the practice's database and nothing is published, enqueued or sent: the simulator's units of work drop their
after-commit work, and the Redis keys the replay's services leave under the scratch practice are removed.
"""

from __future__ import annotations

import json
import logging
import threading
import time as clock
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy.engine import Engine

from backend.db import UnitOfWork
from backend.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.service import require_role, service_function
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from backend.waitlist.policy import EffectivePolicy, effective_policy
from backend.waitlist.ranking import Weights
from backend.waitlist.service import _clean_changes, _known_clinic
from backend.waitlist.simulation import (
    Figures,
    Loaded,
    World,
    policy_from_settings,
    shift_world,
    simulate,
    sqlite_copies,
    world_from_practice,
)

logger = logging.getLogger(__name__)

TASK = "waitlist.preview_policy"
DEFAULT_WEEKS = 4
MAX_WEEKS = 8
# Bounds on what one preview replays, so it finishes well under a minute: a practice larger than this in its last
# weeks is previewed over fewer weeks (down to one), then refused (preview one clinic at a time instead).
# (Measured on 2 busy cores: 778 appointments, 78 cancellations and 93 entries replay twice in 10 s; 488, 50 and
# 136 in 11 s; the entries cost most, each offer ranks them all.)
MAX_APPOINTMENTS = 900
MAX_CANCELLATIONS = 90
MAX_ENTRIES = 150
# Too little history: fewer cancellations than this, or nobody on a waitlist, says nothing about a policy.
MIN_CANCELLATIONS = 3
JOB_TTL_SECONDS = 30 * 60
RUN_LOCK_SECONDS = 5 * 60  # one preview per practice at a time; frees itself if a worker dies mid-run
SEED = 1

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
FINISHED = (DONE, FAILED)


@dataclass(frozen=True)
class PreviewStatus:
    """A preview job as its practice's admins see it. `result` once done: {"enough": bool, "weeks",
    "cancellations", "entries", "current": {...}, "proposed": {...}} (the figures of each setting)."""

    job_id: uuid.UUID
    state: str  # queued, running, done, failed
    progress: float  # 0..1
    result: dict[str, Any] | None
    error: str | None


# -- the job store ---------------------------------------------------------------------------------------------


class _MemoryStore:
    """Jobs in this process (embedded mode without Redis): the same keys and expiries as in Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, str]] = {}

    def _live(self, key: str) -> str | None:
        found = self._items.get(key)
        if found is None or found[0] <= clock.monotonic():
            self._items.pop(key, None)
            return None
        return found[1]

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key)

    def set(self, key: str, value: str, ttl: int, *, only_new: bool = False) -> bool:
        with self._lock:
            if only_new and self._live(key) is not None:
                return False
            self._items[key] = (clock.monotonic() + ttl, value)
            return True

    def delete_if(self, key: str, value: str) -> None:
        with self._lock:
            if self._live(key) == value:
                self._items.pop(key, None)


class _RedisStore:
    # Delete the run lock only while it is still this job's (a later job may hold it after an expiry).
    _DELETE_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def get(self, key: str) -> str | None:
        raw = self.client.get(key)
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    def set(self, key: str, value: str, ttl: int, *, only_new: bool = False) -> bool:
        return bool(self.client.set(key, value, ex=ttl, nx=only_new))

    def delete_if(self, key: str, value: str) -> None:
        self.client.eval(self._DELETE_IF, 1, key, value)


_memory = _MemoryStore()


def _store() -> _MemoryStore | _RedisStore:
    if not get_settings().redis_url:
        return _memory
    from backend.redis_client import get_redis

    return _RedisStore(get_redis())


def job_key(tenant_id: uuid.UUID, job_id: uuid.UUID) -> str:
    """Where a preview job is kept (the tenant in the key: another practice's job is not there)."""
    return f"{get_settings().redis_key_prefix}:{tenant_id}:policy-preview:{job_id}"


def _run_key(tenant_id: uuid.UUID) -> str:
    return f"{get_settings().redis_key_prefix}:{tenant_id}:policy-preview:running"


def _read(tenant_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, Any] | None:
    raw = _store().get(job_key(tenant_id, job_id))
    return None if raw is None else dict(json.loads(raw))


def _write(tenant_id: uuid.UUID, job_id: uuid.UUID, job: dict[str, Any]) -> None:
    _store().set(job_key(tenant_id, job_id), json.dumps(job), JOB_TTL_SECONDS)


def _unavailable() -> Conflict:
    return Conflict("Previews are unavailable right now. Try again in a minute.", code="waitlist.preview_unavailable")


# -- the service functions -------------------------------------------------------------------------------------


def _tenant(actor: Actor) -> uuid.UUID:
    if actor.tenant_id is None:
        raise PermissionDenied("previews belong to a practice")
    return actor.tenant_id


def _settings_json(clean: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.strftime("%H:%M") if hasattr(v, "strftime") else v) for k, v in clean.items()}


@service_function
def preview_policy(
    actor: Actor, uow: UnitOfWork, clinic_id: uuid.UUID | None, changes: dict[str, Any], *, weeks: int = DEFAULT_WEEKS
) -> uuid.UUID:
    """Start simulating the practice's last `weeks` weeks under its policy and under `changes` (admin); return the
    job's id. The settings are checked as a save would check them; nothing is saved."""
    require_role(actor, Role.ADMIN)
    _known_clinic(uow, clinic_id)
    clean = _clean_changes(changes)
    start, end = clean.get("quiet_hours_start"), clean.get("quiet_hours_end")
    if start is not None and end is not None and start == end:
        raise ValidationFailed("quiet_hours_end must differ from quiet_hours_start", field="quiet_hours_end")
    if isinstance(weeks, bool) or not isinstance(weeks, int) or not 1 <= weeks <= MAX_WEEKS:
        raise ValidationFailed(f"weeks must be a whole number from 1 to {MAX_WEEKS}", field="weeks")
    tenant_id = _tenant(actor)
    job_id = uuid.uuid4()
    job = {
        "state": QUEUED,
        "progress": 0.0,
        "clinic_id": str(clinic_id) if clinic_id else None,
        "changes": _settings_json(clean),
        "weeks": weeks,
        "result": None,
        "error": None,
    }
    try:
        if not _store().set(_run_key(tenant_id), str(job_id), RUN_LOCK_SECONDS, only_new=True):
            raise Conflict(
                "A preview is already running for this practice. Wait for it to finish, then try again.",
                code="waitlist.preview_running",
            )
        _write(tenant_id, job_id, job)
    except redis.RedisError as exc:
        raise _unavailable() from exc
    try:
        _dispatch(tenant_id, job_id)
    except Exception as exc:
        logger.exception("could not start a policy preview")
        _finish(tenant_id, job_id, {**job, "state": FAILED, "error": "not started"})
        raise _unavailable() from exc
    return job_id


@service_function
def preview_status(actor: Actor, uow: UnitOfWork, job_id: uuid.UUID) -> PreviewStatus:
    """A preview job of the actor's practice: its state, progress and, once done, the figures (admin)."""
    require_role(actor, Role.ADMIN)
    try:
        job = _read(_tenant(actor), job_id)
    except redis.RedisError as exc:
        raise _unavailable() from exc
    if job is None:
        raise NotFound("preview")
    return PreviewStatus(
        job_id=job_id,
        state=str(job["state"]),
        progress=float(job["progress"]),
        result=job.get("result"),
        error=job.get("error"),
    )


def _dispatch(tenant_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """Send the job to a worker; eager (no broker), or without Redis to share the job with a worker, run the task on
    a thread of this process: the caller returns at once either way."""
    from backend.celery_app import celery_app
    from backend.jobs import task_named

    task = task_named(TASK)
    if celery_app.conf.task_always_eager or not get_settings().redis_url:
        thread = threading.Thread(
            target=task.apply, args=((str(tenant_id), str(job_id)),), name="policy-preview", daemon=True
        )
        thread.start()
    else:
        task.delay(str(tenant_id), str(job_id))


# -- the run -----------------------------------------------------------------------------------------------------


def proposed_policy(current: EffectivePolicy, changes: dict[str, Any]) -> EffectivePolicy:
    """`current` with the checked `changes` (as put_waitlist_policy takes them) applied."""
    clean = _clean_changes(changes)
    minutes = {"offer_hold_minutes": "offer_hold", "cutoff_minutes_before_slot": "cutoff"}
    days = {"entry_ttl_days": "entry_ttl", "reconfirm_interval_days": "reconfirm_interval"}
    weights = {
        "urgency_weight": "urgency",
        "wait_weight": "wait",
        "fit_weight": "fit",
        "continuity_weight": "continuity",
    }
    fields: dict[str, Any] = {}
    weight_values = {name: getattr(current.weights, name) for name in weights.values()}
    for name, value in clean.items():
        if name in minutes:
            fields[minutes[name]] = timedelta(minutes=value)
        elif name in days:
            fields[days[name]] = timedelta(days=value)
        elif name in weights:
            weight_values[weights[name]] = value
        else:
            fields[name] = value
    return replace(current, source="proposed", weights=Weights(**weight_values), **fields)


def _counts(world: World) -> tuple[int, int]:
    cancelled = sum(1 for a in world.appointments if a.cancelled_at is not None)
    return cancelled, len(world.entries)


def read_weeks(uow: UnitOfWork, clinic_id: uuid.UUID | None, now: datetime, weeks: int) -> tuple[World, int]:
    """The practice's (or clinic's) last `weeks` weeks before `now`, fewer when that many would not replay in well
    under a minute; and how many weeks that is (0: too large even for one week)."""
    for span in range(weeks, 0, -1):
        world = world_from_practice(uow, start=now - timedelta(weeks=span), end=now, seed=SEED, clinic_id=clinic_id)
        cancelled, entries = _counts(world)
        if len(world.appointments) <= MAX_APPOINTMENTS and cancelled <= MAX_CANCELLATIONS and entries <= MAX_ENTRIES:
            return world, span
    return world, 0


def _figures(figures: Figures) -> dict[str, Any]:
    return {
        "freed": figures.freed,
        "filled": figures.filled,
        "fill_rate": figures.fill_rate,
        "median_minutes_to_fill": figures.median_minutes_to_fill,
        "offers_per_fill": figures.offers_per_fill,
        "messages_per_fill": figures.messages_per_fill,
    }


def _forget_scratch_keys(tenant_ids: set[uuid.UUID]) -> None:
    """Drop the Redis keys (counters, caches) the replay's services left under the scratch practice's id."""
    if not get_settings().redis_url or not tenant_ids:
        return
    from backend.redis_client import get_redis

    try:
        client = get_redis()
        for tenant_id in tenant_ids:
            keys = list(client.scan_iter(match=f"clinic:{tenant_id}:*", count=500))
            if keys:
                client.delete(*keys)
    except redis.RedisError:
        logger.warning("policy preview: could not remove the scratch practice's Redis keys")


@contextmanager
def _scratch(world: World) -> Iterator[Callable[[], tuple[Engine, Loaded]]]:
    """sqlite_copies, each copy starting without the Redis keys an earlier copy's run left (the same ids)."""
    with sqlite_copies(world) as fresh:
        seen: set[uuid.UUID] = set()

        def copy() -> tuple[Engine, Loaded]:
            engine, loaded = fresh()
            seen.add(loaded.tenant_id)
            _forget_scratch_keys(seen)
            return engine, loaded

        try:
            yield copy
        finally:
            _forget_scratch_keys(seen)


def _finish(tenant_id: uuid.UUID, job_id: uuid.UUID, job: dict[str, Any]) -> None:
    try:
        _write(tenant_id, job_id, job)
    finally:
        _store().delete_if(_run_key(tenant_id), str(job_id))


def run_preview(tenant_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """Run one preview job to the end: its progress and then its figures (or why there are none) in the store."""
    job = _read(tenant_id, job_id)
    if job is None:
        return  # expired before a worker took it
    last = [-1.0]

    def report(share: float) -> None:
        if share - last[0] >= 0.01 or share >= 1.0:
            last[0] = share
            _write(tenant_id, job_id, {**job, "state": RUNNING, "progress": round(share, 3)})

    try:
        report(0.0)
        clinic_id = uuid.UUID(job["clinic_id"]) if job["clinic_id"] else None
        actor = Actor.system(tenant_id)
        with UnitOfWork(actor) as uow:
            current = effective_policy(uow, clinic_id)
            world, weeks = read_weeks(uow, clinic_id, utcnow(), int(job["weeks"]))
        proposed = proposed_policy(current, job["changes"])
        cancelled, entries = _counts(world)
        result: dict[str, Any] = {"weeks": weeks or 1, "cancellations": cancelled, "entries": entries}
        if weeks == 0:
            result.update(enough=False, too_large=True)
        elif cancelled < MIN_CANCELLATIONS or entries == 0:
            result.update(enough=False, too_large=False)
        else:
            report(0.05)
            moved = shift_world(world, weeks + 1)
            now_figures, new_figures = simulate(
                moved,
                [policy_from_settings("current", current), policy_from_settings("proposed", proposed)],
                databases=_scratch,
                progress=lambda share: report(0.05 + 0.95 * share),
            )
            if now_figures.freed == 0:
                result.update(enough=False, too_large=False)
            else:
                result.update(enough=True, too_large=False, current=_figures(now_figures),
                              proposed=_figures(new_figures))  # fmt: skip
        _finish(tenant_id, job_id, {**job, "state": DONE, "progress": 1.0, "result": result})
    except Exception:
        # Ids only in the log: the job's settings are numbers, but a traceback is enough to find the fault.
        logger.exception("policy preview %s of practice %s failed", job_id, tenant_id)
        _finish(tenant_id, job_id, {**job, "state": FAILED, "error": "failed"})


__all__ = ["DEFAULT_WEEKS", "MAX_WEEKS", "PreviewStatus", "preview_policy", "preview_status", "run_preview"]

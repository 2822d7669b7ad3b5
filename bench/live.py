"""Benchmark (not a test): live sessions. How fast a change reaches the open pages it concerns, and what
every other open tab costs.

    .venv/bin/python -m bench.live [--sessions 10,100,500] [--events 20]

Run it under the e2e lock when other work may be building or serving the app on this machine:
    flock /tmp/waitwell-e2e.lock .venv/bin/python -m bench.live

It creates its own PostgreSQL database and its own Redis server (a private redis-server on a free port, so
the command counts are this run's alone; both go at the end), two practices, and serves the real app's
backend (`reflex run --env prod --backend-only`: the same event socket, live relay and REST API as
`make run`, without the frontend build, since the tabs here are headless).

For each N it opens N headless tabs (bench/_reflex_client.py: Reflex's websocket protocol, one asyncio
task per socket; each tab signed in with its own session cookie, hydrated, its page's on_load run, and
its page's live marker emulated as the browser runs it), all on the doctor's waitlist console:
- affected: N/10 tabs of doctor A, whose waitlist the events change;
- unrelated, same practice: the rest, spread over 9 other doctors of the practice (their own consoles);
- unrelated, other practice: N/10 tabs of a doctor of another practice.
Then it runs K events through the REST API as the practice's admin (/api/v1), alternating:
- join: a new patient joins doctor A's waitlist (POST /waitlists): the console must show their row;
- cancel: an appointment of doctor A is cancelled (POST /appointments/{id}/cancel): the freed slot is
  offered to that patient, and the console must show their row as offered.
Latency is from the start of the API request to the websocket frame that carries the new row, at every
affected tab ("missed": affected tabs without that frame 15 s after the request). It prints p50/p95/max,
the frames that reached unrelated tabs (any frame; a frame carrying a changed row would be a leak and is
counted apart), the server's CPU seconds per event (utime+stime of the server's processes, from
/proc/<pid>/stat, from the first event until the server is idle again), the bench's own CPU per event
(it shares the 2 cores), and PostgreSQL transactions and Redis commands per event (this run's own
database and Redis; they include the app's background ticks). It asserts nothing about time.

Bounded: per level at most --open-seconds to load the tabs, no new event after --event-seconds, and at
most --drain-seconds for the server to go idle; a level cut short says so under the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psycopg

from bench import _admin as bench_admin
from bench._reflex_client import Frame, LiveMarker, ReflexTab, find_dicts, live_markers, root_state_name
from bench.booking import ADMIN_URL, PASSWORD, _free_port, _percentile

ROOT = Path(__file__).resolve().parents[1]
PAGE = "/doctor/waitlist"
OTHER_DOCTORS = 9
CLK_TCK = os.sysconf("SC_CLK_TCK")
FRAME_TIMEOUT = 15.0  # an event whose frame has not arrived by then counts as missed
QUIET_SECONDS = 1.0  # no frame for this long: the tabs have settled
PG_STATS_FLUSH = 11.0  # PostgreSQL 15 flushes an idle backend's counters within 10 s


# -- the practices ------------------------------------------------------------------------------------------------


@dataclass
class World:
    """What the bench created: ids, actors for sessions, and the data each event uses."""

    tenant_id: uuid.UUID
    clinic_id: uuid.UUID
    provider_a: uuid.UUID
    doctor_a: Any
    other_doctors: list[Any]
    foreign_doctor: Any
    waiters: list[tuple[uuid.UUID, str]]  # (patient id, name): one per join event
    appointments: list[str]  # doctor A's appointments, one per cancel event
    used: int = 0


def _doctor(uow: Any, tenant_id: uuid.UUID, clinic_id: uuid.UUID, name: str, email: str) -> Any:
    from backend.identity.models import Membership, Provider, ProviderClinic, User
    from backend.identity.security import hash_password
    from backend.scheduling.models import AvailabilityRule
    from backend.tenancy.context import Actor, Role

    provider = Provider(tenant_id=tenant_id, full_name=name, title="MD", specialties=["Anxiety"],
                        languages=["English"], modalities=["in_person"])  # fmt: skip
    uow.session.add(provider)
    uow.flush()
    uow.session.add(ProviderClinic(tenant_id=tenant_id, provider_id=provider.id, clinic_id=clinic_id))
    for weekday in range(7):
        uow.session.add(AvailabilityRule(tenant_id=tenant_id, provider_id=provider.id, clinic_id=clinic_id,
                                         weekday=weekday, start_time=dtime(0, 0), end_time=dtime(23, 30),
                                         session_minutes=30, buffer_minutes=0))  # fmt: skip
    user = User(tenant_id=tenant_id, email=email, full_name=name, password_hash=hash_password(PASSWORD))
    uow.session.add(user)
    uow.flush()
    uow.session.add(Membership(tenant_id=tenant_id, user_id=user.id, role=Role.DOCTOR, provider_id=provider.id))
    return Actor(tenant_id=tenant_id, role=Role.DOCTOR, user_id=user.id, provider_id=provider.id)


def _practice(name: str) -> tuple[uuid.UUID, uuid.UUID]:
    from backend.db import UnitOfWork
    from backend.scheduling.models import BookingPolicy
    from backend.tenancy.context import Actor
    from backend.tenancy.models import Clinic, Tenant
    from backend.waitlist.models import WaitlistPolicy

    tenant = Tenant(name=name, slug=f"bench-{secrets.token_hex(3)}")
    with UnitOfWork(system=True) as uow:
        uow.session.add(tenant)
        uow.commit()
    with UnitOfWork(Actor.system(tenant.id)) as uow:
        clinic = Clinic(tenant_id=tenant.id, name=f"{name} Clinic", timezone="UTC")
        uow.session.add(clinic)
        uow.session.add(BookingPolicy(tenant_id=tenant.id, min_notice_minutes=0, horizon_days=365))
        # No quiet hours and room for every entry the bench makes: the figures are about delivery, not policy.
        uow.session.add(WaitlistPolicy(tenant_id=tenant.id, max_active_per_provider=10_000,
                                       max_active_per_clinic=100_000, quiet_hours_start=None,
                                       quiet_hours_end=None))  # fmt: skip
        uow.commit()
    return tenant.id, clinic.id


def setup_world(rounds: int) -> World:
    """Two practices: one with doctor A, 9 other doctors, an admin and patients; another with one doctor."""
    from backend.db import UnitOfWork
    from backend.identity.models import Membership, Patient, User
    from backend.identity.security import hash_password
    from backend.scheduling.booking import book_appointment
    from backend.tenancy.context import Actor, Role

    tenant_id, clinic_id = _practice("Bench Live Practice")
    system = Actor.system(tenant_id)
    with UnitOfWork(system) as uow:
        doctor_a = _doctor(uow, tenant_id, clinic_id, "Doctor A", "doctor-a@bench.example")
        others = [_doctor(uow, tenant_id, clinic_id, f"Doctor B{i}", f"doctor-b{i}@bench.example")
                  for i in range(OTHER_DOCTORS)]  # fmt: skip
        admin = User(tenant_id=tenant_id, email=bench_admin.EMAIL, full_name="Bench Admin",
                     password_hash=hash_password(PASSWORD))  # fmt: skip
        bench_admin.enrol(admin)  # admins must use MFA: a password alone gets a token only for setting it up
        uow.session.add(admin)
        uow.flush()
        uow.session.add(Membership(tenant_id=tenant_id, user_id=admin.id, role=Role.ADMIN))
        waiters: list[tuple[uuid.UUID, str]] = []
        holders: list[uuid.UUID] = []
        for i in range(rounds):
            waiter = Patient(tenant_id=tenant_id, full_name=f"Live Waiter {i:04d}", home_clinic_id=clinic_id)
            holder = Patient(tenant_id=tenant_id, full_name=f"Live Holder {i:04d}", home_clinic_id=clinic_id)
            uow.session.add_all([waiter, holder])
            waiters.append((waiter.id, waiter.full_name))
            holders.append(holder.id)
        uow.commit()
    admin_actor = Actor(tenant_id=tenant_id, role=Role.ADMIN)
    appointments = []
    first = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=3)
    with UnitOfWork(admin_actor) as uow:
        for i, holder_id in enumerate(holders):
            day, slot = divmod(i, 40)
            start = first + timedelta(days=day, minutes=30 * slot)
            result = book_appointment(admin_actor, uow, provider_id=doctor_a.provider_id, start=start,
                                      patient_id=holder_id)  # fmt: skip
            appointments.append(str(result.appointment.id))
        uow.commit()
    foreign_tenant, foreign_clinic = _practice("Bench Other Practice")
    with UnitOfWork(Actor.system(foreign_tenant)) as uow:
        foreign = _doctor(uow, foreign_tenant, foreign_clinic, "Doctor C", "doctor-c@bench.example")
        uow.commit()
    return World(tenant_id, clinic_id, doctor_a.provider_id, doctor_a, others, foreign, waiters, appointments)


def session_cookie(actor: Any) -> str:
    """A browser session for `actor`, as the login form would start it: the Cookie header's "name=value"."""
    from backend.identity import service as identity
    from backend.settings import get_settings

    token, _ = identity.start_session(actor)
    return f"{get_settings().session_cookie}={token}"


# -- the server ----------------------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        """Every live process of the server's session (reflex, granian and its workers)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.proc.pid:  # field 6 (session id), counted after the ")"
                pids.append(int(entry.name))
        return pids

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLK_TCK


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.1)


def start_server(env: dict[str, str], workdir: Path) -> Server:
    port = _free_port()
    log = workdir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reflex", "run", "--env", "prod", "--backend-only",
             "--backend-port", str(port), "--loglevel", "warning"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/api/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# -- tabs -------------------------------------------------------------------------------------------------------


@dataclass
class TabSpec:
    actor: Any
    role: str  # "affected", "same practice", "other practice"
    path: str = PAGE


async def open_tabs(
    url: str, specs: list[TabSpec], markers: dict[str, list[LiveMarker]], session: aiohttp.ClientSession,
    on_frame: Callable[[ReflexTab, Frame], None] | None = None, connect_timeout: float = 60.0,
) -> list[ReflexTab]:  # fmt: skip
    """Open one signed-in tab per spec (at most 50 handshakes at a time) and wait for their first frames."""
    root = root_state_name()
    cookies = await asyncio.to_thread(lambda: [session_cookie(spec.actor) for spec in specs])
    tabs = [
        ReflexTab(url, spec.path, cookie, label=spec.role, markers=markers[spec.path], root_state=root,
                  on_frame=on_frame)
        for spec, cookie in zip(specs, cookies, strict=True)
    ]  # fmt: skip
    gate = asyncio.Semaphore(50)

    async def one(tab: ReflexTab) -> None:
        async with gate:
            try:
                await tab.open(session)
                await tab.wait_connected(connect_timeout)
            except (TimeoutError, aiohttp.ClientError) as exc:
                tab.error = f"no connection: {exc!r}"

    await asyncio.gather(*(one(tab) for tab in tabs))
    return tabs


async def settle(tabs: list[ReflexTab], limit: float) -> bool:
    """Wait until every tab has loaded its page and no frame has arrived for QUIET_SECONDS; False at `limit`."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        last = max((t.frames[-1].at for t in tabs if t.frames), default=0.0)
        if all(t.loaded_at for t in tabs) and time.perf_counter() - last >= QUIET_SECONDS:
            return True
        await asyncio.sleep(0.1)
    return False


async def server_idle(server: Server, limit: float) -> bool:
    """Wait until the server's processes use under 5% of a core over a second; False at `limit`."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        before = server.cpu_seconds()
        await asyncio.sleep(1.0)
        if server.cpu_seconds() - before < 0.05:
            return True
    return False


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def frame_shows(frame: Frame, **row: Any) -> bool:
    return next(find_dicts(frame.update.get("delta") or {}, **row), None) is not None


@dataclass
class Expectation:
    """The row the affected tabs must receive for the current event, and when each did."""

    began: float
    row: dict[str, Any]
    waiting: set[int]
    latencies: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


# -- one level -----------------------------------------------------------------------------------------------------


@dataclass
class PgStats:
    dsn: str
    db_name: str

    def transactions(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (self.db_name,)
            ).fetchone()
        return int(row[0]) if row else 0


def redis_commands(url: str) -> int:
    import redis

    stats: dict[str, Any] = redis.Redis.from_url(url).info("stats")  # type: ignore[assignment]
    return int(stats["total_commands_processed"])


@dataclass
class Budget:
    """Bounds on one level's wall time: a slow server gives fewer events and a note, never an endless run."""

    open_seconds: float
    event_seconds: float
    drain_seconds: float


async def run_level(
    n: int, events: int, world: World, server: Server, markers: dict[str, list[LiveMarker]], api_headers: dict,
    pg: PgStats | None, redis_url: str, budget: Budget,
) -> dict[str, Any]:  # fmt: skip
    affected_count = max(1, n // 10)
    foreign_count = max(1, n // 10) if n >= 3 else 0
    same_count = max(0, n - affected_count - foreign_count)
    specs = [TabSpec(world.doctor_a, "affected") for _ in range(affected_count)]
    specs += [TabSpec(world.other_doctors[i % len(world.other_doctors)], "same practice") for i in range(same_count)]
    specs += [TabSpec(world.foreign_doctor, "other practice") for _ in range(foreign_count)]
    current: list[Expectation] = []
    shown: set[str] = set()  # the patients whose rows the events made: only the affected tabs may see them
    leaks: list[str] = []
    notes: list[str] = []

    def on_frame(tab: ReflexTab, frame: Frame) -> None:
        if tab.label != "affected":
            if shown and any(d.get("patient") in shown for d in find_dicts(frame.update.get("delta") or {})):
                leaks.append(tab.label)
            return
        if not current:
            return
        expect = current[0]
        if id(tab) in expect.waiting and frame_shows(frame, **expect.row):
            expect.waiting.discard(id(tab))
            expect.latencies.append(frame.at - expect.began)
            if not expect.waiting:
                expect.done.set()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session, \
            httpx.AsyncClient(base_url=server.url, timeout=60) as api:  # fmt: skip
        began = time.perf_counter()
        progress(f"N={n}: opening {n} tabs")
        tabs = await open_tabs(server.url, specs, markers, session, on_frame, budget.open_seconds)
        if not await settle(tabs, budget.open_seconds):
            loaded_now = sum(1 for t in tabs if t.loaded_at)
            notes.append(
                f"only {loaded_now} of {n} pages loaded within {budget.open_seconds:.0f} s"
                if loaded_now < n
                else f"pages loaded, but frames still arriving {budget.open_seconds:.0f} s after the first connect"
            )
        opened = time.perf_counter() - began
        progress(
            f"N={n}: {sum(1 for t in tabs if t.loaded_at)} pages loaded in {opened:.1f} s; running {events} events"
        )
        affected = [t for t in tabs if t.label == "affected"]
        unrelated = [t for t in tabs if t.label != "affected"]
        if not await server_idle(server, budget.drain_seconds):
            notes.append("the server was still busy with the opening when the events began")
        if pg is not None:
            await asyncio.sleep(PG_STATS_FLUSH)
        pg_before = pg.transactions() if pg is not None else 0
        redis_before = redis_commands(redis_url)
        frames_before = {id(t): len(t.frames) for t in tabs}
        live_sent_before = sum(t.live_events_sent for t in tabs)
        cpu_before = server.cpu_seconds()
        client_before = time.process_time()
        latencies: list[float] = []
        missed = 0
        statuses: dict[int, int] = {}
        events_began = time.perf_counter()
        done = 0
        for i in range(events):
            if time.perf_counter() - events_began > budget.event_seconds:
                notes.append(f"only {done} of {events} events within {budget.event_seconds:.0f} s")
                break
            round_no, kind = divmod(i, 2)
            index = world.used + round_no
            patient_id, name = world.waiters[index]
            expect = Expectation(time.perf_counter(), {}, {id(t) for t in affected})
            shown.add(name)
            if kind == 0:
                expect.row = {"patient": name}
                current[:] = [expect]
                response = await api.post("/api/v1/waitlists", headers=api_headers, json={
                    "clinic_id": str(world.clinic_id), "provider_id": str(world.provider_a),
                    "patient_id": str(patient_id), "urgency": 3})  # fmt: skip
            else:
                expect.row = {"patient": name, "status_key": "offered"}
                current[:] = [expect]
                response = await api.post(f"/api/v1/appointments/{world.appointments[index]}/cancel",
                                          headers=api_headers, json={})  # fmt: skip
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(expect.done.wait(), FRAME_TIMEOUT)
            latencies.extend(expect.latencies)
            missed += len(expect.waiting)
            current.clear()
            done += 1
            progress(f"N={n}: event {i + 1}/{events} ({'join' if kind == 0 else 'cancel'}): "
                     f"{len(expect.latencies)} affected tabs updated, {len(expect.waiting)} not")  # fmt: skip
        world.used += (events + 1) // 2
        # Everything the events set off (pushes, the tabs' reloads) counts: wait until the server is idle again.
        if not await server_idle(server, budget.drain_seconds):
            notes.append(f"the server was still busy {budget.drain_seconds:.0f} s after the last event")
        cpu = server.cpu_seconds() - cpu_before
        client_cpu = time.process_time() - client_before
        redis_after = redis_commands(redis_url)
        if pg is not None:
            await asyncio.sleep(PG_STATS_FLUSH)
        pg_after = pg.transactions() if pg is not None else 0

        def frames(kind: str) -> int:
            return sum(len(t.frames) - frames_before[id(t)] for t in tabs if t.label == kind)

        # What reached the unrelated tabs, by shape (state: vars), for the reader of the JSON: never values.
        shapes: Counter[str] = Counter()
        for tab in unrelated:
            for frame in tab.frames[frames_before[id(tab)] :]:
                delta = frame.update.get("delta") or {}
                shapes[f"{tab.label}: " + "; ".join(f"{state.rsplit('.', 1)[-1]}: {','.join(sorted(v))}"
                                                    for state, v in sorted(delta.items()) if isinstance(v, dict))] += 1  # fmt: skip

        live_sent = sum(t.live_events_sent for t in tabs) - live_sent_before
        loaded = sum(1 for t in tabs if t.loaded_at and not t.error)
        connected = sum(1 for t in tabs if t._connected.is_set() and not t.error)
        for tab in tabs:
            await tab.close()
    per = max(done, 1)
    return {
        "n": n, "connected": connected, "loaded": loaded, "client_cpu_per_event": client_cpu / per, "affected": len(affected), "unrelated": len(unrelated), "events": done,
        "latencies": latencies, "missed": missed, "statuses": statuses, "unrelated_frames": frames("same practice"),
        "foreign_frames": frames("other practice"), "leaks": len(leaks), "affected_frames": frames("affected"),
        "live_sent": live_sent, "cpu_per_event": cpu / per, "pg_per_event": (pg_after - pg_before) / per if pg else None,
        "redis_per_event": (redis_after - redis_before) / per, "open_seconds": opened, "notes": notes,
        "unrelated_frame_shapes": dict(shapes.most_common(10)),
    }  # fmt: skip


def _ms(values: list[float], q: float | None) -> str:
    if not values:
        return "-"
    value = max(values) if q is None else (statistics.median(values) if q == 0.5 else _percentile(values, q))
    return f"{value * 1000:.0f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'':>24} {'event -> frame, affected tabs':-^31} {'frames/event, unrelated tabs':-^30} "
          f"{'per event':-^46}")  # fmt: skip
    print(f"{'sessions':>8} {'loaded':>7} {'events':>6} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'missed':>7} "
          f"{'same practice':>14} {'other practice':>15} {'server CPU s':>13} {'bench CPU s':>12} {'PG xact':>8} "
          f"{'Redis cmd':>10}")  # fmt: skip
    for r in rows:
        lat, per = r["latencies"], max(r["events"], 1)
        pg = f"{r['pg_per_event']:.1f}" if r["pg_per_event"] is not None else "-"
        print(f"{r['n']:>8} {r['loaded']:>7} {r['events']:>6} {_ms(lat, 0.5):>7} {_ms(lat, 0.95):>7} "
              f"{_ms(lat, None):>7} {r['missed']:>7} {r['unrelated_frames'] / per:>14.1f} "
              f"{r['foreign_frames'] / per:>15.1f} {r['cpu_per_event']:>13.3f} {r['client_cpu_per_event']:>12.3f} "
              f"{pg:>8} {r['redis_per_event']:>10.1f}")  # fmt: skip
    print()
    for r in rows:
        per = max(r["events"], 1)
        print(f"N={r['n']}: {r['affected']} affected tabs, {r['unrelated']} unrelated; {r['connected']} connected, "
              f"{r['loaded']} loaded, in {r['open_seconds']:.1f} s; API statuses {r['statuses']}; frames at affected "
              f"tabs {r['affected_frames'] / per:.1f}/event; live reloads the tabs asked for {r['live_sent'] / per:.1f}"
              f"/event; unrelated tabs that received a changed row: {r['leaks']}")  # fmt: skip
        for note in r["notes"]:
            print(f"  N={r['n']}: {note}")


# -- main -------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database() -> Iterator[tuple[str, str]]:
    db_name = f"benchlive_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    try:
        yield db_name, ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{db_name}"
    finally:
        with contextlib.suppress(Exception):
            from backend.db import get_engine, get_system_engine

            get_engine().dispose()
            get_system_engine().dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


async def bench(levels: list[int], events: int, world: World, server: Server, redis_url: str,
                pg: PgStats | None, budget: Budget) -> list[dict[str, Any]]:  # fmt: skip
    markers = {PAGE: await asyncio.to_thread(live_markers, PAGE)}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
        response = await api.post("/api/v1/auth/token", json=bench_admin.token_request(PASSWORD))
        response.raise_for_status()
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    rows = []
    for n in levels:
        rows.append(await run_level(n, events, world, server, markers, headers, pg, redis_url, budget))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="10,100,500", help="comma-separated numbers of open tabs")
    parser.add_argument("--events", type=int, default=20, help="API changes per level (join, cancel, ...)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file (for the smoke test)")
    parser.add_argument(
        "--no-db-stats",
        action="store_true",
        help="skip PostgreSQL transaction counts (saves the 2 x 11 s stats flush per level)",
    )
    parser.add_argument("--open-seconds", type=float, default=60, help="per level: at most this long to load the tabs")
    parser.add_argument(
        "--event-seconds",
        type=float,
        default=45,
        help="per level: start no event after this long (fewer events are then reported)",
    )
    parser.add_argument("--drain-seconds", type=float, default=20,
                        help="per level: at most this long for the server to go idle after the tabs load and after "
                             "the last event")  # fmt: skip
    args = parser.parse_args(argv)
    budget = Budget(args.open_seconds, args.event_seconds, args.drain_seconds)
    # A SIGTERM (timeout, Ctrl-C from a wrapper) still stops the server and drops the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    levels = [int(x) for x in args.sessions.split(",") if x.strip()]
    rounds = len(levels) * ((args.events + 1) // 2)

    workdir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    redis_proc = server = None
    roles: dict[str, str] = {}
    try:
        with bench_database() as (db_name, db_url):
            redis_proc, redis_url = start_redis(workdir)
            env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url,
                   "SECRET_KEY": secrets.token_urlsafe(48), "RATE_LIMIT_ENABLED": "0",
                   "REFLEX_USE_NPM": "1", "REFLEX_CHECK_LATEST_VERSION": "false",
                   "REFLEX_TELEMETRY_ENABLED": "false", "PYTHONDONTWRITEBYTECODE": "1",
                   "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}  # fmt: skip
            # Background tasks (the freed-slot offer) run in the server's process, as in the embedded mode: its CPU
            # figure is then the whole cost of an event. Reflex keeps its state in the server's memory.
            env["CELERY_EAGER"] = "1"
            for key in ("CELERY_BROKER_URL", "REFLEX_REDIS_URL"):
                env.pop(key, None)
            os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")})
            os.environ["CELERY_EAGER"] = "1"
            subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True,
                           capture_output=True)  # fmt: skip
            # As deployed: the app as a role under row-level security, not as the owner.
            from bench._roles import create_roles

            roles = create_roles(db_url)
            env.update(roles)
            os.environ.update(roles)
            world = setup_world(rounds)
            server = start_server(env, workdir)
            pg = None if args.no_db_stats else PgStats(ADMIN_URL, db_name)
            rows = asyncio.run(bench(levels, args.events, world, server, redis_url, pg, budget))
            workers = len(server.pids())
            print(f"# {os.cpu_count()} cores; reflex run --env prod --backend-only ({workers} processes: CLI + granian"
                  f" worker); "
                  f"PostgreSQL 127.0.0.1, private redis-server; live page {PAGE}; {args.events} events per level "
                  f"(join + cancel-and-offer via /api/v1)")  # fmt: skip
            print_table(rows)
            if args.json is not None:
                args.json.write_text(json.dumps(rows, indent=2, default=str))
            stop(server.proc)
    finally:
        if server is not None:
            stop(server.proc)
        stop(redis_proc)
        shutil.rmtree(workdir, ignore_errors=True)
        if roles:  # after bench_database dropped the database (and the grants with it)
            from bench._roles import drop_roles

            drop_roles(ADMIN_URL, roles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark (not a test): booking and provider search through the REST API, against the physical limit.

    make bench            # or: .venv/bin/python -m bench.booking [--requests 400] [--workers 2]
    .venv/bin/python -m bench.booking --search-only --levels 1,8      # provider search alone

It creates its own PostgreSQL database (dropped at the end), a practice with providers available around
the clock, and serves the API with granian on a free local port. Then it prints, per concurrency level:
- bookings/s and p50/p95/p99 latency of POST /api/v1/appointments on distinct free slots;
- the same for GET /api/v1/providers, cached (warm Redis) and uncached (cache keys dropped first), with the
  CPU each search cost the server and PostgreSQL;
- bare INSERTs of the same appointment row through psycopg on the same database (the limit), and the
  ratio app/limit.
Nothing here asserts a time: it only measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import httpx
import psycopg

from bench import _admin as bench_admin

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
LEVELS = (1, 4, 8, 16)
BOOKING_ONLY = False
SEARCH_ONLY = False
FLOOR = False
CLIENT = "httpx"
PASSWORD = "bench-pass-2026"
SLOTS_PER_DAY = 47  # 30-minute sessions from 00:00, the last starting 23:00


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLK_TCK = os.sysconf("SC_CLK_TCK")
CPU: dict[str, object] = {}  # how to find the server's processes and the database's backends (set by main)


def _proc_cpu(pid: int) -> tuple[int, float]:
    """(session id, utime + stime in seconds) of a process, or (-1, 0) when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1, 0.0
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_now() -> tuple[float, float]:
    """CPU seconds used so far by the server's processes and by the bench database's PostgreSQL backends."""
    app = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            session, used = _proc_cpu(int(entry.name))
            if session == CPU.get("server_sid"):
                app += used
    pg = 0.0
    if CPU.get("db"):
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (CPU["db"],))]
        pg = sum(_proc_cpu(pid)[1] for pid in pids)
    return app, pg


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _line(label: str, level: int, count: int, elapsed: float, ms: tuple[float, float, float], extra: str) -> str:
    """One printed row: count and rate, p50/p95/p99 in ms, then what else the row says."""
    rate = count / elapsed if elapsed else 0.0
    p50, p95, p99 = ms
    return f"{label:<22} {level:>4} {count:>6} {rate:>9.0f} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f}  {extra}"


def _row(label: str, level: int, count: int, elapsed: float, latencies: list[float], extra: str = "") -> str:
    p50, p95, p99 = (_percentile(latencies, q) * 1000 for q in (0.5, 0.95, 0.99))
    return _line(label, level, count, elapsed, (p50, p95, p99), extra)


HEADER = f"{'what':<22} {'conc':>4} {'n':>6} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"


def setup_practice(db_url: str, providers: int, patients: int) -> dict[str, object]:
    """Create a practice whose providers are bookable every 30 minutes around the clock."""
    os.environ["DATABASE_URL"] = db_url
    os.environ["REDIS_URL"] = REDIS_URL
    from backend.db import UnitOfWork
    from backend.identity.models import Membership, Patient, Provider, ProviderClinic, User
    from backend.identity.security import hash_password
    from backend.scheduling.models import AvailabilityRule, BookingPolicy
    from backend.tenancy.context import Actor, Role
    from backend.tenancy.models import Clinic, Tenant

    tenant = Tenant(name="Bench Practice", slug=f"bench-{secrets.token_hex(3)}")
    with UnitOfWork(system=True) as uow:
        uow.session.add(tenant)
        uow.commit()
    system = Actor.system(tenant.id)
    with UnitOfWork(system) as uow:
        clinic = Clinic(tenant_id=tenant.id, name="Bench Clinic", timezone="UTC")
        uow.session.add(clinic)
        uow.session.add(BookingPolicy(tenant_id=tenant.id, min_notice_minutes=0, horizon_days=365))
        provider_ids = []
        for i in range(providers):
            provider = Provider(
                tenant_id=tenant.id,
                full_name=f"Provider {i:03d}",
                title="MD",
                specialties=["Psychiatry" if i % 2 else "Anxiety"],
                languages=["English"],
                modalities=["in_person"],
            )
            uow.session.add(provider)
            uow.flush()
            provider_ids.append(provider.id)
            uow.session.add(ProviderClinic(tenant_id=tenant.id, provider_id=provider.id, clinic_id=clinic.id))
            for weekday in range(7):
                uow.session.add(
                    AvailabilityRule(
                        tenant_id=tenant.id,
                        provider_id=provider.id,
                        clinic_id=clinic.id,
                        weekday=weekday,
                        start_time=dtime(0, 0),
                        end_time=dtime(23, 30),
                        session_minutes=30,
                        buffer_minutes=0,
                    )
                )
        patient_ids = []
        for i in range(patients):
            patient = Patient(tenant_id=tenant.id, full_name=f"Patient {i:05d}", home_clinic_id=clinic.id)
            uow.session.add(patient)
            patient_ids.append(patient.id)
        admin = User(tenant_id=tenant.id, email=bench_admin.EMAIL, full_name="Bench Admin",
                     password_hash=hash_password(PASSWORD))  # fmt: skip
        bench_admin.enrol(admin)  # admins must use MFA: a password alone gets a token only for setting it up
        uow.session.add(admin)
        uow.flush()
        uow.session.add(Membership(tenant_id=tenant.id, user_id=admin.id, role=Role.ADMIN))
        uow.commit()
    return {"tenant_id": tenant.id, "clinic_id": clinic.id, "providers": provider_ids, "patients": patient_ids}


def slot_plan(providers: list[uuid.UUID], patients: list[uuid.UUID], count: int, offset_days: int) -> list[dict]:
    """Distinct (provider, start, patient) triples: no provider or patient twice at one time."""
    base = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=offset_days)
    plan = []
    for i in range(count):
        provider = providers[i % len(providers)]
        day, slot = divmod(i // len(providers), SLOTS_PER_DAY)
        start = base + timedelta(days=day, minutes=30 * slot)
        plan.append({"provider_id": str(provider), "start": start.isoformat(), "patient_id": str(patients[i])})
    return plan


async def run_level(client: httpx.AsyncClient, level: int, jobs: list[dict], headers: dict) -> tuple:
    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            began = time.perf_counter()
            response = await job["call"](client, headers)
            latencies.append(time.perf_counter() - began)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(level)))
    return time.perf_counter() - began, latencies, statuses


WRK_SCRIPT = """
local lines, i, path, method, headers = {}, 0, nil, nil, {}
init = function(args)
  method, path = args[1], args[2]
  headers["Authorization"] = args[3]
  headers["Content-Type"] = "application/json"
  if args[4] then for line in io.lines(args[4]) do lines[#lines + 1] = line end end
end
request = function()
  if #lines == 0 then return wrk.format(method, path, headers) end
  i = i + 1
  if i > #lines then i = #lines end -- out of distinct slots: the repeats answer 409 and show as errors
  return wrk.format(method, path, headers, lines[i])
end
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format("WRK %d %d %d %.1f %.1f %.1f\\n", summary.requests, summary.duration, bad,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def run_wrk(
    url: str, level: int, seconds: int, method: str, path: str, authorization: str, bodies: list[dict] | None = None
) -> tuple[int, float, int, float, float, float]:
    """Drive the server with wrk (a C load client: a few microseconds of CPU per request where httpx takes
    milliseconds, on the same cores) for `seconds` at `level` connections from one thread. Returns (requests,
    seconds, errors, p50 ms, p95 ms, p99 ms); errors are non-2xx answers and socket errors."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch, "bench.lua")
        script.write_text(WRK_SCRIPT)
        args = [method, path, authorization]
        if bodies:
            lines = Path(scratch, "bodies.jsonl")
            lines.write_text("\n".join(json.dumps(b) for b in bodies) + "\n")
            args.append(str(lines))
        out = subprocess.run(
            ["wrk", "-t1", f"-c{level}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url, "--", *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    fields = next(line for line in out.stdout.splitlines() if line.startswith("WRK ")).split()[1:]
    return int(fields[0]), int(fields[1]) / 1e6, int(fields[2]), float(fields[3]), float(fields[4]), float(fields[5])


def _wrk_row(label: str, level: int, result: tuple[int, float, int, float, float, float], extra: str) -> str:
    count, elapsed, errors, p50, p95, p99 = result
    return _line(label, level, count, elapsed, (p50, p95, p99), f"errors {errors}; {extra}")


WARMUP_SECONDS = 2


def bench_wrk(url: str, info: dict, seconds: int, token: str) -> list[str]:
    """The floor, the bookings and the search, cached and uncached, driven by wrk (--client wrk)."""
    rows = []
    authorization = f"Bearer {token}"
    patients = list(info["patients"])

    def runs_of(first_day: int, run_seconds: int) -> list[tuple[str, str, str, list[dict] | None]]:
        runs: list[tuple[str, str, str, list[dict] | None]] = []
        if FLOOR:
            runs.append(("floor (GET health)", "GET", "/api/health", None))
        if not SEARCH_ONLY:
            # Enough distinct slots for 1,500 bookings a second, from first_day on.
            count = int(1500 * run_seconds)
            # A patient again at another time: one start's bookings (one per provider) are distinct patients.
            cycled = [patients[i % len(patients)] for i in range(count)]
            plan = slot_plan(info["providers"], cycled, count, first_day)
            runs.append(("book (POST, wrk)", "POST", "/api/v1/appointments", plan))
        if not BOOKING_ONLY:
            runs.append((CACHED, "GET", SEARCH_PATH, None))
            runs.append((UNCACHED, "GET", SEARCH_PATH, None))
        return runs

    # Each level books its own days; the warm-up books days after all of them.
    days = int(1500 * seconds) // (len(info["providers"]) * SLOTS_PER_DAY) + 2
    # Unmeasured: a fresh worker's first requests take hundreds of milliseconds (connections, first compiles), and
    # wrk corrects its latencies for the requests a stalled connection did not send, so those few would set p99.
    for _label, method, path, bodies in runs_of(2 + len(LEVELS) * days, WARMUP_SECONDS):
        run_wrk(url, max(LEVELS), WARMUP_SECONDS, method, path, authorization, bodies)
    for n, level in enumerate(LEVELS):
        for label, method, path, bodies in runs_of(2 + n * days, seconds):
            if label == CACHED:
                # The bookings just before moved every provider's next free slot: fill the cache again, unmeasured.
                run_wrk(url, level, 1, method, path, authorization, None)
            with _emptying_cache(info) if label == UNCACHED else contextlib.nullcontext() as misses:
                app0, pg0 = cpu_now()
                result = run_wrk(url, level, seconds, method, path, authorization, bodies)
                app1, pg1 = cpu_now()
            done = max(result[0], 1)
            cpu = f"cpu/request app {1000 * (app1 - app0) / done:.1f} ms, pg {1000 * (pg1 - pg0) / done:.1f} ms"
            if misses is not None:
                cpu += f"; {misses():.0%} of the cache lookups missed"
            rows.append(_wrk_row(label, level, result, cpu))
    return rows


SEARCH_PATH = "/api/v1/providers?specialty=Anxiety"
CACHED, UNCACHED = "search cached (wrk)", "search uncached (wrk)"
# redis-cli's pause between two DELs of the practice's cache keys while wrk searches: a search finds a key only if
# another search stored it less than this long ago. The row prints the share of lookups that missed.
EMPTYING_INTERVAL_S = 0.0002


def _search_keys(tenant_id: uuid.UUID, providers: list[uuid.UUID]) -> list[str]:
    """Every cache key a search of the practice can read: its directory and each provider's next free slot."""
    from backend.scheduling import cache

    return [cache.directory_key(tenant_id), *(cache.next_free_key(tenant_id, p) for p in providers)]


@contextlib.contextmanager
def _emptying_cache(info: dict) -> Iterator[Callable[[], float]]:
    """For the uncached row under wrk (which cannot drop keys itself): redis-cli (C, a few microseconds a call)
    deletes the practice's search cache keys every EMPTYING_INTERVAL_S while the row runs. Yields a function
    giving the share of the row's cache lookups that missed, from the practice's own hit and miss counters."""
    from backend.scheduling import cache

    tenant_id = info["tenant_id"]
    before = cache.stats(tenant_id)
    after: list[dict[str, int]] = []  # the counters once the row has ended

    def missed() -> float:
        hits, misses = after[0]["hits"] - before["hits"], after[0]["misses"] - before["misses"]
        return misses / max(hits + misses, 1)

    dropper = subprocess.Popen(
        ["redis-cli", "-u", REDIS_URL, "-r", "-1", "-i", str(EMPTYING_INTERVAL_S), "DEL",
         *_search_keys(tenant_id, info["providers"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield missed
    finally:
        dropper.kill()
        dropper.wait()
        after.append(cache.stats(tenant_id))


def booking_job(body: dict):
    async def call(client: httpx.AsyncClient, headers: dict) -> httpx.Response:
        return await client.post("/api/v1/appointments", json=body, headers=headers)

    return {"call": call}


def health_job():
    async def call(client: httpx.AsyncClient, headers: dict) -> httpx.Response:
        return await client.get("/api/health", headers=headers)

    return {"call": call}


def search_job(tenant_id: uuid.UUID, providers: list[uuid.UUID], *, uncached: bool):
    """One search; uncached: the practice's cache keys are dropped first (one DEL of the keys it can have: a SCAN
    here would stall the client's event loop, and every request in flight with it)."""
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    keys = _search_keys(tenant_id, providers)

    async def call(client: httpx.AsyncClient, headers: dict) -> httpx.Response:
        if uncached:
            r.delete(*keys)
        return await client.get("/api/v1/providers", params={"specialty": "Anxiety"}, headers=headers)

    return {"call": call}


async def bench_api(url: str, info: dict, requests_per_level: int) -> tuple[list[str], dict[int, float]]:
    rows = []
    book_rates: dict[int, float] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        login = await client.post("/api/v1/auth/token", json=bench_admin.token_request(PASSWORD))
        token = login.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        patients = list(info["patients"])
        for level in LEVELS if FLOOR else ():
            # The floor: the cheapest request (GET /api/health, no database, no Redis) through the same server,
            # middleware and load client. No booking can be faster than this on the same cores.
            app0, pg0 = cpu_now()
            elapsed, latencies, statuses = await run_level(client, level, [health_job()] * requests_per_level, {})
            app1, _ = cpu_now()
            cpu = f"cpu/request app {1000 * (app1 - app0) / requests_per_level:.1f} ms"
            rows.append(_row("floor (GET health)", level, requests_per_level, elapsed, latencies,
                             f"statuses {statuses}; {cpu}"))  # fmt: skip
        for n, level in enumerate(() if SEARCH_ONLY else LEVELS):
            plan = slot_plan(info["providers"], patients[n * requests_per_level :], requests_per_level, 2 + n * 20)
            app0, pg0 = cpu_now()
            elapsed, latencies, statuses = await run_level(client, level, [booking_job(b) for b in plan], headers)
            app1, pg1 = cpu_now()
            cpu = (
                f"cpu/booking app {1000 * (app1 - app0) / len(plan):.1f} ms, pg {1000 * (pg1 - pg0) / len(plan):.1f} ms"
            )
            rows.append(_row("book (POST)", level, len(plan), elapsed, latencies, f"statuses {statuses}; {cpu}"))
            book_rates[level] = statuses.get(201, 0) / elapsed
        if BOOKING_ONLY:
            return rows, book_rates
        has_search = (await client.get("/api/v1/providers", headers=headers)).status_code == 200
        for uncached in (False, True):
            if not has_search:
                rows.append("provider search: GET /api/v1/providers not available")
                break
            for level in LEVELS:
                job = search_job(info["tenant_id"], info["providers"], uncached=uncached)  # one Redis client
                jobs = [job] * (requests_per_level // 2)
                app0, pg0 = cpu_now()
                elapsed, latencies, statuses = await run_level(client, level, jobs, headers)
                app1, pg1 = cpu_now()
                cpu = f"cpu/search app {1000 * (app1 - app0) / len(jobs):.1f} ms, pg {1000 * (pg1 - pg0) / len(jobs):.1f} ms"
                label = "search uncached" if uncached else "search cached"
                rows.append(_row(label, level, len(jobs), elapsed, latencies, f"statuses {statuses}; {cpu}"))
    return rows, book_rates


def bench_bare_inserts(db_url: str, info: dict, per_level: int) -> dict[int, float]:
    """INSERT the same appointment row as the API would, through psycopg, one transaction each."""
    import threading

    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    rates: dict[int, float] = {}
    rows_out = []
    for n, level in enumerate(LEVELS):
        plan = slot_plan(info["providers"], info["patients"], per_level, 200 + n * 20)
        jobs = [(uuid.uuid4(), p["provider_id"], datetime.fromisoformat(p["start"])) for p in plan]
        lock = threading.Lock()
        latencies: list[float] = []

        def work(chunk: list, lock: threading.Lock = lock, latencies: list[float] = latencies) -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for appt_id, provider, start in chunk:
                    began = time.perf_counter()
                    conn.execute(
                        "INSERT INTO appointments (tenant_id, id, provider_id, patient_id, clinic_id, start_at, end_at,"
                        " modality, status, version, cancel_reason, created_at, updated_at)"
                        " VALUES (%s, %s, %s, NULL, %s, %s, %s, 'in_person', 'booked', 1, '', now(), now())",
                        (info["tenant_id"], appt_id, provider, info["clinic_id"], start, start + timedelta(minutes=30)),
                    )
                    with lock:
                        latencies.append(time.perf_counter() - began)

        chunks = [jobs[i::level] for i in range(level)]
        threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
        rates[level] = per_level / elapsed
        rows_out.append(_row("bare INSERT (psycopg)", level, per_level, elapsed, latencies))
    print("\n".join(rows_out))
    return rates


def main() -> int:
    global LEVELS, BOOKING_ONLY, SEARCH_ONLY, FLOOR, CLIENT
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="bookings per concurrency level")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--providers", type=int, default=20)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrency levels, e.g. 8 or 1,8")
    parser.add_argument("--booking-only", action="store_true", help="skip provider search and the bare INSERTs")
    parser.add_argument("--search-only", action="store_true", help="skip the bookings and the bare INSERTs")
    parser.add_argument("--floor", action="store_true",
                        help="first time GET /api/health, the cheapest request through the same stack and client")  # fmt: skip
    parser.add_argument("--client", choices=("httpx", "wrk"), default="httpx",
                        help="wrk: drive the floor, bookings and cached search with wrk (apt-get install wrk) for"
                             " --seconds per level, so the load client's own CPU stops counting against the app")  # fmt: skip
    parser.add_argument("--seconds", type=int, default=10, help="with --client wrk: seconds per level and row")
    parser.add_argument("--rls", choices=("on", "off"), default="on",
                        help="off: the app connects as the BYPASSRLS system role, to see what row-level security costs")  # fmt: skip
    parser.add_argument("--rate-limits", choices=("on", "off"), default="on",
                        help="rate limiting on (the default, as deployed) or off, to see its cost")  # fmt: skip
    args = parser.parse_args()
    LEVELS = tuple(int(v) for v in args.levels.split(","))
    BOOKING_ONLY = args.booking_only
    SEARCH_ONLY = args.search_only
    FLOOR = args.floor
    CLIENT = args.client

    db_name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{db_name}"
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": REDIS_URL, "SECRET_KEY": secrets.token_urlsafe(48)}
    env.pop("CELERY_BROKER_URL", None)
    # The security controls stay on (rate limiting, headers, CSRF/CORS checks, input guard): the figures include
    # their cost. One address books for one practice here, so the limits are raised to let the load through, but
    # every request is still counted against them in Redis.
    env["REDIS_KEY_PREFIX"] = f"bench-{db_name}"
    env["RATE_LIMIT_ENABLED"] = "1" if args.rate_limits == "on" else "0"
    for limit_class in ("SEARCH", "SLOTS", "BOOKING", "AUTH", "PRACTICE_SEARCH", "PRACTICE_SLOTS", "PRACTICE_BOOKING"):
        env[f"RATE_LIMIT_{limit_class}"] = "1000000/minute"
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")})
    server = None
    roles: dict[str, str] = {}
    try:
        subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        # As deployed: the app as a role under row-level security, not as the owner.
        from bench._roles import create_roles

        roles = create_roles(db_url)
        env.update(roles)
        if args.rls == "off":
            env["DATABASE_URL"] = roles["SYSTEM_DATABASE_URL"]
        os.environ.update(roles)
        info = setup_practice(roles["DATABASE_URL"], args.providers, patients=args.requests * len(LEVELS))
        port = _free_port()
        server = subprocess.Popen(
            # granian (the server Reflex itself uses): uvicorn --workers N added ~40 ms to every request here.
            [sys.executable, "-m", "granian", "--interface", "asgi", "backend.api.app:api", "--port", str(port),
             "--host", "127.0.0.1", "--workers", str(args.workers), "--log-level", "warning"],
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        CPU.update(server_sid=server.pid, db=db_name)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"  # granian's --loop auto takes uvloop
        print(f"# {os.cpu_count()} cores; granian --workers {args.workers} ({loop}); PostgreSQL + Redis on 127.0.0.1;"
              f" rate limiting {args.rate_limits}; row-level security {args.rls}; client {CLIENT};"
              f" database {db_name}")  # fmt: skip
        print(HEADER)
        if CLIENT == "wrk":
            login = httpx.post(f"{url}/api/v1/auth/token", json=bench_admin.token_request(PASSWORD), timeout=30)
            print("\n".join(bench_wrk(url, info, args.seconds, login.json()["access_token"])))
            return 0
        rows, book_rates = asyncio.run(bench_api(url, info, args.requests))
        print("\n".join(rows))
        if BOOKING_ONLY:
            return 0
        if not SEARCH_ONLY:
            limit = bench_bare_inserts(db_url, info, args.requests)
            print("\nbookings through the app vs bare INSERT (same DB, same concurrency):")
            for level, app_rate in book_rates.items():
                print(f"  concurrency {level:>2}: app {app_rate:.0f}/s vs limit {limit[level]:.0f}/s "
                      f"= {app_rate / limit[level]:.2f}")  # fmt: skip
        from backend.scheduling import cache

        try:
            stats = cache.stats(info["tenant_id"])  # type: ignore[arg-type]
            total = stats["hits"] + stats["misses"]
            print(f"\nsearch cache: {stats['hits']} hits, {stats['misses']} misses"
                  f" ({stats['hits'] / total:.0%} hit rate)" if total else "\nsearch cache: no lookups")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a missing cache must not hide the figures above
            print(f"search cache stats unavailable: {exc}")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:  # a worker that ignores SIGTERM must not keep the database alive
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=20)
        from backend.db import get_engine, get_system_engine

        get_engine().dispose()
        get_system_engine().dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        from bench._keys import forget_keys

        forget_keys(REDIS_URL, env["REDIS_KEY_PREFIX"])
        if roles:
            from bench._roles import drop_roles

            drop_roles(ADMIN_URL, roles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

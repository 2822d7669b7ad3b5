"""Benchmark (not a test): from a cancellation to the waitlist offer, through the real parts.

    .venv/bin/python -m bench.waitlist [--cancellations 40]

Creates its own PostgreSQL database (dropped at the end), books N appointments and puts N patients on the
waitlist for the same providers, then starts a real Celery worker (Redis broker) and the API (granian).
For each appointment it cancels through POST /api/v1/appointments/{id}/cancel and measures:
- cancel -> offer committed: until a pending offer for that slot is visible in the database;
- cancel -> console update: until the domain event "waitlist.offer_created" arrives on the tenant's Redis
  channel, which is what the portal's live bridge relays to every open console (it then batches for up to
  50 ms and pushes over the websocket; the e2e test measured that last leg at ~110-130 ms in total).
Prints p50/p95/max. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import redis

from bench import _admin as bench_admin
from bench.booking import ADMIN_URL, PASSWORD, _free_port, _percentile, setup_practice, slot_plan

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/8")


def _prepare(info: dict, n: int) -> list[dict]:
    """Book n appointments and put n other patients on the same providers' waitlists (any time suits)."""
    from backend import composition
    from backend.db import UnitOfWork
    from backend.scheduling.booking import book_appointment
    from backend.tenancy.context import Actor, Role
    from backend.waitlist.models import WaitlistEntry

    composition.install()  # the bookings' notices, as in the app
    tenant_id = info["tenant_id"]
    admin = Actor(tenant_id=tenant_id, role=Role.ADMIN)
    booked = []
    plan = slot_plan(info["providers"], info["patients"], n, offset_days=3)
    with UnitOfWork(admin) as uow:
        for job in plan:
            result = book_appointment(
                admin, uow, provider_id=uuid.UUID(job["provider_id"]), start=datetime.fromisoformat(job["start"]),
                patient_id=uuid.UUID(job["patient_id"]),
            )  # fmt: skip
            booked.append({"id": str(result.appointment.id), "provider_id": job["provider_id"], "start": job["start"]})
        for i, job in enumerate(plan):
            uow.session.add(
                WaitlistEntry(
                    tenant_id=tenant_id,
                    patient_id=info["patients"][n + i],
                    clinic_id=info["clinic_id"],
                    provider_id=uuid.UUID(job["provider_id"]),
                    timezone="UTC",
                    urgency=2,
                )
            )
        uow.commit()
    return booked


def _listen(tenant_id: uuid.UUID, seen: dict[str, float], stop: threading.Event) -> None:
    pubsub = redis.Redis.from_url(REDIS_URL).pubsub()
    pubsub.subscribe(f"clinic:events:{tenant_id}")
    while not stop.is_set():
        message = pubsub.get_message(timeout=0.05)
        if message and message["type"] == "message":
            event = json.loads(message["data"])
            if event["name"] == "waitlist.offer_created" and event.get("entity_id"):
                seen.setdefault(event["entity_id"], time.perf_counter())
    pubsub.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cancellations", type=int, default=40)
    args = parser.parse_args()
    n = args.cancellations

    db_name = f"benchwl_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{db_name}"
    queue = f"bench-waitlist-{secrets.token_hex(3)}"  # a queue of its own: runs sharing the broker never meet
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": BROKER_URL,
           "CELERY_QUEUE": queue, "SECRET_KEY": secrets.token_urlsafe(48), "CELERY_EAGER": "0"}  # fmt: skip
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "CELERY_QUEUE", "SECRET_KEY", "CELERY_EAGER")})
    os.environ["CELERY_EAGER"] = "1"  # this process only prepares data: no broker round trips here
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    roles: dict[str, str] = {}
    try:
        subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        # As deployed: the app as a role under row-level security, not as the owner.
        from bench._roles import create_roles

        roles = create_roles(db_url)
        env.update(roles)
        os.environ.update(roles)
        info = setup_practice(roles["DATABASE_URL"], providers=10, patients=2 * n + 1)
        appointments = _prepare(info, n)
        redis.Redis.from_url(BROKER_URL).delete(queue)  # only this run's own queue, never the whole database
        port = _free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backend.worker", "worker", "-P", "threads", "-c", "4",
             "-l", "warning", "--without-gossip", "--without-mingle", "-Q", queue],
            cwd=ROOT, env=env, start_new_session=True,
        ))  # fmt: skip
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "granian", "--interface", "asgi", "backend.api.app:api", "--port", str(port),
             "--host", "127.0.0.1", "--workers", "1", "--log-level", "warning"],
            cwd=ROOT, env=env, start_new_session=True,
        ))  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if client.get("/api/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        token = client.post("/api/v1/auth/token", json=bench_admin.token_request(PASSWORD)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        seen: dict[str, float] = {}
        listener = threading.Thread(target=_listen, args=(info["tenant_id"], seen, stop), daemon=True)
        listener.start()
        time.sleep(3)  # let the worker connect to the broker before the first measured cancellation

        dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
        to_offer: list[float] = []
        to_event: list[float] = []
        missed = 0
        with psycopg.connect(dsn, autocommit=True) as conn:
            for appt in appointments:
                began = time.perf_counter()
                response = client.post(f"/api/v1/appointments/{appt['id']}/cancel", json={}, headers=headers)
                response.raise_for_status()
                offer_id = None
                give_up = began + 10
                while time.perf_counter() < give_up:
                    row = conn.execute(
                        "SELECT id FROM waitlist_offers WHERE provider_id = %s AND slot_start = %s"
                        " AND status = 'pending'",
                        (appt["provider_id"], datetime.fromisoformat(appt["start"])),
                    ).fetchone()
                    if row:
                        offer_id = str(row[0])
                        to_offer.append(time.perf_counter() - began)
                        break
                    time.sleep(0.005)
                if offer_id is None:
                    missed += 1
                    continue
                while offer_id not in seen and time.perf_counter() < give_up:
                    time.sleep(0.005)
                if offer_id in seen:
                    to_event.append(seen[offer_id] - began)
        print(f"# {n} cancellations, each matching waiting entries; real Celery worker (Redis broker), granian API")
        for label, values in (("cancel -> offer committed", to_offer), ("cancel -> console event", to_event)):
            if values:
                print(f"{label:<28} n={len(values):>3}  p50 {statistics.median(values) * 1000:7.1f} ms"
                      f"  p95 {_percentile(values, 0.95) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms")  # fmt: skip
        if missed:
            print(f"no offer within 10 s for {missed} cancellation(s)")
    finally:
        stop.set()
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        from backend.db import get_engine, get_system_engine

        get_engine().dispose()
        get_system_engine().dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        if roles:
            from bench._roles import drop_roles

            drop_roles(ADMIN_URL, roles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

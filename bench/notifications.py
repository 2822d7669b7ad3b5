"""Benchmark (not a test): from a committed change to the message handed to the provider, through the real parts.

    .venv/bin/python -m bench.notifications [--bookings 60]

Creates its own PostgreSQL database (dropped at the end) and a practice whose patients have an e-mail address
and a mobile number. For each of two runs it starts a real Celery worker (Redis broker), then books N
appointments one after another in this process; every booking writes its notifications in its own transaction
(the outbox) and enqueues them after commit. The worker delivers them:

- console: the embedded default's channel (nothing leaves the machine), one message per booking;
- providers: e-mail through the SendGrid SDK and SMS through the Twilio SDK, both against a local HTTP server
  that answers like them (tests/recording_server.py), two messages per booking;
- providers, throttled: the same with the default per-practice limit of 10 sends per second.

For each it prints the commit -> sent latency (p50/p95/max, from the database's own timestamps: the
notification's created_at and the ledger's sent_at) and the throughput from the first commit to the last
send. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg
import redis

from bench.booking import ADMIN_URL, _percentile, setup_practice, slot_plan

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backend.worker", "worker", "-P", "prefork", "-c", "2",
             "-l", "warning", "--without-gossip", "--without-mingle", "-Q", env["CELERY_QUEUE"]],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _book(info: dict, plan: list[dict]) -> None:
    from backend import composition
    from backend.db import UnitOfWork
    from backend.scheduling.booking import book_appointment
    from backend.tenancy.context import Actor, Role

    composition.install()  # each booking's notice is written by the notifications subscriber
    admin = Actor(tenant_id=info["tenant_id"], role=Role.ADMIN)
    for job in plan:
        with UnitOfWork(admin) as uow:
            book_appointment(admin, uow, provider_id=uuid.UUID(job["provider_id"]),
                             start=datetime.fromisoformat(job["start"]), patient_id=uuid.UUID(job["patient_id"]))  # fmt: skip
            uow.commit()


def _measure(dsn: str, expected: int, since: datetime, timeout: float = 120) -> tuple[list[float], float, int]:
    """Wait until `expected` notifications created after `since` are sent (or dead); latencies and span."""
    deadline = time.monotonic() + timeout
    query = (
        "SELECT n.created_at, d.sent_at, d.status FROM notifications n JOIN notification_deliveries d "
        "ON d.notification_id = n.id WHERE n.created_at >= %s"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            rows = conn.execute(query, (since,)).fetchall()
            done = [r for r in rows if r[2] in ("sent", "dead")]
            if len(done) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    sent = [(c, s) for c, s, status in done if status == "sent" and s is not None]
    latencies = [(s - c).total_seconds() for c, s in sent]
    span = (max(s for _, s in sent) - min(c for c, _ in sent)).total_seconds() if sent else 0.0
    return latencies, span, len(rows) - len(sent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=60)
    args = parser.parse_args()
    n = args.bookings

    db_name = f"benchnote_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{db_name}"
    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    queue = f"bench-notes-{secrets.token_hex(3)}"
    base_env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": BROKER_URL,
                "CELERY_QUEUE": queue, "SECRET_KEY": secrets.token_urlsafe(48), "CELERY_EAGER": "0"}  # fmt: skip
    # This process books and publishes to the same broker and queue as the worker.
    os.environ.update({k: base_env[k] for k in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_QUEUE",
                                                "SECRET_KEY", "CELERY_EAGER")})  # fmt: skip
    from tests.recording_server import RecordingServer

    logs = Path(tempfile.gettempdir()) / f"{db_name}.worker.log"
    roles: dict[str, str] = {}
    try:
        subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=base_env, check=True,
                       capture_output=True)  # fmt: skip
        # As deployed: the app as a role under row-level security, not as the owner.
        from bench._roles import create_roles

        roles = create_roles(db_url)
        base_env.update(roles)
        os.environ.update(roles)
        info = setup_practice(roles["DATABASE_URL"], providers=10, patients=3 * n)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE patients SET email = 'p' || substr(id::text, 1, 8) || '@bench.example', "
                "phone = '+1555' || lpad((row_number)::text, 7, '0') FROM (SELECT id AS pid, "
                "row_number() OVER () FROM patients) numbered WHERE numbered.pid = patients.id"
            )
            conn.execute(
                "INSERT INTO notification_preferences (id, tenant_id, patient_id, email_opt_in, sms_opt_in, "
                "whatsapp_opt_in, updated_at) SELECT gen_random_uuid(), tenant_id, id, true, true, false, now() "
                "FROM patients"
            )
        redis.Redis.from_url(BROKER_URL).delete(queue)  # only this run's own queue, never the whole database
        runs = [
            ("console (embedded default)", {"NOTIFICATIONS_CHANNEL_MODE": "console"}, 1),
            ("providers: SendGrid e-mail + Twilio SMS", {"NOTIFICATIONS_PER_SECOND": "1000"}, 2),
            ("providers, throttled to 10/s per practice", {"NOTIFICATIONS_PER_SECOND": "10"}, 2),
        ]
        print(f"# {n} bookings per run, one transaction each; real Celery worker (prefork, 2 processes, Redis broker)")
        with RecordingServer() as recorder:
            providers_env = {
                "NOTIFICATIONS_CHANNEL_MODE": "providers",
                "SENDGRID_API_KEY": "SG.bench", "SENDGRID_FROM_EMAIL": "clinic@bench.example",
                "SENDGRID_BASE_URL": recorder.url, "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                "TWILIO_AUTH_TOKEN": "bench-token", "TWILIO_SMS_FROM": "+15550009999", "TWILIO_BASE_URL": recorder.url,
            }  # fmt: skip
            for index, (label, extra, per_booking) in enumerate(runs):
                env = {**base_env, **(providers_env if "providers" in label else {}), **extra}
                os.environ["NOTIFICATIONS_CHANNEL_MODE"] = env["NOTIFICATIONS_CHANNEL_MODE"]
                from backend.settings import get_settings

                get_settings.cache_clear()
                worker = _worker(env, logs)
                try:
                    time.sleep(3)  # let the worker connect before the first measured booking
                    patients = info["patients"][index * n : (index + 1) * n]
                    plan = slot_plan(info["providers"], patients, n, offset_days=3 + 30 * index)
                    since = datetime.now().astimezone()
                    recorder.clear()
                    began = time.perf_counter()
                    _book(info, plan)
                    booking_s = time.perf_counter() - began
                    latencies, span, missing = _measure(dsn, n * per_booking, since)
                finally:
                    _stop(worker)
                count = len(latencies)
                print(
                    f"{label:<44} {count:>4} sent  commit->sent p50 {statistics.median(latencies) * 1000:7.1f} ms"
                    f"  p95 {_percentile(latencies, 0.95) * 1000:8.1f} ms  max {max(latencies) * 1000:8.1f} ms"
                    f"  {count / span if span else 0:6.1f} msg/s  (bookings took {booking_s:.1f} s)"
                    + (f"  {missing} not sent" if missing else "")
                )
                if "providers" in label:
                    print(f"{'':<44} provider requests recorded: {len(recorder.requests)}")
    finally:
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

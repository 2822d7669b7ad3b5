"""Benchmark (not a test): the highest sustained load a practice group of 10,000 patients can take on this machine
with p95 under 500 ms and errors under 0.1%, from a Locust load test of a realistic mix on the REST API.

    .venv/bin/python -m bench.load [--workers 1] [--steps 25,50,...] [--step-seconds 45]
    .venv/bin/python -m bench.load --patients 300 --providers 10 --history-days 30 --steps 5,10 --step-seconds 15

It creates its own PostgreSQL database (dropped at the end) and its own redis-server (a free port), seeds the
practice group (bench/load/seed.py: 10,000 patients with logins, 100 providers, a year of history, about 150,000
appointments, 1,000 waiting entries) with bulk INSERTs as the owner, and serves the real app's backend as
deployed (`reflex run --env prod --backend-only`, the app as its role under row-level security; `--workers N`
granian workers, Reflex's state in Redis when N > 1) with a real Celery worker on a Redis broker (`--celery eager`
runs tasks in the web process instead). Bearer tokens are issued before the run (the sign-in's argon2 is not part
of the mix: one per session, benched apart) for the patients, doctors and admins Locust plays.

Locust (bench/load/locustfile.py: the mix, the stepped shape, the per-step figures) runs headless as its own
process, so its gevent patching stays there. Each step holds a number of users for --step-seconds, the first
--warmup seconds unmeasured; the run stops after the first step whose p95 reaches 500 ms or whose error rate reaches
0.1%. It prints a table per step and the highest step that met both targets: requests/s and simulated users.
Locust shares the machine's cores with the server, PostgreSQL and Redis: its own CPU is printed too.
Rate limiting stays on with the per-user and per-practice limits raised (one practice carries all the load here),
as bench.booking does: every request is still counted in Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from bench.booking import ADMIN_URL, PASSWORD
from bench.live import bench_database, start_redis, start_server, stop

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STEPS = "25,50,100,150,200,250,300,400,500"
LIMIT_CLASSES = ("SEARCH", "SLOTS", "BOOKING", "WAITLIST_JOIN", "AUTH", "PRACTICE_SEARCH", "PRACTICE_SLOTS",
                 "PRACTICE_BOOKING", "PRACTICE_WAITLIST_JOIN")  # fmt: skip


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def issue_tokens(seeded: Any, *, patients: int) -> dict[str, list[dict[str, str]]]:
    """Bearer and refresh tokens for the people Locust plays (as POST /auth/token would issue them)."""
    from backend.identity import service as identity
    from backend.tenancy.context import Actor, Role

    def grant(actor: Actor, **extra: str) -> dict[str, str]:
        g = identity.start_api_session(actor)
        return {"token": g.access_token, "refresh": g.refresh_token or "", **extra}

    tid = seeded.tenant_id
    world = {
        "patients": [grant(Actor(tenant_id=tid, role=Role.PATIENT, user_id=user_id, patient_id=patient_id))
                     for patient_id, user_id in seeded.patients[:patients]],
        "doctors": [grant(Actor(tenant_id=tid, role=Role.DOCTOR, user_id=p["user_id"], provider_id=p["id"]),
                          provider_id=str(p["id"])) for p in seeded.providers],
        "admins": [grant(Actor(tenant_id=tid, role=Role.ADMIN, user_id=user_id)) for user_id in seeded.admins],
    }  # fmt: skip
    return world


def autovacuum_state(db_name: str) -> str:
    """When autovacuum last analysed the big tables of the bench database (or never)."""
    with psycopg.connect(ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}", autocommit=True) as conn:
        setting = conn.execute("SHOW autovacuum").fetchone()
        rows = conn.execute(
            "SELECT relname, last_autoanalyze IS NOT NULL, n_live_tup FROM pg_stat_user_tables "
            "WHERE relname IN ('appointments', 'patients', 'users', 'waitlist_entries', 'audit_events') "
            "ORDER BY relname"
        ).fetchall()
    tables = ", ".join(f"{name} {'analysed' if done else 'never analysed'}" for name, done, _ in rows)
    return f"autovacuum {setting[0] if setting else '?'}; {tables}"


def start_worker(env: dict[str, str], workdir: Path, concurrency: int) -> subprocess.Popen[bytes]:
    log = workdir / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backend.worker", "worker", "--loglevel=WARNING",
             f"--concurrency={concurrency}", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    import redis

    broker = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # a worker is up once it has registered its queue binding in the broker
        if proc.poll() is not None:
            raise RuntimeError(f"the Celery worker exited:\n{log.read_text()[-3000:]}")
        if "ready" in log.read_text() or broker.keys("_kombu.binding.*"):
            return proc
        time.sleep(0.3)
    raise RuntimeError(f"the Celery worker did not start:\n{log.read_text()[-3000:]}")


def cpu_of_session(leader: int) -> float:
    """CPU seconds of every live process in the session led by `leader`."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def stop_worker(proc: subprocess.Popen[bytes] | None) -> None:
    """A warm shutdown (SIGTERM to the main process: it finishes its tasks), then the whole group if need be."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    stop(proc)


def pg_cpu(db_name: str) -> float:
    """CPU seconds used so far by the live PostgreSQL backends of the bench database (the app's pooled connections
    live through the run; a backend that exits takes its count with it, so this is a lower bound)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (db_name,))]
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_locust(url: str, world_file: Path, out: Path, args: argparse.Namespace, workdir: Path) -> tuple[int, float]:
    env = {**os.environ, "BENCH_LOAD_WORLD": str(world_file), "BENCH_LOAD_OUT": str(out),
           "BENCH_LOAD_STEPS": args.steps, "BENCH_LOAD_STEP_SECONDS": str(args.step_seconds),
           "BENCH_LOAD_WARMUP": str(args.warmup), "BENCH_LOAD_THINK": args.think,
           "BENCH_LOAD_SPAWN_RATE": str(args.spawn_rate)}  # fmt: skip
    steps = [s for s in args.steps.split(",") if s.strip()]
    limit = int(len(steps) * args.step_seconds + 120)
    log = workdir / "locust.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "load" / "locustfile.py"), "--headless",
             "--host", url, "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "5"],
            cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            stop(proc)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # Locust's, once reaped (no other child ended meanwhile)
    if not out.exists():
        raise RuntimeError(f"Locust wrote no figures ({proc.returncode}):\n{log.read_text()[-4000:]}")
    return proc.returncode or 0, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def print_report(result: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any] | None:
    print(f"# {meta['header']}")
    print(f"{'users':>6} {'req/s':>7} {'requests':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'errors':>7} {'err %':>6}  target")  # fmt: skip
    best = None
    for s in result["steps"]:
        print(f"{s['users']:>6} {s['rps']:>7.1f} {s['requests']:>8} {s['p50']:>7.0f} {s['p95']:>7.0f} "
              f"{s['p99']:>7.0f} {s['max']:>7.0f} {s['errors']:>7} {100 * s['error_rate']:>6.2f}  "
              f"{'met' if s['passed'] else 'MISSED'}")  # fmt: skip
        if s["passed"] and (best is None or s["rps"] > best["rps"]):
            best = s
    last = result["steps"][-1] if result["steps"] else None
    if last is not None:
        print(f"\nper request, at {last['users']} users (the last step):")
        print(f"  {'request':<32} {'n':>6} {'p50 ms':>7} {'p95 ms':>7} {'errors':>6}")
        for name, v in last["by_name"].items():
            print(f"  {name:<32} {v['n']:>6} {v['p50']:>7.0f} {v['p95']:>7.0f} {v['errors']:>6}")
        print(f"  statuses: {last['statuses']}")
    for note in meta.get("notes", []):
        print(f"note: {note}")
    if best is None:
        print("\nno step met p95 < 500 ms with errors < 0.1%")
    else:
        print(f"\nhighest step meeting p95 < {result['p95_limit_ms']:.0f} ms and errors < "
              f"{100 * result['max_error_rate']:.1f}%: {best['users']} users, {best['rps']:.1f} requests/s "
              f"(p95 {best['p95']:.0f} ms, {best['errors']} errors in {best['requests']})")  # fmt: skip
        if all(s["passed"] for s in result["steps"]):
            print("every step met the targets: the limit is above the last step (add steps: --steps)")
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--providers", type=int, default=100)
    parser.add_argument("--history-days", type=int, default=365)
    parser.add_argument("--waiting", type=int, default=1000, help="patients waiting on a provider's list")
    parser.add_argument("--steps", default=DEFAULT_STEPS, help="comma-separated user counts, one step each")
    parser.add_argument("--step-seconds", type=float, default=45)
    parser.add_argument("--warmup", type=float, default=10, help="unmeasured seconds at the start of each step")
    parser.add_argument("--think", default="1,4", help="think time between a user's actions: min,max seconds")
    parser.add_argument("--spawn-rate", type=float, default=50, help="users started per second at a step change")
    parser.add_argument("--workers", type=int, default=1, help="web (granian) worker processes")
    parser.add_argument("--celery", choices=("worker", "eager"), default="worker")
    parser.add_argument("--celery-concurrency", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--logs", type=Path, help="keep the server's, the worker's and Locust's logs in this folder")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    max_users = max(int(s) for s in args.steps.split(",") if s.strip())

    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    redis_proc = server = worker = None
    roles: dict[str, str] = {}
    load_before = os.getloadavg()
    try:
        with bench_database() as (db_name, db_url):
            redis_proc, redis_url = start_redis(workdir)
            base = redis_url.rsplit("/", 1)[0]
            env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url,
                   "SECRET_KEY": secrets.token_urlsafe(48), "RATE_LIMIT_ENABLED": "1",
                   "REFLEX_USE_NPM": "1", "REFLEX_CHECK_LATEST_VERSION": "false",
                   "REFLEX_TELEMETRY_ENABLED": "false", "PYTHONDONTWRITEBYTECODE": "1",
                   "GRANIAN_WORKERS": str(args.workers),
                   "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}  # fmt: skip
            for limit_class in LIMIT_CLASSES:
                env[f"RATE_LIMIT_{limit_class}"] = "1000000/minute"
            for key in ("CELERY_BROKER_URL", "REFLEX_REDIS_URL", "CELERY_EAGER", "SYSTEM_DATABASE_URL",
                        "DATABASE_OWNER_URL", "REDIS_KEY_PREFIX"):  # fmt: skip
                env.pop(key, None)
            if args.celery == "worker":
                env["CELERY_BROKER_URL"] = f"{base}/1"
            else:
                env["CELERY_EAGER"] = "1"
            if args.workers > 1:  # several workers keep Reflex's page state in Redis (rxconfig.py)
                env["REFLEX_REDIS_URL"] = f"{base}/2"
            os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")})
            for key in ("CELERY_BROKER_URL", "CELERY_EAGER"):
                if key in env:
                    os.environ[key] = env[key]
                else:
                    os.environ.pop(key, None)
            subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True,
                           capture_output=True)  # fmt: skip
            from bench._roles import create_roles

            roles = create_roles(db_url)
            env.update(roles)
            os.environ.update(roles)
            from backend.identity.security import hash_password
            from bench.load.seed import seed

            seeded = seed(db_url, patients=args.patients, providers=args.providers, history_days=args.history_days,
                          waiting=args.waiting, password_hash=hash_password(PASSWORD), log=progress)  # fmt: skip
            if args.celery == "worker":
                worker = start_worker(env, workdir, args.celery_concurrency)
            server = start_server(env, workdir)
            progress(f"server up at {server.url}; issuing tokens")
            world = issue_tokens(seeded, patients=min(args.patients, max(max_users, 50)))
            world |= {"clinics": [str(c) for c, _ in seeded.clinics],
                      "providers": [{"id": str(p["id"]), "clinic_id": str(p["clinic_id"]), "specialty": p["specialty"]}
                                    for p in seeded.providers]}  # fmt: skip
            world_file = workdir / "world.json"
            world_file.touch(mode=0o600)
            world_file.write_text(json.dumps(world))
            autovacuum_before = autovacuum_state(db_name)
            server_cpu_before = server.cpu_seconds()
            worker_cpu_before = cpu_of_session(worker.pid) if worker is not None else 0.0
            pg_cpu_before = pg_cpu(db_name)
            started = time.monotonic()
            progress(f"locust: steps {args.steps} users, {args.step_seconds:.0f} s each")
            out = workdir / "locust.json"
            _, locust_cpu = run_locust(server.url, world_file, out, args, workdir)
            elapsed = time.monotonic() - started
            server_cpu = server.cpu_seconds() - server_cpu_before
            worker_cpu = (cpu_of_session(worker.pid) - worker_cpu_before) if worker is not None else 0.0
            database_cpu = pg_cpu(db_name) - pg_cpu_before
            total_requests = json.loads(out.read_text())["all_requests"]
            result = json.loads(out.read_text())
            load_after = os.getloadavg()
            autovacuum_after = autovacuum_state(db_name)
            server_log = server.log.read_text(errors="replace")
            server_errors = server_log.count("Traceback")
            # What they were: the last line of each traceback (the exception), the most common first.
            endings = Counter(re.findall(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*(.+)", server_log))
            processes = len(server.pids())
            meta = {
                "header": (
                    f"{os.cpu_count()} cores; reflex run --env prod --backend-only, {args.workers} granian worker(s) "
                    f"({processes} processes); Celery {args.celery}"
                    f"{f' (concurrency {args.celery_concurrency})' if args.celery == 'worker' else ''}; "
                    f"{seeded.counts.get('patients')} patients, {seeded.counts.get('providers')} providers, "
                    f"{seeded.counts.get('appointments')} appointments; think time {args.think} s; "
                    f"{args.step_seconds:.0f} s steps ({args.warmup:.0f} s unmeasured); load average before "
                    f"{load_before[0]:.2f}, after {load_after[0]:.2f}"
                ),
                "notes": [
                    f"at the start: {autovacuum_before}; at the end: {autovacuum_after}",
                    f"CPU over the run ({elapsed:.0f} s): web server {server_cpu:.0f} s, Celery worker {worker_cpu:.0f} s, "
                    f"PostgreSQL backends {database_cpu:.0f} s (at least), Locust {locust_cpu:.0f} s, of "
                    f"{elapsed * (os.cpu_count() or 1):.0f} core-seconds; per request ({total_requests}): web "
                    f"{1000 * server_cpu / max(total_requests, 1):.1f} ms, worker {1000 * worker_cpu / max(total_requests, 1):.1f}"
                    f" ms, PostgreSQL {1000 * database_cpu / max(total_requests, 1):.1f} ms",
                    *([f"the server logged {server_errors} tracebacks: "
                       + "; ".join(f"{n} x {line[:160]}" for line, n in endings.most_common(3))] if server_errors else []),
                ],
            }
            best = print_report(result, meta)
            if args.json is not None:
                args.json.write_text(json.dumps({**result, "meta": meta, "best": best,
                                                 "seeded": seeded.counts, "server_tracebacks": server_errors},
                                                default=str, indent=1))  # fmt: skip
            stop(server.proc)
            stop_worker(worker)
    finally:
        if server is not None:
            stop(server.proc)
        stop_worker(worker)
        stop(redis_proc)
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            for name in ("server.log", "worker.log", "locust.log"):
                if (workdir / name).exists():
                    shutil.copy(workdir / name, args.logs / name)
        shutil.rmtree(workdir, ignore_errors=True)
        if roles:
            from bench._roles import drop_roles

            drop_roles(ADMIN_URL, roles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The load test's users, for Locust (run by `python -m bench.load`, in a process of its own: Locust patches the
standard library with gevent, which must never reach the app or the other benches).

Reads the run's world from BENCH_LOAD_WORLD (a JSON file the runner writes, mode 0600: ids and pre-issued bearer
tokens, no patient data) and writes the per-step figures to BENCH_LOAD_OUT.

The mix (per simulated person, with think time between actions):
- patients (weight 90): search providers, view a provider's week of slots, book a free slot, list their
  appointments, cancel one, join a waitlist, leave one, check their offers and accept or decline a pending one;
- doctors (weight 7): the waitlist console (their waiting entries), their week's schedule, offers, and now and
  then promote the first waiting entry;
- admins (weight 3): oversight (the practice's waitlist by clinic), the audit trail, Insights.

A 409 (the slot was taken, the offer is no longer open, an entry is a duplicate) and a 422 (a policy said no:
notice, a full list, nothing free to promote) are the right answers under contention: they count as successes.
Every other status, 5xx, 401, 403, 404 and 429 alike, counts as an error.

The shape steps the number of users (BENCH_LOAD_STEPS, comma-separated; BENCH_LOAD_STEP_SECONDS each; the first
BENCH_LOAD_WARMUP seconds of each step are not measured) and stops after the first step whose p95 reaches
BENCH_LOAD_P95_MS or whose error rate reaches BENCH_LOAD_MAX_ERRORS.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from locust import LoadTestShape, between, events, task
from locust.contrib.fasthttp import FastHttpUser

WORLD: dict[str, Any] = json.loads(open(os.environ["BENCH_LOAD_WORLD"]).read())
OUT = os.environ.get("BENCH_LOAD_OUT", "")
STEPS = [int(x) for x in os.environ.get("BENCH_LOAD_STEPS", "10,20").split(",") if x.strip()]
STEP_SECONDS = float(os.environ.get("BENCH_LOAD_STEP_SECONDS", "30"))
WARMUP = float(os.environ.get("BENCH_LOAD_WARMUP", "8"))
P95_LIMIT_MS = float(os.environ.get("BENCH_LOAD_P95_MS", "500"))
MAX_ERRORS = float(os.environ.get("BENCH_LOAD_MAX_ERRORS", "0.001"))
THINK = tuple(float(x) for x in os.environ.get("BENCH_LOAD_THINK", "1,4").split(","))
SPAWN_RATE = float(os.environ.get("BENCH_LOAD_SPAWN_RATE", "50"))
EXPECTED = (409, 422)
PROVIDERS = WORLD["providers"]
CLINICS = WORLD["clinics"]
SPECIALTIES = sorted({p["specialty"] for p in PROVIDERS})

_patients = itertools.cycle(WORLD["patients"])
_doctors = itertools.cycle(WORLD["doctors"])
_admins = itertools.cycle(WORLD["admins"])


# -- what each step measured -----------------------------------------------------------------------------------


class Recorder:
    """Response times and errors per step, from Locust's request events (measured part of each step only)."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.steps: dict[int, dict[str, Any]] = {}
        self.failed_step: int | None = None
        self.all_requests = 0  # warm-ups included (for CPU per request)

    def step_at(self, now: float) -> tuple[int, bool]:
        """(step index, whether `now` falls in its measured part)."""
        assert self.t0 is not None
        elapsed = now - self.t0
        index = int(elapsed // STEP_SECONDS)
        return index, elapsed - index * STEP_SECONDS >= WARMUP

    def add(self, name: str, ms: float, failed: bool, status: int) -> None:
        if self.t0 is None:
            return
        self.all_requests += 1
        index, measured = self.step_at(time.monotonic())
        if not measured or index >= len(STEPS):
            return
        step = self.steps.setdefault(index, {"times": [], "errors": 0, "by_name": {}, "statuses": {}})
        step["times"].append(ms)
        step["errors"] += int(failed)
        by = step["by_name"].setdefault(name, {"times": [], "errors": 0})
        by["times"].append(ms)
        by["errors"] += int(failed)
        key = str(status)
        step["statuses"][key] = step["statuses"].get(key, 0) + 1

    def summary(self, index: int) -> dict[str, Any]:
        step = self.steps.get(index) or {"times": [], "errors": 0, "by_name": {}, "statuses": {}}
        times = step["times"]
        seconds = STEP_SECONDS - WARMUP
        return {
            "users": STEPS[index],
            "requests": len(times),
            "rps": len(times) / seconds,
            "p50": _pct(times, 0.5),
            "p95": _pct(times, 0.95),
            "p99": _pct(times, 0.99),
            "max": max(times, default=0.0),
            "errors": step["errors"],
            "error_rate": step["errors"] / len(times) if times else 0.0,
            "statuses": step["statuses"],
            "by_name": {
                name: {"n": len(v["times"]), "p50": _pct(v["times"], 0.5), "p95": _pct(v["times"], 0.95),
                       "errors": v["errors"]}
                for name, v in sorted(step["by_name"].items())
            },
        }

    def passed(self, index: int) -> bool:
        s = self.summary(index)
        return s["requests"] > 0 and s["p95"] < P95_LIMIT_MS and s["error_rate"] < MAX_ERRORS


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


RECORDER = Recorder()


@events.request.add_listener
def _on_request(request_type: str, name: str, response_time: float, response_length: int, exception: Any = None,
                response: Any = None, **_: Any) -> None:  # fmt: skip
    status = getattr(response, "status_code", 0) or 0
    RECORDER.add(name, response_time, exception is not None, status)


@events.quitting.add_listener
def _on_quit(environment: Any, **_: Any) -> None:
    if not OUT:
        return
    done = sorted(RECORDER.steps)
    result = {
        "steps": [RECORDER.summary(i) | {"passed": RECORDER.passed(i)} for i in done],
        "all_requests": RECORDER.all_requests,
        "step_seconds": STEP_SECONDS,
        "warmup": WARMUP,
        "p95_limit_ms": P95_LIMIT_MS,
        "max_error_rate": MAX_ERRORS,
        "think": THINK,
    }
    with open(OUT, "w") as out:
        json.dump(result, out, indent=1)


class SteppedUsers(LoadTestShape):
    """STEPS users, STEP_SECONDS each; stop after the first step that misses the target."""

    def tick(self) -> tuple[int, float] | None:
        now = time.monotonic()
        if RECORDER.t0 is None:
            RECORDER.t0 = now
        index, _ = RECORDER.step_at(now)
        if index > 0 and RECORDER.failed_step is None and not RECORDER.passed(index - 1):
            RECORDER.failed_step = index - 1
        if RECORDER.failed_step is not None or index >= len(STEPS):
            return None
        return STEPS[index], SPAWN_RATE


# -- the people ----------------------------------------------------------------------------------------------------


class ApiUser(FastHttpUser):
    abstract = True
    wait_time = between(*THINK)
    pool: itertools.cycle[dict[str, Any]]

    def on_start(self) -> None:
        self.identity = dict(next(self.pool))

    def call(self, method: str, path: str, name: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> Any:
        """One request with the bearer token; a 401 (the 15-minute access token ran out) refreshes it once."""
        for attempt in (0, 1):
            headers = {"Authorization": f"Bearer {self.identity['token']}"}
            with self.client.request(method, path, name=name, headers=headers, catch_response=True, **kwargs) as r:
                if r.status_code == 401 and attempt == 0 and self._refresh():
                    r.success()  # not counted against the app: the retry is the request that counts
                    continue
                if 200 <= r.status_code < 300 or r.status_code in ok:
                    r.success()
                    if r.status_code >= 300 or not r.content:
                        return None
                    try:
                        return r.json()
                    except ValueError:
                        return None
                r.failure(f"{r.status_code}")
                return None
        return None

    def _refresh(self) -> bool:
        r = self.client.post("/api/v1/auth/refresh", json={"refresh_token": self.identity["refresh"]},
                             name="auth/refresh")  # fmt: skip
        if r.status_code != 200:
            return False
        body = r.json()
        self.identity.update(token=body["access_token"], refresh=body.get("refresh_token") or self.identity["refresh"])
        return True


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Patient(ApiUser):
    weight = 90
    pool = _patients

    def week(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        provider = random.choice(PROVIDERS)
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
            days=7 * random.randint(0, 5))
        slots = self.call("GET", f"/api/v1/providers/{provider['id']}/slots?start={_iso(start)}"
                                 f"&end={_iso(start + timedelta(days=7))}", "providers/{id}/slots (week)") or []  # fmt: skip
        return provider, slots

    @task(5)
    def search(self) -> None:
        params = random.choice([f"specialty={random.choice(SPECIALTIES)}", f"clinic_id={random.choice(CLINICS)}",
                                "modality=telehealth", ""])  # fmt: skip
        self.call("GET", f"/api/v1/providers?{params}", "providers (search)")

    @task(5)
    def view_week(self) -> None:
        self.week()

    @task(2)
    def book(self) -> None:
        provider, slots = self.week()
        free = [s for s in slots if s.get("status") == "free"]
        if free:
            slot = random.choice(free)
            self.call("POST", "/api/v1/appointments", "appointments (book)", ok=EXPECTED,
                      json={"provider_id": provider["id"], "start": slot["start"]})  # fmt: skip

    @task(3)
    def my_appointments(self) -> None:
        self.call("GET", "/api/v1/appointments", "appointments (list)")

    @task(1)
    def cancel(self) -> None:
        now = _iso(datetime.now(UTC) + timedelta(days=1))
        mine = self.call("GET", f"/api/v1/appointments?start={now}", "appointments (list)") or []
        booked = [a for a in mine if a.get("status") == "booked"]
        if booked:
            self.call("POST", f"/api/v1/appointments/{random.choice(booked)['id']}/cancel",
                      "appointments/{id}/cancel", ok=EXPECTED, json={})  # fmt: skip

    @task(1)
    def join_waitlist(self) -> None:
        provider = random.choice(PROVIDERS)
        self.call("POST", "/api/v1/waitlists", "waitlists (join)", ok=EXPECTED,
                  json={"clinic_id": provider["clinic_id"], "provider_id": provider["id"],
                        "urgency": random.choice((1, 2, 3))})  # fmt: skip

    @task(1)
    def my_waitlists(self) -> None:
        entries = self.call("GET", "/api/v1/waitlists", "waitlists (mine)") or []
        active = [e for e in entries if e.get("status") == "waiting"]
        if len(active) > 2:
            self.call("DELETE", f"/api/v1/waitlists/{active[-1]['id']}", "waitlists/{id} (leave)", ok=EXPECTED)

    @task(3)
    def offers(self) -> None:
        offers = self.call("GET", "/api/v1/offers", "offers (mine)") or []
        pending = [o for o in offers if o.get("status") == "pending"]
        if pending:
            answer = "accept" if random.random() < 0.6 else "decline"
            self.call("POST", f"/api/v1/offers/{pending[0]['id']}/{answer}", f"offers/{{id}}/{answer}", ok=EXPECTED)


class Doctor(ApiUser):
    weight = 7
    pool = _doctors

    @task(5)
    def console(self) -> None:
        rows = self.call("GET", f"/api/v1/waitlists?provider_id={self.identity['provider_id']}&status=waiting",
                         "waitlists (console)") or []  # fmt: skip
        if rows and random.random() < 0.1:
            self.call("POST", f"/api/v1/waitlists/{rows[0]['id']}/promote", "waitlists/{id}/promote", ok=EXPECTED)

    @task(3)
    def schedule(self) -> None:
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.call("GET", f"/api/v1/appointments?start={_iso(start)}&end={_iso(start + timedelta(days=7))}",
                  "appointments (doctor week)")  # fmt: skip

    @task(1)
    def offers(self) -> None:
        self.call("GET", "/api/v1/offers", "offers (doctor)")


class Admin(ApiUser):
    weight = 3
    pool = _admins

    @task(4)
    def oversight(self) -> None:
        self.call("GET", f"/api/v1/waitlists?clinic_id={random.choice(CLINICS)}", "waitlists (oversight)")

    @task(2)
    def audit(self) -> None:
        self.call("GET", "/api/v1/audit-events?limit=50", "audit-events")

    @task(1)
    def insights(self) -> None:
        self.call("GET", "/api/v1/insights", "insights")

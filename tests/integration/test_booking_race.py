"""The concurrency proof: many clients race for one slot through a real HTTP server; exactly one wins.

The API runs in a real uvicorn server on a free local port (in a background thread of this process), so
requests really run concurrently, each in its own worker thread with its own database connection. Clients
are threads with their own httpx client, released together by a barrier.

Each race runs in three modes, to show that every layer holds on its own:
- "full": the production path (Redis mark, advisory lock, exclusion constraints);
- "no-mark": without the Redis mark, so the losers reach the database and queue on the advisory lock;
- "constraint-only": without the mark and without the advisory lock, so only PostgreSQL's exclusion
  constraints stand between the racers (invariant 1: the database enforces it).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from backend.db import UnitOfWork
from backend.identity.models import Provider
from backend.identity.service import issue_token
from backend.scheduling import booking, slot_marks
from backend.scheduling.models import ACTIVE_APPOINTMENT_STATUSES, Appointment
from backend.tenancy.context import Actor, Role
from tests.factories import Practice, add_availability, add_patient, add_provider, add_user, local_start, make_practice

CLIENTS = 20
MODES = ("full", "no-mark", "constraint-only")




@pytest.fixture
def mode_setter(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Switch the layers in front of the database off (the server runs in this process, so patches reach it)."""
    real_mark, real_lock = slot_marks.take_mark, booking._lock_provider

    def off(*_args: Any, **_kwargs: Any) -> None:
        return None

    def set_mode(mode: str) -> None:
        assert mode in MODES
        monkeypatch.setattr(slot_marks, "take_mark", real_mark if mode == "full" else off)
        monkeypatch.setattr(booking, "_lock_provider", off if mode == "constraint-only" else real_lock)

    return set_mode


@dataclass
class Racers:
    practice: Practice
    headers: list[dict[str, str]]  # one bearer token per patient
    patient_ids: list[uuid.UUID]
    clients: list[httpx.Client]


@pytest.fixture
def racers(db: sa.Engine, base_url: str) -> Iterator[Racers]:
    practice = make_practice("Harbor Mental Health", "harbor")
    add_availability(practice)
    headers: list[dict[str, str]] = []
    patient_ids: list[uuid.UUID] = []
    for i in range(CLIENTS):
        patient = add_patient(practice, f"Racer {i:02d}")
        user = add_user(practice, f"racer{i:02d}@harbor.test", Role.PATIENT, patient_id=patient.id)
        actor = Actor(tenant_id=practice.tenant_id, role=Role.PATIENT, user_id=user.id, patient_id=patient.id)
        headers.append({"Authorization": f"Bearer {issue_token(actor)[0]}"})
        patient_ids.append(patient.id)
    clients = [httpx.Client(base_url=base_url, timeout=60) for _ in range(CLIENTS)]
    for client in clients:  # open each connection before the race
        assert client.get("/api/health").status_code == 200
    yield Racers(practice, headers, patient_ids, clients)
    for client in clients:
        client.close()


REASONS = {booking.SLOT_TAKEN: "taken", booking.PATIENT_BUSY: "patient busy"}
MESSAGES: Counter[str] = Counter()  # why the losers lost, over the module


def race(racers: Racers, path: str, bodies: list[dict[str, Any]], headers: list[dict[str, str]]) -> list[int]:
    """Send every request at once (one thread each, released by a barrier); return the status codes."""
    barrier = threading.Barrier(len(bodies))

    def one(i: int) -> int:
        barrier.wait(timeout=30)
        response = racers.clients[i].post(path, json=bodies[i], headers=headers[i])
        if response.status_code == 409:
            detail = response.json()["detail"]
            MESSAGES[REASONS.get(detail, "redis mark" if "right now" in detail else detail)] += 1
        return response.status_code

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(one, range(len(bodies))))


@pytest.fixture
def in_flight(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The most booking calls running at once inside the server (shows the requests really overlapped)."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    now = [0]

    def probe(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock:
                now[0] += 1
                seen["max"] = max(seen["max"], now[0])
            try:
                return fn(*args, **kwargs)
            finally:
                with lock:
                    now[0] -= 1

        return wrapper

    monkeypatch.setattr(booking, "book_appointment", probe(booking.book_appointment))
    monkeypatch.setattr(booking, "hold_slot", probe(booking.hold_slot))
    return seen


def active_rows(p: Practice, start: datetime, end: datetime, **where: Any) -> list[Appointment]:
    """Active appointments and holds of the practice overlapping [start, end)."""
    with UnitOfWork(p.system) as uow:
        query = select(Appointment).where(
            col(Appointment.status).in_(ACTIVE_APPOINTMENT_STATUSES),
            Appointment.start_at < end,
            Appointment.end_at > start,
        )
        for key, value in where.items():
            query = query.where(getattr(Appointment, key) == value)
        found = list(uow.session.exec(query))
        uow.session.expunge_all()
        return found


def summary(
    name: str, rounds: int, codes: Counter[int], per_mode: dict[str, Counter[int]], doubles: int, peak: int
) -> str:
    modes = "; ".join(f"{m}: {dict(sorted(c.items()))}" for m, c in per_mode.items())
    losers = dict(MESSAGES.most_common())
    MESSAGES.clear()
    return (
        f"{name}: {rounds} rounds, {sum(codes.values())} requests -> "
        f"{codes[201]} x 201, {codes[409]} x 409, {sum(n for c, n in codes.items() if c >= 500)} x 5xx; "
        f"{doubles} double bookings; up to {peak} at once in the server; 409s: {losers} ({modes})"
    )


def test_twenty_patients_race_for_one_slot_and_exactly_one_wins(
    racers: Racers, mode_setter: Any, in_flight: Counter[str]
) -> None:
    p = racers.practice
    rounds_per_mode = 4
    codes: Counter[int] = Counter()
    per_mode: dict[str, Counter[int]] = {m: Counter() for m in MODES}
    doubles = 0
    round_no = 0
    for mode in MODES:
        mode_setter(mode)
        for _ in range(rounds_per_mode):
            start = local_start(2 + round_no // 10, 8 + round_no % 10)
            round_no += 1
            body = {"provider_id": str(p.provider.id), "start": start.isoformat()}
            statuses = race(racers, "/api/v1/appointments", [body] * CLIENTS, racers.headers)
            codes.update(statuses)
            per_mode[mode].update(statuses)
            rows = active_rows(p, start, start + timedelta(minutes=50), provider_id=p.provider.id)
            doubles += max(0, len(rows) - 1)
            assert sorted(statuses) == [201] + [409] * (CLIENTS - 1), (mode, start, Counter(statuses))
            assert len(rows) == 1, (mode, start, rows)
            winner = racers.patient_ids[statuses.index(201)]
            assert rows[0].patient_id == winner and rows[0].start_at == start
    print(summary("book race", round_no, codes, per_mode, doubles, in_flight["max"]))
    assert round_no >= 10
    assert doubles == 0
    assert not [c for c in codes if c >= 500]


def test_twenty_concurrent_holds_for_one_slot_give_one_hold(
    racers: Racers, mode_setter: Any, in_flight: Counter[str]
) -> None:
    p = racers.practice
    codes: Counter[int] = Counter()
    per_mode: dict[str, Counter[int]] = {m: Counter() for m in MODES}
    doubles = 0
    for round_no, mode in enumerate(MODES * 2):
        mode_setter(mode)
        start = local_start(4, 8 + round_no)
        body = {"provider_id": str(p.provider.id), "start": start.isoformat()}
        statuses = race(racers, "/api/v1/holds", [body] * CLIENTS, racers.headers)
        codes.update(statuses)
        per_mode[mode].update(statuses)
        rows = active_rows(p, start, start + timedelta(minutes=50), provider_id=p.provider.id)
        doubles += max(0, len(rows) - 1)
        assert sorted(statuses) == [201] + [409] * (CLIENTS - 1), (mode, Counter(statuses))
        assert len(rows) == 1 and rows[0].status == "held"
    print(summary("hold race", len(MODES) * 2, codes, per_mode, doubles, in_flight["max"]))
    assert doubles == 0


def test_one_patient_racing_two_providers_gets_at_most_one(
    racers: Racers, mode_setter: Any, in_flight: Counter[str]
) -> None:
    p = racers.practice
    second = add_provider(p, "Olive Other", clinic=p.clinic)
    add_availability(p, provider=second)
    providers: list[Provider] = [p.provider, second]
    requests = 10  # five to each provider, all from the same patient (double clicks in two tabs)
    headers = [racers.headers[0]] * requests
    codes: Counter[int] = Counter()
    per_mode: dict[str, Counter[int]] = {m: Counter() for m in MODES}
    doubles = 0
    rounds = 0
    for mode in MODES:
        mode_setter(mode)
        for _ in range(3):
            start = local_start(5 + rounds // 10, 8 + rounds % 10)
            rounds += 1
            bodies = [{"provider_id": str(providers[i % 2].id), "start": start.isoformat()} for i in range(requests)]
            statuses = race(racers, "/api/v1/appointments", bodies, headers)
            codes.update(statuses)
            per_mode[mode].update(statuses)
            rows = active_rows(p, start, start + timedelta(minutes=50), patient_id=racers.patient_ids[0])
            doubles += max(0, len(rows) - 1)
            assert len(rows) <= 1, (mode, rows)
            assert statuses.count(201) == len(rows) == 1, (mode, Counter(statuses))
            assert set(statuses) <= {201, 409}, (mode, Counter(statuses))
    print(summary("patient race", rounds, codes, per_mode, doubles, in_flight["max"]))
    assert doubles == 0

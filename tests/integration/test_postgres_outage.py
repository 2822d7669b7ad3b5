"""Issue 10 item 8: while PostgreSQL is down, the worker, the API and the pages recover on their own.

The shared PostgreSQL server is never stopped: the outage is a TCP proxy (tests/pg_proxy.py) between the code under
test and 127.0.0.1:5432 that resets every open connection and refuses new ones, then comes back on the same port.
The test process itself reaches the database directly, to set up scenes and to look at the rows.

- a real Celery worker (prefork, embedded beat) keeps running through the outage; the cascade task of a
  cancellation it could not process is retried with backoff (not lost) and makes the offer once the database is
  back; beat ticks fail quietly during the outage and work again after; the outbox sweep delivers what was left;
- the REST API answers 503 with Retry-After while the database is away, changes nothing, and 200 again after,
  without a restart (the pool drops its dead connections);
- a page handler that hits the outage gets "Cannot reach the database, retrying…" (portal/state/outage.py), its
  tab waits for the database and then runs the page's on-load handlers again.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlmodel import col

import backend.db
from backend.celery_app import database_unavailable, db_retry_delay
from backend.db import UnitOfWork, make_engine
from backend.identity import service as identity
from backend.notifications import outbox
from backend.notifications.models import Notification
from backend.notifications.models import NotificationStatus as S
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.settings import PROJECT_ROOT
from backend.types import utcnow
from backend.waitlist.models import OfferStatus, WaitlistOffer
from portal.state import outage
from tests.conftest import free_port
from tests.factories import Practice, add_appointment, bearer, make_practice, rows
from tests.integration.test_offers import cancel, no_quiet_hours, scene_with_three, slot_at
from tests.pg_proxy import PgProxy
from tests.worker_process import WorkerProcess, app_publishing_to, own_queue, wait_for

# A Redis database no other test uses as a broker (the cascade test uses 7, the notification worker test 8).
BROKER_URL = os.environ.get("TEST_OUTAGE_BROKER_URL", "redis://127.0.0.1:6379/9")
OUTAGE_SECONDS = 12  # how long the database stays away in the worker test (the brief: 10 to 20 s)

OFFER_RETRY = r"database unavailable for the offer of a freed slot: retry \d+"
OFFER_TASK_OK = r"Task waitlist\.offer_freed_slot\[[^\]]+\] succeeded"
OFFER_TASK_FAILED = r"Task waitlist\.offer_freed_slot\[[^\]]+\] raised"
EXPIRE_TICK_OK = r"Task waitlist\.expire_offers_tick\[[^\]]+\] succeeded"
EXPIRE_TICK_FAILED = r"Task waitlist\.expire_offers_tick\[[^\]]+\] raised"
SWEEP_OK = r"Task notifications\.sweep_outbox_tick\[[^\]]+\] succeeded"


@pytest.fixture
def proxy() -> Iterator[PgProxy]:
    with PgProxy() as started:
        yield started


@pytest.fixture
def proxied_url(proxy: PgProxy) -> str:
    """This run's database, reached through the proxy."""
    return proxy.url_for(os.environ["DATABASE_URL"])


@pytest.fixture
def proxied_system_url(proxy: PgProxy) -> str:
    """This run's database as the system scope's role (sweeps, claims, logins), also through the proxy."""
    return proxy.url_for(os.environ["SYSTEM_DATABASE_URL"])


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    return p


def count_after(text: str, mark: int, pattern: str) -> int:
    return len(re.findall(pattern, text[mark:]))


def test_the_retry_delay_grows_and_is_capped() -> None:
    assert [db_retry_delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert db_retry_delay(1000) == 60


def test_what_counts_as_the_database_being_away(proxy: PgProxy, proxied_url: str) -> None:
    engine = make_engine(proxied_url)
    try:
        proxy.down()
        with pytest.raises(OperationalError) as caught, engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert database_unavailable(caught.value)
    finally:
        engine.dispose()
    assert not database_unavailable(ValueError("a bug"))
    assert not database_unavailable(sa.exc.IntegrityError("insert", {}, Exception("duplicate key")))


# -- (a) the worker ---------------------------------------------------------------------------------------------


@pytest.fixture
def queue() -> Iterator[str]:
    with own_queue(BROKER_URL, "outage") as name:
        yield name


@pytest.fixture
def worker(tmp_path: Path, queue: str, proxied_url: str, proxied_system_url: str) -> Iterator[WorkerProcess]:
    """A real `celery worker -B` (prefork, as deployed) whose database is behind the proxy; this process publishes
    to it."""
    env = {
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_QUEUE": queue,
        "DATABASE_URL": proxied_url,
        "SYSTEM_DATABASE_URL": proxied_system_url,
        "NOTIFICATIONS_SWEEP_SECONDS": "1",
    }
    started = WorkerProcess(tmp_path / "worker.log", env, beat_schedule=tmp_path / "beat", name_prefix="outage")
    with app_publishing_to(BROKER_URL, queue):
        try:
            started.start().wait_ready()
            yield started
        finally:
            started.kill()


def test_the_worker_rides_out_a_database_outage(
    harbor: Practice, proxy: PgProxy, worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = harbor
    start = slot_at()
    booked, people = scene_with_three(p, start)
    (_first_patient, first_entry), (_second_patient, second_entry), _third = people

    # The worker works through the proxy: a beat tick has read the database.
    wait_for("a beat tick through the proxy", lambda: worker.count_in_log(EXPIRE_TICK_OK) >= 1, seconds=30,
             log=worker.log)  # fmt: skip
    assert proxy.accepted >= 1

    # The database goes away.
    proxy.down()
    down_at = time.monotonic()
    mark = len(worker.log_text())
    # A cancellation committed just before the worker lost the database: its cascade task meets the outage.
    cancel(p, booked)
    # And an outbox row whose delivery task was never enqueued (a lost enqueue): the sweep's to deliver.
    monkeypatch.setattr(outbox, "enqueue_deliveries", lambda _ids: None)
    with UnitOfWork(p.system) as uow:
        (note,) = outbox.notify(p.system, uow, patient_id=p.patient.id, event_type="waitlist_entry_expired",
                                payload={"entry_id": str(first_entry.id), "clinic_id": str(p.clinic.id)})  # fmt: skip
        uow.commit()

    # The task is retried (with a growing delay), beat's ticks fail without taking the worker down.
    wait_for("the offer task to be retried twice",
             lambda: count_after(worker.log_text(), mark, OFFER_RETRY) >= 2, seconds=30, log=worker.log)  # fmt: skip
    wait_for("a beat tick to fail on the outage",
             lambda: count_after(worker.log_text(), mark, EXPIRE_TICK_FAILED) >= 1, seconds=30,
             log=worker.log)  # fmt: skip
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))  # the outage lasts OUTAGE_SECONDS
    assert worker.alive
    assert rows(p, WaitlistOffer) == []
    assert rows(p, Notification, id=note.id)[0].status == S.PENDING

    # The database is back.
    proxy.up()
    mark = len(worker.log_text())

    # The retried task makes the offer (the sweep may get there first; then the task finds the slot offered): it
    # ends in success either way, never given up.
    offer = wait_for("the offer to the best waiting entry",
                     lambda: next(iter(rows(p, WaitlistOffer, status=OfferStatus.PENDING)), None), seconds=90,
                     log=worker.log)  # fmt: skip
    assert offer.entry_id == first_entry.id
    wait_for("the retried offer task to succeed",
             lambda: worker.count_in_log(OFFER_TASK_OK) >= 1, seconds=90, log=worker.log)  # fmt: skip
    assert worker.count_in_log(OFFER_TASK_FAILED) == 0  # never given up
    assert len(rows(p, WaitlistOffer)) == 1

    # The outbox sweep runs again and delivers the row left behind.
    wait_for("the outbox sweep to deliver the row left behind",
             lambda: rows(p, Notification, id=note.id)[0].status == S.SENT, seconds=30, log=worker.log)  # fmt: skip
    assert count_after(worker.log_text(), mark, SWEEP_OK) >= 1

    # Beat's expiry tick works again: the offer's hold runs out, it expires and the slot cascades to the next.
    with UnitOfWork(p.system) as uow:
        uow.session.execute(update(WaitlistOffer).where(col(WaitlistOffer.id) == offer.id)
                            .values(expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
        uow.commit()
    wait_for("the next offer after the expiry",
             lambda: [o for o in rows(p, WaitlistOffer, status=OfferStatus.PENDING) if o.entry_id == second_entry.id],
             seconds=30, log=worker.log)  # fmt: skip
    assert rows(p, WaitlistOffer, id=offer.id)[0].status == OfferStatus.EXPIRED
    assert count_after(worker.log_text(), mark, EXPIRE_TICK_OK) >= 1
    assert worker.alive


# -- (b) the API ------------------------------------------------------------------------------------------------


@pytest.fixture
def api_url(tmp_path: Path, proxied_url: str, proxied_system_url: str) -> Iterator[str]:
    """The REST API in a process of its own (uvicorn, as deployed) whose database is behind the proxy."""
    port = free_port()
    log = tmp_path / "api.log"
    env = {**os.environ, "DATABASE_URL": proxied_url, "SYSTEM_DATABASE_URL": proxied_system_url}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.api.app:api", "--host", "127.0.0.1", "--port", str(port),
             "--lifespan", "off", "--no-access-log", "--no-server-header"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def alive() -> bool:
        try:
            return proc.poll() is None and httpx.get(f"{url}/api/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("the API to start", alive, seconds=60, log=log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_the_api_answers_503_while_the_database_is_away_and_200_after(
    harbor: Practice, proxy: PgProxy, api_url: str
) -> None:
    p = harbor
    appointment = add_appointment(p, slot_at())
    with httpx.Client(base_url=api_url, timeout=30) as client:
        auth = bearer(client, p.emails["patient"])
        assert client.get("/api/v1/appointments", headers=auth).status_code == 200  # the pool holds a connection
        assert client.get("/api/ready").status_code == 200

        proxy.down()
        for method, path, body in (
            ("GET", "/api/v1/appointments", None),
            ("POST", f"/api/v1/appointments/{appointment.id}/cancel", {}),
            ("GET", "/api/v1/waitlists", None),
        ):
            response = client.request(method, path, headers=auth, json=body)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["Retry-After"].isdigit()
            assert response.json()["code"] == "unavailable"
        login = client.post("/api/v1/auth/token", json={"email": p.emails["patient"], "password": "x" * 12})
        assert login.status_code == 503 and login.headers["Retry-After"].isdigit()
        assert client.get("/api/ready").status_code == 503
        assert client.get("/api/health").status_code == 200  # alive, only not ready
        # Nothing changed.
        assert rows(p, Appointment, id=appointment.id)[0].status == AppointmentStatus.BOOKED

        proxy.up()  # back, without restarting the API
        listed = client.get("/api/v1/appointments", headers=auth)
        assert listed.status_code == 200 and appointment.id.hex in listed.text.replace("-", "")
        assert client.get("/api/ready").status_code == 200
        cancelled = client.post(f"/api/v1/appointments/{appointment.id}/cancel", headers=auth, json={})
        assert cancelled.status_code == 200, cancelled.text
    assert rows(p, Appointment, id=appointment.id)[0].status == AppointmentStatus.CANCELLED


# -- (c) the pages ----------------------------------------------------------------------------------------------


class TabState:
    """Stands in for a tab's OutageState inside its background task (`async with self` takes the state's lock)."""

    def __init__(self) -> None:
        self.db_down = False
        self._waiting_until = 0.0
        self.seen_down: list[bool] = []
        self.router = SimpleNamespace(url="http://127.0.0.1:3000/doctor/schedule?day=2026-12-04")

    async def __aenter__(self) -> TabState:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.seen_down.append(self.db_down)


def _js(events: list[Any]) -> str:
    """The JavaScript (toasts) and the handler names the events carry, as one string to look into."""
    parts = []
    for event in events:
        handler = getattr(event, "handler", event)  # an EventSpec carries its handler; an EventHandler is one
        parts.append(f"{getattr(event, 'args', '')} {getattr(handler, 'fn', '')}")
    return " ".join(parts)


def _profile(p: Practice) -> str:
    """A page's read: what SessionState.guard asks for (the signed-in person's profile)."""
    with UnitOfWork(p.patient_actor) as uow:
        return identity.get_profile(p.patient_actor, uow).full_name


def test_a_page_handler_says_the_database_is_away_waits_and_loads_again(
    harbor: Practice, proxy: PgProxy, proxied_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = harbor
    engine = make_engine(proxied_url)
    # The page process's engine is the one behind the proxy.
    monkeypatch.setattr(backend.db, "get_engine", lambda: engine)
    monkeypatch.setattr(backend.db, "get_system_engine", lambda: engine)
    monkeypatch.setattr(outage, "get_engine", lambda: engine)
    monkeypatch.setattr(outage, "RETRY_SECONDS", 0.01)
    try:
        assert _profile(p) == p.patient.full_name  # the pool now holds a connection that is about to die

        proxy.down()
        with pytest.raises(Exception) as caught:
            _profile(p)
        # What Reflex does with the handler's exception: the app's handler (portal/portal.py) answers it.
        events = outage.backend_exception_handler(caught.value)
        shown = _js(events)
        assert outage.DB_DOWN_TITLE in shown and "An error occurred" not in shown
        assert "wait_for_database" in shown  # and the tab starts waiting for the database
        assert outage.database_reachable() is False

        # The tab's wait: the first probe finds the database away; it comes back; the next probe finds it.
        probes: list[bool] = []
        real_probe = outage.database_reachable

        def probe() -> bool:
            found = real_probe()
            probes.append(found)
            if not found:
                proxy.up()
            return found

        monkeypatch.setattr(outage, "database_reachable", probe)
        tab = TabState()
        back = asyncio.run(outage.OutageState.wait_for_database.fn(tab))  # type: ignore[arg-type]
        assert probes == [False, True]
        assert tab.seen_down == [True, False] and tab.db_down is False
        shown = _js(back)
        assert outage.DB_BACK_TITLE in shown and "dismiss" in shown
        assert "/doctor/schedule?day=2026-12-04" in shown  # the tab goes to its page again: its on-load runs again

        # And the page's read works again through the same pool (its dead connection was dropped).
        assert _profile(p) == p.patient.full_name
    finally:
        engine.dispose()


def test_a_second_failure_in_the_same_tab_does_not_start_a_second_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    async def never(*_args: Any, **_kwargs: Any) -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(outage, "wait_until_reachable", never)
    tab = TabState()
    tab._waiting_until = time.time() + 60  # a wait is already running for this tab
    assert asyncio.run(outage.OutageState.wait_for_database.fn(tab)) is None  # type: ignore[arg-type]
    assert calls == []


def test_other_page_errors_keep_the_default_handler() -> None:
    shown = _js(outage.backend_exception_handler(ValueError("a bug")))
    assert "An error occurred" in shown and outage.DB_DOWN_TITLE not in shown

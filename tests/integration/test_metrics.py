"""The operator's metrics endpoint: refused without the right token, and the counters move with what happens -
bookings and 409s, search cache hits and misses, rate-limit refusals, failed sign-ins and codes, waitlist offers,
tasks, the outbox, the queue, the beat heartbeat - and several processes' counts add up."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from limits import parse
from prometheus_client.parser import text_string_to_metric_families

from backend import ratelimit
from backend.api.app import api
from backend.db import UnitOfWork
from backend.identity.service import issue_token
from backend.notifications.models import Channel, Notification, NotificationStatus
from backend.observability import metrics
from backend.ratelimit import LIMIT_CLASSES, Policy, RateLimiter
from backend.redis_client import get_redis
from backend.scheduling import booking
from backend.settings import get_settings
from backend.tenancy.context import Role
from backend.waitlist import offers
from backend.waitlist.models import OfferStatus, WaitlistOffer
from backend.worker import beat_heartbeat
from tests.factories import (
    TEST_PASSWORD,
    Practice,
    add_appointment,
    add_availability,
    add_patient,
    add_user,
    add_waitlist_entry,
    bearer,
    call,
    local_start,
    make_practice,
    rows,
    second_factor,
    set_booking_policy,
)
from tests.integration.test_offers import eager_celery, no_quiet_hours, patient_actor, window_for  # noqa: F401

TOKEN = "metrics-token-for-the-tests-0123456789"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(get_settings(), "metrics_token", TOKEN)
    metrics.SCRAPE_TIME.clear()
    return TOKEN


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


def scrape(client: TestClient) -> Samples:
    """Every sample of one scrape, by (sample name, labels)."""
    metrics.SCRAPE_TIME.clear()  # each scrape of a test reads the database and the broker afresh
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor")
    add_availability(p)
    set_booking_policy(p, horizon_days=400)
    no_quiet_hours(p)
    return p


# -- the endpoint -----------------------------------------------------------------------------------------------


def test_the_endpoint_is_off_without_a_token_and_refuses_a_wrong_one(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "metrics_token", None)
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404

    monkeypatch.setattr(get_settings(), "metrics_token", TOKEN)
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", TOKEN, f"Basic {TOKEN}", "Bearer "):
        response = client.get("/metrics", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert "waitwell_" not in response.text
    served = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert served.status_code == 200
    assert "# TYPE waitwell_http_requests_total counter" in served.text


def test_a_users_bearer_token_is_not_the_metrics_token(client: TestClient, harbor: Practice, token: str) -> None:
    for role in ("patient", "doctor"):
        headers = bearer(client, harbor.emails[role])
        assert client.get("/metrics", headers=headers).status_code == 401


# -- what is counted --------------------------------------------------------------------------------------------


def test_requests_bookings_and_conflicts_are_counted(client: TestClient, harbor: Practice, token: str) -> None:
    patient = bearer(client, harbor.emails["patient"])
    other = add_patient(harbor, "Oscar Other")
    add_user(harbor, "oscar@harbor.test", Role.PATIENT, patient_id=other.id)
    other_auth = bearer(client, "oscar@harbor.test")
    body = {"provider_id": str(harbor.provider.id), "start": local_start(3, 10).isoformat()}
    route = "/api/v1/appointments"
    before = scrape(client)

    assert client.post(route, json=body, headers=patient).status_code == 201
    assert client.post(route, json=body, headers=other_auth).status_code == 409
    slots = f"/api/v1/providers/{harbor.provider.id}/slots"
    params = {"start": local_start(3, 9).isoformat(), "end": local_start(3, 12).isoformat()}
    assert client.get(slots, params=params, headers=patient).status_code == 200

    after = scrape(client)
    assert delta(before, after, "waitwell_bookings_total", source="direct") == 1
    assert delta(before, after, "waitwell_booking_conflicts_total", route=route) == 1
    assert delta(before, after, "waitwell_http_requests_total", route=route, method="POST", status="201") == 1
    assert delta(before, after, "waitwell_http_requests_total", route=route, method="POST", status="409") == 1
    # The route template, never the path with the provider's id in it.
    template = "/api/v1/providers/{provider_id}/slots"
    assert delta(before, after, "waitwell_http_requests_total", route=template, method="GET", status="200") == 1
    assert delta(before, after, "waitwell_http_request_duration_seconds_count", route=template, method="GET") == 1
    assert not any(str(harbor.provider.id) in dict(labels).get("route", "") for _, labels in after)
    # The scrape itself is not a request of the app.
    assert value(after, "waitwell_http_requests_total", route="/metrics", method="GET", status="200") == 0


def test_search_cache_hits_and_misses_are_counted(client: TestClient, harbor: Practice, token: str) -> None:
    patient = bearer(client, harbor.emails["patient"])
    before = scrape(client)
    assert client.get("/api/v1/providers", headers=patient).status_code == 200
    first = scrape(client)
    assert value(first, "waitwell_search_cache_lookups_total", result="miss") > value(
        before, "waitwell_search_cache_lookups_total", result="miss"
    )
    assert client.get("/api/v1/providers", headers=patient).status_code == 200
    second = scrape(client)
    assert value(second, "waitwell_search_cache_lookups_total", result="hit") > value(
        first, "waitwell_search_cache_lookups_total", result="hit"
    )


@pytest.fixture
def tight_limits() -> Iterator[None]:
    policies = {name: Policy(address=parse("1/minute")) for name in LIMIT_CLASSES}
    ratelimit.set_limiter(RateLimiter(policies, redis_url=None, key_prefix="unused"))
    yield
    ratelimit.set_limiter(None)


def test_rate_limit_refusals_are_counted_by_route_and_practice(
    client: TestClient, harbor: Practice, token: str, tight_limits: None
) -> None:
    headers = {"Authorization": f"Bearer {issue_token(harbor.patient_actor)[0]}"}
    labels = {"limit_class": "search", "route": "/api/v1/providers", "practice": str(harbor.tenant_id)}
    before = scrape(client)
    assert client.get("/api/v1/providers", headers=headers).status_code == 200
    assert client.get("/api/v1/providers", headers=headers).status_code == 429
    assert client.get("/api/v1/providers", headers=headers).status_code == 429
    after = scrape(client)
    assert delta(before, after, "waitwell_rate_limited_total", **labels) == 2


def test_failed_sign_ins_and_codes_are_counted(
    client: TestClient, harbor: Practice, token: str, own_redis_keys: str
) -> None:
    before = scrape(client)
    wrong = client.post("/api/v1/auth/token", json={"email": harbor.emails["patient"], "password": "not-it-at-all"})
    assert wrong.status_code == 401
    unknown = client.post("/api/v1/auth/token", json={"email": "nobody@harbor.test", "password": "not-it-at-all"})
    assert unknown.status_code == 401
    # The admin has MFA: the right password with a wrong code.
    code = second_factor(harbor.emails["admin"])
    assert code is not None
    wrong_code = f"{(int(code) + 500_000) % 1_000_000:06d}"
    refused = client.post(
        "/api/v1/auth/token", json={"email": harbor.emails["admin"], "password": TEST_PASSWORD, "totp": wrong_code}
    )
    assert refused.status_code == 401 and refused.json()["code"] == "mfa_invalid"
    after = scrape(client)
    assert delta(before, after, "waitwell_login_failures_total") == 2
    assert delta(before, after, "waitwell_mfa_failures_total") == 1


def test_waitlist_offers_tasks_and_time_to_fill_are_counted(
    client: TestClient, harbor: Practice, token: str, eager_celery: None  # noqa: F811
) -> None:
    start = local_start(2, 10, zone="America/New_York")
    booked = add_appointment(harbor, start)
    waiting = add_patient(harbor, "Una Urgent")
    add_waitlist_entry(harbor, patient=waiting, urgency=4, windows=window_for(start))
    before = scrape(client)

    call(harbor.admin, booking.cancel_appointment, booked.id)  # frees the slot: the offer is made by a task
    (offer,) = rows(harbor, WaitlistOffer, status=OfferStatus.PENDING)
    call(patient_actor(harbor, waiting), offers.accept_offer, offer.id)

    after = scrape(client)
    assert delta(before, after, "waitwell_waitlist_offers_total", event="made") == 1
    assert delta(before, after, "waitwell_waitlist_offers_total", event="accepted") == 1
    assert delta(before, after, "waitwell_bookings_total", source="waitlist") == 1
    # From the cancellation to the acceptance: measured once, seconds in this test.
    assert delta(before, after, "waitwell_waitlist_cancellation_to_acceptance_seconds_count") == 1
    assert 0 <= delta(before, after, "waitwell_waitlist_cancellation_to_acceptance_seconds_sum") < 600
    tasks = {
        dict(labels)["task"]: count - value(before, name, **dict(labels))
        for (name, labels), count in after.items()
        if name == "waitwell_celery_tasks_total" and dict(labels).get("outcome") == "success"
    }
    assert any(count >= 1 for task, count in tasks.items() if task.startswith("waitlist.")), tasks


def test_outbox_queue_heartbeat_and_services_are_read_at_scrape_time(
    client: TestClient, harbor: Practice, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with UnitOfWork(harbor.system) as uow:
        for status in (NotificationStatus.DEAD, NotificationStatus.DEAD, NotificationStatus.PENDING):
            uow.session.add(
                Notification(tenant_id=harbor.tenant_id, event_type="test", channel=Channel.CONSOLE, status=status)
            )
        uow.commit()
    # A queue of this test only (the run's broker is shared): three waiting messages.
    queue = f"test-metrics-{uuid.uuid4().hex}"
    monkeypatch.setattr(get_settings(), "celery_queue", queue)
    broker_url = get_settings().broker_url
    assert broker_url and broker_url.startswith("redis://")
    import redis

    broker = redis.Redis.from_url(broker_url)
    monkeypatch.setattr(get_settings(), "redis_key_prefix", f"test-{uuid.uuid4().hex}")
    try:
        broker.lpush(queue, "a", "b", "c")
        beat_heartbeat.apply()
        samples = scrape(client)
    finally:
        broker.delete(queue)
        get_redis().delete(metrics.heartbeat_key())
        broker.close()

    assert value(samples, "waitwell_outbox_dead_letters", practice=str(harbor.tenant_id)) == 2
    assert value(samples, "waitwell_outbox_messages", status="dead") >= 2
    assert value(samples, "waitwell_outbox_messages", status="pending") >= 1
    assert value(samples, "waitwell_celery_queue_depth", queue=queue) == 3
    stamp = value(samples, "waitwell_beat_heartbeat_timestamp_seconds")
    assert abs(stamp - datetime.now().timestamp()) < 300  # noqa: DTZ005 - a Unix time either way
    assert value(samples, "waitwell_dependency_up", dependency="database") == 1
    assert value(samples, "waitwell_dependency_up", dependency="redis") == 1


def test_live_sessions_are_the_sum_reported(client: TestClient, token: str) -> None:
    metrics.set_live_sessions(3)
    try:
        assert value(scrape(client), "waitwell_live_sessions") == 3
    finally:
        metrics.set_live_sessions(0)


# -- several processes ----------------------------------------------------------------------------------------

_CHILD = """
import sys
from backend.observability import metrics
assert metrics.MULTIPROC_DIR, "the child must be in multiprocess mode"
metrics.BOOKINGS.labels(source="direct").inc(int(sys.argv[1]))
metrics.record_login_failure()
metrics.HTTP_LATENCY.labels(route="/api/v1/appointments", method="POST").observe(0.2)
metrics.set_live_sessions(int(sys.argv[1]))
print(__import__("os").getpid())
"""


def run_child(env: dict[str, str], count: int) -> subprocess.CompletedProcess[str]:
    """A separate process that counts `count` bookings, one failed sign-in, one request and `count` live sessions."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(count)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def test_several_processes_add_up(client: TestClient, token: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pids = []
    for count in (2, 5):
        done = run_child(env, count)
        pids.append(int(done.stdout.strip()))
    assert len(list(tmp_path.glob("*.db"))) >= 2  # one set of files per process

    monkeypatch.setattr(metrics, "MULTIPROC_DIR", str(tmp_path))
    samples = scrape(client)
    assert value(samples, "waitwell_bookings_total", source="direct") == 7
    assert value(samples, "waitwell_login_failures_total") == 2
    labels = {"route": "/api/v1/appointments", "method": "POST"}
    assert value(samples, "waitwell_http_request_duration_seconds_count", **labels) == 2
    assert value(samples, "waitwell_http_request_duration_seconds_bucket", le="0.25", **labels) == 2
    assert value(samples, "waitwell_live_sessions") == 7
    # The scrape-time readings are there once, not once per process.
    assert value(samples, "waitwell_dependency_up", dependency="database") == 1

    # A process that ended no longer counts among the live sessions; its counts stay.
    metrics.mark_process_dead(pids[0], str(tmp_path))
    samples = scrape(client)
    assert value(samples, "waitwell_live_sessions") == 5
    assert value(samples, "waitwell_bookings_total", source="direct") == 7


def test_a_real_worker_counts_its_tasks_and_their_wait_in_the_shared_directory(tmp_path: Path) -> None:
    """celery -A backend.worker worker (prefork: the tasks run in forked children) with PROMETHEUS_MULTIPROC_DIR:
    each task's outcome, run time and time in the queue reach the directory every scrape of the machine reads."""
    from backend.worker import ping
    from tests.worker_process import WorkerProcess, app_publishing_to, own_queue, wait_for

    broker = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/2")
    shared = tmp_path / "metrics"
    with own_queue(broker, "metrics") as queue:
        env = {"CELERY_BROKER_URL": broker, "CELERY_QUEUE": queue, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
        worker = WorkerProcess(tmp_path / "worker.log", env, concurrency=2).start()
        try:
            with app_publishing_to(broker, queue):
                worker.wait_ready()
                for _ in range(3):
                    ping.apply_async()
                registry = metrics.build_registry(str(shared))
                labels = {"task": "clinic.ping", "outcome": "success"}
                wait_for("three pings counted", lambda: registry.get_sample_value("waitwell_celery_tasks_total", labels)
                         == 3, seconds=60, log=worker.log)  # fmt: skip
        finally:
            worker.stop()
    assert registry.get_sample_value("waitwell_celery_task_duration_seconds_count", {"task": "clinic.ping"}) == 3
    assert registry.get_sample_value("waitwell_celery_task_queue_wait_seconds_count", {"task": "clinic.ping"}) == 3


def test_the_exporter_serves_the_same_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-alone exporter (machines with only workers) serves the multiprocess aggregate on its port."""
    import httpx
    from prometheus_client import start_http_server

    from tests.conftest import free_port

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run_child(env, 4)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.build_registry(str(tmp_path)))
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        server.shutdown()
        thread.join(timeout=10)
    found: dict[str, Any] = {
        s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels
    }
    assert found["waitwell_login_failures_total"] == 1


def test_the_pages_server_reports_its_open_sockets() -> None:
    """portal.live_bridge samples the sockets Reflex holds (sid -> client token) into waitwell_live_sessions."""
    import asyncio
    import time
    from types import SimpleNamespace

    from prometheus_client import REGISTRY

    from portal import live_bridge

    def reported() -> float | None:
        return REGISTRY.get_sample_value("waitwell_live_sessions")

    async def go() -> None:
        app = SimpleNamespace(event_namespace=SimpleNamespace(sid_to_token={"s1": "t1", "s2": "t2", "s3": "t3"}))
        task = asyncio.create_task(live_bridge.sample_live_sessions(app))
        deadline = time.monotonic() + 10
        while reported() != 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert reported() == 3
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert reported() == 0  # a server that stops reports none

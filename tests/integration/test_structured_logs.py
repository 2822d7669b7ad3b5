"""Structured logs: one JSON line per record, a request id on every request (echoed, accepted only when safe),
the practice and actor ids once known (never a name or an address), and the same request id on the log lines
of the Celery task the request caused, run by a real worker.

The API is served for real (uvicorn in a thread of this process); its lines are read through the formatter the
root handler uses with LOG_FORMAT=json (backend.logging_config), so what is asserted is what a log shipper receives.
"""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

import backend.api.routes.waitlists as waitlist_routes
from backend.api.app import api
from backend.logging_config import _StderrHandler, _structlog_formatter
from backend.observability.logs import accept_request_id, bind_actor, current_request_id
from tests.conftest import free_port, served
from tests.factories import Practice, add_appointment, bearer, local_start, make_practice
from tests.worker_process import WorkerProcess, app_publishing_to, own_queue, wait_for

BROKER_URL = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/2")
CANARY = "CANARY-PHI-7f3a"  # as tests/security/test_no_phi_in_logs.py
OFFER_TASK_DONE = r"Task waitlist\.offer_freed_slot\[[^\]]+\] succeeded"


@pytest.fixture(scope="module")
def lines() -> Iterator[io.StringIO]:
    """What the root handler writes with LOG_FORMAT=json (this process set up logging at import, before the test
    session chose its database: so in the console format of the embedded mode)."""
    root = logging.getLogger()
    assert any(isinstance(h, _StderrHandler) for h in root.handlers), "configure_logging() ran at import"
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(_structlog_formatter("json"))
    root.addHandler(handler)
    yield buffer
    root.removeHandler(handler)


@pytest.fixture(scope="module")
def server(lines: io.StringIO) -> Iterator[str]:
    config = uvicorn.Config(api, host="127.0.0.1", port=free_port(), lifespan="off", access_log=False)
    with served(config) as url:
        yield url


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def access_lines(buffer: io.StringIO, request_id: str) -> list[dict[str, Any]]:
    """The access lines of one request (the server writes its line just after it sent the response)."""

    def mine() -> list[dict[str, Any]]:
        found = json_lines(buffer.getvalue())
        return [r for r in found if r.get("logger") == "backend.access" and r.get("request_id") == request_id]

    return wait_for(f"the access line of {request_id}", mine, seconds=10)


def test_a_request_gets_one_json_access_line_with_the_echoed_request_id(server: str, lines: io.StringIO) -> None:
    with httpx.Client(base_url=server) as client:
        response = client.get("/api/health", headers={"X-Request-ID": "edge-7.a_b-9"})
        generated = client.get("/api/health")
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "edge-7.a_b-9"
    (line,) = access_lines(lines, "edge-7.a_b-9")
    assert line["event"] == "request" and line["level"] == "info"
    assert (line["method"], line["route"], line["status"]) == ("GET", "/api/health", 200)
    assert isinstance(line["duration_ms"], float) and line["timestamp"].endswith("Z")

    fresh = generated.headers["X-Request-ID"]  # none sent: one is made up, 32 hex characters
    assert len(fresh) == 32 and int(fresh, 16) >= 0
    assert len(access_lines(lines, fresh)) == 1


@pytest.mark.parametrize("unsafe", ["has space", "x" * 65, "semi;colon", f"{CANARY}/../etc", "é"])
def test_an_unsafe_request_id_is_replaced_and_never_logged(server: str, lines: io.StringIO, unsafe: str) -> None:
    with httpx.Client(base_url=server) as client:
        response = client.get("/api/health", headers={"X-Request-ID": unsafe.encode("utf-8")})
    echoed = response.headers["X-Request-ID"]
    assert echoed != unsafe and len(echoed) == 32
    assert len(access_lines(lines, echoed)) == 1
    assert unsafe not in lines.getvalue()


def test_the_access_line_names_the_route_template_and_the_actor_by_id_only(
    harbor: Practice, server: str, lines: io.StringIO
) -> None:
    p = harbor
    entry_id = uuid.uuid4()
    with httpx.Client(base_url=server) as client:
        auth = bearer(client, p.patient_user.email)
        response = client.get(f"/api/v1/waitlists/{entry_id}?q={CANARY}", headers={**auth, "X-Request-ID": "who-1"})
    assert response.status_code == 404
    (line,) = access_lines(lines, "who-1")
    assert line["route"] == "/api/v1/waitlists/{entry_id}" and line["status"] == 404
    assert line["practice_id"] == str(p.tenant_id)
    assert line["actor_id"] == str(p.patient_user.id) and line["actor_role"] == "patient"
    text = lines.getvalue()
    assert str(entry_id) not in json.dumps(line) and CANARY not in text
    assert p.patient_user.email not in text and p.patient.full_name not in text


def test_an_unhandled_error_still_echoes_the_request_id_and_logs_it_with_the_traceback(
    harbor: Practice, server: str, lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_join(actor: Any, uow: Any, request: Any) -> Any:
        raise RuntimeError(f"could not place {request.reason}")

    monkeypatch.setattr(waitlist_routes, "join_waitlist", failing_join)
    p = harbor
    with httpx.Client(base_url=server) as client:
        auth = bearer(client, p.patient_user.email)
        body = {"clinic_id": str(p.clinic.id), "reason": f"{CANARY} panic attacks"}
        response = client.post("/api/v1/waitlists", json=body, headers={**auth, "X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "boom-1"
    (line,) = access_lines(lines, "boom-1")
    assert line["status"] == 500 and line["route"] == "/api/v1/waitlists"
    assert line["practice_id"] == str(p.tenant_id)
    assert CANARY not in lines.getvalue()


def test_lines_logged_in_a_request_carry_its_ids_and_a_redacted_traceback(lines: io.StringIO) -> None:
    """Outside HTTP too: what is bound (structlog contextvars) goes on every line, stdlib or structlog."""
    import structlog

    tokens = structlog.contextvars.bind_contextvars(request_id="ctx-1")
    try:
        bind_actor(type("A", (), {"tenant_id": uuid.UUID(int=7), "role": "admin", "user_id": uuid.UUID(int=9)})())
        try:
            raise ValueError(f"bad value {CANARY}")
        except ValueError:
            logging.getLogger("backend.test").exception("could not do it")
            structlog.get_logger("backend.test").warning("also this", slot_count=3)
        assert current_request_id() == "ctx-1"
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
        structlog.contextvars.unbind_contextvars("practice_id", "actor_id", "actor_role")
    mine = [r for r in json_lines(lines.getvalue()) if r.get("request_id") == "ctx-1"]
    stdlib, native = mine
    assert stdlib["event"] == "could not do it" and stdlib["level"] == "error"
    assert stdlib["practice_id"] == str(uuid.UUID(int=7)) and stdlib["actor_id"] == str(uuid.UUID(int=9))
    assert "ValueError: <message redacted>" in stdlib["exception"] and "Traceback" in stdlib["exception"]
    assert native["event"] == "also this" and native["slot_count"] == 3 and native["level"] == "warning"
    assert CANARY not in lines.getvalue()


def test_request_ids_are_accepted_only_when_safe() -> None:
    assert accept_request_id("abc-DEF_1.2") == "abc-DEF_1.2"
    assert accept_request_id(b"abc") == "abc"
    for bad in (None, "", "a b", "x" * 65, "<script>", "a\nb"):
        assert accept_request_id(bad) != bad


# -- from the request to the Celery task, through a real worker ----------------------------------------------------


@pytest.fixture
def worker(tmp_path: Path, db: sa.Engine) -> Iterator[WorkerProcess]:
    """A real prefork `celery worker` on a queue of this test's own; this process publishes to it."""
    with own_queue(BROKER_URL, "logs") as queue:
        started = WorkerProcess(
            tmp_path / "worker.log",
            {"CELERY_BROKER_URL": BROKER_URL, "CELERY_QUEUE": queue, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"},
            concurrency=1,
            name_prefix="logs",
        )
        with app_publishing_to(BROKER_URL, queue):
            try:
                started.start().wait_ready()
                yield started
            finally:
                started.stop()


def test_a_task_logs_the_request_id_of_the_request_that_enqueued_it(
    harbor: Practice, server: str, lines: io.StringIO, worker: WorkerProcess
) -> None:
    p = harbor
    appointment = add_appointment(p, local_start(3, 10))
    with httpx.Client(base_url=server, timeout=30) as client:
        auth = bearer(client, p.patient_user.email)
        response = client.post(
            f"/api/v1/appointments/{appointment.id}/cancel", json={}, headers={**auth, "X-Request-ID": "cancel-42"}
        )
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == "cancel-42"
    (access,) = access_lines(lines, "cancel-42")
    assert access["route"] == "/api/v1/appointments/{appointment_id}/cancel"

    # The freed slot's task (waitlist.offer_freed_slot) ran in the worker with the request's id on its lines.
    wait_for("the offer task to finish", lambda: worker.count_in_log(OFFER_TASK_DONE) >= 1, seconds=60, log=worker.log)
    task_lines = [r for r in json_lines(worker.log_text()) if r.get("task") == "waitlist.offer_freed_slot"]
    done = [r for r in task_lines if "succeeded" in r["event"]]
    assert done, worker.log_text()[-3000:]
    assert all(r["request_id"] == "cancel-42" for r in task_lines)
    assert done[0]["logger"] == "celery.app.trace" and done[0]["task_id"]
    # A task no request caused (none here) would get an id of its own; the worker's lines are JSON throughout.
    assert p.patient_user.email not in worker.log_text() and p.patient.full_name not in worker.log_text()

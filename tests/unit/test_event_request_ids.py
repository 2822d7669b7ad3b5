"""Each Reflex event gets a request id of its own (portal/observability.py), bound for that event only, and a task
it runs in-process keeps it (backend/observability/logs.py)."""

from __future__ import annotations

import asyncio
import contextvars
import re
import uuid
from types import SimpleNamespace
from typing import Any

import structlog

from backend.observability import logs
from portal.observability import EventRequestIdMiddleware


def _bound_during_event(name: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        await EventRequestIdMiddleware().preprocess(app=None, state=None, event=SimpleNamespace(name=name))  # type: ignore[arg-type]
        logs.bind_actor(SimpleNamespace(tenant_id=uuid.UUID(int=1), role="doctor", user_id=uuid.UUID(int=2)))
        return structlog.contextvars.get_contextvars()

    # Reflex runs each event in a task of its own, with a copy of the context: so does this.
    return contextvars.copy_context().run(asyncio.run, run())


def test_every_event_gets_its_own_request_id_and_the_actor_ids() -> None:
    first = _bound_during_event("reflex___state____state.portal___state___schedule____schedule_state.load")
    second = _bound_during_event("reflex___state____state.portal___state___schedule____schedule_state.load")
    assert re.fullmatch(r"[0-9a-f]{32}", first["request_id"])
    assert first["request_id"] != second["request_id"]
    assert first["reflex_event"] == "load"
    assert first["practice_id"] == str(uuid.UUID(int=1)) and first["actor_id"] == str(uuid.UUID(int=2))
    assert first["actor_role"] == "doctor"
    assert "request_id" not in structlog.contextvars.get_contextvars()  # nothing leaks out of the event


def test_a_task_run_in_process_keeps_the_request_id_and_gives_the_context_back() -> None:
    task = SimpleNamespace(name="waitlist.offer_freed_slot", request=SimpleNamespace())

    def run() -> tuple[dict[str, Any], dict[str, Any]]:
        structlog.contextvars.bind_contextvars(request_id="req-1")
        logs._task_prerun(task_id="t-1", task=task)
        during = structlog.contextvars.get_contextvars()
        logs._task_postrun(task_id="t-1", task=task)
        return during, structlog.contextvars.get_contextvars()

    during, after = contextvars.copy_context().run(run)
    assert during["request_id"] == "req-1" and during["task"] == "waitlist.offer_freed_slot"
    assert after == {"request_id": "req-1"}


def test_a_published_task_carries_the_request_id_in_its_headers() -> None:
    def publish() -> dict[str, Any]:
        headers: dict[str, Any] = {}
        structlog.contextvars.bind_contextvars(request_id="req-2")
        logs._before_publish(headers=headers)
        return headers

    assert contextvars.copy_context().run(publish) == {logs.TASK_HEADER: "req-2"}
    worker_task = SimpleNamespace(name="x", request=SimpleNamespace(**{logs.TASK_HEADER: "req-2"}))
    assert logs._task_request_id(worker_task) == "req-2"
    unsafe = SimpleNamespace(name="x", request=SimpleNamespace(**{logs.TASK_HEADER: "no spaces please"}))
    assert logs._task_request_id(unsafe) is None


def test_a_task_no_request_caused_gets_an_id_of_its_own() -> None:
    task = SimpleNamespace(name="waitlist.expire_offers_tick", request=SimpleNamespace())

    def run() -> dict[str, Any]:
        logs._task_prerun(task_id="t-2", task=task)
        during = structlog.contextvars.get_contextvars()
        logs._task_postrun(task_id="t-2", task=task)
        assert structlog.contextvars.get_contextvars() == {}
        return during

    during = contextvars.copy_context().run(run)
    assert re.fullmatch(r"[0-9a-f]{32}", during["request_id"]) and during["task_id"] == "t-2"

"""backend.events: in-transaction subscribers run inside emit, before the after-commit publish (no services)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from backend import events
from backend.notifications import subscriber


class FakeUnitOfWork:
    """What emit needs of a unit of work: a tenant and the after-commit hooks."""

    def __init__(self) -> None:
        self.tenant_id = uuid.uuid4()
        self.hooks: list[Callable[[], None]] = []

    def after_commit(self, hook: Callable[[], None]) -> None:
        self.hooks.append(hook)


def test_subscribers_run_inside_emit_in_order_and_once_each() -> None:
    uow: Any = FakeUnitOfWork()
    calls: list[tuple[str, str, object]] = []

    def first(u: Any, e: events.DomainEvent) -> None:
        calls.append(("first", e.name, u))

    def second(u: Any, e: events.DomainEvent) -> None:
        calls.append(("second", e.name, e.data["patient_id"]))

    remove_first = events.subscribe("test.happened", first)
    events.subscribe("test.happened", first)  # the same pair twice: still called once
    remove_second = events.subscribe("test.happened", second)
    try:
        patient = uuid.uuid4()
        events.emit(uow, "test.happened", entity_id=uuid.uuid4(), patient_id=patient)
        events.emit(uow, "test.other", patient_id=patient)
        assert calls == [("first", "test.happened", uow), ("second", "test.happened", str(patient))]
        assert len(uow.hooks) == 2  # both are still published after commit
    finally:
        remove_first()
        remove_second()
    assert events.subscribers("test.happened") == ()


def test_a_failing_subscriber_fails_the_change() -> None:
    def broken(_u: Any, _e: events.DomainEvent) -> None:
        raise RuntimeError("outbox unavailable")

    remove = events.subscribe("test.failing", broken)
    try:
        with pytest.raises(RuntimeError):
            events.emit(FakeUnitOfWork(), "test.failing")  # type: ignore[arg-type]
    finally:
        remove()


def test_every_notice_but_reminders_comes_from_a_domain_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each event type the templates know is written by the subscriber from one domain event (reminders are the
    notifications package's own beat task); an event naming no patient, and the cancelled/booked halves of a move
    and an accepted offer's booking, write none."""
    from backend.notifications import outbox
    from backend.notifications.templates import EVENT_TYPES
    from backend.tenancy.context import Actor

    written: list[tuple[str, str, dict[str, str]]] = []
    monkeypatch.setattr(outbox, "notify", lambda actor, uow, *, patient_id, event_type, payload: written.append(
        (event_type, str(patient_id), payload)))  # fmt: skip
    uow: Any = FakeUnitOfWork()
    uow.actor = Actor.system(uow.tenant_id)
    ids = {key: str(uuid.uuid4()) for key in ("entry_id", "appointment_id", "clinic_id", "provider_id", "patient_id")}
    by_event: dict[str, list[str]] = {}
    for name, handlers in subscriber.HANDLERS.items():
        event = events.DomainEvent(str(uow.tenant_id), name, str(uuid.uuid4()), dict(ids))
        for handler in handlers:
            handler(uow, event)
            handler(uow, events.DomainEvent(str(uow.tenant_id), name, str(uuid.uuid4()), {**ids, "patient_id": None}))
        by_event[name] = [event_type for event_type, _, _ in written]
        assert all(patient == ids["patient_id"] for _, patient, _ in written)
        assert all(isinstance(v, str) for _, _, payload in written for v in payload.values())
        written.clear()
    notices = sorted(t for types in by_event.values() for t in types)
    # Account messages (invitations, password resets, registrations) are written by backend/identity/onboarding.py.
    account = {"account_invite", "password_reset", "registration_verify", "registration_exists"}
    assert notices == sorted(set(EVENT_TYPES) - {"appointment_reminder", *account})
    for name, extra in (("appointment.booked", "rescheduled_from"), ("appointment.booked", "offer_id"),
                        ("appointment.cancelled", "rescheduled_to")):  # fmt: skip
        for handler in subscriber.HANDLERS[name]:
            handler(uow, events.DomainEvent(str(uow.tenant_id), name, str(uuid.uuid4()), {**ids, extra: "x"}))
    assert written == []

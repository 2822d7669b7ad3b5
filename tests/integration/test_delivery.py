"""Invariant 5, second half: a notification reaches the patient once, through retries, crashes and races.

Real PostgreSQL and Redis; a fake channel (injected for channels.channel_for) counts sends, so "exactly once"
is a count. The real provider SDKs are tested with the channels module.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from kombu import pools as kombu_pools
from sqlalchemy import update
from sqlmodel import col

from backend.db import UnitOfWork
from backend.notifications import channels, delivery, outbox
from backend.notifications.models import Notification, NotificationDelivery, NotificationStatus
from backend.notifications.tasks import sweep_outbox_tick
from backend.types import utcnow
from backend.worker import celery_app
from tests.conftest import free_port
from tests.factories import Practice, add_appointment, local_start, make_practice, rows
from tests.integration.test_outbox import FakeChannel

S = NotificationStatus


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeChannel:
    channel = FakeChannel()
    monkeypatch.setattr(channels, "channel_for", lambda name, settings=None: channel)
    monkeypatch.setattr(delivery, "throttle_wait", lambda tenant_id, notification_id: 0.0)
    return channel


@pytest.fixture
def no_enqueue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit outbox rows without handing them to Celery: the test delivers them itself."""
    monkeypatch.setattr(outbox, "enqueue_deliveries", lambda ids: None)


@pytest.fixture(autouse=True)
def eager() -> Iterator[None]:
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


def record_booking(p: Practice, days: int = 4) -> uuid.UUID:
    """One committed appointment_booked notification (with a real appointment to render)."""
    appointment = add_appointment(p, local_start(days, 10))
    with UnitOfWork(p.system) as uow:
        (note,) = outbox.notify(p.system, uow, patient_id=p.patient.id, event_type="appointment_booked",
                                payload={"appointment_id": str(appointment.id)})  # fmt: skip
        uow.commit()
    return note.id


def state(p: Practice, notification_id: uuid.UUID) -> tuple[NotificationDelivery, Notification]:
    (row,) = rows(p, NotificationDelivery, notification_id=notification_id)
    (note,) = rows(p, Notification, id=notification_id)
    return row, note


def transient() -> channels.ChannelError:
    return channels.ChannelError("provider busy", transient=True, code="429")


def permanent() -> channels.ChannelError:
    return channels.ChannelError("invalid recipient", transient=False, code="21211")


def make_stale(p: Practice, notification_id: uuid.UUID, *, attempts: int = 1) -> None:
    """What a worker killed mid-send leaves: 'sending', claimed long ago."""
    with UnitOfWork(p.system) as uow:
        uow.session.execute(
            update(NotificationDelivery)
            .where(col(NotificationDelivery.notification_id) == notification_id)
            .values(status=S.SENDING, attempts=attempts, updated_at=utcnow() - delivery.lease() - timedelta(seconds=5))
        )
        uow.commit()


# -- idempotency ------------------------------------------------------------------------------------------


def test_delivering_twice_sends_once(harbor: Practice, fake: FakeChannel, no_enqueue: None) -> None:
    nid = record_booking(harbor)
    assert delivery.deliver(nid) == "sent"
    assert delivery.deliver(nid) == "done"  # a redelivered task (acks_late) does nothing
    assert sweep_outbox_tick() == {}
    assert [m.idempotency_key for m in fake.sent] == [str(nid)]
    row, note = state(harbor, nid)
    assert (row.status, row.attempts, row.provider_message_id) == (S.SENT, 1, "fake-1")
    assert (note.status, note.attempts, note.provider_message_id) == (S.SENT, 1, "fake-1")
    assert row.sent_at is not None and note.sent_at is not None


def test_a_row_in_flight_is_left_alone(harbor: Practice, fake: FakeChannel, no_enqueue: None) -> None:
    nid = record_booking(harbor)
    claim = delivery.claim_one(nid)
    assert isinstance(claim, delivery.Claim)
    assert delivery.deliver(nid) == "in flight"  # a second task while the first is sending
    assert delivery.sweep() == {}
    assert delivery.run(claim) == "sent"
    assert len(fake.sent) == 1


# -- retries ----------------------------------------------------------------------------------------------


def test_transient_errors_retry_with_backoff_then_send(harbor: Practice, fake: FakeChannel, no_enqueue: None) -> None:
    nid = record_booking(harbor)
    fake.errors = [transient(), transient()]
    before = utcnow()
    assert delivery.deliver(nid) == "failed"
    row, note = state(harbor, nid)
    assert (row.status, row.attempts, note.status) == (S.FAILED, 1, S.FAILED)
    base = delivery.BACKOFF_BASE_SECONDS
    assert before + timedelta(seconds=base) <= row.next_attempt_at <= utcnow() + timedelta(seconds=2 * base)
    assert "ChannelError (429)" in row.last_error
    assert delivery.deliver(nid) == "not due"  # the backoff is respected
    first_retry = row.next_attempt_at
    assert delivery.deliver(nid, now=first_retry + timedelta(seconds=1)) == "failed"
    row, _ = state(harbor, nid)
    assert row.attempts == 2
    # Exponential: the second wait is about twice the first.
    assert row.next_attempt_at - utcnow() >= timedelta(seconds=2 * base - 1)
    assert delivery.sweep(now=row.next_attempt_at + timedelta(seconds=1)) == {"sent": 1}
    row, note = state(harbor, nid)
    assert (row.status, row.attempts, note.status, note.last_error) == (S.SENT, 3, S.SENT, "")
    assert len(fake.sent) == 1


def test_a_permanent_error_is_dead_at_once(harbor: Practice, fake: FakeChannel, no_enqueue: None) -> None:
    nid = record_booking(harbor)
    fake.errors = [permanent()]
    assert delivery.deliver(nid) == "dead"
    row, note = state(harbor, nid)
    assert (row.status, row.attempts, note.status) == (S.DEAD, 1, S.DEAD)
    assert delivery.deliver(nid, now=utcnow() + timedelta(days=1)) == "done"
    assert delivery.sweep(now=utcnow() + timedelta(days=1)) == {}
    assert fake.sent == []


def test_dead_letter_after_max_attempts(harbor: Practice, fake: FakeChannel, no_enqueue: None) -> None:
    nid = record_booking(harbor)
    fake.errors = [transient() for _ in range(10)]
    later = utcnow()
    outcomes = []
    for _ in range(delivery.MAX_ATTEMPTS + 2):
        later += timedelta(hours=2)
        outcomes.append(delivery.deliver(nid, now=later))
    assert outcomes == ["failed"] * (delivery.MAX_ATTEMPTS - 1) + ["dead", "done", "done"]
    row, note = state(harbor, nid)
    assert (row.status, row.attempts, note.status) == (S.DEAD, delivery.MAX_ATTEMPTS, S.DEAD)
    assert fake.sent == []


# -- a worker killed mid-send -------------------------------------------------------------------------------


def test_stale_sending_found_sent_is_not_sent_again(harbor: Practice, fake: FakeChannel, no_enqueue: None) -> None:
    nid = record_booking(harbor)
    make_stale(harbor, nid)
    fake.known[str(nid)] = "sent"  # the dead worker's send did go out
    assert delivery.deliver(nid) == "sent"
    assert fake.sent == []
    row, note = state(harbor, nid)
    assert (row.status, row.attempts, note.status) == (S.SENT, 1, S.SENT)


def test_stale_sending_not_found_is_resent_exactly_once(
    harbor: Practice, fake: FakeChannel, no_enqueue: None
) -> None:
    nid = record_booking(harbor)
    make_stale(harbor, nid)
    assert delivery.deliver(nid, now=utcnow()) in {"sent"}
    # A second sweep, and the task redelivered by the broker, find it sent.
    assert delivery.sweep() == {}
    assert delivery.deliver(nid) == "done"
    assert [m.idempotency_key for m in fake.sent] == [str(nid)]
    row, _ = state(harbor, nid)
    assert (row.status, row.attempts) == (S.SENT, 2)


def test_fresh_sending_is_not_reconciled_yet(harbor: Practice, fake: FakeChannel, no_enqueue: None) -> None:
    nid = record_booking(harbor)
    with UnitOfWork(harbor.system) as uow:
        uow.session.execute(update(NotificationDelivery).where(col(NotificationDelivery.notification_id) == nid)
                            .values(status=S.SENDING, attempts=1, updated_at=utcnow()))  # fmt: skip
        uow.commit()
    assert delivery.sweep() == {}
    assert fake.sent == []


def test_lookup_failure_marks_unknown_and_is_reconciled_later(
    harbor: Practice, fake: FakeChannel, no_enqueue: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    nid = record_booking(harbor)
    make_stale(harbor, nid)

    def broken(idempotency_key: str, provider_message_id: str | None) -> str | None:
        raise transient()

    monkeypatch.setattr(fake, "lookup", broken)
    assert delivery.sweep() == {"unknown": 1}
    row, note = state(harbor, nid)
    assert (row.status, note.status) == (S.UNKNOWN, S.UNKNOWN)
    monkeypatch.undo()
    monkeypatch.setattr(channels, "channel_for", lambda name, settings=None: fake)
    monkeypatch.setattr(delivery, "throttle_wait", lambda tenant_id, notification_id: 0.0)
    fake.known[str(nid)] = "sent"
    assert delivery.sweep(now=row.next_attempt_at + timedelta(seconds=1)) == {"sent": 1}
    assert fake.sent == []


# -- concurrency --------------------------------------------------------------------------------------------


def test_two_sweeps_never_claim_the_same_row(harbor: Practice, fake: FakeChannel, no_enqueue: None) -> None:
    other = make_practice("Summit Counseling", "summit")
    ids = {record_booking(harbor, days) for days in range(2, 22)} | {record_booking(other, d) for d in range(2, 22)}
    barrier = threading.Barrier(2)
    claimed: list[list[delivery.Claim]] = [[], []]

    def sweeper(i: int) -> None:
        barrier.wait()
        claimed[i] = delivery.claim_due(limit=25)

    threads = [threading.Thread(target=sweeper, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    first, second = ({c.notification_id for c in batch} for batch in claimed)
    assert first.isdisjoint(second)
    assert first | second == ids
    assert len(claimed[0]) + len(claimed[1]) == len(ids)
    for batch in claimed:
        for claim in batch:
            assert delivery.run(claim) == "sent"
    assert sorted(m.idempotency_key for m in fake.sent) == sorted(str(i) for i in ids)


def test_racing_tasks_and_sweeps_send_each_row_once(harbor: Practice, fake: FakeChannel, no_enqueue: None) -> None:
    ids = [record_booking(harbor, days) for days in range(2, 12)]
    barrier = threading.Barrier(4)

    def task() -> None:
        barrier.wait()
        for nid in ids:
            delivery.deliver(nid)

    def sweeper() -> None:
        barrier.wait()
        delivery.sweep()

    threads = [threading.Thread(target=task), threading.Thread(target=task), threading.Thread(target=sweeper),
               threading.Thread(target=sweeper)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(m.idempotency_key for m in fake.sent) == sorted(str(i) for i in ids)


# -- throttle -----------------------------------------------------------------------------------------------


@pytest.fixture
def throttled(fake: FakeChannel, no_enqueue: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sending to providers (throttled), 2 per second per practice, with the real Redis limiter."""
    monkeypatch.setattr(delivery, "throttle_wait", THROTTLE_WAIT)
    monkeypatch.setattr(delivery, "sends_per_second", lambda: 2.0)
    monkeypatch.setattr(delivery, "_throttled_mode", lambda: True)


THROTTLE_WAIT = delivery.throttle_wait


def reserved_slot(notification_id: uuid.UUID) -> float | None:
    from backend.redis_client import get_redis

    raw = get_redis().get(f"notify:slot:{notification_id}")
    return None if raw is None else float(raw)  # type: ignore[arg-type]


def test_per_practice_throttle_reserves_one_slot_per_send_at_the_rate(
    harbor: Practice, fake: FakeChannel, throttled: None
) -> None:
    ids = [record_booking(harbor, days) for days in range(2, 8)]
    outcomes = [delivery.deliver(nid) for nid in ids]
    assert outcomes[:2] == ["sent", "sent"]  # the burst: 2
    assert outcomes.count("throttled") >= 3 and outcomes.count("sent") + outcomes.count("throttled") == len(ids)
    pushed = [nid for nid, o in zip(ids, outcomes, strict=True) if o == "throttled"]
    # Each pushed send holds its own slot of the practice's schedule, half a second (1/rate) apart, and its row
    # is due at that slot; nothing was attempted.
    slots = [reserved_slot(nid) for nid in pushed]
    assert all(slot is not None for slot in slots)
    gaps = [b - a for a, b in itertools.pairwise(slots)]  # type: ignore[operator]
    assert all(gap == pytest.approx(0.5, abs=1e-3) for gap in gaps)
    rows_now = [state(harbor, nid)[0] for nid in pushed]
    assert all(r.status == S.PENDING and r.attempts == 0 and r.next_attempt_at > utcnow() for r in rows_now)
    assert [r.next_attempt_at for r in rows_now] == sorted(r.next_attempt_at for r in rows_now)
    # Asked again before its slot, a row keeps its slot (no new reservation, no later place in the queue).
    last = pushed[-1]
    assert delivery.throttle_wait(harbor.tenant.id, last) > 0
    assert reserved_slot(last) == slots[-1]
    # Each comes due at its slot and is then sent, in order, once.
    for nid in pushed:
        deadline = utcnow() + timedelta(seconds=10)
        while (outcome := delivery.deliver(nid)) != "sent" and utcnow() < deadline:
            assert outcome in ("not due", "throttled")
            time.sleep(min(0.05, delivery.due_in(nid) or 0.0))  # poll until its slot (bounded by the deadline)
        assert outcome == "sent"
        assert reserved_slot(nid) is None  # the reservation was used up
    assert sorted(m.idempotency_key for m in fake.sent) == sorted(str(i) for i in ids)


def test_the_throttle_of_one_practice_does_not_slow_another(harbor: Practice, throttled: None) -> None:
    outcomes = [delivery.deliver(record_booking(harbor, days)) for days in range(2, 6)]
    assert "throttled" in outcomes
    other = make_practice("Summit Counseling", "summit")
    assert delivery.deliver(record_booking(other)) == "sent"


def test_the_console_channel_is_not_throttled(
    harbor: Practice, fake: FakeChannel, no_enqueue: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()
    monkeypatch.setattr(channels, "channel_for", lambda name, settings=None: fake)
    monkeypatch.setattr(outbox, "enqueue_deliveries", lambda ids: None)
    monkeypatch.setattr(delivery, "sends_per_second", lambda: 2.0)
    assert not delivery._throttled_mode()  # the tests run in the console mode, the embedded default
    ids = [record_booking(harbor, days) for days in range(2, 8)]
    assert [delivery.deliver(nid) for nid in ids] == ["sent"] * len(ids)


# -- broker down at commit ----------------------------------------------------------------------------------


def test_broker_down_at_commit_leaves_the_row_for_the_sweep(harbor: Practice, fake: FakeChannel) -> None:
    keys = ("broker_url", "task_always_eager", "broker_connection_timeout", "broker_connection_max_retries",
            "task_publish_retry")  # fmt: skip
    saved = {k: celery_app.conf[k] for k in keys}
    celery_app.conf.update(
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        task_always_eager=False,
        broker_connection_timeout=0.5,
        broker_connection_max_retries=0,
        task_publish_retry=False,
    )
    _reset_pools()
    try:
        nid = record_booking(harbor)  # the enqueue after commit fails; the commit stands
    finally:
        celery_app.conf.update(saved)
        _reset_pools()
    row, note = state(harbor, nid)
    assert (row.status, note.status, row.attempts) == (S.PENDING, S.PENDING, 0)
    assert fake.sent == []
    assert sweep_outbox_tick() == {"sent": 1}
    assert [m.idempotency_key for m in fake.sent] == [str(nid)]


def _reset_pools() -> None:
    """Drop the app's producer pools so the next publish uses the current broker_url. kombu keeps pools in a
    process-wide registry: reset it too, or a later publish would acquire from a closed pool."""
    kombu_pools.reset()
    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


# -- fencing: a claim that outlived its lease -------------------------------------------------------------


def test_a_sweep_whose_batch_outlives_its_lease_sends_nothing_twice(
    harbor: Practice, fake: FakeChannel, no_enqueue: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10, item 7: a sweep claims a batch and sends it one by one; each send takes 60% of the lease, so the
    batch outlives it. While the first sweep sends its second row, a second sweep runs: it must not take (and
    send) rows the first still owns, and the first must not send a row the second took."""
    ids = [record_booking(harbor, days) for days in (2, 3, 4)]
    lease = delivery.lease()
    clock = [utcnow()]
    monkeypatch.setattr(delivery, "utcnow", lambda: clock[0])  # the ledger's clock, moved by the sends
    second_sweep: dict[str, int] = {}
    phase = ["first"]
    send = fake.send

    def slow_send(message: channels.OutgoingMessage) -> channels.SendResult:
        if phase[0] == "first":
            clock[0] += lease * 0.6
            if len(fake.sent) == 1:  # the first sweep's second send is under way: a second sweep runs now
                phase[0] = "second"
                second_sweep.update(delivery.sweep())
                phase[0] = "first resumed"
        return send(message)

    monkeypatch.setattr(fake, "send", slow_send)
    first_sweep = delivery.sweep()

    assert phase[0] == "first resumed"
    assert sorted(m.idempotency_key for m in fake.sent) == sorted(str(i) for i in ids)  # each exactly once
    assert sum(first_sweep.values()) + sum(second_sweep.values()) >= len(ids)
    for nid in ids:
        row, note = state(harbor, nid)
        assert (row.status, note.status) == (S.SENT, S.SENT)


def test_a_claim_taken_over_sends_nothing_and_writes_nothing(
    harbor: Practice, fake: FakeChannel, no_enqueue: None
) -> None:
    """The fencing token: a claimer whose row was claimed again (its lease ran out) neither sends nor finishes."""
    nid = record_booking(harbor)
    stale = delivery.claim_one(nid)
    assert isinstance(stale, delivery.Claim)
    make_stale(harbor, nid)  # its lease ran out ...
    fresh = delivery.claim_one(nid)  # ... and another worker took the row over (to reconcile it)
    assert isinstance(fresh, delivery.Claim) and fresh.mode == "reconcile"
    assert fresh.generation == stale.generation + 1
    assert delivery.run(stale) == "lost"  # the first claimer wakes up: its claim is gone, it sends nothing
    assert fake.sent == []
    row, _ = state(harbor, nid)
    assert (row.status, row.claim_generation) == (S.SENDING, fresh.generation)
    assert delivery.run(fresh) == "sent"
    assert [m.idempotency_key for m in fake.sent] == [str(nid)]


def test_a_claim_lost_during_its_send_does_not_overwrite_the_new_claimer(
    harbor: Practice, fake: FakeChannel, no_enqueue: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    nid = record_booking(harbor)
    first = delivery.claim_one(nid)
    assert isinstance(first, delivery.Claim)
    taken: list[delivery.Claim | str] = []
    send = fake.send

    def send_then_lose_the_row(message: channels.OutgoingMessage) -> channels.SendResult:
        make_stale(harbor, nid)
        taken.append(delivery.claim_one(nid))  # the row is claimed again while the send is under way
        return send(message)

    monkeypatch.setattr(fake, "send", send_then_lose_the_row)
    assert delivery.run(first) == "lost"  # sent, but the row is no longer this claimer's to write
    row, _ = state(harbor, nid)
    assert row.status == S.SENDING and row.provider_message_id is None
    (second,) = taken
    assert isinstance(second, delivery.Claim) and second.mode == "reconcile"
    monkeypatch.setattr(fake, "send", send)
    assert delivery.run(second) == "sent"  # the new claimer looks it up: found, so it is not sent again
    assert [m.idempotency_key for m in fake.sent] == [str(nid)]

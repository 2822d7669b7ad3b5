"""The live relay on the real services (issue 10, items 8 and 9).

* Events name the audiences they concern: every appointment, hold and waitlist event carries the patient's id
  beside the provider's, so the relay can bump that patient's pages (My appointments) and no one else's.
* The relay's clinic lookup ("any provider" entries) reads the providers who work at the clinic.
* Pub/sub messages published while the relay's Redis subscription was down are lost: when it is back, the relay
  queues a resync (every page re-reads), whether redis-py reconnected by itself or the relay did.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from backend import events
from backend.events import DomainEvent, channel_for
from backend.scheduling import booking
from backend.waitlist import service as wl
from portal import live_bridge
from portal.live_bridge import RESYNC, ClinicProvidersCache, audience_tokens
from portal.state.live import patient_token, provider_token, tenant_token
from tests.conftest import REDIS_URL
from tests.factories import Practice, add_availability, add_provider, add_waitlist_entry, make_practice
from tests.integration.test_offers import call, slot_at


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor")
    add_availability(p)
    return p


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[DomainEvent]:
    seen: list[DomainEvent] = []
    monkeypatch.setattr(events, "publish", seen.append)
    return seen


def _named(seen: list[DomainEvent], name: str) -> DomainEvent:
    matches = [e for e in seen if e.name == name]
    assert matches, [e.name for e in seen]
    return matches[-1]


def test_appointment_and_hold_events_name_the_patient(harbor: Practice, published: list[DomainEvent]) -> None:
    p = harbor
    patient, provider = str(p.patient.id), str(p.provider.id)
    hold = call(p.patient_actor, booking.hold_slot, provider_id=p.provider.id, start=slot_at(days=3, hour=10))
    call(p.patient_actor, booking.release_hold, hold.id)
    booked = call(p.patient_actor, booking.book_appointment, provider_id=p.provider.id, start=slot_at(days=3, hour=11))
    call(p.doctor, booking.cancel_appointment, booked.appointment.id)
    for name in ("slot.held", "slot.freed", "appointment.booked", "appointment.cancelled"):
        event = _named(published, name)
        assert event.data["patient_id"] == patient, name
        assert event.data["provider_id"] == provider, name
    tokens = asyncio.run(audience_tokens(_named(published, "appointment.cancelled"), ClinicProvidersCache()))
    assert tokens == {tenant_token(p.tenant_id), provider_token(provider), patient_token(patient)}


def test_an_any_provider_entry_reaches_the_consoles_of_the_clinics_providers(
    harbor: Practice, published: list[DomainEvent]
) -> None:
    p = harbor
    colleague = add_provider(p, "Dr. Colleague")  # works at the first clinic too
    elsewhere = add_provider(p, "Dr. Elsewhere", clinic=p.clinic2)
    entry = add_waitlist_entry(p, any_provider=True)
    call(p.patient_actor, wl.leave_waitlist, entry.id)
    event = _named(published, "waitlist.changed")
    assert event.data["provider_id"] is None and event.data["clinic_id"] == str(p.clinic.id)
    tokens = asyncio.run(audience_tokens(event, ClinicProvidersCache()))
    assert provider_token(p.provider.id) in tokens and provider_token(colleague.id) in tokens
    assert provider_token(elsewhere.id) not in tokens
    assert patient_token(p.patient.id) in tokens


def _kill(name: str) -> None:
    """Drop the relay's own Redis connection (and no one else's), as a network blip or a Redis restart would."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ids = [c["id"] for c in client.client_list() if c.get("name") == name]
        assert ids, "the relay's connection is not there"
        for ident in ids:
            client.client_kill_filter(_id=ident)
    finally:
        client.close()


async def _next(queue: asyncio.Queue[DomainEvent], want: Any, *, publish: DomainEvent | None = None) -> None:
    """Wait until `want` (an event, or a predicate) comes off the queue; publish `publish` meanwhile, again and
    again, since a message sent before the subscription is (re-)established is lost."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        async with asyncio.timeout(20):
            while True:
                if publish is not None:
                    client.publish(channel_for(publish.tenant_id), publish.to_json())
                try:
                    got = await asyncio.wait_for(queue.get(), timeout=0.2)
                except TimeoutError:
                    continue
                if want(got) if callable(want) else got == want:
                    return
    finally:
        client.close()


def test_the_relay_resyncs_every_page_after_its_subscription_comes_back() -> None:
    name = f"live-relay-test-{uuid.uuid4().hex[:12]}"
    tenant = str(uuid.uuid4())  # nobody's practice: a running app that hears these bumps nothing that exists

    async def go() -> None:
        queue: asyncio.Queue[DomainEvent] = asyncio.Queue()
        reader = asyncio.create_task(live_bridge._read_redis(REDIS_URL, queue, name=name))
        try:
            first = DomainEvent(tenant, "probe.first")
            await _next(queue, lambda e: e.name == "probe.first", publish=first)
            _kill(name)
            await _next(queue, RESYNC)
            after = DomainEvent(tenant, "probe.after")
            await _next(queue, lambda e: e.name == "probe.after", publish=after)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    asyncio.run(go())


def test_the_relays_bumps_in_flight_are_cancelled_when_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck_bump(app: Any, audiences: dict[str, list[str]]) -> None:
        # A tab busy re-reading holds its state: this bump waits on it for ever.
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    monkeypatch.setattr(live_bridge, "_bump_burst", stuck_bump)

    async def go() -> None:
        queue: asyncio.Queue[DomainEvent] = asyncio.Queue()
        relay = asyncio.create_task(live_bridge._relay(None, queue, None, ClinicProvidersCache()))
        queue.put_nowait(DomainEvent(str(uuid.uuid4()), "appointment.booked"))
        await asyncio.wait_for(started.wait(), 30)
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        assert cancelled.is_set()

    asyncio.run(go())

"""From domain events to open pages: a lifespan task that bumps the live revision of each audience an event
concerns (portal/state/live.py): the practice's staff always, the provider and the patient named by the ids the
event carries, and for a waitlist event at a clinic, the providers who work there ("any provider" entries show
on their consoles). Nobody else's pages re-read.

Sources: with REDIS_URL, the pattern subscription `clinic:events:*` (every worker, every process that
commits - API, pages, Celery - publishes there); without it, the in-process listeners of backend.events
(embedded mode: one process does everything). When the Redis subscription comes back after a drop, events
published meanwhile were missed: the relay bumps every token a client linked (`known_tokens()`), and each
page re-reads.

Several workers: when Reflex keeps its state in Redis (REFLEX_REDIS_URL), one shared state serves every
worker, so only the worker holding a short Redis lease bumps (the others stand by and take over within
LEASE_MS if it dies); Reflex relays the delta to the worker that holds each client's socket. With a
per-process state manager every worker bumps its own copy.

Bursts (a cancellation, then the offer of the freed slot and its hold a few milliseconds later) are coalesced per
audience token: a burst ends when no event came for QUIET_SECONDS (at most BURST_SECONDS after its first), so pages
re-query once per burst. The relay's one database read (who works at a clinic,
cached for CLINIC_CACHE_SECONDS) runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import reflex as rx
from sqlmodel import select

from backend.db import UnitOfWork, reads_only
from backend.events import DomainEvent, add_local_listener
from backend.identity.models import ProviderClinic
from backend.observability import metrics
from backend.settings import get_settings
from backend.tenancy.context import Actor
from portal.state.live import (
    RESYNC_NAME,
    LivePatient,
    LiveProvider,
    LiveTenant,
    known_tokens,
    patient_token,
    provider_token,
    tenant_token,
    watchers,
)

logger = logging.getLogger(__name__)


EVENT_PATTERN = "clinic:events:*"
QUIET_SECONDS = 0.03
BURST_SECONDS = 0.2
CLINIC_CACHE_SECONDS = 30.0
# Queued by the Redis reader when its subscription is back after a drop: events may have been missed.
RESYNC = DomainEvent(tenant_id="", name=RESYNC_NAME)
LEASE_MS = 6000
RENEW_SECONDS = 2.0


ClinicProviders = Callable[[str, str], Awaitable[Iterable[str]]]


def lease_key() -> str:
    """The relay lease's Redis key, under REDIS_KEY_PREFIX: deployments (or test runs) sharing one Redis each have
    their own relaying worker."""
    return f"{get_settings().redis_key_prefix}:live:relay-leader"


def _audience_class(token: str) -> type[rx.State]:
    if token.startswith("provider-"):
        return LiveProvider
    if token.startswith("patient-"):
        return LivePatient
    return LiveTenant


def _id(value: Any) -> str | None:
    """A well-formed UUID string from an event's data, else None (nothing is bumped for a malformed id)."""
    try:
        return str(uuid.UUID(str(value))) if value else None
    except ValueError:
        return None


async def audience_tokens(event: DomainEvent, clinic_providers: ClinicProviders) -> set[str]:
    """The live tokens an event concerns: its practice's staff, and the provider and patient it names; a waitlist
    event at a clinic also concerns the providers working there ("any provider" entries are on their consoles)."""
    if event == RESYNC:
        return await asyncio.to_thread(known_tokens)
    tenant_id = _id(event.tenant_id)
    if tenant_id is None:
        return set()
    tokens = {tenant_token(tenant_id)}
    if provider_id := _id(event.data.get("provider_id")):
        tokens.add(provider_token(provider_id))
    if patient_id := _id(event.data.get("patient_id")):
        tokens.add(patient_token(patient_id))
    clinic_id = _id(event.data.get("clinic_id"))
    # Only an "any provider" entry (no provider of its own, or an offer made on one) shows on the consoles of
    # every provider at its clinic: an entry for one provider concerns that provider's pages alone.
    any_provider = event.data.get("provider_id") is None or event.data.get("any_provider") is True
    if clinic_id and any_provider and event.name.startswith("waitlist.") and event.name != "waitlist.policy_changed":
        tokens.update(provider_token(p) for p in await clinic_providers(tenant_id, clinic_id))
    return tokens


def _providers_at(tenant_id: str, clinic_id: str) -> list[str]:
    tenant = uuid.UUID(tenant_id)
    with reads_only(), UnitOfWork(Actor.system(tenant)) as uow:
        rows = uow.session.exec(
            select(ProviderClinic.provider_id).where(ProviderClinic.clinic_id == uuid.UUID(clinic_id))
        )
        return [str(p) for p in rows]


class ClinicProvidersCache:
    """Who works at a clinic, read in a worker thread and kept CLINIC_CACHE_SECONDS."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[float, list[str]]] = {}

    async def __call__(self, tenant_id: str, clinic_id: str) -> list[str]:
        key = (tenant_id, clinic_id)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        try:
            providers = await asyncio.to_thread(_providers_at, tenant_id, clinic_id)
        except Exception:
            logger.warning("live relay: cannot read a clinic's providers", exc_info=True)
            return hit[1] if hit else []
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + CLINIC_CACHE_SECONDS, providers)
        return providers


async def bump(app: Any, token: str, event_name: str, names: Iterable[str] = ()) -> None:
    """Advance one audience's revision and set it on each watching tab's own copy: Reflex sends each of them a
    frame (to whichever worker holds its socket). Tabs that are gone, or now watch another audience, are dropped.
    `names`: every event of the burst (the tab notes them, so a page that shows none of them skips its re-read)."""
    burst_names = sorted({event_name, *names})
    cls = _audience_class(token)
    registry = watchers()
    revision, clients = await registry.advance_from_loop(token)
    if not clients:
        return
    namespace = app.event_namespace
    manager = namespace._token_manager if namespace is not None else None
    kind = cls.get_full_name()

    async def one(client: str) -> None:
        if manager is not None and not await manager.is_token_connected(client):
            await asyncio.to_thread(registry.forget, kind, client, token)
            return
        async with app.modify_state(rx.BaseStateToken(ident=client, cls=cls)) as root:
            live = await root.get_state(cls)
            if live._audience != token:  # type: ignore[attr-defined]
                # The tab moved on (another page, another person): nothing of this audience is its business.
                stale = True
            else:
                stale = False
                live.revision = max(int(live.revision), revision)  # type: ignore[attr-defined]
                live.last_event = event_name  # type: ignore[attr-defined]
                live._unread = sorted({*live._unread, *burst_names})  # type: ignore[attr-defined]
        if stale:
            await asyncio.to_thread(registry.forget, kind, client, token)

    results = await asyncio.gather(*(one(client) for client in clients), return_exceptions=True)
    failed = sum(1 for result in results if isinstance(result, BaseException))
    if failed:
        logger.warning("live relay: %d of %d tabs could not be updated", failed, len(results))


async def bump_tenant(app: Any, tenant_id: str, event_name: str) -> None:
    """Advance one practice's staff revision."""
    await bump(app, tenant_token(tenant_id), event_name)


async def _bump_burst(app: Any, audiences: dict[str, list[str]]) -> None:
    for token, names in audiences.items():
        try:
            await bump(app, token, names[-1], names)
        except Exception:
            logger.warning("live relay: could not bump an audience", exc_info=True)


class _Lease:
    """One relaying worker at a time when the Reflex state is shared through Redis."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.key = lease_key()
        self.ident = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self.held = False

    async def renew(self) -> None:
        try:
            if await self.client.set(self.key, self.ident, nx=True, px=LEASE_MS):
                self.held = True
                return
            current = await self.client.get(self.key)
            self.held = current is not None and current.decode() == self.ident
            if self.held:
                await self.client.pexpire(self.key, LEASE_MS)
        except Exception:
            logger.warning("live relay: cannot renew the lease", exc_info=True)
            self.held = False

    async def keep(self) -> None:
        while True:
            await self.renew()
            await asyncio.sleep(RENEW_SECONDS)

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            if (await self.client.get(self.key) or b"").decode() == self.ident:
                await self.client.delete(self.key)


def _state_is_shared(app: Any) -> bool:
    from reflex.istate.manager.redis import StateManagerRedis

    try:
        return isinstance(app.state_manager, StateManagerRedis)
    except (AttributeError, RuntimeError, ValueError):
        return False


class _Resync:
    """Queues RESYNC: the subscription is back after a drop, whatever was published meanwhile is lost."""

    def __init__(self, queue: asyncio.Queue[DomainEvent]) -> None:
        self.queue = queue

    def fire(self, _connection: Any = None) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(RESYNC)


async def _read_redis(url: str, queue: asyncio.Queue[DomainEvent], name: str = "waitwell-live-relay") -> None:
    """Feed the queue from the tenants' Redis channels; reconnect with backoff when Redis goes away."""
    import redis.asyncio as aioredis

    resync = _Resync(queue)
    delay = 0.5
    subscribed_before = False
    while True:
        client = aioredis.Redis.from_url(url, client_name=name)
        try:
            pubsub = client.pubsub()
            await pubsub.psubscribe(EVENT_PATTERN)
            delay = 0.5
            if subscribed_before:
                resync.fire()
            subscribed_before = True
            # redis-py also reconnects (and subscribes again) by itself after a dropped connection: that too is a
            # gap. Registered after the client's own re-subscribe callback, so it runs once that is done.
            if pubsub.connection is not None:
                pubsub.connection.register_connect_callback(resync.fire)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is None or message.get("type") != "pmessage":
                    continue
                try:
                    queue.put_nowait(DomainEvent.from_json(message["data"]))
                except (ValueError, TypeError, KeyError, asyncio.QueueFull):
                    logger.warning("live relay: unreadable or surplus event skipped")
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("live relay: Redis subscription lost; retrying in %.1fs", delay, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()


async def _relay(
    app: Any, queue: asyncio.Queue[DomainEvent], lease: _Lease | None, clinic_providers: ClinicProviders | None = None
) -> None:
    providers = clinic_providers or ClinicProvidersCache()
    # The bumps in flight (each drops out when done): cancelled when the relay ends, so none outlives it.
    running: set[asyncio.Task[None]] = set()
    try:
        while True:
            first = await queue.get()
            burst = [first]
            closes = time.monotonic() + BURST_SECONDS
            while (left := closes - time.monotonic()) > 0:
                try:
                    burst.append(await asyncio.wait_for(queue.get(), min(QUIET_SECONDS, left)))
                except TimeoutError:
                    break
            if lease is not None and not lease.held:
                continue
            audiences: dict[str, list[str]] = {}
            for event in burst:
                for token in await audience_tokens(event, providers):
                    audiences.setdefault(token, []).append(event.name)
            # Not awaited: a tab busy re-reading holds its state, and the next burst must not wait for it. Two bumps
            # of one tab in flight commute (the revision only grows, the noted names only add up).
            task = asyncio.create_task(_bump_burst(app, audiences))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


async def relay_domain_events(app: Any) -> None:
    """Lifespan task: relay every committed domain event to the pages of its tenant."""
    queue: asyncio.Queue[DomainEvent] = asyncio.Queue(maxsize=10_000)
    url = get_settings().redis_url
    tasks: list[asyncio.Task[None]] = []
    remove_listener = None
    lease: _Lease | None = None
    try:
        if url:
            tasks.append(asyncio.create_task(_read_redis(url, queue), name="live-relay-redis"))
            if _state_is_shared(app):
                import redis.asyncio as aioredis

                lease = _Lease(aioredis.Redis.from_url(url))
                await lease.renew()
                tasks.append(asyncio.create_task(lease.keep(), name="live-relay-lease"))
        else:
            loop = asyncio.get_running_loop()

            def on_event(event: DomainEvent) -> None:
                # Called on whichever thread committed; hand over to the event loop.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_offer, queue, event)

            remove_listener = add_local_listener(on_event)
        await _relay(app, queue, lease)
    finally:
        if remove_listener is not None:
            remove_listener()
        for task in tasks:
            task.cancel()
        if lease is not None:
            await lease.release()
            with contextlib.suppress(Exception):
                await lease.client.aclose()


def _offer(queue: asyncio.Queue[DomainEvent], event: DomainEvent) -> None:
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(event)


LIVE_SESSIONS_SAMPLE_SECONDS = 5.0


async def sample_live_sessions(app: Any) -> None:
    """Lifespan task: publish this process's open page sockets as waitwell_live_sessions (summed over processes)."""
    try:
        while True:
            namespace = app.event_namespace
            metrics.set_live_sessions(len(namespace.sid_to_token) if namespace is not None else 0)
            await asyncio.sleep(LIVE_SESSIONS_SAMPLE_SECONDS)
    finally:
        metrics.set_live_sessions(0)


def register(app: rx.App) -> None:
    """Start the relay with the app (call once, where the app is created)."""
    app.register_lifespan_task(relay_domain_events)
    app.register_lifespan_task(sample_live_sessions)

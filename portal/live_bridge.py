"""From domain events to open pages: a lifespan task that bumps each tenant's `LiveTenant.revision`.

Sources: with REDIS_URL, the pattern subscription `clinic:events:*` (every worker, every process that
commits - API, pages, Celery - publishes there); without it, the in-process listeners of backend.events
(embedded mode: one process does everything).

Several workers: when Reflex keeps its state in Redis (REFLEX_REDIS_URL), one shared state serves every
worker, so only the worker holding a short Redis lease bumps (the others stand by and take over within
LEASE_MS if it dies); Reflex relays the delta to the worker that holds each client's socket. With a
per-process state manager every worker bumps its own copy.

Bursts (a cancellation that offers the slot and changes an entry) are coalesced per tenant for
COALESCE_SECONDS, so pages re-query once per burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

import reflex as rx

from backend.events import DomainEvent, add_local_listener
from backend.settings import get_settings
from portal.state.live import MAX_LINKED_CLIENTS, LiveTenant, tenant_token

logger = logging.getLogger(__name__)


class _SharedTokenHasNoSocket(logging.Filter):
    """app.modify_state also sends the delta to the shared token itself, which no socket holds: not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "to disconnected client 'tenant-" not in record.getMessage()


EVENT_PATTERN = "clinic:events:*"
COALESCE_SECONDS = 0.05
LEASE_KEY = "clinic:live:relay-leader"
LEASE_MS = 6000
RENEW_SECONDS = 2.0


async def bump_tenant(app: Any, tenant_id: str, event_name: str) -> None:
    """Advance one tenant's revision; Reflex pushes it to every client linked to the tenant."""
    async with app.modify_state(rx.BaseStateToken(ident=tenant_token(tenant_id), cls=LiveTenant)) as root:
        live = await root.get_state(LiveTenant)
        live.revision += 1
        live.last_event = event_name
        if len(live._linked_from) > MAX_LINKED_CLIENTS:
            await _prune_gone_clients(app, live)


async def _prune_gone_clients(app: Any, live: LiveTenant) -> None:
    """Forget tabs that closed long ago (Reflex keeps every token that ever linked)."""
    namespace = app.event_namespace
    if namespace is None:
        return
    manager = namespace._token_manager
    connected = {token for token in live._linked_from if await manager.is_token_connected(token)}
    live._linked_from = connected


class _Lease:
    """One relaying worker at a time when the Reflex state is shared through Redis."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.ident = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self.held = False

    async def renew(self) -> None:
        try:
            if await self.client.set(LEASE_KEY, self.ident, nx=True, px=LEASE_MS):
                self.held = True
                return
            current = await self.client.get(LEASE_KEY)
            self.held = current is not None and current.decode() == self.ident
            if self.held:
                await self.client.pexpire(LEASE_KEY, LEASE_MS)
        except Exception:
            logger.warning("live relay: cannot renew the lease", exc_info=True)
            self.held = False

    async def keep(self) -> None:
        while True:
            await self.renew()
            await asyncio.sleep(RENEW_SECONDS)

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            if (await self.client.get(LEASE_KEY) or b"").decode() == self.ident:
                await self.client.delete(LEASE_KEY)


def _state_is_shared(app: Any) -> bool:
    from reflex.istate.manager.redis import StateManagerRedis

    try:
        return isinstance(app.state_manager, StateManagerRedis)
    except (AttributeError, RuntimeError, ValueError):
        return False


async def _read_redis(url: str, queue: asyncio.Queue[DomainEvent]) -> None:
    """Feed the queue from the tenants' Redis channels; reconnect with backoff when Redis goes away."""
    import redis.asyncio as aioredis

    delay = 0.5
    while True:
        client = aioredis.Redis.from_url(url)
        try:
            pubsub = client.pubsub()
            await pubsub.psubscribe(EVENT_PATTERN)
            delay = 0.5
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


async def _relay(app: Any, queue: asyncio.Queue[DomainEvent], lease: _Lease | None) -> None:
    while True:
        first = await queue.get()
        await asyncio.sleep(COALESCE_SECONDS)
        latest: dict[str, str] = {first.tenant_id: first.name}
        while not queue.empty():
            event = queue.get_nowait()
            latest[event.tenant_id] = event.name
        if lease is not None and not lease.held:
            continue
        for tenant_id, name in latest.items():
            try:
                await bump_tenant(app, tenant_id, name)
            except Exception:
                logger.warning("live relay: could not bump a tenant", exc_info=True)


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


def register(app: rx.App) -> None:
    """Start the relay with the app (call once, where the app is created)."""
    logging.getLogger("reflex.app").addFilter(_SharedTokenHasNoSocket())
    app.register_lifespan_task(relay_domain_events)

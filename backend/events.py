"""Domain events: recorded in the unit of work, handled inside its transaction, published after commit.

Domain code records what happened with `emit(uow, name, entity_id=..., **ids)`. Two kinds of listener:
- in-transaction subscribers (`subscribe`): called synchronously by `emit`, inside the caller's transaction,
  before it commits, with the unit of work. What they write commits or rolls back with the change (the
  notifications package writes its outbox rows this way: backend.notifications.subscriber). They are wired
  once by the composition point (backend.composition), never imported by the domain packages, and a failing
  subscriber fails the change, exactly as a failing write of the domain code would;
- pages: after commit the event is published on one Redis channel per tenant (in-process without Redis).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.db import UnitOfWork
from backend.settings import get_settings

logger = logging.getLogger(__name__)

Listener = Callable[["DomainEvent"], None]
Subscriber = Callable[[UnitOfWork, "DomainEvent"], None]
_local_listeners: list[Listener] = []
_subscribers: dict[str, tuple[Subscriber, ...]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class DomainEvent:
    """Something that happened in a tenant. Carries ids only, never PHI."""

    tenant_id: str
    name: str
    entity_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> DomainEvent:
        return cls(**json.loads(raw))


def channel_for(tenant_id: uuid.UUID | str) -> str:
    """The Redis pub/sub channel of one tenant."""
    return f"clinic:events:{tenant_id}"


def emit(uow: UnitOfWork, name: str, *, entity_id: uuid.UUID | None = None, **data: Any) -> None:
    """Record `name` in the unit of work: its in-transaction subscribers run now, inside the transaction; it is
    published once the unit of work commits (never for a rolled-back change). `data` carries ids only."""
    if uow.tenant_id is None:
        raise ValueError("events belong to a tenant")
    event = DomainEvent(
        tenant_id=str(uow.tenant_id),
        name=name,
        entity_id=str(entity_id) if entity_id else None,
        data={k: str(v) if isinstance(v, uuid.UUID) else v for k, v in data.items()},
    )
    uow.after_commit(lambda: publish(event))
    with _lock:
        handlers = _subscribers.get(name, ())
    for handler in handlers:
        handler(uow, event)


def subscribe(name: str, handler: Subscriber) -> Callable[[], None]:
    """Call `handler(uow, event)` inside the transaction of every `name` event (once, however often this is
    called with the same pair); returns a function that removes it."""
    with _lock:
        current = _subscribers.get(name, ())
        if handler not in current:
            _subscribers[name] = (*current, handler)

    def remove() -> None:
        with _lock:
            remaining = tuple(h for h in _subscribers.get(name, ()) if h != handler)
            if remaining:
                _subscribers[name] = remaining
            else:
                _subscribers.pop(name, None)

    return remove


def subscribers(name: str) -> tuple[Subscriber, ...]:
    """The in-transaction subscribers of `name`, in the order they run."""
    with _lock:
        return _subscribers.get(name, ())


def publish(event: DomainEvent) -> None:
    """Send an event to every listener: through Redis when configured, in-process otherwise."""
    settings = get_settings()
    if settings.redis_url:
        from backend.redis_client import get_redis

        get_redis().publish(channel_for(event.tenant_id), event.to_json())
        return
    with _lock:
        listeners = list(_local_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            logger.exception("event listener failed")


def add_local_listener(listener: Listener) -> Callable[[], None]:
    """Listen in-process (embedded mode); returns a function that removes the listener."""
    with _lock:
        _local_listeners.append(listener)

    def remove() -> None:
        with _lock:
            if listener in _local_listeners:
                _local_listeners.remove(listener)

    return remove

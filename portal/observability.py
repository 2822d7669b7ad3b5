"""A request id for every Reflex event, like every HTTP request has (backend/observability/logs.py).

Each event runs in an asyncio task of its own with a copy of the context, so what this binds lasts for the
event's handler (and any task it enqueues) and no longer. The actor's ids are added where the handler resolves
the session (portal.state.session.SessionState._actor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from reflex.middleware import Middleware

from backend.observability.logs import new_request_id

if TYPE_CHECKING:
    from reflex.app import App
    from reflex.state import BaseState, StateUpdate


class EventRequestIdMiddleware(Middleware):
    """Bind a fresh request id and the event's handler name before each event is processed."""

    async def preprocess(self, app: App, state: BaseState, event: Any) -> StateUpdate | None:
        handler = str(getattr(event, "name", "")).rsplit(".", 1)[-1]
        structlog.contextvars.bind_contextvars(request_id=new_request_id(), reflex_event=handler)
        return None

"""Through what a read reaches the service layer: the REST route or portal page, and the client's address.

The REST dependency puts it on the request's unit of work (`bind`); a portal handler sets it for its event
(`enter`) when it resolves the session. Service functions never take it as a parameter.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.db import UnitOfWork

_UOW_KEY = "audit.via"


@dataclass(frozen=True, slots=True)
class Via:
    """A request or page event: `route` ("GET /api/v1/appointments", "page /admin/waitlists"), the client's
    address, and for pages the page view (tab and path) that live re-reads are counted against."""

    route: str
    address: str | None = None
    view: str | None = None


_VIA: contextvars.ContextVar[Via | None] = contextvars.ContextVar("waitwell_audit_via", default=None)


def enter(route: str, address: str | None = None, view: str | None = None) -> None:
    """Set the route/page and address for the rest of this event (a portal handler, after resolving the session)."""
    _VIA.set(Via(route=route[:200], address=(address or None) and address[:64], view=view))


def bind(uow: UnitOfWork, route: str, address: str | None = None) -> None:
    """Attach the route and address to one unit of work (the REST dependency: sync routes run in another thread)."""
    uow.session.info[_UOW_KEY] = Via(route=route[:200], address=(address or None) and address[:64])


def current(uow: UnitOfWork) -> Via | None:
    """The route/page of this unit of work's reads: bound to it, else the event's."""
    bound = uow.session.info.get(_UOW_KEY)
    return bound if isinstance(bound, Via) else _VIA.get()

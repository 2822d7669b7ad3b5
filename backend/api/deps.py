"""Request dependencies: the actor from the bearer token, a unit of work in its tenant, the client address."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.api import proxies
from backend.audit import context as audit_context
from backend.db import UnitOfWork
from backend.errors import AuthenticationFailed
from backend.identity.service import BearerSession, session_from_token
from backend.tenancy.context import Actor

_bearer = HTTPBearer(auto_error=False, description="The access token from POST /api/v1/auth/token")


def current_session(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> BearerSession:
    """Resolve the bearer token to its actor and session; the tenant comes from the token only."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("missing bearer token")
    return session_from_token(credentials.credentials)


def current_actor(session: Annotated[BearerSession, Depends(current_session)]) -> Actor:
    """The actor of the bearer token."""
    return session.actor


def unit_of_work(actor: Annotated[Actor, Depends(current_actor)], request: Request) -> Iterator[UnitOfWork]:
    """Open one unit of work per request; the route commits it explicitly. Its reads of patient data are
    audited as this route, from this client (backend.audit.context)."""
    with UnitOfWork(actor) as uow:
        route = getattr(request.scope.get("route"), "path", None) or request.url.path
        audit_context.bind(uow, f"{request.method} {route}", proxies.client_address(request.scope))
        yield uow


def client_address(request: Request) -> str | None:
    """The client's address (see backend.api.proxies.client_address)."""
    return proxies.client_address(request.scope)


ActorDep = Annotated[Actor, Depends(current_actor)]
SessionDep = Annotated[BearerSession, Depends(current_session)]
UowDep = Annotated[UnitOfWork, Depends(unit_of_work)]
ClientAddressDep = Annotated[str | None, Depends(client_address)]

"""Request dependencies: the actor from the bearer token, and a unit of work in its tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.db import UnitOfWork
from backend.errors import AuthenticationFailed
from backend.identity.service import actor_from_token
from backend.tenancy.context import Actor

_bearer = HTTPBearer(auto_error=False, description="The access token from POST /api/v1/auth/token")


def current_actor(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Actor:
    """Resolve the bearer token; the tenant comes from the token only."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("missing bearer token")
    return actor_from_token(credentials.credentials)


def unit_of_work(actor: Annotated[Actor, Depends(current_actor)]) -> Iterator[UnitOfWork]:
    """Open one unit of work per request; the route commits it explicitly."""
    with UnitOfWork(actor) as uow:
        yield uow


ActorDep = Annotated[Actor, Depends(current_actor)]
UowDep = Annotated[UnitOfWork, Depends(unit_of_work)]

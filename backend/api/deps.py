"""Request dependencies: the actor from the bearer token, a unit of work in its tenant, the client address."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.db import UnitOfWork
from backend.errors import AuthenticationFailed
from backend.identity.service import BearerSession, session_from_token
from backend.settings import get_settings
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


def unit_of_work(actor: Annotated[Actor, Depends(current_actor)]) -> Iterator[UnitOfWork]:
    """Open one unit of work per request; the route commits it explicitly."""
    with UnitOfWork(actor) as uow:
        yield uow


def _is_trusted_proxy(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: Request) -> str | None:
    """The client's address: the TCP peer, or, behind a proxy listed in TRUSTED_PROXIES, the nearest
    X-Forwarded-For entry that is not one of those proxies. X-Forwarded-For is never believed otherwise."""
    peer = request.client.host if request.client else None
    proxies = get_settings().trusted_proxies
    if not proxies or peer is None:
        return peer
    networks = [ipaddress.ip_network(part, strict=False) for part in proxies.split(",")]
    if not _is_trusted_proxy(peer, networks):
        return peer
    hops = [hop.strip() for line in request.headers.getlist("x-forwarded-for") for hop in line.split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _is_trusted_proxy(hop, networks):
            return hop[:100]
    return peer


ActorDep = Annotated[Actor, Depends(current_actor)]
SessionDep = Annotated[BearerSession, Depends(current_session)]
UowDep = Annotated[UnitOfWork, Depends(unit_of_work)]
ClientAddressDep = Annotated[str | None, Depends(client_address)]

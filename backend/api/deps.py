"""Request dependencies: the actor from the bearer token, a unit of work in its tenant, the client address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from backend.api import proxies
from backend.audit import context as audit_context
from backend.db import UnitOfWork
from backend.errors import AuthenticationFailed
from backend.identity.mfa import MfaEnrolmentRequired
from backend.identity.service import BearerSession, session_from_token
from backend.observability.logs import bind_actor
from backend.tenancy.context import Actor

_bearer = HTTPBearer(auto_error=False, description="The access token from POST /api/v1/auth/token")


def bearer_session(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> BearerSession:
    """Resolve the bearer token to its actor and session; the tenant comes from the token only. Use
    current_session (or enrolment_session on the few routes an unenrolled account may use), never this directly."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("missing bearer token")
    session = session_from_token(credentials.credentials)
    bind_actor(session.actor)  # practice and account ids (never names) on this request's log lines
    return session


async def current_session(session: Annotated[BearerSession, Depends(bearer_session)]) -> BearerSession:
    """The bearer token's session, refused (403 `mfa_enrolment_required`) while it is limited to MFA enrolment.
    (This and the other dependencies that do no I/O are `async`: FastAPI runs them on the loop, not in the
    thread pool, where each would cost a request a thread hand-off.)

    The one place that keeps an admin (or a required clinician) without MFA out of every route: the token of a
    password-only sign-in of such an account reaches only the routes that take enrolment_session (see below).
    """
    if session.mfa_enrolment_only:
        raise MfaEnrolmentRequired()
    return session


async def enrolment_session(session: Annotated[BearerSession, Depends(bearer_session)]) -> BearerSession:
    """The bearer token's session, also when it is limited to MFA enrolment: only for GET /me, GET /me/mfa,
    POST /me/mfa/enrol, POST /me/mfa/confirm and POST /auth/logout (tests/security checks that list)."""
    return session


async def current_actor(session: Annotated[BearerSession, Depends(current_session)]) -> Actor:
    """The actor of the bearer token."""
    return session.actor


async def enrolment_actor(session: Annotated[BearerSession, Depends(enrolment_session)]) -> Actor:
    """The actor of the bearer token, also while it is limited to MFA enrolment (see enrolment_session)."""
    return session.actor


@asynccontextmanager
async def _unit_of_work(actor: Actor, request: Request) -> AsyncIterator[UnitOfWork]:
    # Opening a unit of work does no I/O, so it happens on the event loop; so does ending one that never used the
    # database (a search answered from the cache). Ending one that holds a connection or close hooks goes to the
    # thread pool like the route itself. Each saves the request a thread hand-off.
    uow = UnitOfWork(actor).__enter__()
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    audit_context.bind(uow, f"{request.method} {route}", proxies.client_address(request.scope))
    try:
        yield uow
    except Exception as exc:
        await _close(uow, type(exc), exc, exc.__traceback__)
        raise
    except BaseException as exc:  # cancelled: no more awaiting, but the connection still goes back to the pool
        uow.__exit__(type(exc), exc, exc.__traceback__)
        raise
    await _close(uow, None, None, None)


async def _close(
    uow: UnitOfWork, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
) -> None:
    if uow.closes_without_io:
        uow.__exit__(exc_type, exc, tb)
    else:
        await run_in_threadpool(uow.__exit__, exc_type, exc, tb)


async def unit_of_work(actor: Annotated[Actor, Depends(current_actor)], request: Request) -> AsyncIterator[UnitOfWork]:
    """Open one unit of work per request; the route commits it explicitly. Its reads of patient data are
    audited as this route, from this client (backend.audit.context)."""
    async with _unit_of_work(actor, request) as uow:
        yield uow


async def enrolment_unit_of_work(
    actor: Annotated[Actor, Depends(enrolment_actor)], request: Request
) -> AsyncIterator[UnitOfWork]:
    """unit_of_work for the enrolment routes (see enrolment_session)."""
    async with _unit_of_work(actor, request) as uow:
        yield uow


def client_address(request: Request) -> str | None:
    """The client's address (see backend.api.proxies.client_address)."""
    return proxies.client_address(request.scope)


ActorDep = Annotated[Actor, Depends(current_actor)]
SessionDep = Annotated[BearerSession, Depends(current_session)]
UowDep = Annotated[UnitOfWork, Depends(unit_of_work)]
ClientAddressDep = Annotated[str | None, Depends(client_address)]
# Only for the routes an account that must still set up MFA may use (see enrolment_session).
EnrolmentActorDep = Annotated[Actor, Depends(enrolment_actor)]
EnrolmentSessionDep = Annotated[BearerSession, Depends(enrolment_session)]
EnrolmentUowDep = Annotated[UnitOfWork, Depends(enrolment_unit_of_work)]

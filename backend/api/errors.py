"""Map domain errors to HTTP responses with a message a person can act on."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from backend.errors import AuthenticationFailed, DomainError, RateLimited
from backend.scheduling.booking import SLOT_TAKEN, sqlstate


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(DomainError)
    async def _domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        body: dict[str, object] = {"detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, AuthenticationFailed):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(DBAPIError)
    async def _database_race(_request: Request, exc: DBAPIError) -> JSONResponse:
        # A race the services did not see coming (e.g. at commit): an overlap, a deadlock or a
        # serialization failure means another request won. Anything else is a real server error.
        if sqlstate(exc) in {"23P01", "40P01", "40001"}:
            return JSONResponse({"detail": SLOT_TAKEN}, status_code=409)
        raise exc

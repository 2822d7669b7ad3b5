"""Map domain errors to HTTP responses with a message a person can act on.

Invariant 6: never a 5xx for any input. A validation error is answered without echoing what cannot be
encoded; a database that is down or saturated is a 503 with Retry-After; a value PostgreSQL refuses is a 422.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from backend.errors import AuthenticationFailed, Code, DomainError, RateLimited
from backend.scheduling.booking import SLOT_TAKEN, sqlstate

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
UNAVAILABLE = "the service is temporarily unavailable: try again in a few seconds"
BAD_VALUE = "a value in the request is out of range or cannot be stored"


def _unavailable() -> JSONResponse:
    return JSONResponse(
        {"detail": UNAVAILABLE, "code": "unavailable"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _encodable(value: Any, depth: int = 0) -> bool:
    """True when `value` can go back in a JSON response as is (finite numbers, valid Unicode, shallow)."""
    if depth > 8:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if value is None or isinstance(value, bool | int):
        return True
    if isinstance(value, dict):
        return all(_encodable(k, depth + 1) and _encodable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_encodable(v, depth + 1) for v in value)
    return False


def safe_validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's validation errors, reduced to what always encodes: the input only when it is plain JSON."""
    out: list[dict[str, Any]] = []
    for error in errors:
        item: dict[str, Any] = {
            "type": str(error.get("type", "value_error")),
            "loc": [p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
            "msg": str(error.get("msg", "invalid value")),
        }
        if "input" in error and _encodable(error["input"]):
            item["input"] = error["input"]
        ctx = error.get("ctx")
        if isinstance(ctx, dict):
            item["ctx"] = {str(k): v if _encodable(v) else str(v) for k, v in ctx.items()}
        for key in ("loc", "msg", "type"):
            if not _encodable(item[key]):
                item[key] = [str(p).encode("utf-8", "replace").decode() for p in item[key]] if key == "loc" else "?"
        out.append(item)
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(DomainError)
    async def _domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        body: dict[str, object] = {"detail": exc.message, "code": exc.code}
        if exc.field:
            body["field"] = exc.field
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, AuthenticationFailed):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input and crashes on NaN or a lone surrogate (a 500).
        return JSONResponse(
            {"detail": safe_validation_errors(exc.errors()), "code": "request_invalid"}, status_code=422
        )

    @app.exception_handler(DBAPIError)
    async def _database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        # A race the services did not see coming (e.g. at commit): an overlap, a deadlock or a
        # serialization failure means another request won.
        code = sqlstate(exc) or ""
        if code in {"23P01", "40P01", "40001"}:
            return JSONResponse({"detail": SLOT_TAKEN, "code": Code.SLOT_TAKEN}, status_code=409)
        # The database is down, restarting or out of connections: try again shortly.
        if isinstance(exc, OperationalError) or exc.connection_invalidated or code[:2] in {"08", "57", "53"}:
            logger.warning("database unavailable (%s): answered 503", type(exc.orig).__name__)
            return _unavailable()
        # A value PostgreSQL refuses (out of range, NUL, bad encoding, datetime overflow): the input's fault.
        if isinstance(exc, DataError) or code.startswith("22"):
            logger.warning("database refused a value (sqlstate %s): answered 422", code or "?")
            return JSONResponse({"detail": BAD_VALUE, "code": "bad_value"}, status_code=422)
        raise exc

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(_request: Request, _exc: PoolTimeout) -> JSONResponse:
        logger.warning("database connection pool exhausted: answered 503")
        return _unavailable()

    @app.exception_handler(DisconnectionError)
    async def _disconnected(_request: Request, _exc: DisconnectionError) -> JSONResponse:
        return _unavailable()

    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installs
        pass
    else:

        @app.exception_handler(psycopg.OperationalError)
        async def _driver_unavailable(_request: Request, _exc: psycopg.OperationalError) -> JSONResponse:
            return _unavailable()

    import redis.exceptions

    async def _redis_unavailable(_request: Request, _exc: Exception) -> JSONResponse:
        logger.warning("Redis unavailable: answered 503")
        return _unavailable()

    app.add_exception_handler(redis.exceptions.ConnectionError, _redis_unavailable)
    app.add_exception_handler(redis.exceptions.TimeoutError, _redis_unavailable)

    @app.exception_handler(OverflowError)
    async def _overflow(_request: Request, _exc: OverflowError) -> JSONResponse:
        # Date arithmetic past year 9999 or before year 1 on a value the boundary did not bound.
        logger.warning("overflow on a request value: answered 422")
        return JSONResponse({"detail": BAD_VALUE, "code": "bad_value"}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, _exc: Exception) -> JSONResponse:
        # A bug. Still JSON (never text/plain); the traceback is logged without SQL parameters or messages
        # that may carry health data (backend.logging_config).
        return JSONResponse({"detail": "internal error: it has been logged", "code": "internal_error"}, status_code=500)

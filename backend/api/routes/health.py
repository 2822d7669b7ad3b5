"""Liveness and readiness, outside the versioned prefix."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from backend.db import get_engine
from backend.settings import get_settings

router = APIRouter(tags=["health"])


@router.get("/api/health")
def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


def _check(fn: Any) -> str:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; report its type only
        return f"error: {type(exc).__name__}"
    return "ok"


@router.get("/api/ready")
def ready() -> JSONResponse:
    """Ready when the database, and Redis and the broker where configured, answer."""
    settings = get_settings()

    def database() -> None:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))

    checks = {"database": _check(database)}
    if settings.redis_url:
        from backend.redis_client import get_redis

        checks["redis"] = _check(lambda: get_redis().ping())
    else:
        checks["redis"] = "not configured"
    if settings.broker_url:
        from kombu import Connection

        def broker() -> None:
            with Connection(settings.broker_url, connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1, timeout=2)

        checks["broker"] = _check(broker)
    else:
        checks["broker"] = "not configured (tasks run in-process)"
    ok = all(v == "ok" or v.startswith("not configured") for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

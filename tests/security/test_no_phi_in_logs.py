"""No log line carries health data: a canary sent through every text input of every route never reaches a log.

The API is served for real (uvicorn, access log on) and every logger is captured at DEBUG: the app's,
SQLAlchemy's (statements, parameters, rows), uvicorn's (errors, access) and httpx's. The canary goes into
every string path parameter, query parameter and body field the OpenAPI document lists, and through failure
paths: a database error whose message and parameters carry it (an unhandled 500 with its traceback), a
database value error (422), and an exception whose own message carries it.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from sqlalchemy import text

import backend.api.routes.waitlists as waitlist_routes
from backend.api.app import api
from backend.logging_config import PhiFilter, configure_logging, redact_exception
from backend.models import metadata
from backend.settings import get_settings
from tests.conftest import free_port, served
from tests.factories import (
    TEST_PASSWORD,
    add_appointment,
    add_availability,
    local_start,
    make_practice,
    set_booking_policy,
    token_request,
)

CANARY = "CANARY-PHI-7f3a"
LOGGERS = ("", "sqlalchemy", "sqlalchemy.engine", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "backend")


@pytest.fixture(scope="module")
def captured() -> Iterator[io.StringIO]:
    """Every record of every logger at DEBUG, formatted as a handler would write it (with tracebacks)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    saved = {}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    yield buffer
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(saved[name])


@pytest.fixture(scope="module")
def server(captured: io.StringIO) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="debug", lifespan="off", access_log=True)
    configure_logging()  # after uvicorn's dictConfig, as in production (the app module calls it at import too)
    capture = next(h for h in logging.getLogger("").handlers if getattr(h, "stream", None) is captured)
    for name in LOGGERS:  # uvicorn's dictConfig replaced its loggers' handlers and levels
        logging.getLogger(name).setLevel(logging.DEBUG)
        if capture not in logging.getLogger(name).handlers:
            logging.getLogger(name).addHandler(capture)
    with served(config) as url:
        yield url


@pytest.fixture(scope="module")
def scene(engine: sa.Engine, server: str) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(get_settings(), "rate_limit_enabled", False)
        practice = make_practice("Harbor Mental Health", "harbor")
        add_availability(practice)
        set_booking_policy(practice, horizon_days=400)
        appointment = add_appointment(practice, local_start(3, 10))
        auth = {role: login(server, email) for role, email in practice.emails.items()}
        # Self-registration on (off by default), so the sweep's registration reaches the route's real handling.
        opened = httpx.put(f"{server}/api/v1/self-registration", json={"enabled": True}, headers=auth["admin"])
        assert opened.status_code == 200, opened.text
        ids = {
            "clinic_id": str(practice.clinic.id),
            "provider_id": str(practice.provider.id),
            "patient_id": str(practice.patient.id),
            "appointment_id": str(appointment.id),
        }
        yield {"practice": practice, "auth": auth, "ids": ids}
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        # The audit tables refuse TRUNCATE (append-only triggers); replica mode skips triggers (superuser).
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def login(server: str, email: str) -> dict[str, str]:
    with httpx.Client(base_url=server) as client:
        r = client.post("/api/v1/auth/token", json=token_request(email, TEST_PASSWORD))
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


# --- requests built from the OpenAPI document -------------------------------------------------------------


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def fill(schema: dict[str, Any], doc: dict[str, Any], name: str, ids: dict[str, str], depth: int = 0) -> Any:
    """A value for `schema` with the canary in every free-text string (ids, dates and enums kept valid)."""
    schema = _resolve(schema, doc)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(s, doc).get("type") != "null"]
            return fill(options[0], doc, name, ids, depth) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    kind, fmt = schema.get("type"), schema.get("format")
    if kind == "string":
        if fmt == "uuid":
            return ids.get(name, str(uuid.uuid4()))
        if fmt == "date-time":
            return "2030-03-05T15:00:00+00:00"
        if fmt == "date":
            return "2030-03-05"
        if fmt == "time":
            return "09:00:00"
        return f"{CANARY} {name}"
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return [fill(schema.get("items", {}), doc, name, ids, depth + 1)] if depth < 4 else []
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if not props:
            return {CANARY: CANARY}
        return {key: fill(sub, doc, key, ids, depth + 1) for key, sub in props.items()}
    return CANARY


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    doc = api.openapi()
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


# Body fields given valid values on a route, where the canary would stop it at its first check: the canary in
# the other fields then goes all the way (self-registration at the scene's practice: hashed, stored, a message).
VALID_FIELDS = {
    "/api/v1/auth/register": {
        "practice": "harbor",
        "email": f"{CANARY.lower()}@example.org",
        "phone": "+1 555 010 0199",
        "locale": "en",
    },
}


def canary_requests(ids: dict[str, str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    doc = api.openapi()
    for method, path, op in operations():
        params: dict[str, Any] = {}
        headers: dict[str, str] = {}
        url = path
        for param in op.get("parameters", []):
            value = fill(param.get("schema", {}), doc, param["name"], ids)
            if param["in"] == "path":
                url = url.replace("{" + param["name"] + "}", str(value))
            elif param["in"] == "query":
                params[param["name"]] = value
            elif param["in"] == "header":
                headers[param["name"]] = str(value)
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        content = op.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            kwargs["json"] = fill(content["application/json"]["schema"], doc, "body", ids)
            if path in VALID_FIELDS:
                kwargs["json"].update(VALID_FIELDS[path])
        elif content:
            _media, spec = next(iter(content.items()))
            body = fill(spec["schema"], doc, "body", ids)
            kwargs["data"] = body if isinstance(body, dict) else {"body": body}
        yield method, url, kwargs


def test_the_canary_reaches_no_log_line(scene: dict[str, Any], server: str, captured: io.StringIO) -> None:
    statuses: list[int] = []
    by_route: dict[str, list[int]] = {}
    with httpx.Client(base_url=server, timeout=30) as client:
        for method, url, kwargs in canary_requests(scene["ids"]):
            for role in ("patient", "doctor", "admin"):
                headers = {**kwargs["headers"], **scene["auth"][role], "Origin": server}
                response = client.request(method, url, **{**kwargs, "headers": headers})
                statuses.append(response.status_code)
                by_route.setdefault(f"{method} {url}", []).append(response.status_code)
    logs = captured.getvalue()
    assert len(statuses) >= 3 * 40, "the sweep covered every route"
    assert any(s < 300 for s in statuses), "some requests went through (the canary reached the services)"
    assert 202 in by_route["POST /api/v1/auth/register"], "a registration went through"
    assert "sqlalchemy.engine" in logs and "uvicorn.access" in logs, "the capture sees SQL and access logs"
    assert CANARY not in logs
    assert CANARY.lower() not in logs.lower()
    assert all(s < 500 for s in statuses), sorted(set(statuses))


def test_a_failing_request_logs_its_traceback_without_the_canary(
    scene: dict[str, Any], server: str, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error whose message (DETAIL) and parameters carry the canary, unhandled: a 500 and a logged
    traceback, with the frames and the exception types but no value."""

    def failing_join(actor: Any, uow: Any, request: Any) -> Any:
        uow.session.execute(text("CREATE TEMP TABLE phi_probe (v text UNIQUE)"))
        for _ in range(2):  # the second insert: "Key (v)=(<reason>) already exists."
            uow.session.execute(text("INSERT INTO phi_probe (v) VALUES (:v)"), {"v": request.reason})

    def value_error_join(actor: Any, uow: Any, request: Any) -> Any:
        uow.session.execute(text("SELECT CAST(:v AS integer)"), {"v": request.reason})  # 22P02, quotes the value

    def plain_error_join(actor: Any, uow: Any, request: Any) -> Any:
        raise RuntimeError(f"could not place {request.reason} on the list")

    body = {"clinic_id": scene["ids"]["clinic_id"], "reason": f"{CANARY} panic attacks, Jane Roe 555-0100"}
    patient = login(server, scene["practice"].patient_user.email)  # the sweep may have signed the first one out
    before = len(captured.getvalue())
    for fake, expected in ((failing_join, 500), (value_error_join, 422), (plain_error_join, 500)):
        monkeypatch.setattr(waitlist_routes, "join_waitlist", fake)
        with httpx.Client(base_url=server, timeout=30) as client:  # a 500 closes the connection
            response = client.post("/api/v1/waitlists", json=body, headers=patient)
            assert response.status_code == expected, response.text
            assert response.headers["content-type"].startswith("application/json")
            assert CANARY not in response.text
    deadline = time.monotonic() + 15  # uvicorn logs an unhandled exception just after it sent the 500
    while "RuntimeError: <message redacted>" not in captured.getvalue()[before:] and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = captured.getvalue()[before:]
    assert "Traceback" in logs and "IntegrityError" in logs and "RuntimeError: <message redacted>" in logs, logs[-3000:]
    assert "sqlstate 23505" in logs  # what is kept to debug it
    assert CANARY not in logs
    assert "Jane Roe" not in logs and "555-0100" not in logs


def test_redaction_covers_records_from_any_logger() -> None:
    """The filter alone (for handlers of a process that set up logging elsewhere) redacts the same way."""
    try:
        raise ValueError(f"bad value {CANARY}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), exc_info=__import__("sys").exc_info())
    PhiFilter().filter(record)
    out = logging.Formatter().format(record)
    assert "ValueError" in out and CANARY not in out
    access = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", f"/api/v1/providers?q={CANARY}", "1.1", 200), None,
    )  # fmt: skip
    PhiFilter().filter(access)
    assert CANARY not in access.getMessage() and "/api/v1/providers" in access.getMessage()
    assert redact_exception((None, None, None)) == ""

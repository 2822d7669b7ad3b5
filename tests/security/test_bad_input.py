"""Hostile input is a 4xx with a clear JSON message and writes nothing (invariant 6: never a 5xx).

Each case is one input that answered 500 in the pen test: NaN/Infinity and lone surrogates in JSON, NUL in a
body, path, query or form, JSON nested thousands deep, oversized bodies, dates near year 1 or 9999, and
integers beyond 64 bits. And the database being down is a 503 JSON with Retry-After, never a 500 text/plain.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

import backend.db
from backend.api.app import api
from backend.api.errors import install_error_handlers, safe_validation_errors
from backend.api.input_guard import MAX_JSON_DEPTH, check_json_depth
from backend.models import metadata
from backend.settings import get_settings
from tests.conftest import free_port
from tests.factories import (
    Practice,
    add_appointment,
    add_availability,
    bearer,
    local_start,
    make_practice,
    set_booking_policy,
)


@pytest.fixture(scope="module", autouse=True)
def _no_rate_limit() -> Iterator[None]:
    # 429 is never the point here (and never a failure); keep the limiter out of the way if there is one.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(get_settings(), "rate_limit_enabled", False)
        yield


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(api, raise_server_exceptions=False) as c:
        yield c


@dataclass
class Scene:
    practice: Practice
    auth: dict[str, dict[str, str]]
    ids: dict[str, str]


def truncate_all(engine: sa.Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        # The audit tables refuse TRUNCATE (append-only triggers); replica mode skips triggers (superuser).
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="module")
def db(engine: sa.Engine) -> Iterator[sa.Engine]:
    """One practice for the whole module (every case only reads, or is refused); emptied at the end."""
    yield engine
    truncate_all(engine)


@pytest.fixture(scope="module")
def scene(db: sa.Engine, client: TestClient) -> Scene:
    practice = make_practice("Harbor Mental Health", "harbor")
    add_availability(practice)
    set_booking_policy(practice, horizon_days=400)
    appointment = add_appointment(practice, local_start(3, 10))
    auth = {role: bearer(client, email) for role, email in practice.emails.items()}
    ids = {
        "clinic": str(practice.clinic.id),
        "provider": str(practice.provider.id),
        "patient": str(practice.patient.id),
        "appointment": str(appointment.id),
    }
    return Scene(practice, auth, ids)


def row_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in metadata.sorted_tables
        }


def raw_json(client: TestClient, method: str, path: str, text: str, headers: dict[str, str]) -> Any:
    return client.request(method, path, content=text.encode("utf-8", "surrogatepass"),
                          headers={**headers, "Content-Type": "application/json"})  # fmt: skip


def assert_refused(response: Any, *statuses: int) -> None:
    assert response.status_code in (statuses or (422,)), (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert detail, "a refusal says why"
    # A stable code a client can act on without parsing the words.
    assert response.json()["code"] in {"bad_value", "body_too_large", "request_invalid", "validation_failed"}, (
        response.json()
    )


SLOT = "2030-03-05T15:00:00+00:00"

# (role, method, path template, raw JSON body): each answered 500 before.
JSON_CASES: list[tuple[str, str, str, str, str]] = [
    ("nan-policy", "admin", "PUT", "/api/v1/waitlist-policy", '{"urgency_weight": NaN}'),
    ("infinity-policy", "admin", "PUT", "/api/v1/waitlist-policy", '{"wait_weight": Infinity}'),
    ("neg-infinity", "admin", "PUT", "/api/v1/waitlist-policy", '{"fit_weight": -Infinity}'),
    ("float-overflow", "admin", "PUT", "/api/v1/waitlist-policy", '{"fit_weight": 1e999}'),
    ("surrogate-reason", "patient", "POST", "/api/v1/waitlists", '{"clinic_id": "{clinic}", "reason": "\\ud800"}'),
    ("surrogate-key", "patient", "POST", "/api/v1/waitlists", '{"clinic_id": "{clinic}", "\\udfff": 1}'),
    ("surrogate-login", "patient", "POST", "/api/v1/auth/token", '{"email": "a\\ud83d@x.example", "password": "p"}'),
    ("nul-reason", "patient", "POST", "/api/v1/waitlists", '{"clinic_id": "{clinic}", "reason": "a\\u0000b"}'),
    ("nul-email", "patient", "POST", "/api/v1/auth/token", '{"email": "a\\u0000@x.example", "password": "pw"}'),
    ("nul-time-off", "doctor", "POST", "/api/v1/providers/{provider}/time-off",
     '{"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T11:00:00Z", "reason": "\\u0000"}'),
    ("nul-clinic", "admin", "POST", "/api/v1/clinics",
     '{"name": "North\\u0000", "timezone": "America/New_York", "address": "x", "phone": "1"}'),
    ("year-9999-hold", "patient", "POST", "/api/v1/holds",
     '{"provider_id": "{provider}", "start": "9999-12-31T23:59:59-05:00"}'),
    ("year-1-book", "patient", "POST", "/api/v1/appointments",
     '{"provider_id": "{provider}", "start": "0001-01-01T00:00:00+05:00"}'),
    ("year-9999-reschedule", "patient", "POST", "/api/v1/appointments/{appointment}/reschedule",
     '{"start": "9999-12-31T23:00:00Z"}'),
    ("year-9999-series", "patient", "POST", "/api/v1/appointments/series/preview",
     '{"provider_id": "{provider}", "first_start": "' + SLOT + '", "until": "9999-12-31"}'),
    ("year-9999-time-off", "doctor", "POST", "/api/v1/providers/{provider}/time-off",
     '{"start": "9999-12-31T10:00:00Z", "end": "9999-12-31T23:59:59-10:00"}'),
    ("year-1-waitlist", "patient", "POST", "/api/v1/waitlists",
     '{"clinic_id": "{clinic}", "earliest_date": "0001-01-01"}'),
    ("year-9999-rule", "doctor", "PUT", "/api/v1/providers/{provider}/availability",
     '[{"clinic_id": "{clinic}", "weekday": 1, "start": "09:00", "end": "12:00", "valid_until": "9999-12-31"}]'),
    ("big-version", "patient", "POST", "/api/v1/holds/{appointment}/confirm", '{"version": ' + str(2**70) + "}"),
    ("big-urgency", "patient", "POST", "/api/v1/waitlists",
     '{"clinic_id": "{clinic}", "urgency": ' + str(10**30) + "}"),
    ("big-session", "doctor", "PUT", "/api/v1/providers/{provider}/availability",
     '[{"clinic_id": "{clinic}", "weekday": 1, "start": "09:00", "end": "12:00", "session_minutes": 1e400}]'),
    ("big-rule-int", "doctor", "PUT", "/api/v1/providers/{provider}/availability",
     '[{"clinic_id": "{clinic}", "weekday": ' + str(2**64) + ', "start": "09:00", "end": "12:00"}]'),
    ("big-series-count", "patient", "POST", "/api/v1/appointments/series/preview",
     '{"provider_id": "{provider}", "first_start": "' + SLOT + '", "count": ' + str(2**64) + "}"),
    ("big-reminder", "admin", "PUT", "/api/v1/notification-settings",
     '{"reminder_offsets_minutes": [' + str(2**80) + "]}"),
    ("huge-int-literal", "admin", "PUT", "/api/v1/notification-settings",
     '{"reminder_offsets_minutes": [' + "9" * 5000 + "]}"),
    ("deep-array", "patient", "POST", "/api/v1/waitlists", "[" * 5000 + "]" * 5000),
    ("deep-object", "admin", "PUT", "/api/v1/waitlist-policy", '{"a":' * 3000 + "1" + "}" * 3000),
    ("deep-unclosed", "patient", "POST", "/api/v1/auth/token", '{"email": ' + "[" * 100000),
    ("deep-in-windows", "patient", "POST", "/api/v1/waitlists",
     '{"clinic_id": "{clinic}", "windows": [' + '{"x": [' * 2000 + "]}" * 2000 + "]}"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "role", "method", "path", "body"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_hostile_json_is_a_4xx_and_writes_nothing(
    scene: Scene, client: TestClient, db: sa.Engine, case: str, role: str, method: str, path: str, body: str
) -> None:
    for key, value in scene.ids.items():
        path, body = path.replace("{" + key + "}", value), body.replace("{" + key + "}", value)
    before = row_counts(db)
    response = raw_json(client, method, path, body, scene.auth[role])
    assert_refused(response, 422, 413)
    assert row_counts(db) == before


QUERY_CASES: list[tuple[str, str, str]] = [
    ("nul-search", "patient", "/api/v1/providers?q=a%00b"),
    ("nul-specialty", "patient", "/api/v1/providers?specialty=%00"),
    ("nul-audit", "admin", "/api/v1/audit-events?entity_type=x%00"),
    ("nul-event-type", "admin", "/api/v1/notifications?event_type=%00"),
    ("nul-in-path", "patient", "/api/v1/clinics/%00"),
    ("nul-unsubscribe", "patient", "/api/v1/unsubscribe/abc%00def"),
    ("year-9999-slots", "patient",
     "/api/v1/providers/{provider}/slots?start=9999-12-31T00:00:00Z&end=9999-12-31T23:59:59-12:00"),
    ("year-1-slots", "patient",
     "/api/v1/providers/{provider}/slots?start=0001-01-01T00:00:00%2B14:00&end=0001-01-02T00:00:00Z"),
    ("year-9999-list", "admin", "/api/v1/appointments?start=9999-12-31T23:59:59-14:00"),
    ("year-1-free-before", "patient", "/api/v1/providers?free_before=0001-01-01"),
    ("year-9999-free-before", "patient", "/api/v1/providers?free_before=9999-12-31"),
    ("big-limit", "admin", "/api/v1/waitlists?limit=" + str(2**70)),
    ("big-page", "admin", "/api/v1/notifications?limit=" + str(10**40)),
    ("big-age", "admin", "/api/v1/waitlists?min_age_days=" + str(2**64)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "role", "path"), QUERY_CASES, ids=[c[0] for c in QUERY_CASES])
def test_hostile_path_and_query_is_a_4xx(scene: Scene, client: TestClient, db: sa.Engine, case: str, role: str,
                                         path: str) -> None:  # fmt: skip
    for key, value in scene.ids.items():
        path = path.replace("{" + key + "}", value)
    before = row_counts(db)
    response = client.post(path, headers=scene.auth[role]) if "unsubscribe" in path else client.get(
        path, headers=scene.auth[role])  # fmt: skip
    assert_refused(response)
    assert row_counts(db) == before


def test_nul_in_a_form_or_a_cancel_reason_is_refused(scene: Scene, client: TestClient, db: sa.Engine) -> None:
    before = row_counts(db)
    form_headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://testserver"}
    form = client.post("/auth/login", content=b"email=a%00b%40x.example&password=x", headers=form_headers,
                       follow_redirects=False)  # fmt: skip
    assert_refused(form)
    cancel = client.post(f"/api/v1/appointments/{scene.ids['appointment']}/cancel", json={"reason": "no\x00"},
                         headers=scene.auth["patient"])  # fmt: skip
    assert_refused(cancel)
    assert row_counts(db) == before


def test_a_body_over_the_limit_is_413(scene: Scene, client: TestClient, db: sa.Engine) -> None:
    before = row_counts(db)
    big = '{"reason": "' + "x" * (2 * 1024 * 1024) + '"}'
    response = raw_json(client, "POST", "/api/v1/waitlists", big, scene.auth["patient"])
    assert_refused(response, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"[" * 65536

    streamed = client.post("/api/v1/waitlists", content=chunks(), headers=scene.auth["patient"])
    assert_refused(streamed, 413)
    assert row_counts(db) == before


def test_good_input_still_goes_through(scene: Scene, client: TestClient) -> None:
    """The guards refuse only what they must: ordinary requests, unicode and nesting still work."""
    joined = client.post("/api/v1/waitlists", headers=scene.auth["patient"],
                         json={"clinic_id": scene.ids["clinic"], "reason": "Ängste, 不安 🙂",
                               "windows": [{"weekday": 1, "start": "09:00", "end": "12:00"}]})  # fmt: skip
    assert joined.status_code == 201, joined.text
    slots = client.get(f"/api/v1/providers/{scene.ids['provider']}/slots", headers=scene.auth["patient"],
                       params={"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00+00:00"})  # fmt: skip
    assert slots.status_code in (200, 422), slots.text  # 422: beyond the practice's horizon is a refusal, not a crash
    assert client.get("/api/v1/providers", params={"q": "Dr. Ö"}, headers=scene.auth["patient"]).status_code == 200


def test_depth_check_skips_brackets_inside_strings() -> None:
    check_json_depth(json.dumps({"text": "[" * 10000}).encode())
    check_json_depth(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    with pytest.raises(Exception, match="nested too deeply"):
        check_json_depth(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))


def test_the_validation_handler_never_crashes_on_what_it_echoes() -> None:
    """FastAPI's own 422 handler crashed echoing NaN or a lone surrogate; ours drops what cannot be encoded."""
    errors = [
        {"type": "x", "loc": ("body", "a"), "msg": "bad", "input": math.nan},
        {"type": "x", "loc": ("body", "b"), "msg": "bad", "input": {"k": "\ud800"}, "ctx": {"error": ValueError("v")}},
        {"type": "x", "loc": ("body", "c"), "msg": "bad", "input": "fine"},
    ]
    safe = safe_validation_errors(errors)
    json.dumps(safe, allow_nan=False).encode("utf-8")  # what JSONResponse does: no ValueError, no UnicodeError
    assert "input" not in safe[0] and "input" not in safe[1] and safe[2]["input"] == "fine"

    class Body(BaseModel):
        n: int

    bare = FastAPI()  # without the input guard: the handler alone must hold
    install_error_handlers(bare)

    @bare.post("/n")
    def _n(body: Body) -> dict[str, int]:
        return {"n": body.n}

    with TestClient(bare, raise_server_exceptions=False) as c:
        for text in ('{"n": NaN}', '{"n": Infinity}', '{"n": "\\ud800"}', '{"n": 1e999}'):
            response = c.post("/n", content=text, headers={"Content-Type": "application/json"})
            assert_refused(response)


# --- the database is down ---------------------------------------------------------------------------------


def test_database_down_is_503_json_with_retry_after(
    scene: Scene, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = backend.db.make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    monkeypatch.setattr(backend.db, "get_engine", lambda: dead)
    monkeypatch.setattr(backend.db, "get_system_engine", lambda: dead)  # logins and token checks: system scope
    try:
        for method, path, kwargs in [
            ("GET", "/api/v1/clinics", {"headers": scene.auth["admin"]}),
            ("GET", "/api/v1/appointments", {"headers": scene.auth["patient"]}),
            ("POST", "/api/v1/waitlists",
             {"headers": scene.auth["patient"], "json": {"clinic_id": scene.ids["clinic"]}}),
            ("POST", "/api/v1/auth/token", {"json": {"email": "admin@harbor.test", "password": "whatever"}}),
        ]:  # fmt: skip
            response = client.request(method, path, **kwargs)
            assert response.status_code == 503, (path, response.status_code, response.text[:300])
            assert response.headers["content-type"].startswith("application/json")
            assert int(response.headers["Retry-After"]) > 0
            assert "unavailable" in response.json()["detail"]
    finally:
        dead.dispose()


def test_pool_timeout_is_503(scene: Scene, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection busy (a saturated pool) answers 503 too, not 500."""
    from backend.settings import get_settings as settings

    tiny = sa.create_engine(settings().database_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    held = tiny.connect()
    monkeypatch.setattr(backend.db, "get_engine", lambda: tiny)
    try:
        response = client.get("/api/v1/clinics", headers=scene.auth["admin"])
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"]
    finally:
        held.close()
        tiny.dispose()

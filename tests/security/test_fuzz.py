"""A bounded property-based fuzz of every route, as every role: no response is a 5xx (invariant 6).

Schemathesis generates requests from the API's own OpenAPI document, both valid (positive) and invalid
(negative: wrong types, out-of-range values, unexpected strings), and each one is sent to the API served by
uvicorn with the token of a patient, a doctor and an admin. Path parameters are either real ids of the
practice (so requests reach the services) or whatever the generator makes. Every answer must be below 500,
and JSON with a `detail` when it is an error (429 from the rate limiter is never a failure; it is off here).

Bounded: a few examples per operation, mode and role (FUZZ_EXAMPLES); derandomized, so a run is reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import sqlalchemy as sa
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.api.app import api
from backend.models import metadata
from backend.settings import get_settings
from tests.conftest import free_port, served
from tests.factories import (
    TEST_PASSWORD,
    add_appointment,
    add_availability,
    add_waitlist_entry,
    local_start,
    make_practice,
    set_booking_policy,
    token_request,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
ROLES = ("patient", "doctor", "admin")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(get_settings(), "rate_limit_enabled", False)
        config = uvicorn.Config(
            api, host="127.0.0.1", port=free_port(), log_level="critical", lifespan="off", access_log=False
        )
        with served(config) as url:
            yield url


@pytest.fixture(scope="module")
def scene(engine: sa.Engine, server: str) -> Iterator[dict[str, Any]]:
    practice = make_practice("Harbor Mental Health", "harbor")
    add_availability(practice)
    set_booking_policy(practice, horizon_days=400)
    appointment = add_appointment(practice, local_start(3, 10))
    entry = add_waitlist_entry(practice)
    ids = {
        "clinic_id": str(practice.clinic.id),
        "provider_id": str(practice.provider.id),
        "patient_id": str(practice.patient.id),
        "appointment_id": str(appointment.id),
        "hold_id": str(appointment.id),
        "entry_id": str(entry.id),
    }
    yield {"practice": practice, "ids": ids}
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        # The audit tables refuse TRUNCATE (append-only triggers); replica mode skips triggers (superuser).
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def token(server: str, email: str) -> str:
    with httpx.Client(base_url=server) as client:
        response = client.post("/api/v1/auth/token", json=token_request(email, TEST_PASSWORD))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


SCHEMA = schemathesis.openapi.from_dict(api.openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]  # type: ignore[union-attr]


def _strategy(operation: Any, ids: dict[str, str]) -> Any:
    names = [p.name for p in operation.path_parameters]
    real = {name: ids[name] for name in names if name in ids}
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    options = [operation.as_strategy(generation_mode=mode) for mode in modes]
    if real:
        options += [operation.as_strategy(generation_mode=mode, path_parameters=real) for mode in modes]
    return st.one_of(options)


def _content_type(response: Any) -> str:
    values = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])
    return str(values[0] if isinstance(values, list) else values)


def fuzz_as(operation: Any, ids: dict[str, str], server: str, auth: dict[str, str], role: str) -> list[str]:
    """Run the operation's examples with one role's credentials; return what went wrong."""
    failures: list[str] = []
    session = requests.Session()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation, ids))
    def check(case: Any) -> None:
        response = case.call(base_url=server, session=session, headers={**(case.headers or {}), **auth}, timeout=30)
        status = response.status_code
        if status >= 500:
            failures.append(f"{role} {status} {case.as_curl_command()[:600]}\n{response.text[:300]}")
        elif status >= 400 and status != 429:
            if not _content_type(response).startswith("application/json"):
                failures.append(f"{role} non-JSON {status} {case.as_curl_command()[:400]}")
            elif "detail" not in response.json():
                failures.append(f"{role} no detail {status} {case.as_curl_command()[:400]}")

    try:
        check()
    finally:
        session.close()
    return failures


@pytest.mark.parametrize("operation", OPERATIONS, ids=[f"{op.method.upper()} {op.path}" for op in OPERATIONS])
def test_no_route_answers_5xx(operation: Any, scene: dict[str, Any], server: str) -> None:
    practice = scene["practice"]
    failures: list[str] = []
    for role in ROLES:
        # A fresh token per role and operation: a fuzzed logout must not turn the rest into 401s.
        auth = {"Authorization": f"Bearer {token(server, practice.emails[role])}", "Origin": server}
        failures += fuzz_as(operation, scene["ids"], server, auth, role)
    assert not failures, "\n\n".join(failures[:5])

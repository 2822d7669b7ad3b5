"""GET /appointments, /waitlists and /audit-events in each role's own scope; health, readiness, OpenAPI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.scheduling.models import AppointmentStatus
from backend.waitlist.models import EntryStatus
from tests.factories import (
    Practice,
    add_appointment,
    add_audit_event,
    add_patient,
    add_provider,
    add_waitlist_entry,
    bearer,
    future,
    make_practice,
)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


@dataclass
class Scene:
    harbor: Practice
    summit: Practice
    ids: dict[str, uuid.UUID]
    auth: dict[str, dict[str, str]]


@pytest.fixture
def scene(db: sa.Engine, client: TestClient) -> Scene:
    """Harbor: two doctors, two patients, appointments and entries across them; Summit: its own."""
    harbor = make_practice("Harbor Mental Health", "harbor")
    summit = make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))
    other_doc = add_provider(harbor, "Olive Other", clinic=harbor.clinic2)
    other_pat = add_patient(harbor, "Oscar Other")
    ids = {
        "mine_mine": add_appointment(harbor, future(days=1, hour=14)).id,  # our patient with our doctor
        "mine_other_doc": add_appointment(
            harbor, future(days=1, hour=16), provider=other_doc, clinic=harbor.clinic2
        ).id,
        "other_pat_mine": add_appointment(harbor, future(days=2, hour=14), patient=other_pat).id,
        "other_other": add_appointment(
            harbor, future(days=2, hour=16), patient=other_pat, provider=other_doc, clinic=harbor.clinic2
        ).id,
        "held_mine": add_appointment(harbor, future(days=3, hour=14), status=AppointmentStatus.HELD).id,
        "summit_appt": add_appointment(summit, future(days=1, hour=14)).id,
        "e_mine_mine": add_waitlist_entry(harbor).id,
        "e_mine_any": add_waitlist_entry(harbor, any_provider=True).id,
        "e_other_pat_mine": add_waitlist_entry(harbor, patient=other_pat, urgency=4).id,
        "e_other_other": add_waitlist_entry(harbor, patient=other_pat, provider=other_doc, clinic=harbor.clinic2).id,
        "e_done": add_waitlist_entry(harbor, status=EntryStatus.CANCELLED).id,
        "summit_entry": add_waitlist_entry(summit).id,
        "summit_any": add_waitlist_entry(summit, any_provider=True).id,
        "other_doc": other_doc.id,
    }
    auth = {role: bearer(client, email) for role, email in harbor.emails.items()}
    auth["summit_admin"] = bearer(client, summit.admin_user.email)
    return Scene(harbor, summit, ids, auth)


def _ids(client: TestClient, path: str, headers: dict[str, str], **params: object) -> set[uuid.UUID]:
    response = client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return {uuid.UUID(item["id"]) for item in response.json()}


def _pick(scene: Scene, *names: str) -> set[uuid.UUID]:
    return {scene.ids[n] for n in names}


# -- appointments --------------------------------------------------------------------------------------


def test_patient_sees_only_their_own_appointments(client: TestClient, scene: Scene) -> None:
    # Not another patient's, and not even their own hold (a hold is not yet an appointment to them).
    got = _ids(client, "/api/v1/appointments", scene.auth["patient"])
    assert got == _pick(scene, "mine_mine", "mine_other_doc")


def test_doctor_sees_only_their_own_schedule(client: TestClient, scene: Scene) -> None:
    got = _ids(client, "/api/v1/appointments", scene.auth["doctor"])
    assert got == _pick(scene, "mine_mine", "other_pat_mine", "held_mine")
    # Asking for a colleague's schedule narrows further instead of widening.
    assert _ids(client, "/api/v1/appointments", scene.auth["doctor"], provider_id=scene.ids["other_doc"]) == set()


def test_admin_sees_the_whole_practice_and_nothing_else(client: TestClient, scene: Scene) -> None:
    everything = _pick(scene, "mine_mine", "mine_other_doc", "other_pat_mine", "other_other", "held_mine")
    assert _ids(client, "/api/v1/appointments", scene.auth["admin"]) == everything
    assert _ids(client, "/api/v1/appointments", scene.auth["summit_admin"]) == _pick(scene, "summit_appt")


def test_appointment_filters(client: TestClient, scene: Scene) -> None:
    admin = scene.auth["admin"]
    in_clinic2 = _ids(client, "/api/v1/appointments", admin, clinic_id=scene.harbor.clinic2.id)
    assert in_clinic2 == _pick(scene, "mine_other_doc", "other_other")
    day2 = _ids(
        client,
        "/api/v1/appointments",
        admin,
        start=future(days=2, hour=0).isoformat(),
        end=future(days=3, hour=0).isoformat(),
    )
    assert day2 == _pick(scene, "other_pat_mine", "other_other")
    assert _ids(client, "/api/v1/appointments", admin, clinic_id=scene.summit.clinic.id) == set()


def test_appointment_view_carries_names_and_zone(client: TestClient, scene: Scene) -> None:
    (view,) = [
        v
        for v in client.get("/api/v1/appointments", headers=scene.auth["patient"]).json()
        if v["id"] == str(scene.ids["mine_mine"])
    ]
    assert view["provider_name"] == f"{scene.harbor.provider.full_name}, MD"
    assert view["patient_name"] == scene.harbor.patient.full_name
    assert view["clinic_timezone"] == "America/New_York"
    assert view["status"] == "booked"


def test_appointment_time_window_needs_an_offset(client: TestClient, scene: Scene) -> None:
    response = client.get("/api/v1/appointments", headers=scene.auth["admin"], params={"start": "2026-03-01T09:00:00"})
    assert response.status_code == 422
    assert "time zone offset" in response.json()["detail"]
    backwards = client.get(
        "/api/v1/appointments",
        headers=scene.auth["admin"],
        params={"start": "2026-03-02T09:00:00Z", "end": "2026-03-01T09:00:00Z"},
    )
    assert backwards.status_code == 422


# -- waitlists -----------------------------------------------------------------------------------------


def test_patient_sees_only_their_own_entries(client: TestClient, scene: Scene) -> None:
    got = _ids(client, "/api/v1/waitlists", scene.auth["patient"])
    assert got == _pick(scene, "e_mine_mine", "e_mine_any", "e_done")


def test_doctor_sees_their_entries_and_any_provider_ones(client: TestClient, scene: Scene) -> None:
    got = _ids(client, "/api/v1/waitlists", scene.auth["doctor"])
    assert got == _pick(scene, "e_mine_mine", "e_mine_any", "e_other_pat_mine", "e_done")


def test_admin_sees_every_entry_of_the_practice(client: TestClient, scene: Scene) -> None:
    got = _ids(client, "/api/v1/waitlists", scene.auth["admin"])
    assert got == _pick(scene, "e_mine_mine", "e_mine_any", "e_other_pat_mine", "e_other_other", "e_done")
    summit = _ids(client, "/api/v1/waitlists", scene.auth["summit_admin"])
    assert summit == _pick(scene, "summit_entry", "summit_any")


def test_waitlist_filters_and_order(client: TestClient, scene: Scene) -> None:
    admin = scene.auth["admin"]
    waiting = client.get("/api/v1/waitlists", headers=admin, params={"status": "waiting"}).json()
    assert {uuid.UUID(e["id"]) for e in waiting} == _pick(
        scene, "e_mine_mine", "e_mine_any", "e_other_pat_mine", "e_other_other"
    )
    assert waiting[0]["id"] == str(scene.ids["e_other_pat_mine"])  # the most urgent first
    assert _ids(client, "/api/v1/waitlists", admin, clinic_id=scene.harbor.clinic2.id) == _pick(scene, "e_other_other")
    assert client.get("/api/v1/waitlists", headers=admin, params={"status": "bogus"}).status_code == 422


# -- audit events --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_audit_events_are_admin_only(client: TestClient, scene: Scene, role: str) -> None:
    response = client.get("/api/v1/audit-events", headers=scene.auth[role])
    assert response.status_code == 403
    assert response.json()["detail"]


def test_audit_events_stay_in_their_practice(client: TestClient, scene: Scene) -> None:
    ours = add_audit_event(scene.harbor, "test.ours")
    theirs = add_audit_event(scene.summit, "test.theirs")
    events = client.get("/api/v1/audit-events", headers=scene.auth["admin"], params={"limit": 500}).json()
    ids = {uuid.UUID(e["id"]) for e in events}
    assert ours.id in ids and theirs.id not in ids
    assert {e["tenant_id"] for e in events} == {str(scene.harbor.tenant_id)}
    # Logins are audited too (one per bearer token the fixture obtained).
    assert {"user.login", "test.ours"} <= {e["action"] for e in events}


# -- health, readiness, OpenAPI ------------------------------------------------------------------------


def test_health(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_database_and_redis(client: TestClient, db: sa.Engine) -> None:
    response = client.get("/api/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"


def test_openapi_lists_the_contract(client: TestClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/v1/clinics", "/api/v1/clinics/{clinic_id}", "/api/v1/auth/token", "/api/v1/appointments"):
        assert path in paths, path
    assert {"get", "post"} <= set(paths["/api/v1/clinics"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/clinics/{clinic_id}"])
    assert "/auth/login" not in paths  # the browser form routes are not part of the API contract

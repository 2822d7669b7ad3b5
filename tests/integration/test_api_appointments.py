"""The REST routes for slots, booking, holds, cancellation, rescheduling, attendance and weekly series."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.identity.service import issue_token
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from tests.factories import (
    Practice,
    add_appointment,
    add_availability,
    add_patient,
    add_user,
    bearer,
    local_start,
    make_practice,
    rows,
    set_booking_policy,
)

NY = ZoneInfo("America/New_York")


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


@dataclass
class Scene:
    harbor: Practice
    summit: Practice
    auth: dict[str, dict[str, str]]
    other_patient_id: uuid.UUID


@pytest.fixture
def scene(db: sa.Engine, client: TestClient) -> Scene:
    harbor = make_practice("Harbor Mental Health", "harbor")
    summit = make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))
    add_availability(harbor)
    add_availability(summit)
    set_booking_policy(harbor, horizon_days=400)
    other = add_patient(harbor, "Oscar Other")
    user = add_user(harbor, "oscar@harbor.test", Role.PATIENT, patient_id=other.id)
    # One real login; the other tokens are signed directly (argon2 is slow on purpose).
    auth = {"patient": bearer(client, harbor.patient_user.email)}
    for name, actor in {
        "doctor": harbor.doctor,
        "admin": harbor.admin,
        "other_patient": Actor(tenant_id=harbor.tenant_id, role=Role.PATIENT, user_id=user.id, patient_id=other.id),
        "summit_admin": summit.admin,
        "summit_patient": summit.patient_actor,
        "summit_doctor": summit.doctor,
    }.items():
        auth[name] = {"Authorization": f"Bearer {issue_token(actor)[0]}"}
    return Scene(harbor, summit, auth, other.id)


def _iso(value: datetime | str) -> str:
    return value if isinstance(value, str) else value.isoformat()


def _book(client: TestClient, s: Scene, who: str = "patient", start: datetime | str | None = None, **body: Any) -> Any:
    body = {"provider_id": str(s.harbor.provider.id), "start": _iso(start or local_start(3, 10)), **body}
    return client.post("/api/v1/appointments", json=body, headers=s.auth[who])


def _booked(client: TestClient, s: Scene, **kwargs: Any) -> dict[str, Any]:
    response = _book(client, s, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _detail(response: Any, status: int) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["detail"], body
    return body["detail"]


# -- slots ----------------------------------------------------------------------------------------------


def test_slots_list_free_held_and_booked(client: TestClient, scene: Scene) -> None:
    _booked(client, scene, start=local_start(3, 10))
    hold = client.post(
        "/api/v1/holds",
        json={"provider_id": str(scene.harbor.provider.id), "start": _iso(local_start(3, 11))},
        headers=scene.auth["other_patient"],
    )
    assert hold.status_code == 201, hold.text
    params = {"start": _iso(local_start(3, 9)), "end": _iso(local_start(3, 12))}
    response = client.get(
        f"/api/v1/providers/{scene.harbor.provider.id}/slots", params=params, headers=scene.auth["doctor"]
    )
    assert response.status_code == 200, response.text
    slots = response.json()
    assert [(datetime.fromisoformat(x["start"]).astimezone(NY).hour, x["status"]) for x in slots] == [
        (9, "free"),
        (10, "booked"),
        (11, "held"),
    ]
    assert slots[0]["timezone"] == "America/New_York" and slots[0]["modality"] == "in_person"
    free_only = client.get(
        f"/api/v1/providers/{scene.harbor.provider.id}/slots",
        params={**params, "include_taken": "false"},
        headers=scene.auth["patient"],
    )
    assert [x["status"] for x in free_only.json()] == ["free"]


def test_slots_errors(client: TestClient, scene: Scene) -> None:
    url = f"/api/v1/providers/{scene.harbor.provider.id}/slots"
    params = {"start": _iso(local_start(3, 9)), "end": _iso(local_start(3, 12))}
    assert client.get(url, params=params).status_code == 401
    detail = _detail(client.get(url, params={**params, "end": params["start"]}, headers=scene.auth["patient"]), 422)
    assert "end must be after start" in detail
    naive = {"start": "2027-01-04T09:00:00", "end": "2027-01-05T09:00:00"}
    assert "time zone offset" in _detail(client.get(url, params=naive, headers=scene.auth["patient"]), 422)
    foreign = f"/api/v1/providers/{scene.summit.provider.id}/slots"
    missing = f"/api/v1/providers/{uuid.uuid4()}/slots"
    assert _detail(client.get(foreign, params=params, headers=scene.auth["patient"]), 404) == _detail(
        client.get(missing, params=params, headers=scene.auth["patient"]), 404
    )


# -- booking --------------------------------------------------------------------------------------------


def test_booking_is_201_with_the_appointment(client: TestClient, scene: Scene) -> None:
    body = _booked(client, scene)
    assert body["status"] == "booked" and body["patient_id"] == str(scene.harbor.patient.id)
    assert datetime.fromisoformat(body["start_at"]) == local_start(3, 10)
    assert body["version"] == 1 and body["series_id"] is None and body["hold_expires_at"] is None
    got = client.get(f"/api/v1/appointments/{body['id']}", headers=scene.auth["patient"])
    assert got.status_code == 200 and got.json() == body
    actions = [e.action for e in rows(scene.harbor, AuditEvent, entity_id=uuid.UUID(body["id"]))]
    assert actions == ["appointment.booked"]


def test_booking_errors(client: TestClient, scene: Scene) -> None:
    assert client.post("/api/v1/appointments", json={}).status_code == 401
    bad_token = {"Authorization": "Bearer not-a-token"}
    assert _book(client, scene).status_code == 201
    assert client.post("/api/v1/appointments", json={}, headers=bad_token).status_code == 401
    assert "taken" in _detail(_book(client, scene, "other_patient"), 409)
    assert _detail(_book(client, scene, "doctor", patient_id=str(scene.harbor.patient.id)), 403)
    assert _detail(_book(client, scene, patient_id=str(scene.other_patient_id)), 403)
    admin = _book(client, scene, "admin", start=local_start(3, 12))
    assert "patient_id" in _detail(admin, 422) and admin.json()["field"] == "patient_id"
    past = _book(client, scene, start=local_start(-1, 10))
    assert "past" in _detail(past, 422) and past.json()["field"] == "start"
    assert "No session" in _detail(_book(client, scene, start=local_start(3, 10, minute=15)), 422)
    assert "in person" in _detail(_book(client, scene, start=local_start(3, 13), modality="telehealth"), 422)
    # Malformed bodies are 422s with FastAPI's detail list.
    assert isinstance(_detail(_book(client, scene, start="tomorrow"), 422), list)
    assert isinstance(_detail(_book(client, scene, modality="video"), 422), list)
    assert isinstance(_detail(_book(client, scene, provider_id="nope"), 422), list)
    foreign = _book(client, scene, provider_id=str(scene.summit.provider.id), start=local_start(3, 14))
    missing = _book(client, scene, provider_id=str(uuid.uuid4()), start=local_start(3, 14))
    assert _detail(foreign, 404) == _detail(missing, 404)
    # One booking (the first) and its audit event: every refusal wrote nothing.
    assert len(rows(scene.harbor, Appointment)) == 1
    assert len(rows(scene.harbor, AuditEvent, action="appointment.booked")) == 1


def test_admin_books_for_a_patient(client: TestClient, scene: Scene) -> None:
    body = _booked(client, scene, who="admin", patient_id=str(scene.other_patient_id))
    assert body["patient_id"] == str(scene.other_patient_id)
    foreign_patient = _book(client, scene, "admin", start=local_start(3, 11), patient_id=str(scene.summit.patient.id))
    assert _detail(foreign_patient, 404) == "patient not found"


def test_patient_busy_with_another_provider_is_409(client: TestClient, scene: Scene) -> None:
    from tests.factories import add_provider

    other_doc = add_provider(scene.harbor, "Olive Other")
    add_availability(scene.harbor, provider=other_doc)
    _booked(client, scene)
    response = _book(client, scene, provider_id=str(other_doc.id))
    assert "already has an appointment" in _detail(response, 409)


def test_idempotency_key_replays_the_first_booking(client: TestClient, scene: Scene) -> None:
    headers = {**scene.auth["patient"], "Idempotency-Key": "abc-123"}
    body = {"provider_id": str(scene.harbor.provider.id), "start": _iso(local_start(3, 10))}
    first = client.post("/api/v1/appointments", json=body, headers=headers)
    again = client.post("/api/v1/appointments", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/api/v1/appointments", json={**body, "start": _iso(local_start(3, 11))}, headers=headers)
    assert "different booking" in _detail(other, 422)
    too_long = client.post("/api/v1/appointments", json=body, headers={**headers, "Idempotency-Key": "x" * 101})
    assert too_long.status_code == 422
    assert len(rows(scene.harbor, Appointment)) == 1


# -- reading, cancelling, rescheduling, attendance -----------------------------------------------------


def test_reading_another_ones_appointment_is_404(client: TestClient, scene: Scene) -> None:
    mine = _booked(client, scene)["id"]
    theirs = add_appointment(scene.summit, local_start(3, 10)).id
    for who in ("other_patient", "summit_admin", "summit_patient"):
        assert _detail(client.get(f"/api/v1/appointments/{mine}", headers=scene.auth[who]), 404)
    for who in ("patient", "doctor", "admin"):
        missing = client.get(f"/api/v1/appointments/{uuid.uuid4()}", headers=scene.auth[who])
        foreign = client.get(f"/api/v1/appointments/{theirs}", headers=scene.auth[who])
        assert _detail(foreign, 404) == _detail(missing, 404)
    assert client.get(f"/api/v1/appointments/{mine}").status_code == 401
    assert client.get("/api/v1/appointments/not-a-uuid", headers=scene.auth["patient"]).status_code == 422


def test_cancel(client: TestClient, scene: Scene) -> None:
    appointment_id = _booked(client, scene)["id"]
    url = f"/api/v1/appointments/{appointment_id}/cancel"
    assert client.post(url, json={}).status_code == 401
    for who in ("other_patient", "summit_admin"):
        assert _detail(client.post(url, json={}, headers=scene.auth[who]), 404) == "appointment not found"
    assert isinstance(_detail(client.post(url, json={"reason": "x" * 501}, headers=scene.auth["patient"]), 422), list)
    response = client.post(url, json={"reason": "better"}, headers=scene.auth["patient"])
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert "already cancelled" in _detail(client.post(url, headers=scene.auth["patient"]), 409)
    soon = add_appointment(scene.harbor, utcnow() + timedelta(hours=2)).id
    late = client.post(f"/api/v1/appointments/{soon}/cancel", headers=scene.auth["patient"])
    assert late.status_code == 200 and late.json()["status"] == "late_cancelled"


def test_reschedule(client: TestClient, scene: Scene) -> None:
    appointment_id = _booked(client, scene)["id"]
    _booked(client, scene, who="other_patient", start=local_start(3, 11))
    url = f"/api/v1/appointments/{appointment_id}/reschedule"
    assert "taken" in _detail(
        client.post(url, json={"start": _iso(local_start(3, 11))}, headers=scene.auth["patient"]), 409
    )
    assert _detail(client.post(url, json={"start": _iso(local_start(3, 12))}, headers=scene.auth["summit_admin"]), 404)
    assert "No session" in _detail(
        client.post(url, json={"start": _iso(local_start(3, 12, minute=5))}, headers=scene.auth["patient"]), 422
    )
    moved = client.post(url, json={"start": _iso(local_start(3, 12))}, headers=scene.auth["patient"])
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["start_at"]) == local_start(3, 12)
    assert moved.json()["id"] != appointment_id
    old = client.get(f"/api/v1/appointments/{appointment_id}", headers=scene.auth["patient"]).json()
    assert old["status"] == "cancelled"


def test_attendance(client: TestClient, scene: Scene) -> None:
    upcoming = _booked(client, scene)["id"]
    started = add_appointment(scene.harbor, utcnow() - timedelta(minutes=20)).id

    def mark(appointment_id: Any, who: str, outcome: str = "completed") -> Any:
        return client.post(
            f"/api/v1/appointments/{appointment_id}/attendance", json={"outcome": outcome}, headers=scene.auth[who]
        )

    assert "started" in _detail(mark(upcoming, "doctor"), 422)
    assert _detail(mark(started, "patient"), 403)
    assert _detail(mark(started, "summit_admin"), 404)
    assert isinstance(_detail(mark(started, "doctor", "late"), 422), list)
    response = mark(started, "doctor")
    assert response.status_code == 200 and response.json()["status"] == "completed"
    assert mark(started, "admin", "no_show").json()["status"] == "no_show"


# -- holds ----------------------------------------------------------------------------------------------


def test_hold_confirm_release(client: TestClient, scene: Scene) -> None:
    body = {"provider_id": str(scene.harbor.provider.id), "start": _iso(local_start(3, 10))}
    hold = client.post("/api/v1/holds", json=body, headers=scene.auth["patient"])
    assert hold.status_code == 201 and hold.json()["status"] == "held"
    assert "taken" in _detail(client.post("/api/v1/holds", json=body, headers=scene.auth["other_patient"]), 409)
    assert "taken" in _detail(_book(client, scene, "other_patient"), 409)
    hold_id, version = hold.json()["id"], hold.json()["version"]
    confirm = f"/api/v1/holds/{hold_id}/confirm"
    assert _detail(client.post(confirm, json={"version": version}, headers=scene.auth["other_patient"]), 404)
    assert _detail(client.post(confirm, json={"version": version}, headers=scene.auth["doctor"]), 403)
    assert isinstance(_detail(client.post(confirm, json={"version": 0}, headers=scene.auth["patient"]), 422), list)
    done = client.post(confirm, json={"version": version}, headers=scene.auth["patient"])
    assert done.status_code == 200 and done.json()["status"] == "booked"
    assert "already confirmed" in _detail(
        client.post(confirm, json={"version": version}, headers=scene.auth["patient"]), 409
    )

    second = client.post(
        "/api/v1/holds", json={**body, "start": _iso(local_start(3, 11))}, headers=scene.auth["patient"]
    ).json()
    assert _detail(client.delete(f"/api/v1/holds/{second['id']}", headers=scene.auth["summit_admin"]), 404)
    released = client.delete(f"/api/v1/holds/{second['id']}", headers=scene.auth["patient"])
    assert released.status_code == 204 and released.content == b""
    assert "no hold" in _detail(client.delete(f"/api/v1/holds/{second['id']}", headers=scene.auth["patient"]), 409)
    assert client.delete(f"/api/v1/holds/{second['id']}").status_code == 401


# -- series ---------------------------------------------------------------------------------------------


def _ny(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=NY).astimezone(UTC)


def _series_body(s: Scene, **extra: Any) -> dict[str, Any]:
    return {"provider_id": str(s.harbor.provider.id), "first_start": _iso(_ny(date(2027, 3, 1))), "count": 4, **extra}


def test_series_preview_and_book(client: TestClient, scene: Scene) -> None:
    add_appointment(scene.harbor, _ny(date(2027, 3, 15)), patient=add_patient(scene.harbor, "Early Bird"))
    preview = client.post(
        "/api/v1/appointments/series/preview", json=_series_body(scene), headers=scene.auth["patient"]
    )
    assert preview.status_code == 200, preview.text
    assert [(o["available"], o["reason"]) for o in preview.json()] == [
        (True, ""),
        (True, ""),
        (False, "Already booked"),
        (True, ""),
    ]
    hours = [datetime.fromisoformat(o["start"]).astimezone(UTC).hour for o in preview.json()]
    assert hours == [15, 15, 14, 14]  # 10:00 New York on both sides of 2027-03-14

    refused = client.post("/api/v1/appointments/series", json=_series_body(scene), headers=scene.auth["patient"])
    assert "2027-03-15 (Already booked)" in _detail(refused, 409)
    assert len(rows(scene.harbor, Appointment)) == 1

    booked = client.post(
        "/api/v1/appointments/series", json=_series_body(scene, skip_unavailable=True), headers=scene.auth["patient"]
    )
    assert booked.status_code == 201, booked.text
    body = booked.json()
    assert len(body["booked"]) == 3 and len(body["skipped"]) == 1
    assert {a["series_id"] for a in body["booked"]} == {body["series_id"]}
    assert body["skipped"][0]["reason"] == "Already booked"


def test_series_errors(client: TestClient, scene: Scene) -> None:
    url = "/api/v1/appointments/series"
    assert client.post(url, json=_series_body(scene)).status_code == 401
    assert client.post(f"{url}/preview", json=_series_body(scene)).status_code == 401
    assert "1 to 52" in _detail(
        client.post(url, json=_series_body(scene, count=60), headers=scene.auth["patient"]), 422
    )
    both = _series_body(scene, until="2027-04-01")
    assert "either" in _detail(client.post(f"{url}/preview", json=both, headers=scene.auth["patient"]), 422)
    weeks = _series_body(scene, every_weeks=3)
    assert "every_weeks" in _detail(client.post(url, json=weeks, headers=scene.auth["patient"]), 422)
    assert _detail(client.post(url, json=_series_body(scene), headers=scene.auth["doctor"]), 403)
    foreign = _series_body(scene, provider_id=str(scene.summit.provider.id))
    missing = _series_body(scene, provider_id=str(uuid.uuid4()))
    assert _detail(client.post(url, json=foreign, headers=scene.auth["patient"]), 404) == _detail(
        client.post(url, json=missing, headers=scene.auth["patient"]), 404
    )
    assert isinstance(_detail(client.post(url, json={"count": 2}, headers=scene.auth["patient"]), 422), list)
    assert rows(scene.harbor, Appointment) == []


def test_cancel_series(client: TestClient, scene: Scene) -> None:
    booked = client.post("/api/v1/appointments/series", json=_series_body(scene), headers=scene.auth["patient"])
    ids = [a["id"] for a in booked.json()["booked"]]
    url = "/api/v1/appointments/{}/cancel-series"
    assert client.post(url.format(ids[1]), json={"scope": "this"}).status_code == 401
    for who in ("other_patient", "summit_admin"):
        assert _detail(client.post(url.format(ids[1]), json={"scope": "this"}, headers=scene.auth[who]), 404)
    bad_scope = client.post(url.format(ids[1]), json={"scope": "everything"}, headers=scene.auth["patient"])
    assert isinstance(_detail(bad_scope, 422), list)
    this = client.post(url.format(ids[1]), json={"scope": "this", "reason": "trip"}, headers=scene.auth["patient"])
    assert this.status_code == 200 and [a["id"] for a in this.json()] == [ids[1]]
    following = client.post(url.format(ids[2]), headers=scene.auth["patient"])  # "following" by default
    assert following.status_code == 200
    assert [a["id"] for a in following.json()] == ids[2:]
    assert {a["status"] for a in following.json()} == {"cancelled"}
    assert "already cancelled" in _detail(
        client.post(url.format(ids[1]), json={"scope": "this"}, headers=scene.auth["patient"]), 409
    )
    statuses = {str(a.id): a.status for a in rows(scene.harbor, Appointment)}
    assert [statuses[i] for i in ids] == [
        AppointmentStatus.BOOKED,
        AppointmentStatus.CANCELLED,
        AppointmentStatus.CANCELLED,
        AppointmentStatus.CANCELLED,
    ]


def test_series_routes_are_in_the_openapi_schema(client: TestClient, scene: Scene) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/appointments/series", "/api/v1/appointments/series/preview"} <= set(paths)
    assert "post" in paths["/api/v1/appointments/{appointment_id}/cancel-series"]


# -- the request's unit of work ------------------------------------------------------------------------------


def test_each_requests_unit_of_work_gives_its_connection_back_and_keeps_nothing_uncommitted(
    client: TestClient, scene: Scene, app_engine: sa.Engine
) -> None:
    """The unit of work of a request ends on the event loop when it never touched the database (a search answered
    from the cache) and in the thread pool when it did: either way no connection stays checked out, and a refused
    change leaves nothing behind."""
    checkouts: list[object] = []

    def note(*args: object) -> None:
        checkouts.append(args)

    sa.event.listen(app_engine, "checkout", note)
    try:
        headers = scene.auth["patient"]
        assert client.get("/api/v1/providers", headers=headers).status_code == 200
        assert app_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        checkouts.clear()
        assert client.get("/api/v1/providers", headers=headers).status_code == 200
        assert checkouts == []  # answered from the cache: the database was never asked
        _booked(client, scene)
        assert app_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        before = rows(scene.harbor, AuditEvent)
        refused = _book(client, scene)  # the same slot again: read, then refused
        assert refused.status_code == 409
        assert checkouts != []
        assert app_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert len(rows(scene.harbor, Appointment)) == 1
        assert len(rows(scene.harbor, AuditEvent)) == len(before)
    finally:
        sa.event.remove(app_engine, "checkout", note)

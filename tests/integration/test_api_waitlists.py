"""The waitlist REST routes: status codes, bodies, role scopes, and another practice's ids as 404."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.types import utcnow
from backend.waitlist.models import EntryStatus, WaitlistEntry, WaitlistPolicy
from tests.factories import (
    Practice,
    add_patient,
    add_provider,
    add_waitlist_entry,
    bearer,
    make_practice,
    rows,
)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


@dataclass
class Scene:
    harbor: Practice
    summit: Practice
    auth: dict[str, dict[str, str]]
    summit_entry: uuid.UUID


@pytest.fixture
def scene(db: sa.Engine, client: TestClient) -> Scene:
    harbor = make_practice("Harbor Mental Health", "harbor")
    summit = make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))
    auth = {role: bearer(client, email) for role, email in harbor.emails.items()}
    auth["summit_admin"] = bearer(client, summit.admin_user.email)
    return Scene(harbor, summit, auth, add_waitlist_entry(summit).id)


def _join(client: TestClient, scene: Scene, role: str = "patient", **body: object) -> dict[str, object]:
    body = {"clinic_id": str(scene.harbor.clinic.id), "provider_id": str(scene.harbor.provider.id), **body}
    response = client.post("/api/v1/waitlists", json=body, headers=scene.auth[role])
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_join_read_confirm_leave(client: TestClient, scene: Scene) -> None:
    windows = [{"weekday": 2, "start": "10:00", "end": "12:00"}]
    created = _join(client, scene, windows=windows, urgency=3, reason="prefers mornings", modality="in_person")
    assert created["status"] == "waiting" and created["urgency"] == 3
    assert created["reason"] == "prefers mornings" and created["preferred_windows"] == windows
    assert created["position"] == 1 and created["position_band"] == "Near the top"
    assert created["timezone"] == "America/New_York" and created["live_offer"] is None
    assert created["reasons"][0] == "Priority urgency (+30)" and created["score"] == pytest.approx(30, abs=0.01)
    entry_id = created["id"]
    patient = scene.auth["patient"]

    got = client.get(f"/api/v1/waitlists/{entry_id}", headers=patient)
    assert got.status_code == 200 and got.json()["id"] == entry_id

    confirmed = client.post(f"/api/v1/waitlists/{entry_id}/confirm", headers=patient)
    assert confirmed.status_code == 200 and confirmed.json()["expires_at"] >= created["expires_at"]  # type: ignore[operator]

    left = client.delete(f"/api/v1/waitlists/{entry_id}", headers=patient)
    assert left.status_code == 200 and left.json()["status"] == "cancelled" and left.json()["position"] is None
    again = client.delete(f"/api/v1/waitlists/{entry_id}", headers=patient)
    assert again.status_code == 409
    actions = sorted(e.action for e in rows(scene.harbor, AuditEvent, entity_type="waitlist_entry"))
    assert actions == ["waitlist.cancelled", "waitlist.confirmed", "waitlist.joined"]


def test_staff_remove_and_join_for_a_patient(client: TestClient, scene: Scene) -> None:
    other = add_patient(scene.harbor, "Oscar Other")
    created = _join(client, scene, "admin", patient_id=str(other.id), urgency=4)
    assert created["patient_id"] == str(other.id)
    removed = client.delete(f"/api/v1/waitlists/{created['id']}", headers=scene.auth["doctor"])
    assert removed.status_code == 200 and removed.json()["status"] == "removed"
    # A patient may not name someone else, nor mark themself urgent.
    forbidden = client.post(
        "/api/v1/waitlists",
        json={"clinic_id": str(scene.harbor.clinic.id), "patient_id": str(other.id)},
        headers=scene.auth["patient"],
    )
    assert forbidden.status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "detail", "code"),
    [
        (
            {"windows": [{"weekday": 1, "start": "12:00", "end": "11:00"}]},
            422,
            "window 1: a window must end",
            "waitlist.window_invalid",
        ),
        ({"urgency": 4}, 422, "urgency 4 (urgent) is set by the practice", "validation_failed"),
        ({"modality": "fax"}, 422, "modality must be one of", "validation_failed"),
        ({"clinic_id": str(uuid.uuid4())}, 404, "clinic not found", "not_found"),
        ({"surprise": 1}, 422, None, "request_invalid"),
        ({"reason": "x" * 501}, 422, None, None),
    ],
)
def test_invalid_join(
    client: TestClient, scene: Scene, body: dict[str, object], status: int, detail: str, code: str | None
) -> None:
    full = {"clinic_id": str(scene.harbor.clinic.id), "provider_id": str(scene.harbor.provider.id), **body}
    response = client.post("/api/v1/waitlists", json=full, headers=scene.auth["patient"])
    assert response.status_code == status, response.text
    if detail:
        assert detail in response.json()["detail"]
    if code:
        assert response.json()["code"] == code
    assert rows(scene.harbor, WaitlistEntry) == []


def test_duplicate_join_is_409(client: TestClient, scene: Scene) -> None:
    _join(client, scene)
    response = client.post(
        "/api/v1/waitlists",
        json={"clinic_id": str(scene.harbor.clinic.id), "provider_id": str(scene.harbor.provider.id)},
        headers=scene.auth["patient"],
    )
    assert response.status_code == 409 and response.json()["detail"] == "You are already on this waitlist"
    assert response.json()["code"] == "waitlist.already_on"


def test_list_scope_per_role_and_filters(client: TestClient, scene: Scene) -> None:
    h = scene.harbor
    colleague = add_provider(h, "Colleague", clinic=h.clinic2)
    stranger = add_patient(h, "Stranger")
    mine = add_waitlist_entry(h, urgency=3)
    any_provider = add_waitlist_entry(h, any_provider=True)
    strangers = add_waitlist_entry(h, patient=stranger)
    elsewhere = add_waitlist_entry(h, patient=stranger, provider=colleague, clinic=h.clinic2)
    with UnitOfWork(h.system) as uow:
        stored = uow.session.get(WaitlistEntry, mine.id)
        assert stored is not None
        stored.created_at = utcnow() - timedelta(days=20)
        uow.commit()

    def ids(role: str, **params: object) -> set[uuid.UUID]:
        response = client.get("/api/v1/waitlists", headers=scene.auth[role], params=params)
        assert response.status_code == 200, response.text
        return {uuid.UUID(v["id"]) for v in response.json()}

    assert ids("patient") == {mine.id, any_provider.id}
    assert ids("doctor") == {mine.id, any_provider.id, strangers.id}
    assert ids("admin") == {mine.id, any_provider.id, strangers.id, elsewhere.id}
    assert ids("summit_admin") == {scene.summit_entry}
    assert ids("admin", urgency=3) == {mine.id}
    assert ids("admin", min_age_days=10) == {mine.id}
    assert ids("admin", clinic_id=h.clinic2.id) == {elsewhere.id}
    assert ids("admin", provider_id=colleague.id, status="waiting") == {elsewhere.id}
    assert ids("admin", status="cancelled") == set()
    assert client.get("/api/v1/waitlists", headers=scene.auth["admin"], params={"urgency": 9}).status_code == 422
    # Another patient's entry is invisible to a patient, a colleague's to a doctor.
    assert client.get(f"/api/v1/waitlists/{strangers.id}", headers=scene.auth["patient"]).status_code == 404
    assert client.get(f"/api/v1/waitlists/{elsewhere.id}", headers=scene.auth["doctor"]).status_code == 404
    assert client.get("/api/v1/waitlists").status_code == 401


def test_other_practice_is_404_on_every_route(client: TestClient, scene: Scene) -> None:
    theirs = scene.summit_entry
    their_clinic = scene.summit.clinic.id
    for role in ("patient", "doctor", "admin"):
        headers = scene.auth[role]
        for method, path in (
            ("GET", f"/api/v1/waitlists/{theirs}"),
            ("DELETE", f"/api/v1/waitlists/{theirs}"),
            ("POST", f"/api/v1/waitlists/{theirs}/confirm"),
        ):
            foreign = client.request(method, path, headers=headers)
            missing = client.request(method, path.replace(str(theirs), str(uuid.uuid4())), headers=headers)
            assert foreign.status_code == missing.status_code == 404, (role, method, path)
            assert foreign.json() == missing.json()
    admin = scene.auth["admin"]
    for method, body in (("GET", None), ("PUT", {"offers_per_batch": 3}), ("DELETE", None)):
        foreign = client.request(method, f"/api/v1/clinics/{their_clinic}/waitlist-policy", headers=admin, json=body)
        assert foreign.status_code == 404 and foreign.json()["detail"] == "clinic not found"
    join = {"clinic_id": str(their_clinic)}
    assert client.post("/api/v1/waitlists", json=join, headers=scene.auth["patient"]).status_code == 404
    join = {"clinic_id": str(scene.harbor.clinic.id), "provider_id": str(scene.summit.provider.id)}
    assert client.post("/api/v1/waitlists", json=join, headers=scene.auth["patient"]).status_code == 404
    join = {"clinic_id": str(scene.harbor.clinic.id), "patient_id": str(scene.summit.patient.id)}
    assert client.post("/api/v1/waitlists", json=join, headers=admin).status_code == 404
    (entry,) = rows(scene.summit, WaitlistEntry)
    assert entry.status == EntryStatus.WAITING
    assert rows(scene.summit, WaitlistPolicy) == []


def test_policy_routes(client: TestClient, scene: Scene) -> None:
    admin = scene.auth["admin"]
    clinic_path = f"/api/v1/clinics/{scene.harbor.clinic.id}/waitlist-policy"
    assert client.get("/api/v1/waitlist-policy", headers=admin).json()["source"] == "default"
    put = client.put("/api/v1/waitlist-policy", headers=admin, json={"max_entries_per_patient": 5})
    assert put.status_code == 200 and put.json()["source"] == "practice" and put.json()["max_entries_per_patient"] == 5
    put = client.put(clinic_path, headers=admin, json={"quiet_hours_start": None, "offer_hold_minutes": 45})
    assert put.status_code == 200, put.text
    body = put.json()
    assert (body["source"], body["quiet_hours_start"], body["offer_hold_minutes"]) == ("clinic", None, 45)
    assert body["max_entries_per_patient"] == 5
    assert client.get(clinic_path, headers=admin).json()["source"] == "clinic"
    assert client.delete(clinic_path, headers=admin).status_code == 204
    assert client.get(clinic_path, headers=admin).json()["source"] == "practice"
    assert client.get("/api/v1/waitlist-policy", headers=scene.auth["summit_admin"]).json()["source"] == "default"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_active_per_provider": 0}, "max_active_per_provider"),
        ({"urgency_weight": 1000}, "urgency_weight"),
        ({"quiet_hours_end": "8pm"}, "quiet_hours_end"),
        ({"offers_per_batch": None}, "offers_per_batch"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_policy_put_validation_names_the_field(
    client: TestClient, scene: Scene, body: dict[str, object], field: str
) -> None:
    response = client.put("/api/v1/waitlist-policy", headers=scene.auth["admin"], json=body)
    assert response.status_code == 422, response.text
    detail = response.json()
    named = detail.get("field") if isinstance(detail["detail"], str) else detail["detail"][0]["loc"][-1]
    assert named == field
    assert rows(scene.harbor, WaitlistPolicy) == []


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_policy_is_admin_only(client: TestClient, scene: Scene, role: str) -> None:
    headers = scene.auth[role]
    clinic_path = f"/api/v1/clinics/{scene.harbor.clinic.id}/waitlist-policy"
    assert client.put("/api/v1/waitlist-policy", headers=headers, json={"offers_per_batch": 2}).status_code == 403
    assert client.put(clinic_path, headers=headers, json={"offers_per_batch": 2}).status_code == 403
    assert client.delete(clinic_path, headers=headers).status_code == 403
    assert client.get("/api/v1/waitlist-policy", headers=headers).status_code == 403
    assert rows(scene.harbor, WaitlistPolicy) == []

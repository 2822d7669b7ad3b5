"""Clinics CRUD over the REST API: roles, validation, conflicts, other tenants, and the audit trail."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.identity.models import Patient, ProviderClinic
from backend.tenancy.models import Clinic
from tests.factories import Practice, add_appointment, add_waitlist_entry, bearer, future, make_practice, rows

CLINICS = "/api/v1/clinics"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))


@pytest.fixture
def auth(client: TestClient, harbor: Practice) -> dict[str, dict[str, str]]:
    """Bearer headers for each role of Harbor."""
    return {role: bearer(client, email) for role, email in harbor.emails.items()}


def _clinic_names(p: Practice) -> set[str]:
    return {c.name for c in rows(p, Clinic)}


def _audit_actions(p: Practice, entity_id: uuid.UUID) -> list[str]:
    return sorted(e.action for e in rows(p, AuditEvent, entity_id=entity_id))


# -- create --------------------------------------------------------------------------------------------


def test_admin_creates_a_clinic(client: TestClient, harbor: Practice, auth: dict) -> None:
    body = {"name": "Harbor Waterfront", "timezone": "America/Los_Angeles", "address": "3 Pier Rd", "phone": "555"}
    response = client.post(CLINICS, json=body, headers=auth["admin"])
    assert response.status_code == 201, response.text
    created = response.json()
    assert {k: created[k] for k in body} == body
    assert created["archived"] is False
    (row,) = rows(harbor, Clinic, id=uuid.UUID(created["id"]))
    assert row.tenant_id == harbor.tenant_id and row.timezone == "America/Los_Angeles"
    assert _audit_actions(harbor, row.id) == ["clinic.created"]


def test_bad_timezone_is_a_422_naming_the_zone_and_writes_nothing(
    client: TestClient, harbor: Practice, auth: dict
) -> None:
    before = _clinic_names(harbor), len(rows(harbor, AuditEvent))
    response = client.post(CLINICS, json={"name": "Harbor Mars", "timezone": "Mars/Base"}, headers=auth["admin"])
    assert response.status_code == 422
    assert "Mars/Base" in response.text
    assert (_clinic_names(harbor), len(rows(harbor, AuditEvent))) == before


@pytest.mark.parametrize("name", ["", " x ", "x" * 201])
def test_bad_name_is_a_422(client: TestClient, harbor: Practice, auth: dict, name: str) -> None:
    before = _clinic_names(harbor)
    response = client.post(CLINICS, json={"name": name, "timezone": "UTC"}, headers=auth["admin"])
    assert response.status_code == 422
    assert _clinic_names(harbor) == before


@pytest.mark.parametrize("spelling", ["same", "upper", "padded"])
def test_duplicate_name_is_a_409(client: TestClient, harbor: Practice, auth: dict, spelling: str) -> None:
    name = {"same": harbor.clinic.name, "upper": harbor.clinic.name.upper(), "padded": f"  {harbor.clinic.name} "}
    before = _clinic_names(harbor), len(rows(harbor, AuditEvent))
    response = client.post(CLINICS, json={"name": name[spelling], "timezone": "UTC"}, headers=auth["admin"])
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]
    assert response.json()["field"] == "name"
    assert (_clinic_names(harbor), len(rows(harbor, AuditEvent))) == before


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_only_admins_create(client: TestClient, harbor: Practice, auth: dict, role: str) -> None:
    before = _clinic_names(harbor)
    response = client.post(CLINICS, json={"name": "Harbor Annex", "timezone": "UTC"}, headers=auth[role])
    assert response.status_code == 403
    assert response.json()["detail"]
    assert _clinic_names(harbor) == before


# -- read ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["patient", "doctor", "admin"])
def test_every_role_reads_its_practice_clinics(
    client: TestClient, harbor: Practice, summit: Practice, auth: dict, role: str
) -> None:
    listed = client.get(CLINICS, headers=auth[role])
    assert listed.status_code == 200
    assert {c["id"] for c in listed.json()} == {str(harbor.clinic.id), str(harbor.clinic2.id)}
    assert {c["timezone"] for c in listed.json()} == {"America/New_York", "Europe/Berlin"}
    one = client.get(f"{CLINICS}/{harbor.clinic.id}", headers=auth[role])
    assert one.status_code == 200 and one.json()["name"] == harbor.clinic.name


# -- update --------------------------------------------------------------------------------------------


def test_admin_renames_and_archives_and_restores(client: TestClient, harbor: Practice, auth: dict) -> None:
    url = f"{CLINICS}/{harbor.clinic2.id}"
    renamed = client.patch(url, json={"name": "Harbor Hillside"}, headers=auth["admin"])
    assert renamed.status_code == 200 and renamed.json()["name"] == "Harbor Hillside"

    archived = client.patch(url, json={"archived": True}, headers=auth["admin"])
    assert archived.status_code == 200 and archived.json()["archived"] is True
    current = {c["id"] for c in client.get(CLINICS, headers=auth["admin"]).json()}
    everything = {c["id"] for c in client.get(CLINICS, params={"include_archived": True}, headers=auth["admin"]).json()}
    assert str(harbor.clinic2.id) not in current
    assert str(harbor.clinic2.id) in everything

    restored = client.patch(url, json={"archived": False}, headers=auth["admin"])
    assert restored.json()["archived"] is False
    (row,) = rows(harbor, Clinic, id=harbor.clinic2.id)
    assert row.name == "Harbor Hillside" and row.archived_at is None
    assert _audit_actions(harbor, harbor.clinic2.id) == ["clinic.updated"] * 3


def test_patch_without_changes_writes_no_audit_event(client: TestClient, harbor: Practice, auth: dict) -> None:
    response = client.patch(f"{CLINICS}/{harbor.clinic.id}", json={"name": harbor.clinic.name}, headers=auth["admin"])
    assert response.status_code == 200
    assert _audit_actions(harbor, harbor.clinic.id) == []


def test_patch_validation_and_conflicts(client: TestClient, harbor: Practice, auth: dict) -> None:
    url = f"{CLINICS}/{harbor.clinic2.id}"
    bad_zone = client.patch(url, json={"timezone": "Mars/Base"}, headers=auth["admin"])
    assert bad_zone.status_code == 422 and "Mars/Base" in bad_zone.text
    short = client.patch(url, json={"name": " x "}, headers=auth["admin"])
    assert short.status_code == 422
    taken = client.patch(url, json={"name": harbor.clinic.name.lower()}, headers=auth["admin"])
    assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
    (row,) = rows(harbor, Clinic, id=harbor.clinic2.id)
    assert (row.name, row.timezone) == (harbor.clinic2.name, harbor.clinic2.timezone)


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_only_admins_update_or_delete(client: TestClient, harbor: Practice, auth: dict, role: str) -> None:
    url = f"{CLINICS}/{harbor.clinic2.id}"
    assert client.patch(url, json={"archived": True}, headers=auth[role]).status_code == 403
    assert client.delete(url, headers=auth[role]).status_code == 403
    (row,) = rows(harbor, Clinic, id=harbor.clinic2.id)
    assert row.archived_at is None


# -- delete --------------------------------------------------------------------------------------------


def test_clinic_with_appointments_must_be_archived(client: TestClient, harbor: Practice, auth: dict) -> None:
    add_appointment(harbor, future(days=2), clinic=harbor.clinic2)
    response = client.delete(f"{CLINICS}/{harbor.clinic2.id}", headers=auth["admin"])
    assert response.status_code == 409
    assert "archive" in response.json()["detail"]
    assert client.get(f"{CLINICS}/{harbor.clinic2.id}", headers=auth["admin"]).status_code == 200
    assert _audit_actions(harbor, harbor.clinic2.id) == []


def test_clinic_with_waitlist_entries_must_be_archived(client: TestClient, harbor: Practice, auth: dict) -> None:
    add_waitlist_entry(harbor, clinic=harbor.clinic2)
    response = client.delete(f"{CLINICS}/{harbor.clinic2.id}", headers=auth["admin"])
    assert response.status_code == 409
    assert "archive" in response.json()["detail"]
    assert len(rows(harbor, Clinic, id=harbor.clinic2.id)) == 1


def test_empty_clinic_is_deleted(client: TestClient, harbor: Practice, auth: dict) -> None:
    response = client.delete(f"{CLINICS}/{harbor.clinic2.id}", headers=auth["admin"])
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"{CLINICS}/{harbor.clinic2.id}", headers=auth["admin"]).status_code == 404
    assert _audit_actions(harbor, harbor.clinic2.id) == ["clinic.deleted"]


def test_deleting_a_clinic_drops_its_links_and_home_references(
    client: TestClient, harbor: Practice, auth: dict
) -> None:
    # The first clinic has the doctor's link and is the patient's home, but no appointments.
    response = client.delete(f"{CLINICS}/{harbor.clinic.id}", headers=auth["admin"])
    assert response.status_code == 204
    assert rows(harbor, ProviderClinic) == []
    (patient,) = rows(harbor, Patient)
    assert patient.home_clinic_id is None


def test_create_update_delete_each_write_an_audit_event(client: TestClient, harbor: Practice, auth: dict) -> None:
    created = client.post(CLINICS, json={"name": "Harbor Pop-up", "timezone": "UTC"}, headers=auth["admin"]).json()
    client.patch(f"{CLINICS}/{created['id']}", json={"phone": "555-0199"}, headers=auth["admin"])
    client.delete(f"{CLINICS}/{created['id']}", headers=auth["admin"])
    events = client.get("/api/v1/audit-events", params={"entity_id": created["id"]}, headers=auth["admin"])
    assert events.status_code == 200
    assert [e["action"] for e in events.json()] == ["clinic.deleted", "clinic.updated", "clinic.created"]
    assert {e["actor_user_id"] for e in events.json()} == {str(harbor.admin_user.id)}
    assert {e["actor_role"] for e in events.json()} == {"admin"}
    assert events.json()[1]["data"] == {"fields": ["phone"]}


# -- another tenant's clinic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", None), ("PATCH", {"name": "Hijacked"}), ("PATCH", {"archived": True}), ("DELETE", None)],
)
def test_another_tenants_clinic_is_indistinguishable_from_a_missing_one(
    client: TestClient, harbor: Practice, summit: Practice, auth: dict, method: str, body: dict | None
) -> None:
    before = sorted((c.id, c.name, c.archived_at) for c in rows(summit, Clinic))
    for role in ("admin", "doctor", "patient"):
        foreign = client.request(method, f"{CLINICS}/{summit.clinic2.id}", json=body, headers=auth[role])
        missing = client.request(method, f"{CLINICS}/{uuid.uuid4()}", json=body, headers=auth[role])
        if role == "admin" or method == "GET":
            assert foreign.status_code == 404, role
            assert foreign.json() == missing.json() == {"detail": "clinic not found", "code": "not_found"}
        else:
            assert foreign.status_code == missing.status_code == 403  # the role check comes first, for both
    assert sorted((c.id, c.name, c.archived_at) for c in rows(summit, Clinic)) == before
    assert rows(summit, AuditEvent) == []


def test_clinic_names_are_per_practice(client: TestClient, harbor: Practice, summit: Practice, auth: dict) -> None:
    response = client.post(CLINICS, json={"name": summit.clinic.name, "timezone": "UTC"}, headers=auth["admin"])
    assert response.status_code == 201
    assert summit.clinic.name in _clinic_names(harbor)


def test_malformed_clinic_id_is_a_422(client: TestClient, harbor: Practice, auth: dict) -> None:
    assert client.get(f"{CLINICS}/not-a-uuid", headers=auth["admin"]).status_code == 422

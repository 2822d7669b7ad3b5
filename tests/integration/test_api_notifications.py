"""The notification REST routes, served for real: preferences, history, the admin outbox, retry, and the
unsubscribe link; role scopes, and another practice's ids as 404.

Celery runs eagerly in this process, so a committed notification is delivered (console mode) before the
request that caused it returns.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import update
from sqlmodel import col

from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.identity.models import Patient
from backend.identity.service import issue_token
from backend.notifications import delivery, outbox
from backend.notifications.models import Notification, NotificationDelivery, NotificationPreference
from backend.notifications.preferences import read_unsubscribe_token, unsubscribe_token
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.worker import celery_app
from tests.factories import (
    Practice,
    add_appointment,
    add_patient,
    add_user,
    add_waitlist_entry,
    bearer,
    local_start,
    make_practice,
    rows,
)

PREFS = "/api/v1/me/notification-preferences"
PHONE = "+12125550142"
STATUSES = ("pending", "sending", "sent", "failed", "dead", "unknown")


@pytest.fixture(autouse=True)
def eager(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Deliver inline after commit, unthrottled (the server thread shares this process)."""
    monkeypatch.setattr(delivery, "throttle_wait", lambda tenant_id, notification_id: 0.0)
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


@dataclass
class Scene:
    harbor: Practice
    summit: Practice
    second: Patient  # a second Harbor patient, with a login of their own
    auth: dict[str, dict[str, str]]


@pytest.fixture
def scene(db: sa.Engine, client: httpx.Client) -> Scene:
    harbor = make_practice("Harbor Mental Health", "harbor")
    summit = make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))
    second = add_patient(harbor, "Sam Second")
    user = add_user(harbor, "second@harbor.test", Role.PATIENT, full_name="Sam Second", patient_id=second.id)
    actors = {
        "doctor": harbor.doctor,
        "admin": harbor.admin,
        "second": Actor(tenant_id=harbor.tenant_id, role=Role.PATIENT, user_id=user.id, patient_id=second.id),
        "summit_admin": summit.admin,
        "summit_patient": summit.patient_actor,
    }
    # One real login through POST /auth/token; the rest sign tokens directly (argon2 is slow on purpose).
    auth = {"patient": bearer(client, harbor.patient_user.email)}
    auth.update({role: {"Authorization": f"Bearer {issue_token(actor)[0]}"} for role, actor in actors.items()})
    return Scene(harbor, summit, second, auth)


# -- helpers ------------------------------------------------------------------------------------------------


def record_note(p: Practice, *, patient: Patient | None = None, days: int = 3,
                event_type: str = "appointment_booked") -> uuid.UUID:  # fmt: skip
    """One committed (and, Celery being eager, delivered) notification about a real appointment."""
    patient = patient or p.patient
    appointment = add_appointment(p, local_start(days, 10), patient=patient)
    with UnitOfWork(p.system) as uow:
        (note,) = outbox.notify(p.system, uow, patient_id=patient.id, event_type=event_type,
                                payload={"appointment_id": str(appointment.id)})  # fmt: skip
        uow.commit()
    return note.id


def set_state(p: Practice, nid: uuid.UUID, *, channel: str | None = None, **values: Any) -> None:
    """Put a notification and its ledger row into a given state, as the delivery engine would have."""
    with UnitOfWork(p.system) as uow:
        if values:
            uow.session.execute(update(NotificationDelivery)
                                .where(col(NotificationDelivery.notification_id) == nid).values(**values))  # fmt: skip
        if channel is not None:
            values = {**values, "channel": channel}
        if values:
            uow.session.execute(update(Notification).where(col(Notification.id) == nid).values(**values))
        uow.commit()


def make_dead(p: Practice, nid: uuid.UUID) -> None:
    set_state(p, nid, status="dead", attempts=5, sent_at=None, provider_message_id=None,
              last_error="ChannelError (21211): invalid recipient")  # fmt: skip


def state(p: Practice, nid: uuid.UUID) -> tuple[tuple[str, int], tuple[str, int]]:
    """(ledger status, attempts), (notification status, attempts)."""
    (row,) = rows(p, NotificationDelivery, notification_id=nid)
    (note,) = rows(p, Notification, id=nid)
    return (str(row.status), row.attempts), (str(note.status), note.attempts)


def set_phone(p: Practice, patient_id: uuid.UUID, phone: str = PHONE) -> None:
    with UnitOfWork(p.system) as uow:
        patient = uow.session.get(Patient, patient_id)
        assert patient is not None
        patient.phone = phone
        uow.session.add(patient)
        uow.commit()


def prefs(p: Practice) -> list[tuple[Any, ...]]:
    return sorted(
        (r.patient_id, r.email_opt_in, r.sms_opt_in, r.whatsapp_opt_in, r.quiet_hours_start, r.quiet_hours_end,
         r.unsubscribed_at)
        for r in rows(p, NotificationPreference)
    )  # fmt: skip


def audit(p: Practice, action: str) -> list[AuditEvent]:
    """The practice's audit events of one action, oldest first."""
    return sorted(rows(p, AuditEvent, action=action), key=lambda e: e.occurred_at)


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [n["id"] for n in response.json()]


def forge(tenant_id: uuid.UUID, patient_id: uuid.UUID, key: str) -> str:
    """An unsubscribe token in the real format (the two ids and a truncated HMAC-SHA256), under `key`."""
    both = tenant_id.bytes + patient_id.bytes
    mac = hmac.new(key.encode(), b"unsubscribe:" + both, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(both + mac).decode().rstrip("=")


def swap_patient(token: str, patient_id: uuid.UUID) -> str:
    """The token with its patient id replaced and its signature kept."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return base64.urlsafe_b64encode(raw[:16] + patient_id.bytes + raw[32:]).decode().rstrip("=")


def body(**fields: Any) -> dict[str, Any]:
    return {"email_opt_in": True, "sms_opt_in": False, "whatsapp_opt_in": False, **fields}


# -- preferences --------------------------------------------------------------------------------------------


def test_preferences_round_trip_is_audited(client: httpx.Client, scene: Scene) -> None:
    h = scene.harbor
    first = client.get(PREFS, headers=scene.auth["patient"])
    assert first.status_code == 200, first.text
    assert first.json() == {
        "patient_id": str(h.patient.id), "email_opt_in": True, "sms_opt_in": False, "whatsapp_opt_in": False,
        "quiet_hours_start": None, "quiet_hours_end": None, "unsubscribed": False, "has_email": True,
        "has_phone": False, "channel_mode": "console", "updated_at": None, "language": "en",
    }  # fmt: skip

    set_phone(h, h.patient.id)
    wanted = body(sms_opt_in=True, quiet_hours_start="21:00", quiet_hours_end="07:30")
    put = client.put(PREFS, json=wanted, headers=scene.auth["patient"])
    assert put.status_code == 200, put.text
    got = client.get(PREFS, headers=scene.auth["patient"]).json()
    for response in (put.json(), got):
        assert {k: response[k] for k in wanted} == wanted
        assert response["has_phone"] is True and response["updated_at"] is not None
    (event,) = audit(h, "notification.preferences_changed")
    assert (event.entity_type, event.entity_id, event.actor_role) == ("patient", h.patient.id, "patient")
    assert event.data == {"fields": ["quiet_hours_end", "quiet_hours_start", "sms_opt_in"]}

    # The same body again changes nothing and writes no second audit row.
    assert client.put(PREFS, json=wanted, headers=scene.auth["patient"]).status_code == 200
    assert len(audit(h, "notification.preferences_changed")) == 1
    cleared = client.put(PREFS, json=body(email_opt_in=False), headers=scene.auth["patient"])
    assert cleared.status_code == 200 and cleared.json()["quiet_hours_start"] is None
    assert audit(h, "notification.preferences_changed")[-1].data == {
        "fields": ["email_opt_in", "quiet_hours_end", "quiet_hours_start", "sms_opt_in"]
    }


def locale_of(p: Practice, patient_id: uuid.UUID) -> str:
    (patient,) = rows(p, Patient, id=patient_id)
    return patient.locale


def test_the_patient_chooses_the_language_of_pages_and_messages(client: httpx.Client, scene: Scene) -> None:
    h = scene.harbor
    put = client.put(PREFS, json=body(language="es"), headers=scene.auth["patient"])
    assert put.status_code == 200, put.text
    assert put.json()["language"] == "es"
    assert client.get(PREFS, headers=scene.auth["patient"]).json()["language"] == "es"
    assert locale_of(h, h.patient.id) == "es"
    (event,) = audit(h, "patient.language_changed")
    assert (event.entity_id, event.actor_role, event.data) == (h.patient.id, "patient", {"from": "en", "to": "es"})
    # Leaving it out keeps it; the same language again writes no second audit row.
    assert client.put(PREFS, json=body(), headers=scene.auth["patient"]).json()["language"] == "es"
    assert client.put(PREFS, json=body(language="es"), headers=scene.auth["patient"]).status_code == 200
    assert len(audit(h, "patient.language_changed")) == 1
    # The admin reads it with the rest of the preferences.
    staff = client.get(f"/api/v1/patients/{h.patient.id}/notification-preferences", headers=scene.auth["admin"])
    assert staff.status_code == 200 and staff.json()["language"] == "es"


@pytest.mark.parametrize("language", ["fr", "", "ES-ES", "english", "e\u0000s", "x" * 11])
def test_a_language_we_do_not_ship_is_422_and_changes_nothing(
    client: httpx.Client, scene: Scene, language: str
) -> None:
    h = scene.harbor
    sent = body(language=language, quiet_hours_start="21:00", quiet_hours_end="07:00")
    response = client.put(PREFS, json=sent, headers=scene.auth["patient"])
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert locale_of(h, h.patient.id) == "en"
    assert prefs(h) == [] and audit(h, "patient.language_changed") == []


@pytest.mark.parametrize(
    ("sent", "field", "detail"),
    [
        (body(quiet_hours_start="21:00"), "quiet_hours_end", "give both the start and the end"),
        (body(quiet_hours_end="07:00"), "quiet_hours_start", "give both the start and the end"),
        (body(quiet_hours_start="22:00", quiet_hours_end="22:00"), "quiet_hours_end", "must not start and end"),
        (body(quiet_hours_start="25:00", quiet_hours_end="07:00"), "quiet_hours_start", "must be a time like 21:00"),
        (body(quiet_hours_start="21:00", quiet_hours_end="noon"), "quiet_hours_end", "must be a time like 21:00"),
        (body(sms_opt_in=True), "sms_opt_in", "add a mobile number"),
        (body(whatsapp_opt_in=True), "whatsapp_opt_in", "add a mobile number"),
    ],
)
def test_invalid_preferences_change_nothing(
    client: httpx.Client, scene: Scene, sent: dict[str, Any], field: str, detail: str
) -> None:
    response = client.put(PREFS, json=sent, headers=scene.auth["patient"])
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"] and response.json()["field"] == field
    assert prefs(scene.harbor) == [] and audit(scene.harbor, "notification.preferences_changed") == []


@pytest.mark.parametrize(
    "sent",
    [
        body(email_opt_in="maybe"),
        body(quiet_hours_start=2100, quiet_hours_end="07:00"),
        {"email_opt_in": True, "sms_opt_in": False},
        body(unsubscribed=False),
        body(quiet_hours_start="21:00:00:00", quiet_hours_end="07:00"),
    ],
)
def test_badly_typed_preferences_are_422_with_a_message(client: httpx.Client, scene: Scene, sent: Any) -> None:
    response = client.put(PREFS, json=sent, headers=scene.auth["patient"])
    assert response.status_code == 422, response.text
    assert all(error["msg"] for error in response.json()["detail"])
    assert prefs(scene.harbor) == [] and audit(scene.harbor, "notification.preferences_changed") == []


def test_staff_read_preferences_but_never_change_them(client: httpx.Client, scene: Scene) -> None:
    h, a = scene.harbor, scene.auth
    seen = add_patient(h, "Ana Appointment")
    waiting = add_patient(h, "Walt Waiting")
    stranger = add_patient(h, "Una Unrelated")
    anyone_here = add_patient(h, "Cora Clinicwide")
    anyone_there = add_patient(h, "Otto Otherclinic")
    add_appointment(h, local_start(5, 11), patient=seen)
    add_waitlist_entry(h, patient=waiting)
    # "Any provider" entries: at the doctor's clinic they are on the doctor's console; at another, not.
    add_waitlist_entry(h, patient=anyone_here, any_provider=True)
    add_waitlist_entry(h, patient=anyone_there, any_provider=True, clinic=h.clinic2)

    def read(role: str, patient_id: uuid.UUID) -> httpx.Response:
        return client.get(f"/api/v1/patients/{patient_id}/notification-preferences", headers=a[role])

    for patient in (seen, waiting, anyone_here):
        response = read("doctor", patient.id)
        assert response.status_code == 200 and response.json()["patient_id"] == str(patient.id)
    missing = read("doctor", uuid.uuid4())
    unrelated = read("doctor", stranger.id)
    assert unrelated.status_code == missing.status_code == read("doctor", anyone_there.id).status_code == 404
    assert unrelated.json() == missing.json() == {"detail": "patient not found", "code": "not_found"}
    for patient in (seen, waiting, stranger, h.patient):
        assert read("admin", patient.id).status_code == 200
    # A patient reads their own only; anyone else's looks missing.
    assert read("patient", h.patient.id).json()["patient_id"] == str(h.patient.id)
    assert read("patient", scene.second.id).status_code == 404
    assert read("second", h.patient.id).status_code == 404

    for role in ("doctor", "admin"):
        assert client.put(PREFS, json=body(email_opt_in=False), headers=a[role]).status_code == 403
        assert client.get(PREFS, headers=a[role]).status_code == 403
    assert client.get(PREFS).status_code == 401
    assert prefs(h) == [] and audit(h, "notification.preferences_changed") == []


# -- history and the outbox ---------------------------------------------------------------------------------


def test_patient_history_is_their_own(client: httpx.Client, scene: Scene) -> None:
    h = scene.harbor
    mine = [str(record_note(h, days=3)), str(record_note(h, days=4, event_type="appointment_cancelled"))]
    theirs = str(record_note(h, patient=scene.second, days=5))
    foreign = str(record_note(scene.summit, days=3))

    history = client.get("/api/v1/notifications", headers=scene.auth["patient"])
    assert ids(history) == list(reversed(mine))  # newest first
    first = history.json()[0]
    assert (first["event_type"], first["event_label"], first["channel"], first["status"]) == (
        "appointment_cancelled", "Appointment cancelled", "console", "sent",
    )  # fmt: skip
    assert first["patient_name"] == h.patient.full_name and first["sent_at"] is not None
    filtered = client.get("/api/v1/notifications", params={"event_type": "appointment_booked"},
                          headers=scene.auth["patient"])  # fmt: skip
    assert ids(filtered) == [mine[0]]
    assert ids(client.get("/api/v1/notifications", headers=scene.auth["second"])) == [theirs]
    assert ids(client.get("/api/v1/notifications", headers=scene.auth["summit_patient"])) == [foreign]
    # Naming another patient is refused like a missing one; doctors have no outbox.
    other = client.get("/api/v1/notifications", params={"patient_id": str(scene.second.id)},
                       headers=scene.auth["patient"])  # fmt: skip
    assert other.status_code == 404
    assert client.get("/api/v1/notifications", headers=scene.auth["doctor"]).status_code == 403
    assert client.get("/api/v1/notifications").status_code == 401


def test_admin_outbox_filters_and_counts(client: httpx.Client, scene: Scene) -> None:
    h, admin = scene.harbor, scene.auth["admin"]
    sent = record_note(h, days=3)
    dead = record_note(h, days=4, event_type="appointment_cancelled")
    failed = record_note(h, patient=scene.second, days=5)
    make_dead(h, dead)
    set_state(h, dead, channel="email")
    set_state(h, failed, channel="sms", status="failed", attempts=2, last_error="ChannelError (429): busy")
    record_note(scene.summit, days=3)

    def listed(**params: Any) -> list[str]:
        return ids(client.get("/api/v1/notifications", params=params, headers=admin))

    assert listed() == [str(failed), str(dead), str(sent)]
    assert listed(status="dead") == [str(dead)]
    assert listed(status="failed") == [str(failed)]
    assert listed(channel="sms") == [str(failed)]
    assert listed(channel="console") == [str(sent)]
    assert listed(event_type="appointment_cancelled") == [str(dead)]
    assert listed(patient_id=str(scene.second.id)) == [str(failed)]
    assert listed(patient_id=str(h.patient.id), status="sent") == [str(sent)]
    assert listed(patient_id=str(h.patient.id), channel="sms") == []
    assert listed(limit=1) == [str(failed)]
    row = next(n for n in client.get("/api/v1/notifications", headers=admin).json() if n["id"] == str(failed))
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 2, "ChannelError (429): busy")
    assert row["patient_name"] == "Sam Second"
    for params in ({"status": "bogus"}, {"channel": "fax"}, {"limit": 0}, {"limit": 1000}, {"patient_id": "x"}):
        assert client.get("/api/v1/notifications", params=params, headers=admin).status_code == 422

    counts = client.get("/api/v1/notifications/counts", headers=admin)
    assert counts.status_code == 200
    assert counts.json() == {**dict.fromkeys(STATUSES, 0), "sent": 1, "dead": 1, "failed": 1}
    for role in ("doctor", "patient"):
        assert client.get("/api/v1/notifications/counts", headers=scene.auth[role]).status_code == 403


def test_retry_of_a_dead_notification_sends_it(client: httpx.Client, scene: Scene) -> None:
    h = scene.harbor
    nid = record_note(h)
    make_dead(h, nid)
    for role in ("doctor", "patient"):
        assert client.post(f"/api/v1/notifications/{nid}/retry", headers=scene.auth[role]).status_code == 403
    assert state(h, nid) == (("dead", 5), ("dead", 5))

    response = client.post(f"/api/v1/notifications/{nid}/retry", headers=scene.auth["admin"])
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["status"], response.json()["attempts"]) == (str(nid), "pending", 0)
    (event,) = audit(h, "notification.retried")
    assert (event.entity_type, event.entity_id, event.actor_role) == ("notification", nid, "admin")
    assert event.data == {"previous": {"status": "dead", "attempts": 5}}
    # Celery is eager: the retried message was delivered (console) before the response came back.
    assert state(h, nid) == (("sent", 1), ("sent", 1))
    (note,) = rows(h, Notification, id=nid)
    assert note.sent_at is not None and note.provider_message_id == f"console-{nid}"


def test_retry_of_a_failed_notification_sends_it(client: httpx.Client, scene: Scene) -> None:
    h = scene.harbor
    nid = record_note(h)
    set_state(h, nid, status="failed", attempts=2, sent_at=None, provider_message_id=None)
    response = client.post(f"/api/v1/notifications/{nid}/retry", headers=scene.auth["admin"])
    assert response.status_code == 200 and response.json()["status"] == "pending"
    assert state(h, nid) == (("sent", 1), ("sent", 1))


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("sent", "it was already sent"),
        ("pending", "it is already waiting to be sent"),
        ("sending", "it is being sent right now"),
        ("unknown", "its delivery is being checked"),
    ],
)
def test_retry_refuses_what_is_not_failed(client: httpx.Client, scene: Scene, status: str, reason: str) -> None:
    h = scene.harbor
    nid = record_note(h)
    if status != "sent":
        set_state(h, nid, status=status, attempts=1)
    before = state(h, nid)
    response = client.post(f"/api/v1/notifications/{nid}/retry", headers=scene.auth["admin"])
    assert response.status_code == 409, response.text
    assert response.json()["detail"].startswith(f"This message cannot be sent again: {reason}")
    assert state(h, nid) == before
    assert audit(h, "notification.retried") == []


def test_read_message_renders_it_with_its_links(client: httpx.Client, scene: Scene) -> None:
    h = scene.harbor
    nid = record_note(h)
    public = get_settings().public_url.rstrip("/")
    for role in ("patient", "admin"):
        response = client.get(f"/api/v1/notifications/{nid}", headers=scene.auth[role])
        assert response.status_code == 200, response.text
        message = response.json()
        assert (message["id"], message["status"], message["to"]) == (str(nid), "sent", h.patient.email)
        assert message["subject"] and h.tenant.name in message["subject"] + message["text"]
        assert f"{public}/patient/appointments" in message["text"]
        link = re.search(re.escape(public) + r"/unsubscribe/(\S+)", message["text"])
        assert link is not None
        assert read_unsubscribe_token(link.group(1)) == (h.tenant_id, h.patient.id)
    assert client.get(f"/api/v1/notifications/{nid}", headers=scene.auth["doctor"]).status_code == 403
    other = client.get(f"/api/v1/notifications/{nid}", headers=scene.auth["second"])
    missing = client.get(f"/api/v1/notifications/{uuid.uuid4()}", headers=scene.auth["second"])
    assert other.status_code == missing.status_code == 404 and other.json() == missing.json()


# -- the unsubscribe link -----------------------------------------------------------------------------------


def test_unsubscribe_link_turns_email_then_everything_off(client: httpx.Client, scene: Scene) -> None:
    h = scene.harbor
    token = unsubscribe_token(h.tenant_id, h.patient.id)
    response = client.post(f"/api/v1/unsubscribe/{token}")  # no Authorization: the link in an e-mail
    assert response.status_code == 200, response.text
    assert response.json() == {"practice": "Harbor Mental Health", "email_opt_in": False, "sms_opt_in": False,
                               "whatsapp_opt_in": False, "unsubscribed": False}  # fmt: skip
    (event,) = audit(h, "notification.opted_out")
    assert (event.entity_id, event.data) == (h.patient.id, {"channel": "email", "via": "unsubscribe_link"})
    mine = client.get(PREFS, headers=scene.auth["patient"]).json()
    assert (mine["email_opt_in"], mine["unsubscribed"]) == (False, False)

    # SMS on, then "everything" stops every channel: a later event writes no notification at all.
    set_phone(h, h.patient.id)
    assert client.put(PREFS, json=body(sms_opt_in=True), headers=scene.auth["patient"]).status_code == 200
    everything = client.post(f"/api/v1/unsubscribe/{token}", json={"everything": True})
    assert everything.status_code == 200 and everything.json()["unsubscribed"] is True
    assert audit(h, "notification.opted_out")[-1].data == {"channel": "all", "via": "unsubscribe_link"}
    with UnitOfWork(h.system) as uow:
        written = outbox.notify(h.system, uow, patient_id=h.patient.id, event_type="waitlist_reconfirm", payload={})
        uow.commit()
    assert written == [] and rows(h, Notification) == []
    # Opting in again lifts it.
    back = client.put(PREFS, json=body(), headers=scene.auth["patient"])
    assert back.status_code == 200 and back.json()["unsubscribed"] is False
    assert audit(h, "notification.preferences_changed")[-1].data["fields"][-1] == "resubscribed"


def test_one_click_unsubscribe_form_post(client: httpx.Client, scene: Scene) -> None:
    """RFC 8058: the mail provider posts List-Unsubscribe=One-Click (form-encoded) to the link."""
    h = scene.harbor
    token = unsubscribe_token(h.tenant_id, h.patient.id)
    response = client.post(f"/api/v1/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200, response.text
    assert response.json()["email_opt_in"] is False and response.json()["unsubscribed"] is False
    assert len(audit(h, "notification.opted_out")) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {"List-Unsubscribe": "Maybe"}},
        {"data": {"everything": "true"}},
        {"json": {"everything": "perhaps"}},
        {"json": {"everything": True, "also": 1}},
        {"json": ["everything"]},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"content": b"everything=true", "headers": {"Content-Type": "text/plain"}},
    ],
)
def test_bad_unsubscribe_bodies_are_422_and_change_nothing(
    client: httpx.Client, scene: Scene, kwargs: dict[str, Any]
) -> None:
    h = scene.harbor
    response = client.post(f"/api/v1/unsubscribe/{unsubscribe_token(h.tenant_id, h.patient.id)}", **kwargs)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert prefs(h) == [] and audit(h, "notification.opted_out") == []


def test_forged_unsubscribe_tokens_are_404_and_change_nothing(client: httpx.Client, scene: Scene) -> None:
    h, s = scene.harbor, scene.summit
    real = unsubscribe_token(h.tenant_id, h.patient.id)
    assert forge(h.tenant_id, h.patient.id, get_settings().secret_key) == real  # forge() makes real ones too
    forged = forge(h.tenant_id, h.patient.id, secrets.token_urlsafe(48))
    access_token = scene.auth["patient"]["Authorization"].removeprefix("Bearer ")
    tokens = [
        forged,  # signed with another key
        access_token,  # a real token of ours, but not an unsubscribe one
        unsubscribe_token(h.tenant_id, s.patient.id),  # names another practice's patient
        unsubscribe_token(s.tenant_id, h.patient.id),
        unsubscribe_token(h.tenant_id, uuid.uuid4()),
        real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB"),  # tampered signature
        swap_patient(real, s.patient.id),  # another patient's id under this one's signature
        "not-a-token",
    ]
    for token in tokens:
        for kwargs in ({}, {"json": {"everything": True}}, {"data": {"List-Unsubscribe": "One-Click"}}):
            response = client.post(f"/api/v1/unsubscribe/{token}", **kwargs)  # type: ignore[arg-type]
            assert response.status_code == 404, (token, response.text)
            assert response.json() == {"detail": "unsubscribe link not found", "code": "not_found"}
    for p in (h, s):
        assert prefs(p) == [] and audit(p, "notification.opted_out") == []


# -- another practice's ids ---------------------------------------------------------------------------------


def test_another_practices_notifications_and_patients_are_missing(client: httpx.Client, scene: Scene) -> None:
    h, s, a = scene.harbor, scene.summit, scene.auth
    mine = record_note(h, days=3)
    theirs = record_note(s, days=3)
    make_dead(s, theirs)
    before = state(s, theirs)
    random_id = uuid.uuid4()

    def same_as_missing(method: str, path: str, role: str) -> None:
        foreign = client.request(method, path.format(id=theirs), headers=a[role])
        missing = client.request(method, path.format(id=random_id), headers=a[role])
        assert foreign.status_code == missing.status_code == 404, (path, role, foreign.text)
        assert foreign.json() == missing.json()

    for role in ("admin", "patient"):
        same_as_missing("GET", "/api/v1/notifications/{id}", role)
    same_as_missing("POST", "/api/v1/notifications/{id}/retry", "admin")
    assert state(s, theirs) == before and audit(s, "notification.retried") == []

    for role in ("admin", "doctor", "patient"):
        foreign = client.get(f"/api/v1/patients/{s.patient.id}/notification-preferences", headers=a[role])
        missing = client.get(f"/api/v1/patients/{random_id}/notification-preferences", headers=a[role])
        assert foreign.status_code == missing.status_code == 404 and foreign.json() == missing.json()

    # Lists and counts hold this practice's rows only, whatever the filter names.
    assert ids(client.get("/api/v1/notifications", headers=a["admin"])) == [str(mine)]
    assert ids(client.get("/api/v1/notifications", params={"patient_id": str(s.patient.id)},
                          headers=a["admin"])) == []  # fmt: skip
    assert ids(client.get("/api/v1/notifications", params={"status": "dead"}, headers=a["admin"])) == []
    foreign_filter = client.get("/api/v1/notifications", params={"patient_id": str(s.patient.id)},
                                headers=a["patient"])  # fmt: skip
    assert foreign_filter.status_code == 404
    assert client.get("/api/v1/notifications/counts", headers=a["admin"]).json()["dead"] == 0
    assert client.get("/api/v1/notifications/counts", headers=a["summit_admin"]).json()["dead"] == 1
    # And the other way round: Summit's admin sees none of Harbor's.
    assert ids(client.get("/api/v1/notifications", headers=a["summit_admin"])) == [str(theirs)]
    assert client.get(f"/api/v1/notifications/{mine}", headers=a["summit_admin"]).status_code == 404
    assert client.post(f"/api/v1/notifications/{mine}/retry", headers=a["summit_admin"]).status_code == 404


def test_routes_are_in_the_openapi(client: httpx.Client, scene: Scene) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    expected = {
        "/api/v1/me/notification-preferences": {"get", "put"},
        "/api/v1/patients/{patient_id}/notification-preferences": {"get"},
        "/api/v1/notifications": {"get"},
        "/api/v1/notifications/counts": {"get"},
        "/api/v1/notifications/{notification_id}": {"get"},
        "/api/v1/notifications/{notification_id}/retry": {"post"},
        "/api/v1/unsubscribe/{token}": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    unsubscribe = paths["/api/v1/unsubscribe/{token}"]["post"]
    assert "security" not in unsubscribe
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(unsubscribe["requestBody"]["content"])

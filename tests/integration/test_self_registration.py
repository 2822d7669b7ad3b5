"""Self-registration (backend/identity/onboarding.py): off by default, turned on per practice by its admin; a
newcomer registers, gets a single-use, expiring verification link through the outbox, and only opening it (with the
password they chose) makes an account; an e-mail with an account gets the other message and no second account; the
answer never tells the two apart; bad input changes nothing; rate-limited like "forgot password".
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import select

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import PermissionDenied, RateLimited
from backend.identity import onboarding, passwords
from backend.identity.models import Membership, Patient, Registration, User
from backend.notifications import service as notes
from backend.notifications.models import Notification
from backend.settings import get_settings
from backend.types import utcnow
from tests.factories import (
    Practice,
    add_availability,
    bearer,
    call,
    local_start,
    make_practice,
    rows,
    set_booking_policy,
)

GOOD_PASSWORD = "lantern orchard velvet 42"
OTHER_PASSWORD = "quiet harbor copper kettle"
REGISTER = "/api/v1/auth/register"
VERIFY = "/api/v1/auth/register/verify"


@pytest.fixture(autouse=True)
def own_keys(own_redis_keys: str) -> str:
    """This test's own Redis keys (registration counters, login throttle)."""
    return own_redis_keys


@pytest.fixture
def client() -> Iterator[TestClient]:
    # The pages' forms post from the app's own origin (cross-site posts to /auth/* are refused at the edge).
    with TestClient(api, follow_redirects=False, headers={"Origin": "http://testserver"}) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit")


def _open(practice: Practice, enabled: bool = True) -> None:
    call(practice.admin, onboarding.set_self_registration, enabled=enabled)


def _body(email: str = "nora.new@example.org", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "practice": "harbor",
        "full_name": "Nora Newcomer",
        "email": email,
        "phone": "+1 555 010 0199",
        "password": GOOD_PASSWORD,
        "accept_terms": True,
    }
    body.update(overrides)
    return body


def _bearer(client: TestClient, email: str, password: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _admin(client: TestClient, practice: Practice) -> dict[str, str]:
    return bearer(client, practice.admin_user.email)


def _notes(practice: Practice, event_type: str) -> list[Notification]:
    return [n for n in rows(practice, Notification) if n.event_type == event_type]


def _message_text(practice: Practice, notification_id: uuid.UUID) -> str:
    return str(call(practice.admin, notes.read_message, notification_id).text)


def _token_in(text: str) -> str:
    found = re.search(r"/verify/([A-Za-z0-9_-]+)", text)
    assert found, text
    return found.group(1)


def _newest_token(practice: Practice) -> str:
    newest = max(_notes(practice, "registration_verify"), key=lambda n: n.created_at)
    return _token_in(_message_text(practice, newest.id))


def _counts(practice: Practice) -> tuple[int, int, int, int, int]:
    return (len(rows(practice, User)), len(rows(practice, Patient)), len(rows(practice, Membership)),
            len(rows(practice, Registration)), len(rows(practice, Notification)))  # fmt: skip


def _actions(practice: Practice) -> list[str]:
    return [e.action for e in rows(practice, AuditEvent)]


# -- the practice's setting ------------------------------------------------------------------------------


def test_off_by_default_the_routes_refuse_and_nothing_is_made(harbor: Practice, client: TestClient) -> None:
    admin = _admin(client, harbor)
    assert client.get("/api/v1/self-registration", headers=admin).json() == {
        "enabled": False, "register_path": "/register/harbor"}  # fmt: skip
    before = _counts(harbor)
    closed = client.post(REGISTER, json=_body())
    assert closed.status_code == 403 and closed.json()["code"] == "registration_closed"
    assert "Harbor Mental Health does not take online registrations" in closed.json()["detail"]
    unknown = client.post(REGISTER, json=_body(practice="nowhere"))
    assert unknown.status_code == 404
    assert _counts(harbor) == before
    info = onboarding.registration_info("harbor")
    assert info is not None and info.open is False
    assert onboarding.registration_info("nowhere") is None and onboarding.registration_info("../x") is None


def test_the_admin_turns_it_on_and_off_audited(harbor: Practice, client: TestClient) -> None:
    admin = _admin(client, harbor)
    on = client.put("/api/v1/self-registration", headers=admin, json={"enabled": True})
    assert on.status_code == 200 and on.json()["enabled"] is True
    assert call(harbor.admin, onboarding.get_self_registration).enabled is True
    assert client.put("/api/v1/self-registration", headers=admin, json={"enabled": "yes"}).status_code == 422
    assert client.put("/api/v1/self-registration", headers=admin, json={}).status_code == 422
    for role in ("doctor", "patient"):
        actor = harbor.doctor if role == "doctor" else harbor.patient_actor
        with pytest.raises(PermissionDenied):
            call(actor, onboarding.set_self_registration, enabled=False)
        with pytest.raises(PermissionDenied):
            call(actor, onboarding.get_self_registration)
    off = client.put("/api/v1/self-registration", headers=admin, json={"enabled": False})
    assert off.json()["enabled"] is False
    changes = [e.data for e in rows(harbor, AuditEvent) if e.action == "practice.self_registration_changed"]
    assert sorted((c["enabled"], c["was"]) for c in changes) == [(False, True), (True, False)]


# -- registering and verifying ---------------------------------------------------------------------------


def test_register_verify_sign_in_and_book(harbor: Practice, client: TestClient) -> None:
    _open(harbor)
    add_availability(harbor)
    set_booking_policy(harbor, horizon_days=400)
    users_before = len(rows(harbor, User))
    answer = client.post(REGISTER, json=_body(email="Nora.New@Example.org", locale="es"))
    assert answer.status_code == 202 and answer.json() == {"detail": onboarding.REGISTER_SENT}
    # Nothing usable yet: no user, no patient; the request waits with a hash of the password only.
    assert len(rows(harbor, User)) == users_before
    assert client.post("/api/v1/auth/token", json={"email": "nora.new@example.org", "password": GOOD_PASSWORD}
                       ).status_code == 401  # fmt: skip
    (registration,) = rows(harbor, Registration)
    assert registration.kind == "verify" and registration.email == "nora.new@example.org"
    assert GOOD_PASSWORD not in str(registration.model_dump()) and registration.password_hash.startswith("$argon2")
    assert registration.terms_accepted_at is not None
    # One outbox row (console mode), ids only; the admin reads the link in the Outbox, addressed to the newcomer.
    (note,) = _notes(harbor, "registration_verify")
    assert note.payload == {"link_id": str(registration.id), "registration_id": str(registration.id)}
    assert note.patient_id is None and str(note.channel) == "console"
    outbox = {v.id: v for v in call(harbor.admin, notes.list_notifications)}
    assert outbox[note.id].patient_name == "Nora Newcomer (registering)"
    message = call(harbor.admin, notes.read_message, note.id)
    assert message.to == "nora.new@example.org" and "unsubscribe" not in message.text.lower()
    assert "Confirme su correo" in message.text  # the language chosen on the form
    token = _token_in(message.text)
    assert registration.token_hash == onboarding.hash_token(token) and token not in str(registration.model_dump())
    view = onboarding.inspect_registration(token)
    assert (view.practice_name, view.first_name, view.email) == ("Harbor Mental Health", "Nora", "nora.new@example.org")
    # Another password does not open it, and changes nothing.
    wrong = client.post(VERIFY, json={"token": token, "password": OTHER_PASSWORD})
    assert wrong.status_code == 422 and wrong.json()["field"] == "password"
    assert wrong.json()["code"] == "registration_password_mismatch"
    assert len(rows(harbor, User)) == users_before
    done = client.post(VERIFY, json={"token": token, "password": GOOD_PASSWORD})
    assert done.status_code == 204, done.text
    headers = _bearer(client, "nora.new@example.org", GOOD_PASSWORD)
    me = client.get("/api/v1/me", headers=headers).json()
    assert me["role"] == "patient" and me["patient_id"]
    patient = rows(harbor, Patient, id=uuid.UUID(me["patient_id"]))[0]
    assert (patient.full_name, patient.email, patient.phone, patient.locale) == (
        "Nora Newcomer", "nora.new@example.org", "+15550100199", "es")  # fmt: skip
    user = rows(harbor, User, email="nora.new@example.org")[0]
    assert user.is_active and user.terms_accepted_at == registration.terms_accepted_at
    spent = rows(harbor, Registration, id=registration.id)[0]
    assert spent.used_at is not None and spent.user_id == user.id and spent.password_hash == ""
    assert {"user.registration_requested", "user.registration_verified"} <= set(_actions(harbor))
    # The new patient books.
    body = {"provider_id": str(harbor.provider.id), "start": local_start(3, 10).isoformat()}
    booked = client.post("/api/v1/appointments", json=body, headers=headers)
    assert booked.status_code == 201, booked.text
    assert booked.json()["patient_id"] == str(patient.id)
    # The people list shows the new patient as active.
    people = {p.email: p.status for p in call(harbor.admin, onboarding.list_people)}
    assert people["nora.new@example.org"] == "active"


def test_a_verification_link_works_once_and_only_the_newest_works(harbor: Practice, client: TestClient) -> None:
    _open(harbor)
    client.post(REGISTER, json=_body())
    first = _newest_token(harbor)
    # Registering again (a lost e-mail) sends a new link; the first stops working, and so does its password.
    client.post(REGISTER, json=_body(password=OTHER_PASSWORD))
    second = _newest_token(harbor)
    assert second != first
    gone = client.post(VERIFY, json={"token": first, "password": GOOD_PASSWORD})
    assert gone.status_code == 410 and gone.json()["detail"] == onboarding.LINK_INVALID
    assert client.post(VERIFY, json={"token": second, "password": OTHER_PASSWORD}).status_code == 204
    again = client.post(VERIFY, json={"token": second, "password": OTHER_PASSWORD})
    assert again.status_code == 410
    with pytest.raises(onboarding.LinkInvalid):
        onboarding.inspect_registration(second)
    assert len(rows(harbor, User, email="nora.new@example.org")) == 1
    # Tokens of other kinds, and nonsense, get the same answer.
    for token in ("x", "A" * 43, "../../etc", "é" * 10, "\x00"):
        assert client.post(VERIFY, json={"token": token, "password": GOOD_PASSWORD}).status_code in {410, 422}


def test_an_expired_verification_link_is_refused(harbor: Practice, client: TestClient) -> None:
    _open(harbor)
    client.post(REGISTER, json=_body())
    token = _newest_token(harbor)
    with UnitOfWork(harbor.system) as uow:
        for registration in uow.session.exec(select(Registration)):
            registration.expires_at = utcnow() - timedelta(seconds=1)
            uow.session.add(registration)
        uow.commit()
    before = _counts(harbor)
    response = client.post(VERIFY, json={"token": token, "password": GOOD_PASSWORD})
    assert response.status_code == 410
    assert _counts(harbor) == before
    with pytest.raises(onboarding.LinkInvalid):
        onboarding.inspect_registration(token)


def test_turning_it_off_stops_open_links_too(harbor: Practice, client: TestClient) -> None:
    _open(harbor)
    client.post(REGISTER, json=_body())
    token = _newest_token(harbor)
    _open(harbor, enabled=False)
    refused = client.post(VERIFY, json={"token": token, "password": GOOD_PASSWORD})
    assert refused.status_code == 403 and refused.json()["code"] == "registration_closed"
    assert not rows(harbor, User, email="nora.new@example.org")
    _open(harbor)
    assert client.post(VERIFY, json={"token": token, "password": GOOD_PASSWORD}).status_code == 204


def test_an_existing_email_gets_the_other_message_and_no_second_account(harbor: Practice, client: TestClient) -> None:
    _open(harbor)
    users_before = len(rows(harbor, User))
    known = client.post(REGISTER, json=_body(email=harbor.patient_user.email.upper()))
    new = client.post(REGISTER, json=_body(email="someone.new@example.org"))
    assert known.status_code == new.status_code == 202 and known.json() == new.json()
    (exists,) = _notes(harbor, "registration_exists")
    # To the account's owner (the patient sees it in their own messages too), with the way to sign in, no link
    # that makes anything.
    assert exists.patient_id == harbor.patient.id
    message = call(harbor.admin, notes.read_message, exists.id)
    assert message.to == harbor.patient_user.email
    assert "already has one" in message.text and "/login?practice=harbor" in message.text
    assert "/verify/" not in message.text
    assert len(_notes(harbor, "registration_verify")) == 1  # the other, new e-mail's link
    (kept,) = [r for r in rows(harbor, Registration) if r.kind == "exists"]
    assert kept.user_id == harbor.patient_user.id and kept.password_hash == "" and kept.full_name == ""
    # A staff member's address the same way (their message concerns no patient).
    client.post(REGISTER, json=_body(email=harbor.doctor_user.email))
    staff = [n for n in _notes(harbor, "registration_exists") if n.patient_id is None]
    assert len(staff) == 1
    assert call(harbor.admin, notes.read_message, staff[0].id).to == harbor.doctor_user.email
    assert len(rows(harbor, User)) == users_before
    assert "user.registration_existing_account" in _actions(harbor)


def test_an_account_made_meanwhile_wins_over_an_open_link(harbor: Practice, client: TestClient) -> None:
    _open(harbor)
    client.post(REGISTER, json=_body())
    token = _newest_token(harbor)
    call(harbor.admin, onboarding.invite_person, full_name="Nora Newcomer", email="nora.new@example.org")
    clash = client.post(VERIFY, json={"token": token, "password": GOOD_PASSWORD})
    assert clash.status_code == 409 and clash.json()["code"] == "registration_exists"
    assert len(rows(harbor, User, email="nora.new@example.org")) == 1


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"full_name": "N"}, "full_name", "validation_failed"),
        ({"email": "not-an-email"}, "email", "validation_failed"),
        ({"phone": "555"}, "phone", "validation_failed"),
        ({"password": "Password2026!"}, "password", passwords.COMMON),
        ({"password": "short"}, "password", passwords.TOO_SHORT),
        ({"password": "nora.new@example.org"}, "password", passwords.IS_EMAIL),
        ({"password": "Nora Newcomer"}, "password", passwords.IS_NAME),
        ({"accept_terms": False}, "accept_terms", "validation_failed"),
        ({"locale": "fr"}, "locale", "validation_failed"),
    ],
)
def test_bad_input_gets_its_field_error_and_changes_nothing(
    harbor: Practice, client: TestClient, change: dict[str, Any], field: str, code: str
) -> None:
    _open(harbor)
    before = _counts(harbor)
    response = client.post(REGISTER, json=_body(**change))
    assert response.status_code == 422, response.text
    assert (response.json()["field"], response.json()["code"]) == (field, code)
    assert _counts(harbor) == before


def test_malformed_requests_are_422_and_change_nothing(harbor: Practice, client: TestClient) -> None:
    _open(harbor)
    before = _counts(harbor)
    for body in ({}, _body(full_name="Ann\x00Example"), _body(accept_terms="maybe"), _body(password=""),
                 _body(email="x" * 400), {**_body(), "practice": ""}):  # fmt: skip
        response = client.post(REGISTER, json=body)
        assert response.status_code == 422, (body, response.text)
    assert client.post(VERIFY, json={}).status_code == 422
    assert _counts(harbor) == before


def test_registration_is_rate_limited_per_address_and_per_email(
    harbor: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    _open(harbor)
    settings = get_settings()
    monkeypatch.setattr(settings, "rate_limit_enabled", True)
    monkeypatch.setattr(settings, "password_reset_address_max", 3)
    monkeypatch.setattr(settings, "password_reset_account_max", 2)

    def register(email: str, address: str) -> str:
        return onboarding.register_patient(
            practice="harbor", full_name="Nora Newcomer", email=email, password=GOOD_PASSWORD, accept_terms=True,
            client_address=address,
        )  # fmt: skip

    for _ in range(3):
        assert register("nora.new@example.org", "203.0.113.9") == onboarding.REGISTER_SENT
    # The fourth request from that address is refused, whatever the e-mail.
    for email in ("nora.new@example.org", harbor.patient_user.email):
        with pytest.raises(RateLimited) as refused:
            register(email, "203.0.113.9")
        assert 0 < refused.value.retry_after <= onboarding.ADDRESS_WINDOW_SECONDS
    # The e-mail got at most its share of messages; the third request was answered the same and sent nothing.
    assert len(_notes(harbor, "registration_verify")) == 2
    assert "user.registration_suppressed" in _actions(harbor)
    # Existing accounts are held to the same share (no one is flooded with "you already have an account").
    for address in ("203.0.113.20", "203.0.113.21", "203.0.113.22"):
        assert register(harbor.patient_user.email, address) == onboarding.REGISTER_SENT
    assert len(_notes(harbor, "registration_exists")) == 2


def test_the_browser_verify_form_signs_the_patient_in(harbor: Practice, client: TestClient) -> None:
    _open(harbor)
    client.post(REGISTER, json=_body())
    token = _newest_token(harbor)
    wrong = client.post("/auth/register/verify", data={"token": token, "password": OTHER_PASSWORD})
    assert wrong.headers["location"] == f"/verify/{token}?error=registration_password_mismatch"
    done = client.post("/auth/register/verify", data={"token": token, "password": GOOD_PASSWORD})
    assert (done.status_code, done.headers["location"]) == (303, "/patient")
    assert get_settings().session_cookie in done.headers["set-cookie"]
    used = client.post("/auth/register/verify", data={"token": token, "password": GOOD_PASSWORD})
    assert used.headers["location"] == f"/verify/{token}"  # the page then says the link is spent


def test_too_many_wrong_passwords_on_one_link_wait(harbor: Practice, client: TestClient) -> None:
    _open(harbor)
    client.post(REGISTER, json=_body())
    token = _newest_token(harbor)
    for _ in range(onboarding.VERIFY_ATTEMPTS_MAX):
        assert client.post(VERIFY, json={"token": token, "password": OTHER_PASSWORD}).status_code == 422
    held = client.post(VERIFY, json={"token": token, "password": GOOD_PASSWORD})
    assert held.status_code == 429 and int(held.headers["retry-after"]) > 0
    assert not rows(harbor, User, email="nora.new@example.org")


def test_with_real_channels_the_link_goes_by_email_only_and_greets_no_stranger_text(
    harbor: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.notifications import delivery, outbox

    _open(harbor)
    monkeypatch.setattr(get_settings(), "notifications_channel_mode", "providers")
    monkeypatch.setattr(outbox, "enqueue_deliveries", lambda ids: None)  # look at the rows, send nothing
    receipt = call(harbor.system, onboarding.request_registration, full_name="Nora Newcomer",
                   email="nora.new@example.org", password=GOOD_PASSWORD, accept_terms=True,
                   phone="+1 555 010 0199")  # fmt: skip
    assert receipt.kind == "verify" and len(receipt.notification_ids) == 1
    # A "name" that is someone else's words is not repeated to the address typed.
    spam = call(harbor.system, onboarding.request_registration, full_name="Win! Visit spam.example now",
                email="victim@example.org", password=GOOD_PASSWORD, accept_terms=True)  # fmt: skip
    with UnitOfWork(harbor.system) as uow:
        sent = []
        for note_id in (*receipt.notification_ids, *spam.notification_ids):
            note = uow.session.get(Notification, note_id)
            assert note is not None
            sent.append(delivery.render_message(uow, note))
    nora, victim = sent
    assert nora.channel == "email" and nora.to == "nora.new@example.org" and nora.unsubscribe_url is None
    assert "Hello Nora" in nora.text and "24 hours" in nora.text
    assert victim.to == "victim@example.org" and "spam.example" not in victim.text and "Win" not in victim.text
    # The admin reading the outbox sees the message without the link: only the person holds it.
    assert "/verify/…(hidden" in _message_text(harbor, receipt.notification_ids[0])


def test_registrations_stay_in_their_practice(harbor: Practice, summit: Practice, client: TestClient) -> None:
    """Registering at one practice with an e-mail known at another makes an account here only; links and
    settings are per practice."""
    _open(harbor)
    closed = client.post(REGISTER, json=_body(practice="summit", email=harbor.patient_user.email))
    assert closed.status_code == 403  # Summit has not opened registration: Harbor's setting is Harbor's
    client.post(REGISTER, json=_body(email=summit.patient_user.email))
    assert not _notes(harbor, "registration_exists") and len(_notes(harbor, "registration_verify")) == 1
    token = _newest_token(harbor)
    assert client.post(VERIFY, json={"token": token, "password": GOOD_PASSWORD}).status_code == 204
    assert len(rows(harbor, User, email=summit.patient_user.email)) == 1
    assert len(rows(summit, User, email=summit.patient_user.email)) == 1
    assert not rows(summit, Registration) and not _notes(summit, "registration_verify")

"""Onboarding and recovery (backend/identity/onboarding.py): invitations, first passwords, forgotten passwords.

Links are single-use and expire; only a hash of a token is stored; the forgot-password answer never tells whether
an account exists and is rate-limited; a reset ends every session and token; common passwords are refused; and
everything goes through the outbox and the audit trail.
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
from backend.errors import Conflict, NotFound, PermissionDenied, RateLimited, ValidationFailed
from backend.identity import onboarding, passwords
from backend.identity.models import Membership, OnboardingLink, Patient, Provider, User
from backend.notifications import service as notes
from backend.notifications.models import Notification
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from tests.factories import TEST_PASSWORD, Practice, bearer, call, make_practice, rows

GOOD_PASSWORD = "lantern orchard velvet 42"
NEW_PASSWORD = "quiet harbor copper kettle"


@pytest.fixture(autouse=True)
def own_keys(own_redis_keys: str) -> str:
    """This test's own Redis keys (login throttle, reset counters)."""
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


def _bearer(client: TestClient, email: str, password: str = TEST_PASSWORD) -> dict[str, str]:
    # With the MFA code an enrolled account (the admins) needs (tests/factories.py).
    return bearer(client, email, password)


def _message_text(practice: Practice, notification_id: uuid.UUID) -> str:
    return str(call(practice.admin, notes.read_message, notification_id).text)


def _token_in(text: str, path: str) -> str:
    found = re.search(re.escape(path) + r"([A-Za-z0-9_-]+)", text)
    assert found, text
    return found.group(1)


def _invite(practice: Practice, email: str = "new.patient@example.org", **kwargs: Any) -> tuple[Any, str]:
    """Invite someone; return the invitation and the token read from the message in the outbox (console)."""
    kwargs.setdefault("full_name", "Nora Newcomer")
    kwargs.setdefault("clinic_id", practice.clinic.id)
    invitation = call(practice.admin, onboarding.invite_person, email=email, **kwargs)
    assert len(invitation.notification_ids) == 1
    return invitation, _token_in(_message_text(practice, invitation.notification_ids[0]), "/invite/")


def _actions(practice: Practice) -> list[str]:
    return [e.action for e in rows(practice, AuditEvent)]


def _expire_links(practice: Practice) -> None:
    with UnitOfWork(practice.system) as uow:
        for link in uow.session.exec(select(OnboardingLink)):
            link.expires_at = utcnow() - timedelta(seconds=1)
            uow.session.add(link)
        uow.commit()


# -- invitations -----------------------------------------------------------------------------------------


def test_an_invited_patient_sets_a_password_and_signs_in(harbor: Practice, client: TestClient) -> None:
    invitation, token = _invite(harbor, phone="+1 555 010 0199")
    user = rows(harbor, User, id=invitation.user_id)[0]
    assert user.is_active is False
    patient = rows(harbor, Patient, id=invitation.patient_id)[0]
    assert (patient.email, patient.phone, patient.home_clinic_id) == ("new.patient@example.org", "+15550100199",
                                                                      harbor.clinic.id)  # fmt: skip
    assert rows(harbor, Membership, user_id=user.id)[0].role == Role.PATIENT
    # Only a hash is stored: the token appears in no column of the link row.
    link = rows(harbor, OnboardingLink, user_id=user.id)[0]
    assert token not in str(link.model_dump()) and link.token_hash == onboarding.hash_token(token)
    # The outbox row carries ids only, and the message is the link (console channel: the admin reads it).
    note = rows(harbor, Notification, id=invitation.notification_ids[0])[0]
    assert note.payload == {"link_id": str(link.id), "user_id": str(user.id)} and note.patient_id == patient.id
    assert note.event_type == "account_invite"
    # The page shows who is invited, before anything is set.
    view = onboarding.inspect_link(token, onboarding.INVITE)
    assert (view.practice_name, view.first_name, view.role) == ("Harbor Mental Health", "Nora", Role.PATIENT)
    # A password that is not accepted changes nothing.
    refused = client.post(
        "/api/v1/auth/invitation/accept", json={"token": token, "password": "password123!", "accept_terms": True}
    )
    assert refused.status_code == 422 and refused.json()["code"] == passwords.COMMON
    no_terms = client.post(
        "/api/v1/auth/invitation/accept", json={"token": token, "password": GOOD_PASSWORD, "accept_terms": False}
    )
    assert no_terms.status_code == 422
    assert rows(harbor, User, id=user.id)[0].is_active is False
    assert client.post("/api/v1/auth/token", json={"email": user.email, "password": GOOD_PASSWORD}).status_code == 401
    accepted = client.post(
        "/api/v1/auth/invitation/accept", json={"token": token, "password": GOOD_PASSWORD, "accept_terms": True}
    )
    assert accepted.status_code == 204, accepted.text
    me = client.get("/api/v1/me", headers=_bearer(client, user.email, GOOD_PASSWORD)).json()
    assert (me["role"], me["patient_id"]) == ("patient", str(patient.id))
    after = rows(harbor, User, id=user.id)[0]
    assert after.is_active and after.terms_accepted_at is not None
    assert {"user.invited", "user.invitation_accepted"} <= set(_actions(harbor))


def test_an_invitation_link_works_once(harbor: Practice, client: TestClient) -> None:
    _invitation, token = _invite(harbor)
    body = {"token": token, "password": GOOD_PASSWORD, "accept_terms": True}
    assert client.post("/api/v1/auth/invitation/accept", json=body).status_code == 204
    again = client.post("/api/v1/auth/invitation/accept", json={**body, "password": NEW_PASSWORD})
    assert again.status_code == 410 and again.json()["code"] == "link_invalid"
    assert again.json()["detail"] == onboarding.LINK_INVALID
    with pytest.raises(onboarding.LinkInvalid):
        onboarding.inspect_link(token, onboarding.INVITE)
    # The first password stands.
    assert client.post("/api/v1/auth/token", json={"email": "new.patient@example.org", "password": NEW_PASSWORD}
                       ).status_code == 401  # fmt: skip


def test_an_expired_invitation_is_refused_and_a_new_one_replaces_the_old(harbor: Practice, client: TestClient) -> None:
    invitation, old_token = _invite(harbor)
    _expire_links(harbor)
    body = {"token": old_token, "password": GOOD_PASSWORD, "accept_terms": True}
    assert client.post("/api/v1/auth/invitation/accept", json=body).status_code == 410
    people = {p.user_id: p for p in call(harbor.admin, onboarding.list_people)}
    assert people[invitation.user_id].status == "invite expired"
    again = call(harbor.admin, onboarding.resend_invitation, invitation.user_id)
    new_token = _token_in(_message_text(harbor, again.notification_ids[0]), "/invite/")
    assert new_token != old_token
    people = {p.user_id: p for p in call(harbor.admin, onboarding.list_people)}
    assert people[invitation.user_id].status == "invited"
    # A newer link replaces an older one still in date too.
    third = call(harbor.admin, onboarding.resend_invitation, invitation.user_id)
    third_token = _token_in(_message_text(harbor, third.notification_ids[0]), "/invite/")
    assert client.post("/api/v1/auth/invitation/accept", json={**body, "token": new_token}).status_code == 410
    assert client.post("/api/v1/auth/invitation/accept", json={**body, "token": third_token}).status_code == 204
    with pytest.raises(Conflict):
        call(harbor.admin, onboarding.resend_invitation, invitation.user_id)


def test_unknown_and_malformed_tokens_get_the_same_answer(client: TestClient, harbor: Practice) -> None:
    body = {"password": GOOD_PASSWORD, "accept_terms": True}
    answers = {
        client.post("/api/v1/auth/invitation/accept", json={**body, "token": token}).json()["detail"]
        for token in ("x", "A" * 43, "../../etc", "é" * 10)
    }
    assert answers == {onboarding.LINK_INVALID}
    # An invitation token is no reset token, and the other way round.
    _invitation, token = _invite(harbor)
    with pytest.raises(onboarding.LinkInvalid):
        onboarding.inspect_link(token, onboarding.RESET)
    response = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD})
    assert response.status_code == 410


def test_staff_are_invited_the_same_way(harbor: Practice, client: TestClient) -> None:
    invitation, token = _invite(harbor, email="dr.new@example.org", full_name="Dana New", role=Role.DOCTOR,
                                title="PsyD")  # fmt: skip
    provider = rows(harbor, Provider, id=invitation.provider_id)[0]
    assert (provider.full_name, provider.title) == ("Dana New", "PsyD")
    note = rows(harbor, Notification, id=invitation.notification_ids[0])[0]
    assert note.patient_id is None  # a staff member's message concerns no patient
    outbox = call(harbor.admin, notes.list_notifications)
    assert [v.patient_name for v in outbox if v.id == note.id] == ["Dana New (staff)"]
    message = call(harbor.admin, notes.read_message, note.id)
    assert message.to == "dr.new@example.org" and "unsubscribe" not in message.text.lower()
    admin = _bearer(client, harbor.admin_user.email)
    listed = client.get("/api/v1/notifications", headers=admin, params={"event_type": "account_invite"})
    assert listed.status_code == 200 and [n["patient_id"] for n in listed.json()] == [None]
    read = client.get(f"/api/v1/notifications/{note.id}", headers=admin)
    assert read.status_code == 200 and "/invite/" in read.json()["text"]
    body = {"token": token, "password": GOOD_PASSWORD, "accept_terms": True}
    assert client.post("/api/v1/auth/invitation/accept", json=body).status_code == 204
    headers = _bearer(client, "dr.new@example.org", GOOD_PASSWORD)
    assert client.get("/api/v1/me", headers=headers).json()["provider_id"] == str(provider.id)
    # Deactivating the staff member ends their sessions and tokens at once.
    assert client.post(f"/api/v1/users/{invitation.user_id}/disable", headers=admin).status_code == 200
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    people = {p.user_id: p.status for p in call(harbor.admin, onboarding.list_people)}
    assert people[invitation.user_id] == "deactivated"


def test_invitations_refuse_bad_input_and_change_nothing(harbor: Practice, client: TestClient) -> None:
    admin = _bearer(client, harbor.admin_user.email)
    before = len(rows(harbor, User))
    cases = [
        {"full_name": "A", "email": "a@example.org"},
        {"full_name": "Ann Example", "email": "not-an-email"},
        {"full_name": "Ann Example", "email": harbor.patient_user.email},  # taken: 409
        {"full_name": "Ann Example", "email": "ann@example.org", "phone": "555"},
        {"full_name": "Ann Example", "email": "ann@example.org", "role": "system"},
        {"full_name": "Ann Example", "email": "ann@example.org", "role": "doctor"},  # a doctor needs a clinic
        {"full_name": "Ann Example", "email": "ann@example.org", "clinic_id": str(uuid.uuid4())},
        {"full_name": "Ann\x00Example", "email": "ann@example.org"},
    ]
    for body in cases:
        response = client.post("/api/v1/invitations", json=body, headers=admin)
        assert response.status_code in {404, 409, 422}, (body, response.status_code, response.text)
        assert "detail" in response.json()
    assert len(rows(harbor, User)) == before
    for role in ("doctor", "patient"):
        headers = _bearer(client, harbor.emails[role])
        response = client.post("/api/v1/invitations", json={"full_name": "Ann Example", "email": "ann@example.org"},
                               headers=headers)  # fmt: skip
        assert response.status_code == 403
    with pytest.raises(PermissionDenied):
        call(harbor.doctor, onboarding.list_people)


def test_invitations_stay_in_their_practice(harbor: Practice, summit: Practice) -> None:
    """From both sides: another practice's clinic and users are missing ones; lists show only one's own."""
    for me, other in ((harbor, summit), (summit, harbor)):
        with pytest.raises(NotFound) as foreign:
            call(me.admin, onboarding.invite_person, full_name="Ann Example", email=f"ann@{me.tenant.slug}.org",
                 clinic_id=other.clinic.id)  # fmt: skip
        with pytest.raises(NotFound) as missing:
            call(me.admin, onboarding.invite_person, full_name="Ann Example", email=f"ann@{me.tenant.slug}.org",
                 clinic_id=uuid.uuid4())  # fmt: skip
        assert foreign.value.message == missing.value.message
        invitation, _token = _invite(other, email=f"pending@{other.tenant.slug}.org")
        with pytest.raises(NotFound):
            call(me.admin, onboarding.resend_invitation, invitation.user_id)
        mine = {p.user_id for p in call(me.admin, onboarding.list_people)}
        assert invitation.user_id not in mine and me.admin_user.id in mine
        assert not mine & {u.id for u in rows(other, User)}
    # The same e-mail may be invited by each practice: accounts are per practice.
    call(harbor.admin, onboarding.invite_person, full_name="Sam Same", email="same@example.org")
    call(summit.admin, onboarding.invite_person, full_name="Sam Same", email="same@example.org")


# -- forgotten passwords ---------------------------------------------------------------------------------


def test_forgot_password_answers_the_same_for_known_and_unknown_emails(harbor: Practice, client: TestClient) -> None:
    known = client.post("/api/v1/auth/password-reset", json={"email": harbor.patient_user.email.upper()})
    unknown = client.post("/api/v1/auth/password-reset", json={"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json() == {"detail": onboarding.RESET_SENT}
    # The browser form too: the same redirect either way.
    forms = [client.post("/auth/forgot", data={"email": e}) for e in (harbor.patient_user.email, "nobody@x.org")]
    assert {(r.status_code, r.headers["location"]) for r in forms} == {(303, "/forgot?sent=1")}
    sent = [n for n in rows(harbor, Notification) if n.event_type == "password_reset"]
    assert len(sent) == 2 and {n.patient_id for n in sent} == {harbor.patient.id}
    # An account not yet accepted (or deactivated) gets nothing, with the same answer.
    _invite(harbor, email="pending@example.org")
    assert client.post("/api/v1/auth/password-reset", json={"email": "pending@example.org"}).json() == known.json()
    assert len([n for n in rows(harbor, Notification) if n.event_type == "password_reset"]) == 2


def test_a_reset_link_sets_a_new_password_once_and_ends_every_session(harbor: Practice, client: TestClient) -> None:
    old_token = _bearer(client, harbor.patient_user.email)
    assert client.get("/api/v1/me", headers=old_token).status_code == 200
    onboarding.request_password_reset(email=harbor.patient_user.email, client_address="198.51.100.7")
    note = next(n for n in rows(harbor, Notification) if n.event_type == "password_reset")
    token = _token_in(_message_text(harbor, note.id), "/reset/")
    assert onboarding.inspect_link(token, onboarding.RESET).email == harbor.patient_user.email
    weak = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "qwertyuiop"})
    assert weak.status_code == 422 and weak.json()["code"] == passwords.COMMON
    email_like = {"token": token, "new_password": harbor.patient_user.email}
    assert client.post("/api/v1/auth/password-reset/confirm", json=email_like).status_code == 422
    assert client.get("/api/v1/me", headers=old_token).status_code == 200  # nothing changed yet
    done = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD})
    assert done.status_code == 204
    assert client.get("/api/v1/me", headers=old_token).status_code == 401
    assert client.post("/api/v1/auth/token", json={"email": harbor.patient_user.email, "password": TEST_PASSWORD}
                       ).status_code == 401  # fmt: skip
    _bearer(client, harbor.patient_user.email, NEW_PASSWORD)
    again = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": GOOD_PASSWORD})
    assert again.status_code == 410
    assert {"user.password_reset_requested", "user.password_reset"} <= set(_actions(harbor))


def test_the_browser_reset_form_goes_to_the_sign_in_page(harbor: Practice, client: TestClient) -> None:
    onboarding.request_password_reset(email=harbor.doctor_user.email, client_address=None)
    note = next(n for n in rows(harbor, Notification) if n.event_type == "password_reset")
    assert note.patient_id is None  # the doctor has no patient record: a staff message
    token = _token_in(_message_text(harbor, note.id), "/reset/")
    weak = client.post("/auth/reset", data={"token": token, "password": "short"})
    assert weak.headers["location"] == f"/reset/{token}?error={passwords.TOO_SHORT}"
    done = client.post("/auth/reset", data={"token": token, "password": NEW_PASSWORD})
    assert (done.status_code, done.headers["location"]) == (303, "/login?reset=1")
    used = client.post("/auth/reset", data={"token": token, "password": NEW_PASSWORD})
    assert used.headers["location"] == f"/reset/{token}"  # the page then explains the link is spent


def test_an_expired_reset_link_is_refused(harbor: Practice, client: TestClient) -> None:
    onboarding.request_password_reset(email=harbor.admin_user.email, client_address=None)
    note = next(n for n in rows(harbor, Notification) if n.event_type == "password_reset")
    token = _token_in(_message_text(harbor, note.id), "/reset/")
    _expire_links(harbor)
    response = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD})
    assert response.status_code == 410
    _bearer(client, harbor.admin_user.email)  # the old password still works


def test_forgot_password_is_rate_limited_per_address_and_per_account(
    harbor: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "rate_limit_enabled", True)
    monkeypatch.setattr(settings, "password_reset_address_max", 3)
    monkeypatch.setattr(settings, "password_reset_account_max", 2)
    for _ in range(3):
        onboarding.request_password_reset(email=harbor.patient_user.email, client_address="203.0.113.9")
    # The fourth request from that address is refused, whatever the e-mail (no account is told apart).
    for email in (harbor.patient_user.email, "nobody@example.org"):
        with pytest.raises(RateLimited) as refused:
            onboarding.request_password_reset(email=email, client_address="203.0.113.9")
        assert 0 < refused.value.retry_after <= onboarding.ADDRESS_WINDOW_SECONDS
    # The account got at most its share of e-mails; the third request was answered the same and sent nothing.
    resets = [n for n in rows(harbor, Notification) if n.event_type == "password_reset"]
    assert len(resets) == 2
    assert "user.password_reset_suppressed" in _actions(harbor)
    # Another address is not held back by the first one's limit.
    onboarding.request_password_reset(email="nobody@example.org", client_address="203.0.113.10")


def test_a_reset_link_message_hides_the_link_outside_the_console(harbor: Practice) -> None:
    onboarding.request_password_reset(email=harbor.patient_user.email, client_address=None)
    note = next(n for n in rows(harbor, Notification) if n.event_type == "password_reset")
    text = _message_text(harbor, note.id)
    assert "/reset/" in text and "hidden" not in text
    emailed = Notification(
        tenant_id=harbor.tenant_id, patient_id=note.patient_id, event_type=note.event_type, channel="email"
    )
    hidden = notes.hide_link(emailed, text)
    assert _token_in(text, "/reset/") not in hidden and "/reset/…(hidden" in hidden


# -- the password policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password", ["password123", "Password2026!", "qwertyuiop", "1234567890", "iloveyou12", "aaaaaaaaaaaa",
                 "abcabcabcabc", "waitwell2026", "  Sunshine123  "],
)  # fmt: skip
def test_common_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        passwords.check(password, minimum=10)
    assert refused.value.code == passwords.COMMON


def test_the_policy_has_no_composition_rules_and_bounds_the_length() -> None:
    passwords.check("lowercase words only here", minimum=10)  # no digit, no symbol, no capital: fine
    passwords.check("ünïcödé pässwörd ✓", minimum=10)
    for bad, code in [("short", passwords.TOO_SHORT), ("x" * 1025, passwords.TOO_LONG),
                      ("ann@example.org", passwords.IS_EMAIL), ("Ann Example", passwords.IS_NAME)]:  # fmt: skip
        with pytest.raises(ValidationFailed) as refused:
            passwords.check(bad, minimum=10, email="ann@example.org", names=("Ann Example",))
        assert refused.value.code == code
    assert len(passwords.common_passwords()) > 3000


def test_changing_a_password_refuses_a_common_one_too(harbor: Practice, client: TestClient) -> None:
    headers = _bearer(client, harbor.patient_user.email)
    response = client.post("/api/v1/me/password", headers=headers,
                           json={"current_password": TEST_PASSWORD, "new_password": "password1234"})  # fmt: skip
    assert response.status_code == 422 and response.json()["code"] == passwords.COMMON


def test_the_link_pages_resolve_no_token_as_a_system_actor_of_another_practice(harbor: Practice) -> None:
    """The lookup is the system scope's; what follows acts as the link's own practice only."""
    invitation, token = _invite(harbor)
    view = onboarding.inspect_link(token, onboarding.INVITE)
    assert view.practice_name == harbor.tenant.name
    actor = onboarding.accept_invitation(token=token, password=GOOD_PASSWORD, accept_terms=True)
    assert actor == Actor(tenant_id=harbor.tenant_id, role=Role.PATIENT, user_id=invitation.user_id,
                          patient_id=invitation.patient_id)  # fmt: skip


def test_with_real_channels_the_link_goes_by_email_and_by_an_sms_without_phi(
    harbor: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.notifications import delivery, outbox

    monkeypatch.setattr(get_settings(), "notifications_channel_mode", "providers")
    monkeypatch.setattr(outbox, "enqueue_deliveries", lambda ids: None)  # look at the rows, send nothing
    invitation = call(harbor.admin, onboarding.invite_person, full_name="Nora Newcomer", email="nora@example.org",
                      phone="+1 555 010 0199", clinic_id=harbor.clinic.id)  # fmt: skip
    with UnitOfWork(harbor.system) as uow:
        sent = {}
        for note_id in invitation.notification_ids:
            note = uow.session.get(Notification, note_id)
            assert note is not None
            sent[str(note.channel)] = delivery.render_message(uow, note)
    assert set(sent) == {"email", "sms"}
    assert sent["email"].to == "nora@example.org" and sent["sms"].to == "+15550100199"
    sms = sent["sms"].text
    assert re.fullmatch(r"Set your password: http\S+/invite/[A-Za-z0-9_-]{43}", sms), sms
    assert "Harbor" not in sms and "Nora" not in sms
    assert sent["email"].unsubscribe_url is None and "72 hours" in sent["email"].text
    # The admin reading the outbox sees these messages without the link: only the person holds it.
    for note_id in invitation.notification_ids:
        assert "/invite/…(hidden" in _message_text(harbor, note_id)
    # Staff get their link by e-mail only (their mobile is kept nowhere).
    staff = call(harbor.admin, onboarding.invite_person, full_name="Sam Staff", email="sam@example.org",
                 role=Role.ADMIN, phone="+1 555 010 0100")  # fmt: skip
    assert len(staff.notification_ids) == 1

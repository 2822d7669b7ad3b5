"""Provider reports after a send: Twilio status callbacks and SendGrid's signed Event Webhook.

They reconcile a row whose worker died after the provider took the message (so it is never sent again), keep
the delivery status without letting a late report undo a newer one, and turn an undelivered or bounced message
into a dead letter the admin can send again. Requests are signed the way the providers sign them: Twilio's
X-Twilio-Signature with the SDK's RequestValidator, SendGrid's ECDSA signature over timestamp + body.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from backend.api.app import api
from backend.api.routes.webhooks import SENDGRID_EVENTS_PATH
from backend.db import UnitOfWork
from backend.notifications import channels, delivery, outbox, service
from backend.notifications.channels import TWILIO_STATUS_PATH
from backend.notifications.models import NotificationStatus
from backend.settings import get_settings
from backend.types import utcnow
from tests.factories import Practice, make_practice
from tests.integration.test_delivery import record_booking, state
from tests.integration.test_outbox import FakeChannel

S = NotificationStatus
TOKEN = "test-twilio-auth-token-0123456789"
SID = "SM" + "a" * 32
DAYS = itertools.count(2)  # each booking on its own day


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeChannel:
    """Messages go to a fake channel (the SDKs are tested elsewhere); the test delivers them itself."""
    channel = FakeChannel()
    monkeypatch.setattr(channels, "channel_for", lambda name, settings=None: channel)
    monkeypatch.setattr(delivery, "throttle_wait", lambda tenant_id, notification_id: 0.0)
    monkeypatch.setattr(outbox, "enqueue_deliveries", lambda ids: None)
    monkeypatch.setattr(service, "enqueue_deliveries", lambda ids: None)
    return channel


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def sendgrid_key(monkeypatch: pytest.MonkeyPatch) -> ec.EllipticCurvePrivateKey:
    """A key pair like SendGrid's: the verification key set as the app sees it (base64 DER, no PEM lines)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    public = private.public_key().public_bytes(*der)
    monkeypatch.setattr(get_settings(), "sendgrid_webhook_public_key", base64.b64encode(public).decode())
    return private


@pytest.fixture
def twilio_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "twilio_auth_token", TOKEN)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


def twilio_report(client: TestClient, notification_id: object, params: dict[str, str], *, token: str = TOKEN) -> Any:
    path = f"{TWILIO_STATUS_PATH}?notification_id={notification_id}"
    url = get_settings().public_url.rstrip("/") + path
    signature = RequestValidator(token).compute_signature(url, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def sendgrid_post(client: TestClient, key: ec.EllipticCurvePrivateKey, events: list[dict[str, Any]]) -> Any:
    body = json.dumps(events)
    timestamp = str(int(utcnow().timestamp()))
    signature = base64.b64encode(key.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256()))).decode()
    headers = {"X-Twilio-Email-Event-Webhook-Signature": signature,
               "X-Twilio-Email-Event-Webhook-Timestamp": timestamp, "Content-Type": "application/json"}  # fmt: skip
    return client.post(SENDGRID_EVENTS_PATH, content=body, headers=headers)


def sent_with(harbor: Practice, fake: FakeChannel) -> tuple[uuid.UUID, str]:
    """A booking notice delivered through the fake channel: its id and the provider's message id."""
    nid = record_booking(harbor, days=next(DAYS))
    assert delivery.deliver(nid) == "sent"
    row, _ = state(harbor, nid)
    assert row.provider_message_id
    return nid, row.provider_message_id


def ledger(harbor: Practice, nid: uuid.UUID) -> tuple[str, str, str, int, str | None]:
    row, note = state(harbor, nid)
    assert (note.status, note.provider_status, note.last_error) == (row.status, row.provider_status, row.last_error)
    return row.status, row.provider_status, row.last_error, row.attempts, row.provider_message_id


# -- Twilio status callbacks --------------------------------------------------------------------------------------


def test_a_status_callback_keeps_the_delivery_status(
    harbor: Practice, fake: FakeChannel, client: TestClient, twilio_token: None
) -> None:
    nid, sid = sent_with(harbor, fake)
    response = twilio_report(client, nid, {"MessageSid": sid, "MessageStatus": "delivered", "To": "+15550001"})
    assert response.status_code == 204
    assert ledger(harbor, nid) == (S.SENT, "delivered", "", 1, sid)
    row, note = state(harbor, nid)
    assert row.provider_status_at is not None and note.provider_status_at == row.provider_status_at
    # A late, lower report (Twilio does not promise order) does not undo it.
    twilio_report(client, nid, {"MessageSid": sid, "MessageStatus": "sent"})
    assert ledger(harbor, nid)[1] == "delivered"


def test_a_callback_reconciles_a_row_whose_worker_died_after_twilio_took_it(
    harbor: Practice, fake: FakeChannel, client: TestClient, twilio_token: None
) -> None:
    nid = record_booking(harbor)
    claim = delivery.claim_one(nid)  # a worker claims the row, sends, and is killed before it records anything
    assert isinstance(claim, delivery.Claim)
    assert ledger(harbor, nid) == (S.SENDING, "", "", 1, None)
    twilio_report(client, nid, {"MessageSid": SID, "MessageStatus": "sent"})
    assert ledger(harbor, nid) == (S.SENT, "sent", "", 1, SID)
    # Past the dead worker's lease the sweep finds nothing to reconcile and nothing to send.
    assert delivery.sweep(now=utcnow() + delivery.lease() + timedelta(seconds=1)) == {}
    assert fake.sent == []


def test_undelivered_is_a_dead_letter_the_admin_can_send_again(
    harbor: Practice, fake: FakeChannel, client: TestClient, twilio_token: None
) -> None:
    nid, sid = sent_with(harbor, fake)
    twilio_report(client, nid, {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"})
    assert ledger(harbor, nid) == (S.DEAD, "undelivered", "Not delivered (code 30003)", 1, sid)
    with UnitOfWork(harbor.admin) as uow:
        assert [v.id for v in service.list_notifications(harbor.admin, uow, status="dead")] == [nid]

    with UnitOfWork(harbor.admin) as uow:
        service.retry_notification(harbor.admin, uow, nid)
        uow.commit()
    # Until the new message goes, a late report about the old one changes nothing.
    twilio_report(client, nid, {"MessageSid": sid, "MessageStatus": "delivered"})
    assert ledger(harbor, nid)[:2] == (S.PENDING, "undelivered")
    assert delivery.deliver(nid) == "sent"
    status, provider_status, error, attempts, new_id = ledger(harbor, nid)
    assert (status, provider_status, error, attempts) == (S.SENT, "", "", 1) and new_id != sid
    # ... and after it, reports about the old message are another attempt's.
    twilio_report(client, nid, {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "30008"})
    assert ledger(harbor, nid)[:2] == (S.SENT, "")
    assert len(fake.sent) == 2


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"signature": "bad"}, 403),  # not signed with our account's token
        ({"token": "another-account-token"}, 403),
        ({"notification_id": "not-a-uuid"}, 422),
    ],
)
def test_a_bad_callback_is_refused_and_changes_nothing(
    harbor: Practice, fake: FakeChannel, client: TestClient, twilio_token: None,
    change: dict[str, str], status: int,
) -> None:  # fmt: skip
    nid, sid = sent_with(harbor, fake)
    params = {"MessageSid": sid, "MessageStatus": "undelivered"}
    if "signature" in change:
        response = client.post(f"{TWILIO_STATUS_PATH}?notification_id={nid}", data=params,
                               headers={"X-Twilio-Signature": change["signature"]})  # fmt: skip
    else:
        response = twilio_report(client, change.get("notification_id", nid), params, token=change.get("token", TOKEN))
    assert response.status_code == status
    assert ledger(harbor, nid) == (S.SENT, "", "", 1, sid)


def test_the_status_callback_is_refused_when_twilio_is_not_configured(
    harbor: Practice, fake: FakeChannel, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "twilio_auth_token", None)
    nid, sid = sent_with(harbor, fake)
    assert twilio_report(client, nid, {"MessageSid": sid, "MessageStatus": "failed"}).status_code == 403
    assert ledger(harbor, nid)[0] == S.SENT


def test_a_report_naming_one_practices_message_cannot_touch_anothers(
    harbor: Practice, fake: FakeChannel, client: TestClient, twilio_token: None
) -> None:
    summit = make_practice("Summit Counseling", "summit")
    ours, our_sid = sent_with(harbor, fake)
    theirs, their_sid = sent_with(summit, fake)
    # Summit's message id against Harbor's notification (and the other way round): another message, ignored.
    twilio_report(client, ours, {"MessageSid": their_sid, "MessageStatus": "undelivered"})
    twilio_report(client, theirs, {"MessageSid": our_sid, "MessageStatus": "undelivered"})
    twilio_report(client, uuid.uuid4(), {"MessageSid": our_sid, "MessageStatus": "undelivered"})
    assert ledger(harbor, ours) == (S.SENT, "", "", 1, our_sid)
    assert ledger(summit, theirs) == (S.SENT, "", "", 1, their_sid)


# -- SendGrid Event Webhook ------------------------------------------------------------------------------------


def test_sendgrid_events_report_delivery_and_bounces_without_keeping_the_address(
    harbor: Practice, fake: FakeChannel, client: TestClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    delivered, delivered_id = sent_with(harbor, fake)
    bounced, bounced_id = sent_with(harbor, fake)
    events = [
        {"event": "processed", "notification_id": str(delivered), "sg_message_id": f"{delivered_id}.filter0001.1.0"},
        {"event": "delivered", "notification_id": str(delivered), "sg_message_id": f"{delivered_id}.filter0001.1.0"},
        {"event": "open", "notification_id": str(delivered), "sg_message_id": f"{delivered_id}.filter0001.1.0"},
        {"event": "bounce", "notification_id": str(bounced), "sg_message_id": f"{bounced_id}.filter0002.1.0",
         "type": "bounce", "status": "5.1.1", "email": "ana@mail.test",
         "reason": "550 5.1.1 <ana@mail.test>: Recipient address rejected"},
        {"event": "delivered", "sg_message_id": "someone-elses.filter.1.0", "email": "x@mail.test"},
    ]  # fmt: skip
    response = sendgrid_post(client, sendgrid_key, events)
    assert response.status_code == 200
    assert response.json() == {"noted": 2, "ignored": 1, "dead": 1, "not ours": 1}
    assert ledger(harbor, delivered) == (S.SENT, "delivered", "", 1, delivered_id)
    status, provider_status, error, _, _ = ledger(harbor, bounced)
    assert (status, provider_status, error) == (S.DEAD, "bounce", "Bounced (code 5.1.1)")
    _, note = state(harbor, bounced)
    assert "ana@" not in note.last_error and "ana@" not in note.provider_status


def test_sendgrid_events_need_a_valid_signature(
    harbor: Practice, fake: FakeChannel, client: TestClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    nid, message_id = sent_with(harbor, fake)
    events = [{"event": "dropped", "notification_id": str(nid), "sg_message_id": f"{message_id}.x"}]
    forger = ec.generate_private_key(ec.SECP256R1())
    assert sendgrid_post(client, forger, events).status_code == 403
    unsigned = client.post(SENDGRID_EVENTS_PATH, json=events)
    assert unsigned.status_code == 403
    assert ledger(harbor, nid)[:2] == (S.SENT, "")


def test_sendgrid_events_refuse_a_body_that_is_not_a_list_of_events(
    client: TestClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    response = sendgrid_post(client, sendgrid_key, {"event": "delivered"})  # type: ignore[arg-type]
    assert response.status_code == 422
    assert "JSON array" in response.json()["detail"]


def test_sendgrid_events_are_refused_when_no_key_is_set(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "sendgrid_webhook_public_key", None)
    key = ec.generate_private_key(ec.SECP256R1())
    assert sendgrid_post(client, key, []).status_code == 403

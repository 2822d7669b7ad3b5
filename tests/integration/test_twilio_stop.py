"""A STOP reply to an SMS or WhatsApp message turns that channel off: signature checked, change audited."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from backend.api.app import api
from backend.api.routes.webhooks import TWILIO_INBOUND_PATH
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.identity.models import Patient
from backend.notifications.models import NotificationPreference
from backend.notifications.preferences import normalise_phone
from backend.settings import get_settings
from tests.factories import Practice, make_practice, rows

TOKEN = "test-twilio-auth-token-0123456789"
PHONE = "+1 (212) 555-0188"


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    settings = get_settings()
    monkeypatch.setattr(settings, "twilio_auth_token", TOKEN)
    yield settings.public_url.rstrip("/") + TWILIO_INBOUND_PATH


@pytest.fixture
def practices(db: sa.Engine) -> tuple[Practice, Practice]:
    harbor, summit = make_practice("Harbor Mental Health", "harbor"), make_practice("Summit Counseling", "summit")
    for p in (harbor, summit):
        with UnitOfWork(p.system) as uow:
            patient = uow.session.get(Patient, p.patient.id)
            assert patient is not None
            patient.phone = PHONE
            uow.session.add(patient)
            uow.session.add(
                NotificationPreference(tenant_id=p.tenant_id, patient_id=p.patient.id, sms_opt_in=True,
                                       whatsapp_opt_in=True)
            )  # fmt: skip
            uow.commit()
    return harbor, summit


def _post(url: str, params: dict[str, str], *, signature: str | None = None) -> object:
    signed = RequestValidator(TOKEN).compute_signature(url, params) if signature is None else signature
    with TestClient(api) as client:
        return client.post(TWILIO_INBOUND_PATH, data=params, headers={"X-Twilio-Signature": signed})


def _prefs(p: Practice) -> tuple[bool, bool]:
    (pref,) = rows(p, NotificationPreference)
    return pref.sms_opt_in, pref.whatsapp_opt_in


def test_stop_by_sms_turns_sms_off_in_every_practice_with_that_number(
    configured: str, practices: tuple[Practice, Practice]
) -> None:
    response = _post(configured, {"From": normalise_phone(PHONE), "Body": "  stop "})
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert "<Response>" in response.text  # type: ignore[attr-defined]
    for p in practices:
        assert _prefs(p) == (False, True)
        audit = [e for e in rows(p, AuditEvent) if e.action == "notification.opted_out"]
        assert [(e.entity_id, e.data) for e in audit] == [(p.patient.id, {"channel": "sms", "via": "stop_reply"})]


def test_stop_by_whatsapp_turns_only_whatsapp_off(configured: str, practices: tuple[Practice, Practice]) -> None:
    _post(configured, {"From": "whatsapp:" + normalise_phone(PHONE), "Body": "UNSUBSCRIBE"})
    assert all(_prefs(p) == (True, False) for p in practices)


def test_other_replies_change_nothing(configured: str, practices: tuple[Practice, Practice]) -> None:
    response = _post(configured, {"From": normalise_phone(PHONE), "Body": "please stop by at 5"})
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert all(_prefs(p) == (True, True) for p in practices)


def test_a_bad_signature_is_refused_and_changes_nothing(configured: str, practices: tuple[Practice, Practice]) -> None:
    response = _post(configured, {"From": normalise_phone(PHONE), "Body": "STOP"}, signature="forged")
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert all(_prefs(p) == (True, True) for p in practices)


def test_unconfigured_webhook_is_refused(practices: tuple[Practice, Practice]) -> None:
    response = _post("http://unused", {"From": normalise_phone(PHONE), "Body": "STOP"})
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert all(_prefs(p) == (True, True) for p in practices)

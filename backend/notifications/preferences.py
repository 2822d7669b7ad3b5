"""Channel opt-outs that arrive from outside a session: a STOP reply to an SMS or WhatsApp message, and the
signed token of the unsubscribe link in every e-mail (the link is carried out by
backend.notifications.service.unsubscribe_with_token). And the patient's language (`set_language`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from typing import Any

from sqlmodel import col, select

from backend.audit.service import record
from backend.db import UnitOfWork
from backend.errors import NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import Patient
from backend.notifications.models import NotificationPreference
from backend.notifications.templates import LOCALES
from backend.service import require_role, service_function
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.types import utcnow

# Carrier-standard opt-out words (Twilio's list); matched on the whole trimmed message, case-insensitively.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})


def normalise_phone(raw: str) -> str:
    """'+1 (212) 555-0111' or 'whatsapp:+12125550111' -> '+12125550111'."""
    raw = raw.removeprefix("whatsapp:")
    digits = re.sub(r"\D", "", raw)
    return f"+{digits}" if digits else ""


def is_stop(body: str) -> bool:
    return body.strip().upper() in STOP_WORDS


def locked_preference(uow: UnitOfWork, tenant_id: uuid.UUID, patient_id: uuid.UUID) -> NotificationPreference:
    """The patient's preference row, created with the defaults when missing, locked for this transaction.

    INSERT ... ON CONFLICT DO NOTHING first, so two first saves at once (a page save and an unsubscribe, say)
    never collide on the unique patient_id: the second waits for the first and then changes its row."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if uow.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    defaults = NotificationPreference(tenant_id=tenant_id, patient_id=patient_id)
    columns = {c.name: getattr(defaults, c.name) for c in NotificationPreference.__table__.columns}  # type: ignore[attr-defined]
    uow.session.execute(
        insert(NotificationPreference.__table__).values(columns).on_conflict_do_nothing(index_elements=["patient_id"])  # type: ignore[attr-defined]
    )
    return uow.session.exec(
        select(NotificationPreference)
        .where(NotificationPreference.patient_id == patient_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def opt_out_by_phone(phone: str, channel: str) -> int:
    """Turn `channel` ("sms" or "whatsapp") off for every patient with this number; return how many.

    A STOP reply names a phone, not a practice: every practice that texts this number stops doing so."""
    if channel not in ("sms", "whatsapp"):
        raise ValueError("channel must be sms or whatsapp")
    wanted = normalise_phone(phone)
    if not wanted:
        return 0
    with UnitOfWork(system=True) as uow:
        matches = [
            (p.tenant_id, p.id)
            for p in uow.session.exec(select(Patient).where(col(Patient.phone) != ""))
            if normalise_phone(p.phone) == wanted
        ]
    for tenant_id, patient_id in matches:
        _opt_out(tenant_id, patient_id, channel)
    return len(matches)


def _opt_out(tenant_id: uuid.UUID, patient_id: uuid.UUID, channel: str) -> None:
    actor = Actor.system(tenant_id)
    with UnitOfWork(actor) as uow:
        pref = locked_preference(uow, tenant_id, patient_id)
        setattr(pref, f"{channel}_opt_in", False)
        pref.updated_at = utcnow()
        uow.session.add(pref)
        record(
            actor,
            uow,
            action="notification.opted_out",
            entity_type="patient",
            entity_id=patient_id,
            data={"channel": channel, "via": "stop_reply"},
        )
        uow.commit()


# --- the patient's language ---------------------------------------------------------------------------------


@service_function
def set_language(actor: Actor, uow: UnitOfWork, language: str) -> str:
    """The patient chooses the language of their pages and messages (one we ship); audited when it changes."""
    require_role(actor, Role.PATIENT)
    if actor.patient_id is None:
        raise PermissionDenied("your account has no patient record")
    wanted = str(language or "").strip().lower()
    if wanted not in LOCALES:
        raise ValidationFailed(f"choose one of the languages offered: {', '.join(LOCALES)}", field="language")
    patient = uow.session.exec(select(Patient).where(Patient.id == actor.patient_id).with_for_update()).first()
    if patient is None:
        raise NotFound("patient")
    if patient.locale != wanted:
        previous = patient.locale
        patient.locale = wanted
        uow.session.add(patient)
        record(actor, uow, action="patient.language_changed", entity_type="patient", entity_id=patient.id,
               data={"from": previous, "to": wanted})  # fmt: skip
        uow.flush()
    return wanted


# --- the unsubscribe link ---------------------------------------------------------------------------------


_TOKEN_MAC_BYTES = 16


def _mac(body: bytes) -> bytes:
    key = get_settings().secret_key.encode()
    return hmac.new(key, b"unsubscribe:" + body, hashlib.sha256).digest()[:_TOKEN_MAC_BYTES]


def unsubscribe_token(tenant_id: uuid.UUID, patient_id: uuid.UUID) -> str:
    """A short signed token naming one patient of one practice, for the e-mail footer: the two ids and an
    HMAC-SHA256 (128 bits) under the app's secret, base64url, 64 characters. It has no expiry (an unsubscribe
    link must keep working) and no role, so it can never pass as an access or session token."""
    body = tenant_id.bytes + patient_id.bytes
    return base64.urlsafe_b64encode(body + _mac(body)).decode().rstrip("=")


def read_unsubscribe_token(token: str) -> tuple[uuid.UUID, uuid.UUID]:
    """(tenant_id, patient_id) from a token made by `unsubscribe_token`; ValueError when it is not one."""
    raw = (token or "").strip()
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("this unsubscribe link is not valid") from exc
    if len(data) != 32 + _TOKEN_MAC_BYTES or not hmac.compare_digest(data[32:], _mac(data[:32])):
        raise ValueError("this unsubscribe link is not valid")
    return uuid.UUID(bytes=data[:16]), uuid.UUID(bytes=data[16:32])


def unsubscribe_link(tenant_id: uuid.UUID, patient_id: uuid.UUID) -> str:
    return f"{get_settings().public_url.rstrip('/')}/unsubscribe/{unsubscribe_token(tenant_id, patient_id)}"

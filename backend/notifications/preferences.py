"""Channel opt-outs that arrive from outside a session: a STOP reply to an SMS or WhatsApp message."""

from __future__ import annotations

import re
import uuid

from sqlmodel import col, select

from backend.audit.service import record
from backend.db import UnitOfWork
from backend.identity.models import Patient
from backend.notifications.models import NotificationPreference
from backend.tenancy.context import Actor
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


def opt_out_by_phone(phone: str, channel: str) -> int:
    """Turn `channel` ("sms" or "whatsapp") off for every patient with this number; return how many.

    A STOP reply names a phone, not a practice: every practice that texts this number stops doing so."""
    if channel not in ("sms", "whatsapp"):
        raise ValueError("channel must be sms or whatsapp")
    wanted = normalise_phone(phone)
    if not wanted:
        return 0
    with UnitOfWork(unscoped=True) as uow:
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
        pref = uow.session.exec(
            select(NotificationPreference).where(NotificationPreference.patient_id == patient_id)
        ).first() or NotificationPreference(tenant_id=tenant_id, patient_id=patient_id)
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

"""What a provider says about a message after accepting it: Twilio status callbacks, SendGrid event webhook events.

A report names our notification (Twilio: the status-callback URL carries its id; SendGrid: the custom arg
`notification_id`) and the provider's message id. Applied under the ledger row's lock, it does two things:

- **Reconciliation by callback.** A positive report means the provider has the message. A row not yet 'sent'
  (its worker died mid-request, or the answer was lost: 'sending' or 'unknown') is marked sent, with the provider's
  message id, so it is never sent again. This is quicker than the lookup after the lease, and exact.
- **Delivery status.** The latest report is kept with its time, ranked so that a late 'sent' never overwrites
  'delivered'. A final negative report (undelivered, failed, bounce, dropped) makes the message a dead letter,
  with the provider's code. The admin sees it on the outbox page and can send it again.

A report about another attempt (another provider message id than the row's) changes nothing. Nothing from the
report beyond statuses and codes is kept: no addresses, no bounce text (it quotes the address).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlmodel import select

from backend import events
from backend.db import UnitOfWork
from backend.notifications.delivery import set_ledger
from backend.notifications.models import NotificationDelivery, NotificationStatus
from backend.tenancy.context import Actor
from backend.types import utcnow

logger = logging.getLogger(__name__)
S = NotificationStatus

# Our names for what providers report, ranked: a report replaces the kept one only if it ranks higher.
POSITIVE = {"accepted": 1, "deferred": 2, "sent": 3, "delivered": 4, "read": 5}
NEGATIVE = {"undelivered": 4, "failed": 4, "bounce": 4, "dropped": 4}
RANK = {**POSITIVE, **NEGATIVE}

# Twilio's MessageStatus values; SendGrid's delivery events (engagement events such as open and click are not
# delivery facts and are not kept).
TWILIO_STATUSES = {
    "accepted": "accepted", "scheduled": "accepted", "queued": "accepted", "sending": "accepted",
    "sent": "sent", "delivered": "delivered", "read": "read", "undelivered": "undelivered", "failed": "failed",
}  # fmt: skip
SENDGRID_EVENTS = {
    "processed": "accepted", "deferred": "deferred", "delivered": "delivered", "bounce": "bounce", "dropped": "dropped",
}  # fmt: skip

# What the admin reads for a provider status.
LABELS = {
    "accepted": "Accepted by the provider",
    "deferred": "Delayed by the receiving server",
    "sent": "Sent to the carrier",
    "delivered": "Delivered",
    "read": "Read",
    "undelivered": "Not delivered",
    "failed": "Failed at the provider",
    "bounce": "Bounced",
    "dropped": "Dropped by SendGrid",
}


@dataclass(frozen=True)
class Report:
    notification_id: uuid.UUID
    provider_message_id: str
    status: str  # one of RANK
    code: str = ""  # the provider's error code (Twilio ErrorCode, SMTP status), never text


def apply_report(report: Report) -> str:
    """Apply one provider report; returns what it did: 'sent' (reconciled), 'dead', 'noted', or why not
    ('unknown notification', 'other attempt', 'stale', 'ignored')."""
    if report.status not in RANK:
        return "ignored"
    with UnitOfWork(system=True) as uow:
        tenant_id = uow.session.exec(
            select(NotificationDelivery.tenant_id).where(NotificationDelivery.notification_id == report.notification_id)
        ).first()
    if tenant_id is None:
        return "unknown notification"
    with UnitOfWork(Actor.system(tenant_id)) as uow:
        row = uow.session.exec(
            select(NotificationDelivery)
            .where(NotificationDelivery.notification_id == report.notification_id)
            .with_for_update()
        ).one()
        if row.provider_message_id and row.provider_message_id != report.provider_message_id:
            # Another attempt's message (before an admin's resend, say); a console or fallback id is ours, not theirs.
            if not row.provider_message_id.startswith(("sendgrid-", "console-")):
                return "other attempt"
        if RANK[report.status] <= RANK.get(row.provider_status, 0):
            return "stale"
        now = utcnow()
        values: dict[str, object] = {"provider_status": report.status, "provider_status_at": now, "updated_at": now,
                                     "provider_message_id": report.provider_message_id}  # fmt: skip
        outcome = "noted"
        if report.status in NEGATIVE:
            error = LABELS[report.status] + (f" (code {report.code})" if report.code else "")
            values.update(status=S.DEAD, last_error=error[:500], next_attempt_at=now)
            outcome = "dead"
        elif S(row.status) != S.SENT:
            values.update(status=S.SENT, sent_at=now, last_error="")
            outcome = "sent"
        set_ledger(uow.session, report.notification_id, values)
        events.emit(uow, "notification.changed", entity_id=report.notification_id)
        uow.commit()
    logger.info("provider report %s for notification %s: %s", report.status, report.notification_id, outcome)
    return outcome

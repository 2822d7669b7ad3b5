"""Delivering outbox rows exactly once, through the ledger (NotificationDelivery).

Every delivery first *claims* its ledger row in a short transaction: a row lock taken with SKIP LOCKED and a
conditional move pending|failed (due) -> sending with attempts + 1, committed before anything is sent. Every claim
increments the row's claim_generation (and records claimed_by, this worker): the pair is the claim's fencing
token. Right before the send, a conditional UPDATE on (row, generation, 'sending') renews the lease; no row
means the claim was lost (its lease ran out and another claimer took the row) and nothing is sent. The send runs
outside any transaction; its outcome is written by a second short transaction fenced on the same generation. A
sweep renews the leases of its batch's remaining rows before each one, so no batch outlives its lease. So a
redelivered task finds 'sent' and does nothing, and two claimers (tasks, sweeps) never send one row.

A worker killed mid-send leaves its row 'sending'. After its lease (settings.notifications_lease_seconds) the
row is *reconciled*: the channel is asked whether the message went out (lookup by idempotency key = notification
id, provider id when known, or the message rendered again); 'sent' -> the row is marked sent without a resend,
otherwise it is sent again (once, under a new claim).

A send that got no answer after its request went out (a read timeout, a dropped connection) is 'unknown' and is
reconciled the same way, since the provider may have accepted it. Other transient channel errors retry with
exponential backoff and jitter; permanent ones, and the MAX_ATTEMPTS-th failure, go to 'dead' (the dead letter the
admin outbox page lists). Sends to providers are throttled per practice: a send over the limit reserves the
practice's next free slot and its row is due then. Notification.status mirrors the ledger.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import or_, tuple_, update
from sqlmodel import Session, col, select

from backend import events
from backend.db import UnitOfWork
from backend.identity import onboarding
from backend.identity.models import Patient, Provider
from backend.identity.onboarding import LINK_EVENTS
from backend.notifications.formatting import format_local
from backend.notifications.models import Notification, NotificationDelivery, NotificationStatus
from backend.scheduling.models import Appointment
from backend.settings import get_settings
from backend.tenancy.context import Actor
from backend.tenancy.models import Clinic, Tenant
from backend.types import utcnow
from backend.waitlist.models import WaitlistEntry, WaitlistOffer

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 3600.0
SWEEP_BATCH = 50
_jitter = random.SystemRandom()

S = NotificationStatus
RETRYABLE = (S.PENDING, S.FAILED)
Mode = Literal["send", "reconcile"]
# The outcome of a claim that was no longer this worker's (its lease ran out and the row was claimed again).
LOST = "lost"


@dataclass(frozen=True)
class Claim:
    """A ledger row this process now owns (status 'sending' since `claimed_at`)."""

    notification_id: uuid.UUID
    tenant_id: uuid.UUID
    mode: Mode
    attempts: int
    provider_message_id: str | None
    generation: int  # the fencing token: the row's claim_generation this claim set


def worker_id() -> str:
    """Who claims (host:pid), recorded on the row as claimed_by. Read at claim time: prefork children fork later."""
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


# --- throttle ------------------------------------------------------------------------------------------

# A reservation limiter (GCRA) per practice: each send takes the next free slot of the practice's schedule, `rate`
# per second with a burst of `rate`. A send whose slot is in the future keeps that slot (a reservation under the
# notification's id) and comes back for it, so a burst drains at exactly the rate instead of retrying at random.
# One clock for every worker: Redis's own TIME. Numbers go back as strings (Redis truncates Lua numbers).
_RESERVE = """
local interval = tonumber(ARGV[1]); local burst = tonumber(ARGV[2]); local grace_ms = tonumber(ARGV[3])
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local held = tonumber(redis.call('GET', KEYS[2]))
if held then
  if held <= now then redis.call('DEL', KEYS[2]); return '0' end
  return tostring(held - now)
end
local tau = (burst - 1) * interval
local slot = math.max(tonumber(redis.call('GET', KEYS[1])) or 0, now - tau)
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', math.ceil((slot + interval - now + tau) * 1000) + 1000)
if slot <= now then return '0' end
redis.call('SET', KEYS[2], tostring(slot), 'PX', math.ceil((slot - now) * 1000) + grace_ms)
return tostring(slot - now)
"""

# A reservation outlives its slot by this much, for a task that comes back late (a busy worker, the sweep).
RESERVATION_GRACE_MS = 600_000


def sends_per_second() -> float:
    return float(get_settings().notifications_per_second)


def _throttled_mode() -> bool:
    """Only sends to providers are throttled: the console channel sends nothing anywhere."""
    return get_settings().notifications_channel_mode == "providers"


def throttle_wait(tenant_id: uuid.UUID, notification_id: uuid.UUID) -> float:
    """Seconds until this notification may be sent under its practice's limit: 0 now, else the wait for the slot
    reserved for it (asking again before then gives the rest of that wait, not a new slot). No Redis: 0."""
    if not get_settings().redis_url:
        return 0.0
    from backend.redis_client import get_redis

    rate = max(sends_per_second(), 0.001)
    keys = (f"notify:gcra:{tenant_id}", f"notify:slot:{notification_id}")
    try:
        wait = cast(bytes | str, get_redis().eval(_RESERVE, 2, *keys, 1.0 / rate, max(1.0, rate), RESERVATION_GRACE_MS))
    except Exception:
        logger.warning("notification throttle unavailable; sending unthrottled", exc_info=True)
        return 0.0
    return max(0.0, float(wait))


# --- ledger transitions ----------------------------------------------------------------------------------


def lease() -> timedelta:
    """How long a 'sending' row is its claimer's; past it, the claimer is taken to have died."""
    return timedelta(seconds=get_settings().notifications_lease_seconds)


def backoff(attempts: int) -> timedelta:
    """base * 2^(attempts-1), capped, plus up to one base of jitter."""
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=delay + _jitter.uniform(0, BACKOFF_BASE_SECONDS))


def _mirror(session: Session, notification_id: uuid.UUID, values: dict[str, Any]) -> None:
    """Keep Notification (what the admin outbox lists) in step with its ledger row."""
    keep = {k: v for k, v in values.items() if k in {"status", "attempts", "next_attempt_at", "provider_message_id",
                                                      "last_error", "sent_at", "provider_status",
                                                      "provider_status_at"}}  # fmt: skip
    if keep:
        session.execute(
            update(Notification)
            .where(col(Notification.id) == notification_id)
            .values(**keep)
            .execution_options(synchronize_session=False)
        )


def set_ledger(
    session: Session,
    notification_id: uuid.UUID,
    values: dict[str, Any],
    *,
    only_if: S | None = None,
    generation: int | None = None,
) -> bool:
    """Update the ledger row (and its notification); with `only_if`, only while it has that status; with
    `generation`, only while that claim (fencing token) is still the row's current one."""
    stmt = update(NotificationDelivery).where(col(NotificationDelivery.notification_id) == notification_id)
    if only_if is not None:
        stmt = stmt.where(col(NotificationDelivery.status) == only_if)
    if generation is not None:
        stmt = stmt.where(col(NotificationDelivery.claim_generation) == generation)
    moved = session.execute(stmt.values(**values).execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    _mirror(session, notification_id, values)
    return True


def _claim_locked(session: Session, row: NotificationDelivery, now: datetime) -> Claim | str:
    """Decide on a row this transaction holds locked: a Claim, or why nothing is to be done."""
    status = S(row.status)
    if status in (S.SENT, S.DEAD):
        return "done"
    if status == S.SENDING and row.updated_at > now - lease():
        return "in flight"
    if status in (*RETRYABLE, S.UNKNOWN) and row.next_attempt_at > now:
        return "not due"
    if status in RETRYABLE:
        wait = throttle_wait(row.tenant_id, row.notification_id) if _throttled_mode() else 0.0
        if wait > 0:
            due = now + timedelta(seconds=wait)
            set_ledger(session, row.notification_id, {"next_attempt_at": due, "updated_at": now})
            return "throttled"
        attempts = row.attempts + 1
        generation = row.claim_generation + 1
        claimed = {"status": S.SENDING, "attempts": attempts, "updated_at": now, "claim_generation": generation,
                   "claimed_by": worker_id()}  # fmt: skip
        set_ledger(session, row.notification_id, claimed)
        return Claim(row.notification_id, row.tenant_id, "send", attempts, row.provider_message_id, generation)
    # 'sending' past its lease (its worker died, or its claimer is late) or 'unknown': find out before anything is
    # sent again. The new generation fences the previous claimer out: it can neither send nor finish any more.
    generation = row.claim_generation + 1
    set_ledger(session, row.notification_id, {"status": S.SENDING, "updated_at": now, "claim_generation": generation,
                                              "claimed_by": worker_id()})  # fmt: skip
    return Claim(row.notification_id, row.tenant_id, "reconcile", row.attempts, row.provider_message_id, generation)


def claim_one(notification_id: uuid.UUID, *, now: datetime | None = None) -> Claim | str:
    """Claim one notification's ledger row (for its delivery task)."""
    now = now or utcnow()
    with UnitOfWork(system=True) as uow:
        row = uow.session.exec(
            select(NotificationDelivery)
            .where(NotificationDelivery.notification_id == notification_id)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            exists = uow.session.exec(
                select(NotificationDelivery.id).where(NotificationDelivery.notification_id == notification_id)
            ).first()
            return "busy" if exists is not None else "missing"
        result = _claim_locked(uow.session, row, now)
        uow.commit()
        return result


def claim_due(*, now: datetime | None = None, limit: int = SWEEP_BATCH) -> list[Claim]:
    """The sweep's claim, across tenants: due pending/failed/unknown rows and stale 'sending' ones, locked
    with SKIP LOCKED (two sweeps never take one row), moved to 'sending' and committed."""
    now = now or utcnow()
    with UnitOfWork(system=True) as uow:
        due = list(
            uow.session.exec(
                select(NotificationDelivery)
                .where(
                    or_(
                        (col(NotificationDelivery.status).in_([*RETRYABLE, S.UNKNOWN]))
                        & (col(NotificationDelivery.next_attempt_at) <= now),
                        (col(NotificationDelivery.status) == S.SENDING)
                        & (col(NotificationDelivery.updated_at) <= now - lease()),
                    )
                )
                .order_by(col(NotificationDelivery.next_attempt_at))
                .limit(max(1, limit))
                .with_for_update(skip_locked=True)
            )
        )
        claims = [c for c in (_claim_locked(uow.session, row, now) for row in due) if isinstance(c, Claim)]
        uow.commit()
        return claims


def renew(claims: list[Claim]) -> set[uuid.UUID]:
    """Extend the leases of claims still held (row 'sending' under the claim's generation) to now; returns the
    notification ids still held. A claim missing from the answer was lost: its row must not be sent by it."""
    if not claims:
        return set()
    token = tuple_(col(NotificationDelivery.notification_id), col(NotificationDelivery.claim_generation))
    stmt = (
        update(NotificationDelivery)
        .where(token.in_([(c.notification_id, c.generation) for c in claims]))
        .where(col(NotificationDelivery.status) == S.SENDING)
        .values(updated_at=utcnow())
        .returning(col(NotificationDelivery.notification_id))
        .execution_options(synchronize_session=False)
    )
    with UnitOfWork(system=True) as uow:
        held = uow.session.execute(stmt).scalars().all()
        uow.commit()
    return set(held)


def _still_mine(claim: Claim) -> bool:
    """The fence right before a send (or a lookup): renew this claim's lease, or find it lost."""
    if claim.notification_id in renew([claim]):
        return True
    logger.warning("notification %s: claim %d lost (lease ran out, claimed again); not sent by this worker",
                   claim.notification_id, claim.generation)  # fmt: skip
    return False


def _finish(claim: Claim, values: dict[str, Any]) -> bool:
    """Write a claim's outcome, only while the claim is still the row's (status 'sending', same generation)."""
    with UnitOfWork(Actor.system(claim.tenant_id)) as uow:
        done = set_ledger(uow.session, claim.notification_id, {**values, "updated_at": utcnow()}, only_if=S.SENDING,
                          generation=claim.generation)  # fmt: skip
        if done:  # open outbox and history pages (the patient's too) re-read (the event carries no PHI)
            patient_id = uow.session.exec(
                select(Notification.patient_id).where(Notification.id == claim.notification_id)
            ).first()
            events.emit(uow, "notification.changed", entity_id=claim.notification_id, patient_id=patient_id)
        uow.commit()
    if not done:
        logger.warning("notification %s: claim %d lost before its outcome was written; its new claimer reconciles it",
                       claim.notification_id, claim.generation)  # fmt: skip
    return done


def _failed(claim: Claim, attempts: int, error: str, *, permanent: bool) -> str:
    now = utcnow()
    dead = permanent or attempts >= MAX_ATTEMPTS
    status = S.DEAD if dead else S.FAILED
    retry_at = now if dead else now + backoff(attempts)
    if not _finish(claim, {"status": status, "last_error": error[:500], "next_attempt_at": retry_at}):
        return LOST
    if dead:
        # The provider's error text can quote the address or number: it stays on the row (staff see it), not in logs.
        logger.warning("notification %s dead after %d attempt(s)", claim.notification_id, attempts)
    return str(status)


def _unknown(claim: Claim, error: str) -> str:
    """Whether the message went out is not known: a later sweep reconciles the row (asks the channel) before
    anything is sent again."""
    retry_at = utcnow() + backoff(claim.attempts)
    if not _finish(claim, {"status": S.UNKNOWN, "last_error": error[:500], "next_attempt_at": retry_at}):
        return LOST
    return str(S.UNKNOWN)


# --- the send -------------------------------------------------------------------------------------------


def _first_name(full_name: str) -> str:
    parts = full_name.split()
    return parts[0] if parts else ""


def _id(payload: dict[str, Any], key: str) -> uuid.UUID | None:
    value = payload.get(key)
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def load_context(uow: UnitOfWork, note: Notification) -> tuple[dict[str, str], str, str]:
    """The template context from the ids in the payload: (context, recipient address, locale)."""
    session = uow.session
    payload = note.payload or {}
    if note.event_type in LINK_EVENTS:
        return _link_context(uow, note)
    patient = session.get(Patient, note.patient_id)
    appointment = session.get(Appointment, aid) if (aid := _id(payload, "appointment_id")) else None
    offer = session.get(WaitlistOffer, oid) if (oid := _id(payload, "offer_id")) else None
    entry = session.get(WaitlistEntry, eid) if (eid := _id(payload, "entry_id")) else None
    provider_id = _id(payload, "provider_id") or (appointment.provider_id if appointment else None) or (
        offer.provider_id if offer else None) or (entry.provider_id if entry else None)  # fmt: skip
    clinic_id = _id(payload, "clinic_id") or (appointment.clinic_id if appointment else None) or (
        offer.clinic_id if offer else None) or (entry.clinic_id if entry else None)  # fmt: skip
    provider = session.get(Provider, provider_id) if provider_id else None
    clinic = session.get(Clinic, clinic_id) if clinic_id else None
    zone = clinic.timezone if clinic is not None else "UTC"
    start = offer.slot_start if offer is not None else appointment.start_at if appointment is not None else None
    locale = (patient.locale if patient is not None else "") or "en"
    public = get_settings().public_url.rstrip("/")
    # The pages where the patient sees the details and can act (they sign in first when needed).
    if offer is not None or entry is not None:
        path = "/patient/waitlist"
    elif appointment is not None:
        path = "/patient/appointments"
    else:
        path = "/patient"
    tenant = session.get(Tenant, note.tenant_id)
    context = {
        "practice_name": tenant.name if tenant else "",
        "patient_first_name": (_first_name(patient.full_name) if patient else "") or "there",
        "provider_name": provider.full_name if provider else "",
        "clinic_name": clinic.name if clinic else "",
        "start_local": format_local(start, zone, locale),
        "hold_until_local": format_local(offer.expires_at, zone, locale) if offer is not None else "",
        # The held appointment of an offer carries the slot's modality (in person or telehealth).
        "modality": appointment.modality if appointment is not None else "",
        "link": public + path,
    }
    if patient is None:
        return context, "", "en"
    recipient = patient.email if note.channel in ("email", "console") else patient.phone
    return context, recipient or patient.email or str(patient.id), patient.locale or "en"


def _link_context(uow: UnitOfWork, note: Notification) -> tuple[dict[str, str], str, str]:
    """An account message (invitation, password reset): the link is made from the link row's id at send time."""
    link_id = _id(note.payload or {}, "link_id")
    message = onboarding.message_for(uow, link_id) if link_id else None
    tenant = uow.session.get(Tenant, note.tenant_id)
    context = {"practice_name": tenant.name if tenant else "", "patient_first_name": "there", "link": ""}
    if message is None:
        return context, "", "en"
    context.update(patient_first_name=message.first_name or "there", link=message.link, valid_for=message.valid_for)
    recipient = message.phone if note.channel in ("sms", "whatsapp") and message.phone else message.email
    return context, recipient, message.locale


def _transient(exc: BaseException) -> bool:
    return bool(getattr(exc, "transient", True))


def _error_text(exc: BaseException) -> str:
    """An error for the ledger: its class and code, never the message body (it may quote the recipient)."""
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__}{f' ({code})' if code else ''}: {str(exc)[:200]}"


def render_message(uow: UnitOfWork, note: Notification) -> Any:
    """The OutgoingMessage a notification makes, rendered from the records it names (ids in its payload).
    The sender sends it; the outbox and history pages show it. Raises templates.TemplateContextError when the
    data cannot make the message."""
    from backend.notifications import channels, templates
    from backend.notifications.preferences import unsubscribe_link, unsubscribe_token

    context, recipient, locale = load_context(uow, note)
    channel_name = str(note.channel)
    one_click = None
    # Account messages (invitations, resets) are not subscriptions: no unsubscribe link.
    if channel_name in ("email", "console") and note.patient_id is not None and note.event_type not in LINK_EVENTS:
        context["unsubscribe_link"] = unsubscribe_link(note.tenant_id, note.patient_id)
        token = unsubscribe_token(note.tenant_id, note.patient_id)
        one_click = f"{get_settings().public_url.rstrip('/')}/api/v1/unsubscribe/{token}"
    rendered = templates.render(note.event_type, channel_name, context, locale)
    return channels.OutgoingMessage(
        channel=channel_name,
        to=recipient,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        idempotency_key=str(note.id),
        unsubscribe_url=one_click,
    )


def _build(claim: Claim) -> Any:
    """Render the claimed notification: an OutgoingMessage, or 'missing'."""
    with UnitOfWork(Actor.system(claim.tenant_id)) as uow:
        note = uow.session.get(Notification, claim.notification_id)
        if note is None:
            return "missing"
        return render_message(uow, note)


def _send(claim: Claim) -> str:
    from backend.notifications import channels, templates

    try:
        message = _build(claim)
        if isinstance(message, str):
            return message
        channel = channels.channel_for(message.channel)
        if not _still_mine(claim):  # the fence, immediately before the send (it renews the lease)
            return LOST
        result = channel.send(message)
    except channels.ChannelError as exc:
        if exc.maybe_sent:  # no answer to a request that went out: the provider may have it, so never just resend
            return _unknown(claim, _error_text(exc))
        return _failed(claim, claim.attempts, _error_text(exc), permanent=not _transient(exc))
    except templates.TemplateContextError as exc:  # the data cannot make this message: retrying cannot help
        return _failed(claim, claim.attempts, _error_text(exc), permanent=True)
    except Exception as exc:  # a bug or an unexpected library error: retried, then dead-lettered
        logger.exception("sending notification %s failed", claim.notification_id)
        return _failed(claim, claim.attempts, _error_text(exc), permanent=False)
    provider_id = getattr(result, "provider_message_id", None)
    now = utcnow()
    # A new message: what the provider said of an earlier one (before an admin's resend) no longer applies.
    if not _finish(claim, {"status": S.SENT, "provider_message_id": provider_id, "sent_at": now, "last_error": "",
                           "provider_status": "", "provider_status_at": None}):  # fmt: skip
        return LOST
    return str(S.SENT)


def _reconcile(claim: Claim) -> str:
    """A row whose sender died (or whose outcome was unknown): ask the channel before sending again. The
    message is rendered again so that a channel with no reference of ours can match it by its text."""
    from backend.notifications import channels

    if not _still_mine(claim):
        return LOST
    with UnitOfWork(Actor.system(claim.tenant_id)) as uow:
        note = uow.session.get(Notification, claim.notification_id)
        if note is None:
            return "missing"
        channel_name = str(note.channel)
        try:
            message = render_message(uow, note)
        except Exception:  # noqa: BLE001 - rendering fails the same way at send time, where it is dead-lettered
            message = None
    try:
        found = channels.channel_for(channel_name).lookup(
            str(claim.notification_id), claim.provider_message_id, message=message or None
        )
    except Exception as exc:
        logger.warning("looking up notification %s failed", claim.notification_id, exc_info=True)
        return _unknown(claim, _error_text(exc))
    if found == "sent":
        if not _finish(claim, {"status": S.SENT, "sent_at": utcnow(), "last_error": ""}):
            return LOST
        return str(S.SENT)
    if claim.attempts >= MAX_ATTEMPTS:
        return _failed(claim, claim.attempts, "no delivery found after the last attempt", permanent=True)
    # Not delivered: send again, as a new attempt of the same claim.
    attempts = claim.attempts + 1
    with UnitOfWork(Actor.system(claim.tenant_id)) as uow:
        owned = set_ledger(uow.session, claim.notification_id, {"attempts": attempts, "updated_at": utcnow()},
                           only_if=S.SENDING, generation=claim.generation)  # fmt: skip
        uow.commit()
    if not owned:
        return LOST
    return _send(Claim(claim.notification_id, claim.tenant_id, "send", attempts, claim.provider_message_id,
                       claim.generation))  # fmt: skip


def run(claim: Claim) -> str:
    """Carry out a claim: send it, or reconcile it first."""
    return _send(claim) if claim.mode == "send" else _reconcile(claim)


def deliver(notification_id: uuid.UUID, *, now: datetime | None = None) -> str:
    """Deliver one notification, at most once; returns the outcome ('sent', 'failed', 'dead', 'unknown') or why
    nothing was done ('done', 'in flight', 'not due', 'throttled', 'busy', 'missing')."""
    claim = claim_one(notification_id, now=now)
    if not isinstance(claim, Claim):
        return claim
    return run(claim)


def due_in(notification_id: uuid.UUID) -> float | None:
    """Seconds until a waiting row (pending, failed, unknown) is due; None for any other row."""
    with UnitOfWork(system=True) as uow:
        row = uow.session.exec(
            select(NotificationDelivery.status, NotificationDelivery.next_attempt_at).where(
                NotificationDelivery.notification_id == notification_id
            )
        ).first()
    if row is None or S(row[0]) not in (*RETRYABLE, S.UNKNOWN):
        return None
    return max(0.0, (row[1] - utcnow()).total_seconds())


def sweep(*, now: datetime | None = None, limit: int = SWEEP_BATCH) -> dict[str, int]:
    """Deliver what is due and reconcile what was left 'sending'; returns outcome counts.

    The batch is claimed at once but sent one by one: before each row, the leases of the rows not yet done are
    renewed, so none of them expires (and is claimed again) while this sweep is still working through the batch.
    A row whose claim was lost anyway (this worker stalled past a lease) is skipped, never sent."""
    counts: dict[str, int] = {}
    batch = claim_due(now=now, limit=limit)
    for i, claim in enumerate(batch):
        if claim.notification_id not in renew(batch[i:]):
            counts[LOST] = counts.get(LOST, 0) + 1
            continue
        try:
            outcome = run(claim)
        except Exception:
            logger.exception("outbox sweep: notification %s", claim.notification_id)
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts

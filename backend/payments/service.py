"""Payments service functions: the fee policy, cards on file, the ledger, waivers.

Each takes (actor, uow, ...) and runs inside one unit of work (backend.service). Permission: the admin sets the fee
policy and exports the ledger; a patient reads the policy, accepts it, saves a card and sees their own charges; a
doctor sees the fees of their own appointments and may waive them, the admin any. Every change is audited
(backend.audit), every staff read of a patient's charges is recorded as an access.

Fees themselves follow from domain events (backend.payments.subscriber); the charge is a Celery task
(backend.payments.charges) that runs after the commit that wrote the ledger row.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import col, select

from backend.audit.service import record, record_access
from backend.db import UnitOfWork
from backend.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import Patient
from backend.payments.gateway import get_gateway, mode
from backend.payments.models import FeePolicy, Payment, PaymentKind, PaymentMethod, PaymentStatus, PolicyAcceptance
from backend.scheduling.models import Appointment
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.types import utcnow

MAX_AMOUNT_MINOR = 10_000_000  # 100,000.00 in a two-decimal currency: a typo guard, not a business rule
CURRENCIES = ("usd", "eur", "gbp", "cad", "aud", "chf", "nzd")
MAX_POLICY_CHARS = 10_000
MAX_LIST = 500
DEFAULT_POLICY_TEXT = (
    "If you cancel within {window} of your appointment, or do not come, the practice may charge the card you "
    "keep on file the fee shown here. Staff may waive a fee."
)
# The terms that, when changed, need the patient's acceptance again (the version goes up).
TERMS = (
    "currency",
    "self_pay_minor",
    "provider_prices",
    "copay_enabled",
    "copay_minor",
    "late_cancel_window_minutes",
    "late_cancel_fee_minor",
    "no_show_fee_minor",
    "card_required",
    "max_charge_attempts",
    "policy_text",
)


# --- views -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeePolicyView:
    """The fee policy that applies (a clinic's override, else the practice's), as the pages and the API show it."""

    id: uuid.UUID | None
    clinic_id: uuid.UUID | None
    source: str  # 'clinic', 'practice' or 'none' (no policy set: no fees, nothing to accept)
    currency: str
    self_pay_minor: int
    provider_prices: dict[str, int]
    copay_enabled: bool
    copay_minor: int
    late_cancel_window_minutes: int
    late_cancel_fee_minor: int
    no_show_fee_minor: int
    card_required: bool
    max_charge_attempts: int
    policy_text: str
    version: int
    updated_at: datetime | None
    # For a patient: whether they accepted this version (and when); None for staff.
    accepted_at: datetime | None = None

    @property
    def has_fees(self) -> bool:
        return self.late_cancel_fee_minor > 0 or self.no_show_fee_minor > 0


@dataclass(frozen=True)
class CardView:
    id: uuid.UUID
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    created_at: datetime


@dataclass(frozen=True)
class CardSetup:
    """What the browser needs to save a card (Stripe.js confirms the SetupIntent; the fake needs nothing)."""

    mode: str
    setup_intent_id: str
    client_secret: str
    publishable_key: str | None


@dataclass(frozen=True)
class PaymentView:
    id: uuid.UUID
    patient_id: uuid.UUID
    patient_name: str
    appointment_id: uuid.UUID | None
    appointment_start: datetime | None
    # The appointment's clinic's IANA zone ('UTC' without an appointment): show its start in it.
    appointment_timezone: str
    kind: str
    status: str
    amount_minor: int
    currency: str
    attempt: int
    last_error: str
    waive_reason: str
    created_at: datetime
    settled_at: datetime | None


@dataclass(frozen=True)
class PaymentFilters:
    status: str | None = None
    kind: str | None = None
    patient_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


# --- fee policy ------------------------------------------------------------------------------------------------


def _policy_row(uow: UnitOfWork, clinic_id: uuid.UUID | None) -> FeePolicy | None:
    query = select(FeePolicy)
    query = (
        query.where(col(FeePolicy.clinic_id).is_(None))
        if clinic_id is None
        else query.where(col(FeePolicy.clinic_id) == clinic_id)
    )
    return uow.session.exec(query).first()


def effective_policy(uow: UnitOfWork, clinic_id: uuid.UUID | None) -> FeePolicy | None:
    """The clinic's override, else the practice's policy, else None (no fees)."""
    if clinic_id is not None:
        row = _policy_row(uow, clinic_id)
        if row is not None:
            return row
    return _policy_row(uow, None)


def _window_words(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minutes"


def _view(row: FeePolicy | None, *, source: str, accepted_at: datetime | None = None) -> FeePolicyView:
    if row is None:
        return FeePolicyView(
            None,
            None,
            "none",
            "usd",
            0,
            {},
            False,
            0,
            1440,
            0,
            0,
            False,
            3,
            DEFAULT_POLICY_TEXT.format(window=_window_words(1440)),
            0,
            None,
        )
    return FeePolicyView(
        id=row.id,
        clinic_id=row.clinic_id,
        source=source,
        currency=row.currency,
        self_pay_minor=row.self_pay_minor,
        provider_prices={str(k): int(v) for k, v in (row.provider_prices or {}).items()},
        copay_enabled=row.copay_enabled,
        copay_minor=row.copay_minor,
        late_cancel_window_minutes=row.late_cancel_window_minutes,
        late_cancel_fee_minor=row.late_cancel_fee_minor,
        no_show_fee_minor=row.no_show_fee_minor,
        card_required=row.card_required,
        max_charge_attempts=row.max_charge_attempts,
        policy_text=row.policy_text or DEFAULT_POLICY_TEXT.format(window=_window_words(row.late_cancel_window_minutes)),
        version=row.version,
        updated_at=row.updated_at,
        accepted_at=accepted_at,
    )


def _acceptance(uow: UnitOfWork, patient_id: uuid.UUID, row: FeePolicy) -> PolicyAcceptance | None:
    return uow.session.exec(
        select(PolicyAcceptance).where(
            col(PolicyAcceptance.patient_id) == patient_id,
            col(PolicyAcceptance.policy_id) == row.id,
            col(PolicyAcceptance.policy_version) == row.version,
        )
    ).first()


def has_accepted(uow: UnitOfWork, patient_id: uuid.UUID, row: FeePolicy) -> bool:
    """Whether the patient accepted the current version of this policy (no fee is charged otherwise)."""
    return _acceptance(uow, patient_id, row) is not None


def _clinic(uow: UnitOfWork, clinic_id: uuid.UUID | None) -> uuid.UUID | None:
    if clinic_id is not None and uow.session.get(Clinic, clinic_id) is None:
        raise NotFound("clinic")
    return clinic_id


def _patient_clinic(actor: Actor, uow: UnitOfWork, clinic_id: uuid.UUID | None) -> uuid.UUID | None:
    if clinic_id is None and actor.role == Role.PATIENT and actor.patient_id is not None:
        patient = uow.session.get(Patient, actor.patient_id)
        return patient.home_clinic_id if patient is not None else None
    return clinic_id


@service_function
def get_fee_policy(
    actor: Actor, uow: UnitOfWork, *, clinic_id: uuid.UUID | None = None, exact: bool = False
) -> FeePolicyView:
    """The fee policy that applies at `clinic_id` (a patient: their home clinic by default); `exact` (admin): the
    row for exactly that level, or the practice's when the clinic has no override. Anyone of the practice."""
    clinic_id = _clinic(uow, _patient_clinic(actor, uow, clinic_id))
    row = _policy_row(uow, clinic_id) if exact else effective_policy(uow, clinic_id)
    source = "none" if row is None else ("clinic" if row.clinic_id is not None else "practice")
    accepted_at = None
    if row is not None and actor.role == Role.PATIENT and actor.patient_id is not None:
        found = _acceptance(uow, actor.patient_id, row)
        accepted_at = found.accepted_at if found is not None else None
    return _view(row, source=source, accepted_at=accepted_at)


def _amount(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT_MINOR:
        raise ValidationFailed(f"{name} must be a whole number of cents between 0 and {MAX_AMOUNT_MINOR}.", field=name)
    return value


def _clean_terms(changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - set(TERMS)
    if unknown:
        raise ValidationFailed(f"Unknown fee policy field: {sorted(unknown)[0]}.", field=sorted(unknown)[0])
    cleaned: dict[str, Any] = {}
    for name, value in changes.items():
        if name in ("self_pay_minor", "copay_minor", "late_cancel_fee_minor", "no_show_fee_minor"):
            cleaned[name] = _amount(value, name)
        elif name == "currency":
            currency = str(value).lower()
            if currency not in CURRENCIES:
                raise ValidationFailed(f"Choose one of: {', '.join(CURRENCIES)}.", field=name)
            cleaned[name] = currency
        elif name == "provider_prices":
            if not isinstance(value, dict):
                raise ValidationFailed("Give prices as {provider id: cents}.", field=name)
            prices: dict[str, int] = {}
            for key, amount in value.items():
                try:
                    prices[str(uuid.UUID(str(key)))] = _amount(amount, name)
                except ValueError as exc:
                    raise ValidationFailed("Give prices as {provider id: cents}.", field=name) from exc
            cleaned[name] = prices
        elif name == "late_cancel_window_minutes":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_080:
                raise ValidationFailed("The window is 0 to 10,080 minutes (a week).", field=name)
            cleaned[name] = value
        elif name == "max_charge_attempts":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
                raise ValidationFailed("A charge is tried 1 to 5 times.", field=name)
            cleaned[name] = value
        elif name in ("copay_enabled", "card_required"):
            if not isinstance(value, bool):
                raise ValidationFailed(f"{name} is true or false.", field=name)
            cleaned[name] = value
        elif name == "policy_text":
            body = str(value).replace("\r\n", "\n").strip()
            if len(body) > MAX_POLICY_CHARS:
                raise ValidationFailed(f"Keep the policy under {MAX_POLICY_CHARS:,} characters.", field=name)
            cleaned[name] = body
    return cleaned


@service_function
def update_fee_policy(
    actor: Actor, uow: UnitOfWork, *, clinic_id: uuid.UUID | None = None, changes: dict[str, Any]
) -> FeePolicyView:
    """Set the practice's fee policy (clinic_id None) or a clinic's override (admin, audited). Any change of its
    terms raises the version: patients accept it again before a fee is charged under it."""
    require_role(actor, Role.ADMIN)
    clinic_id = _clinic(uow, clinic_id)
    cleaned = _clean_terms(changes)
    if uow.session.get_bind().dialect.name == "postgresql":
        uow.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"{uow.tenant_id}:fee-policy:{clinic_id}"},
        )
    row = _policy_row(uow, clinic_id)
    created = row is None
    if row is None:
        base = _policy_row(uow, None) if clinic_id is not None else None  # an override starts from the practice's
        row = FeePolicy(tenant_id=actor.tenant_id, clinic_id=clinic_id, version=1)
        if base is not None:
            for name in TERMS:
                setattr(row, name, getattr(base, name))
    changed = sorted(name for name, value in cleaned.items() if getattr(row, name) != value)
    if not changed and not created:
        return _view(row, source="clinic" if clinic_id else "practice")
    for name in changed:
        setattr(row, name, cleaned[name])
    if not created:
        row.version += 1
    row.updated_at = utcnow()
    uow.session.add(row)
    uow.flush()
    record(
        actor,
        uow,
        action="payments.policy_changed",
        entity_type="fee_policy",
        entity_id=row.id,
        data={"clinic_id": str(clinic_id) if clinic_id else None, "fields": changed, "version": row.version},
    )
    return _view(row, source="clinic" if clinic_id else "practice")


@service_function
def accept_fee_policy(actor: Actor, uow: UnitOfWork, *, policy_id: uuid.UUID, version: int) -> FeePolicyView:
    """The patient accepts this version of the policy (the one shown to them); idempotent. Audited."""
    require_role(actor, Role.PATIENT)
    if actor.patient_id is None:
        raise PermissionDenied("only a patient accepts a fee policy")
    row = uow.session.get(FeePolicy, policy_id)
    if row is None:
        raise NotFound("fee policy")
    if row.version != version:
        raise Conflict("The policy changed since it was shown: read it again before accepting.")
    found = _acceptance(uow, actor.patient_id, row)
    if found is None:
        found = PolicyAcceptance(
            tenant_id=actor.tenant_id, patient_id=actor.patient_id, policy_id=row.id, policy_version=row.version
        )
        uow.session.add(found)
        uow.flush()
        record(
            actor,
            uow,
            action="payments.policy_accepted",
            entity_type="fee_policy",
            entity_id=row.id,
            data={"version": row.version},
        )
    return _view(row, source="clinic" if row.clinic_id else "practice", accepted_at=found.accepted_at)


# --- cards on file ---------------------------------------------------------------------------------------------


def active_card(uow: UnitOfWork, patient_id: uuid.UUID) -> PaymentMethod | None:
    """The patient's card on file (the latest saved), or None."""
    return uow.session.exec(
        select(PaymentMethod)
        .where(col(PaymentMethod.patient_id) == patient_id, col(PaymentMethod.removed_at).is_(None))
        .order_by(col(PaymentMethod.created_at).desc())
    ).first()


def _card_view(m: PaymentMethod) -> CardView:
    return CardView(m.id, m.brand, m.last4, m.exp_month, m.exp_year, m.created_at)


def _own_patient(actor: Actor) -> uuid.UUID:
    require_role(actor, Role.PATIENT)
    if actor.patient_id is None:
        raise PermissionDenied("only a patient keeps a card on file")
    return actor.patient_id


@service_function
def list_payment_methods(actor: Actor, uow: UnitOfWork) -> list[CardView]:
    """The patient's own card on file (none or one)."""
    card = active_card(uow, _own_patient(actor))
    return [] if card is None else [_card_view(card)]


@service_function
def start_card_setup(actor: Actor, uow: UnitOfWork) -> CardSetup:
    """Begin saving a card: a gateway customer for the patient (the one of their current card, if any) and a
    SetupIntent the browser confirms. No card data ever comes here."""
    patient_id = _own_patient(actor)
    gateway = get_gateway()
    meta = {"tenant_id": str(actor.tenant_id), "patient_id": str(patient_id)}
    current = active_card(uow, patient_id)
    customer = (
        current.provider_customer_id
        if current is not None
        else gateway.create_customer(idempotency_key=f"customer:{actor.tenant_id}:{patient_id}", metadata=meta)
    )
    setup = gateway.start_setup(customer_id=customer, idempotency_key=f"setup:{uuid.uuid4()}", metadata=meta)
    from backend.settings import get_settings

    return CardSetup(mode(), setup.setup_intent_id, setup.client_secret, get_settings().stripe_publishable_key)


def save_card(uow: UnitOfWork, actor: Actor, setup_intent_id: str) -> PaymentMethod | None:
    """Record the card a confirmed SetupIntent saved (idempotent: the same card is one row). The SetupIntent must
    name this tenant and patient. Returns None while it is not confirmed."""
    card = get_gateway().saved_card(setup_intent_id)
    if card is None:
        return None
    patient_id = card.metadata.get("patient_id")
    if card.metadata.get("tenant_id") != str(actor.tenant_id) or not patient_id:
        raise NotFound("card setup")
    if actor.role == Role.PATIENT and patient_id != str(actor.patient_id):
        raise NotFound("card setup")
    existing = uow.session.exec(
        select(PaymentMethod).where(col(PaymentMethod.provider_method_id) == card.method_id)
    ).first()
    if existing is not None:
        return existing
    now = utcnow()
    for old in uow.session.exec(
        select(PaymentMethod).where(
            col(PaymentMethod.patient_id) == uuid.UUID(patient_id), col(PaymentMethod.removed_at).is_(None)
        )
    ).all():
        old.removed_at = now  # one card on file: the new one replaces it
        uow.session.add(old)
    method = PaymentMethod(
        tenant_id=actor.tenant_id,
        patient_id=uuid.UUID(patient_id),
        provider_customer_id=card.customer_id,
        provider_method_id=card.method_id,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        created_at=now,
    )
    uow.session.add(method)
    uow.flush()
    record(
        actor,
        uow,
        action="payments.card_saved",
        entity_type="payment_method",
        entity_id=method.id,
        data={"brand": card.brand},
    )
    return method


@service_function
def confirm_card_setup(actor: Actor, uow: UnitOfWork, *, setup_intent_id: str) -> CardView:
    """After the browser confirmed the SetupIntent: keep the card (its brand and last four digits). Audited."""
    _own_patient(actor)
    method = save_card(uow, actor, setup_intent_id)
    if method is None:
        raise Conflict("The card is not confirmed yet.")
    return _card_view(method)


@service_function
def check_card_to_book(actor: Actor, uow: UnitOfWork, *, clinic_id: uuid.UUID | None) -> None:
    """Refuse a patient's booking at `clinic_id` when the policy there requires a card on file and they have none
    (staff booking for a patient are not held to it). Called by the booking entry points before they book."""
    if actor.role != Role.PATIENT or actor.patient_id is None:
        return
    policy = effective_policy(uow, clinic_id)
    if policy is not None and policy.card_required and active_card(uow, actor.patient_id) is None:
        raise ValidationFailed(
            "This practice needs a card on file before you book: add one under Payments.",
            code="payments.card_required",
        )


# --- the ledger ------------------------------------------------------------------------------------------------


def _visible_query(actor: Actor) -> Any:
    query = (
        select(Payment, Patient, Appointment)
        .join(Patient, col(Patient.id) == col(Payment.patient_id))
        .join(Appointment, col(Appointment.id) == col(Payment.appointment_id), isouter=True)
    )
    if actor.role == Role.PATIENT:
        return query.where(col(Payment.patient_id) == actor.patient_id)
    if actor.role == Role.DOCTOR:
        return query.where(col(Appointment.provider_id) == actor.provider_id)
    require_role(actor, Role.ADMIN)
    return query


def _payment_view(uow: UnitOfWork, p: Payment, patient: Patient, appointment: Appointment | None) -> PaymentView:
    clinic = uow.session.get(Clinic, appointment.clinic_id) if appointment is not None else None
    return PaymentView(
        p.id,
        p.patient_id,
        patient.full_name,
        p.appointment_id,
        appointment.start_at if appointment is not None else None,
        clinic.timezone if clinic is not None else "UTC",
        p.kind,
        p.status,
        p.amount_minor,
        p.currency,
        p.attempt,
        p.last_error,
        p.waive_reason,
        p.created_at,
        p.settled_at,
    )


def _filtered(actor: Actor, filters: PaymentFilters) -> Any:
    query = _visible_query(actor)
    if filters.status:
        if filters.status not in set(PaymentStatus):
            raise ValidationFailed("Unknown status.", field="status")
        query = query.where(col(Payment.status) == filters.status)
    if filters.kind:
        if filters.kind not in set(PaymentKind):
            raise ValidationFailed("Unknown kind.", field="kind")
        query = query.where(col(Payment.kind) == filters.kind)
    if filters.patient_id:
        query = query.where(col(Payment.patient_id) == filters.patient_id)
    if filters.since:
        query = query.where(col(Payment.created_at) >= filters.since)
    if filters.until:
        query = query.where(col(Payment.created_at) < filters.until)
    return query.order_by(col(Payment.created_at).desc(), col(Payment.id))


@service_function
def list_payments(actor: Actor, uow: UnitOfWork, filters: PaymentFilters | None = None) -> list[PaymentView]:
    """Charges and fees: a patient their own, a doctor those of their appointments, the admin all; filtered."""
    filters = filters or PaymentFilters()
    limit = max(1, min(filters.limit, MAX_LIST))
    rows = uow.session.exec(_filtered(actor, filters).limit(limit)).all()
    views = [_payment_view(uow, p, patient, appointment) for p, patient, appointment in rows]
    if actor.role != Role.PATIENT:
        record_access(actor, uow, action="payments.list", patient_ids=[v.patient_id for v in views])
    return views


CSV_COLUMNS = (
    "created_at",
    "payment_id",
    "patient",
    "appointment_start",
    "kind",
    "status",
    "amount",
    "currency",
    "attempt",
    "last_error",
    "settled_at",
)


def _money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _csv_cell(value: str) -> str:
    """No spreadsheet formula from a name: a leading = + - @ (or tab/CR) is quoted with an apostrophe."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@service_function
def export_payments_csv(actor: Actor, uow: UnitOfWork, filters: PaymentFilters | None = None) -> str:
    """The filtered ledger as CSV (admin). Amounts as decimal strings built from integer cents."""
    require_role(actor, Role.ADMIN)
    filters = filters or PaymentFilters()
    rows = uow.session.exec(_filtered(actor, filters).limit(10_000)).all()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for p, patient, appointment in rows:
        writer.writerow(
            [
                p.created_at.isoformat(),
                str(p.id),
                _csv_cell(patient.full_name),
                appointment.start_at.isoformat() if appointment is not None else "",
                p.kind,
                p.status,
                _money(p.amount_minor),
                p.currency.upper(),
                p.attempt,
                _csv_cell(p.last_error),
                p.settled_at.isoformat() if p.settled_at else "",
            ]
        )
    record_access(actor, uow, action="payments.export", patient_ids=[p.patient_id for p, _, _ in rows])
    return out.getvalue()


def _locked_visible(actor: Actor, uow: UnitOfWork, payment_id: uuid.UUID) -> tuple[Payment, Patient, Any]:
    """A payment the actor may see, with its patient and appointment, locked for the change (404 otherwise)."""
    found = uow.session.exec(
        _visible_query(actor).where(col(Payment.id) == payment_id).with_for_update(of=Payment)
    ).first()
    if found is None:
        raise NotFound("payment")
    payment, patient, appointment = found
    return payment, patient, appointment


@service_function
def waive_payment(actor: Actor, uow: UnitOfWork, payment_id: uuid.UUID, *, reason: str = "") -> PaymentView:
    """Waive a fee that is not charged (yet): requested or failed (doctor for their own appointments, admin).
    One being charged right now is refused until its result is in; a charged one is refunded instead. Audited."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    payment, patient, appointment = _locked_visible(actor, uow, payment_id)
    if payment.status == PaymentStatus.WAIVED:
        return _payment_view(uow, payment, patient, appointment)
    if payment.status not in (PaymentStatus.REQUESTED, PaymentStatus.FAILED):
        raise Conflict(f"This charge is {payment.status}: it cannot be waived.")
    now = utcnow()
    if payment.status == PaymentStatus.REQUESTED and payment.lease_until is not None and payment.lease_until > now:
        raise Conflict("This charge is being made right now: try again in a minute.")
    payment.status = PaymentStatus.WAIVED
    payment.waived_by = actor.user_id
    payment.waive_reason = reason.strip()[:300]
    payment.next_attempt_at = None
    payment.settled_at = now
    payment.updated_at = now
    uow.session.add(payment)
    record(
        actor,
        uow,
        action="payments.waived",
        entity_type="payment",
        entity_id=payment.id,
        data={"kind": payment.kind, "amount_minor": payment.amount_minor, "currency": payment.currency},
    )
    return _payment_view(uow, payment, patient, appointment)


@service_function
def refund_payment(actor: Actor, uow: UnitOfWork, payment_id: uuid.UUID) -> PaymentView:
    """Refund a charged fee in full (admin, audited). The gateway call carries the key `refund:<payment id>`, so a
    repeated refund (a retried request, a double click) is one refund; the `charge.refunded` webhook agrees."""
    require_role(actor, Role.ADMIN)
    payment, patient, appointment = _locked_visible(actor, uow, payment_id)
    if payment.status == PaymentStatus.REFUNDED:
        return _payment_view(uow, payment, patient, appointment)
    if payment.status != PaymentStatus.SUCCEEDED or not payment.provider_payment_intent_id:
        raise Conflict(f"Only a paid charge can be refunded; this one is {payment.status}.")
    get_gateway().refund(payment_intent_id=payment.provider_payment_intent_id, idempotency_key=f"refund:{payment.id}")
    now = utcnow()
    payment.status, payment.settled_at, payment.updated_at = PaymentStatus.REFUNDED, now, now
    uow.session.add(payment)
    record(
        actor,
        uow,
        action="payments.refunded",
        entity_type="payment",
        entity_id=payment.id,
        data={"kind": payment.kind, "amount_minor": payment.amount_minor, "currency": payment.currency},
    )
    return _payment_view(uow, payment, patient, appointment)

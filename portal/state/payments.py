"""Payments pages: the patient's fee policy, card on file and charges; the staff's fee list with waivers; the
admin's fee policy form and CSV export. Every action is one service function (backend.payments.service) in one
unit of work. Amounts are integer cents end to end; the form takes them as decimal text and converts exactly."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.payments import service
from backend.payments.gateway import mode
from backend.tenancy.context import Actor, Role
from portal.state.session import SESSION_ENDED, SessionState

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$", "nzd": "NZ$", "chf": "CHF "}
KIND_LABELS = {
    "late_cancel_fee": "Late cancellation fee",
    "no_show_fee": "No-show fee",
    "copay": "Copay",
    "self_pay": "Session fee",
}
STATUS_LABELS = {
    "requested": "Being charged",
    "succeeded": "Paid",
    "failed": "Not charged",
    "refunded": "Refunded",
    "waived": "Waived",
}
STATUS_COLORS = {"requested": "amber", "succeeded": "green", "failed": "red", "refunded": "gray", "waived": "gray"}
ERROR_LABELS = {"no_card_on_file": "no card on file", "card_declined": "card declined"}
_AMOUNT = re.compile(r"^\d{1,6}(\.\d{1,2})?$")


def money(minor: int, currency: str) -> str:
    """'$25.00' from 2500 and 'usd' (integer arithmetic only)."""
    symbol = SYMBOLS.get(currency, currency.upper() + " ")
    return f"{symbol}{minor // 100:,}.{minor % 100:02d}"


def cents(text: str) -> int | None:
    """Decimal text ('25', '25.5', '25.50') as integer cents, or None when it is not an amount."""
    text = text.strip().replace(",", "")
    if not _AMOUNT.match(text):
        return None
    try:
        return int(Decimal(text) * 100)
    except InvalidOperation:
        return None


def _day(value: datetime | None) -> str:
    return f"{value:%d %b %Y}" if value else ""


def _row(v: service.PaymentView) -> dict[str, str]:
    note = ERROR_LABELS.get(v.last_error, v.last_error.replace("_", " ")) if v.status == "failed" else ""
    if v.status == "waived" and v.waive_reason:
        note = v.waive_reason
    return {
        "id": str(v.id),
        "patient": v.patient_name,
        "kind": KIND_LABELS.get(v.kind, v.kind),
        "amount": money(v.amount_minor, v.currency),
        "status": STATUS_LABELS.get(v.status, v.status),
        "status_key": v.status,
        "color": STATUS_COLORS.get(v.status, "gray"),
        "appointment": f"{v.appointment_start.astimezone(ZoneInfo(v.appointment_timezone)):%d %b %Y, %H:%M %Z}"
        if v.appointment_start
        else "",
        "created": _day(v.created_at),
        "note": note,
        "waivable": "1" if v.status in ("requested", "failed") else "",
        "refundable": "1" if v.status == "succeeded" else "",
    }


class PatientPaymentsState(SessionState):
    """The patient's page: the policy that applies to them (and whether they accepted it), their card, charges."""

    policy_text: str = ""
    policy_id: str = ""
    policy_version: int = 0
    policy_source: str = "none"
    accepted_on: str = ""
    fee_lines: list[dict[str, str]] = []
    card_required: bool = False
    card_label: str = ""
    payments_mode: str = "fake"
    charges: list[dict[str, str]] = []
    loaded: bool = False

    def _patient(self) -> Actor | None:
        return self._actor(Role.PATIENT)

    @rx.event
    def load(self):
        actor = self._patient()
        if actor is None:
            return None
        self._refresh(actor)
        return None

    def _refresh(self, actor: Actor) -> None:
        with UnitOfWork(actor) as uow:
            policy = service.get_fee_policy(actor, uow)
            cards = service.list_payment_methods(actor, uow)
            charges = service.list_payments(actor, uow)
        self.policy_text, self.policy_version, self.policy_source = policy.policy_text, policy.version, policy.source
        self.policy_id = str(policy.id) if policy.id else ""
        self.accepted_on = _day(policy.accepted_at)
        self.card_required = policy.card_required
        lines = []
        if policy.late_cancel_fee_minor:
            hours = policy.late_cancel_window_minutes / 60
            window = f"{hours:g} hours" if hours >= 1 else f"{policy.late_cancel_window_minutes} minutes"
            lines.append(
                {
                    "label": f"Cancelling within {window} of the start",
                    "amount": money(policy.late_cancel_fee_minor, policy.currency),
                }
            )
        if policy.no_show_fee_minor:
            lines.append(
                {
                    "label": "Not coming to an appointment (no-show)",
                    "amount": money(policy.no_show_fee_minor, policy.currency),
                }
            )
        if policy.self_pay_minor:
            lines.append({"label": "Session (self-pay)", "amount": money(policy.self_pay_minor, policy.currency)})
        self.fee_lines = lines
        self.card_label = f"{cards[0].brand.title()} ending in {cards[0].last4}" if cards else ""
        self.payments_mode = mode()
        self.charges = [_row(v) for v in charges]
        self.loaded = True

    @rx.event
    def accept(self):
        actor = self._patient()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                service.accept_fee_policy(actor, uow, policy_id=uuid.UUID(self.policy_id), version=self.policy_version)
                uow.commit()
        except DomainError as exc:
            self._refresh(actor)
            return rx.toast.error(exc.message)
        self._refresh(actor)
        return rx.toast.success("Thank you: the fee policy is accepted.")

    @rx.event
    def save_card(self):
        """Fake mode: the practice's test card is saved at once (no card number anywhere). With Stripe, the card
        is entered in Stripe's own form (Stripe.js) against the SetupIntent; see README "Payments"."""
        actor = self._patient()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        if mode() != "fake":
            return rx.toast.info("Card entry through Stripe's secure form is not available on this page yet.")
        try:
            with UnitOfWork(actor) as uow:
                setup = service.start_card_setup(actor, uow)
                uow.commit()
            with UnitOfWork(actor) as uow:
                service.confirm_card_setup(actor, uow, setup_intent_id=setup.setup_intent_id)
                uow.commit()
        except DomainError as exc:
            return rx.toast.error(exc.message)
        self._refresh(actor)
        return rx.toast.success("Your card is saved.")


class StaffPaymentsState(SessionState):
    """Fees for staff: the doctor those of their own appointments, the admin all, with filters, waive and CSV.
    The admin also edits the practice's fee policy here."""

    rows: list[dict[str, str]] = []
    status_filter: str = "all"
    kind_filter: str = "all"
    waive_id: str = ""
    waive_reason: str = ""
    # The admin's policy form (amounts as decimal text).
    f_late_fee: str = "0"
    f_window_hours: str = "24"
    f_no_show_fee: str = "0"
    f_card_required: bool = False
    f_text: str = ""
    policy_version: int = 0
    policy_currency: str = "usd"
    form_error: str = ""
    loaded: bool = False

    @rx.var
    def status_options(self) -> list[dict[str, str]]:
        return [{"id": "all", "name": "Any status"}] + [{"id": k, "name": v} for k, v in STATUS_LABELS.items()]

    @rx.var
    def kind_options(self) -> list[dict[str, str]]:
        return [{"id": "all", "name": "Any fee"}] + [{"id": k, "name": v} for k, v in KIND_LABELS.items()]

    def _staff(self) -> Actor | None:
        return self._actor(Role.DOCTOR, Role.ADMIN)

    def _filters(self) -> service.PaymentFilters:
        return service.PaymentFilters(
            status=None if self.status_filter == "all" else self.status_filter,
            kind=None if self.kind_filter == "all" else self.kind_filter,
        )

    @rx.event
    def load(self):
        actor = self._staff()
        if actor is None:
            return None
        self._refresh(actor, with_policy=True)
        return None

    def _refresh(self, actor: Actor, *, with_policy: bool = False) -> None:
        with UnitOfWork(actor) as uow:
            views = service.list_payments(actor, uow, self._filters())
            policy = service.get_fee_policy(actor, uow) if with_policy and actor.role == Role.ADMIN else None
            uow.commit()  # the access record
        self.rows = [_row(v) for v in views]
        if policy is not None:
            self.f_late_fee = f"{policy.late_cancel_fee_minor / 100:.2f}"
            self.f_no_show_fee = f"{policy.no_show_fee_minor / 100:.2f}"
            self.f_window_hours = f"{policy.late_cancel_window_minutes / 60:g}"
            self.f_card_required = policy.card_required
            self.f_text = policy.policy_text
            self.policy_version = policy.version
            self.policy_currency = policy.currency
        self.loaded = True

    @rx.event
    def set_status_filter(self, value: str):
        self.status_filter = value
        actor = self._staff()
        if actor is not None:
            self._refresh(actor)

    @rx.event
    def set_kind_filter(self, value: str):
        self.kind_filter = value
        actor = self._staff()
        if actor is not None:
            self._refresh(actor)

    @rx.event
    def ask_waive(self, payment_id: str):
        self.waive_id, self.waive_reason = payment_id, ""

    @rx.event
    def cancel_waive(self):
        self.waive_id = ""

    @rx.event
    def set_waive_reason(self, value: str):
        self.waive_reason = value[:300]

    @rx.event
    def waive(self):
        actor = self._staff()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                service.waive_payment(actor, uow, uuid.UUID(self.waive_id), reason=self.waive_reason)
                uow.commit()
        except DomainError as exc:
            return rx.toast.error(exc.message)
        finally:
            self.waive_id = ""
        self._refresh(actor)
        return rx.toast.success("The fee is waived.")

    @rx.event
    def refund(self, payment_id: str):
        actor = self._actor(Role.ADMIN)
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                service.refund_payment(actor, uow, uuid.UUID(payment_id))
                uow.commit()
        except DomainError as exc:
            return rx.toast.error(exc.message)
        self._refresh(actor)
        return rx.toast.success("The charge is refunded.")

    @rx.event
    def export_csv(self):
        actor = self._actor(Role.ADMIN)
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                body = service.export_payments_csv(actor, uow, self._filters())
                uow.commit()
        except DomainError as exc:
            return rx.toast.error(exc.message)
        return rx.download(data=body, filename="payments.csv")

    @rx.event
    def set_f_late_fee(self, value: str):
        self.f_late_fee = value

    @rx.event
    def set_f_no_show_fee(self, value: str):
        self.f_no_show_fee = value

    @rx.event
    def set_f_window_hours(self, value: str):
        self.f_window_hours = value

    @rx.event
    def set_f_card_required(self, value: bool):
        self.f_card_required = bool(value)

    @rx.event
    def set_f_text(self, value: str):
        self.f_text = value

    @rx.event
    def save_policy(self):
        actor = self._actor(Role.ADMIN)
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        late, no_show = cents(self.f_late_fee), cents(self.f_no_show_fee)
        try:
            hours = Decimal(self.f_window_hours.strip() or "0")
        except InvalidOperation:
            hours = Decimal(-1)
        if late is None or no_show is None:
            self.form_error = "Enter the fees as amounts, e.g. 25 or 25.50."
            return None
        if not Decimal(0) <= hours <= Decimal(168):
            self.form_error = "The cancellation window is 0 to 168 hours."
            return None
        changes: dict[str, Any] = {
            "late_cancel_fee_minor": late,
            "no_show_fee_minor": no_show,
            "late_cancel_window_minutes": int(hours * 60),
            "card_required": self.f_card_required,
            "policy_text": self.f_text,
        }
        try:
            with UnitOfWork(actor) as uow:
                view = service.update_fee_policy(actor, uow, changes=changes)
                uow.commit()
        except DomainError as exc:
            self.form_error = exc.message
            return None
        self.form_error = ""
        self.policy_version = view.version
        return rx.toast.success(f"Fee policy saved (version {view.version}).")

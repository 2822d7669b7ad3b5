"""Payments pages: the patient's fee policy, card on file and charges; the staff's fee list with waivers; the
admin's fee policy form and CSV export. Every action is one service function (backend.payments.service) in one
unit of work. Amounts are integer cents end to end; the form takes them as decimal text and converts exactly.

The patient's page is in the patient's language (portal/i18n.py: `tr(self.lang, ...)` for what the server builds);
the staff's pages are in English. With Stripe configured for the browser (PAYMENTS_MODE=stripe and
STRIPE_PUBLISHABLE_KEY) the card is typed into Stripe's own form (Stripe.js Elements, loaded from js.stripe.com,
in Stripe's frames) against a SetupIntent this server created: the card number goes from the browser to Stripe,
and this server only ever sees the SetupIntent's id, then reads the card's brand and last four digits from Stripe.
In fake mode (the default) "Save a card" saves a test card at once."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import reflex as rx
from babel.numbers import format_currency

from backend.db import UnitOfWork
from backend.errors import Conflict, DomainError
from backend.payments import service
from backend.payments.gateway import mode
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from portal.components import format as fmt
from portal.i18n import N_, tr, trn
from portal.state.session import SESSION_ENDED, SessionState

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$", "nzd": "NZ$", "chf": "CHF "}
KIND_LABELS = {
    "late_cancel_fee": N_("Late cancellation fee"),
    "no_show_fee": N_("No-show fee"),
    "copay": N_("Copay"),
    "self_pay": N_("Session fee"),
}
STATUS_LABELS = {
    "requested": N_("Being charged"),
    "succeeded": N_("Paid"),
    "failed": N_("Not charged"),
    "refunded": N_("Refunded"),
    "waived": N_("Waived"),
}
STATUS_COLORS = {"requested": "amber", "succeeded": "green", "failed": "red", "refunded": "gray", "waived": "gray"}
ERROR_LABELS = {
    "no_card_on_file": N_("no card on file"),
    "card_declined": N_("card declined"),
    "policy_not_accepted": N_("fee policy not accepted"),
}
# A row owed but not charged automatically (no card, or the policy not accepted): staff collect it or waive it.
DUE_REASONS = ("no_card_on_file", "policy_not_accepted")
DUE = N_("Due")
_AMOUNT = re.compile(r"^\d{1,6}(\.\d{1,2})?$")
# The element Stripe's card form is mounted in (portal/pages/patient/payments.py).
STRIPE_ELEMENT_ID = "stripe-card-element"
STRIPE_JS_URL = "https://js.stripe.com/v3/"


def money(minor: int, currency: str, lang: str = "en") -> str:
    """'$25.00' from 2500 and 'usd' (integer arithmetic only); in another language as its locale writes it
    ('25,00 US$'), from an exact Decimal."""
    if lang != "en":
        return format_currency(Decimal(minor) / 100, currency.upper(), locale=lang)
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


def _day(value: datetime | None, lang: str = "en") -> str:
    return fmt.date_label(value.date(), lang, weekday=False) if value else ""


def _row(v: service.PaymentView, lang: str = "en") -> dict[str, str]:
    due = v.status == "failed" and v.last_error in DUE_REASONS
    note = tr(lang, ERROR_LABELS.get(v.last_error, v.last_error.replace("_", " "))) if v.status == "failed" else ""
    if v.status == "waived" and v.waive_reason:
        note = v.waive_reason
    return {
        "id": str(v.id),
        "patient": v.patient_name,
        "kind": tr(lang, KIND_LABELS.get(v.kind, v.kind)),
        "amount": money(v.amount_minor, v.currency, lang),
        "status": tr(lang, DUE) if due else tr(lang, STATUS_LABELS.get(v.status, v.status)),
        "status_key": v.status,
        "color": "amber" if due else STATUS_COLORS.get(v.status, "gray"),
        "appointment": fmt.moment(v.appointment_start, v.appointment_timezone, lang) if v.appointment_start else "",
        "created": _day(v.created_at, lang),
        "note": note,
        "waivable": "1" if v.status in ("requested", "failed") else "",
        "refundable": "1" if v.status == "succeeded" else "",
    }


def _window(minutes: int, lang: str) -> str:
    if minutes % 60 == 0:
        return trn(lang, "{n} hour", "{n} hours", minutes // 60)
    return trn(lang, "{n} minute", "{n} minutes", minutes)


def fee_lines(policy: service.FeePolicyView, lang: str = "en") -> list[dict[str, str]]:
    """What the policy charges, line by line, for the patient to read before they accept it."""
    lines = []
    if policy.late_cancel_fee_minor:
        lines.append(
            {
                "label": tr(
                    lang,
                    "Cancelling within {window} of the start",
                    window=_window(policy.late_cancel_window_minutes, lang),
                ),
                "amount": money(policy.late_cancel_fee_minor, policy.currency, lang),
            }
        )
    if policy.no_show_fee_minor:
        lines.append(
            {
                "label": tr(lang, "Not coming to an appointment (no-show)"),
                "amount": money(policy.no_show_fee_minor, policy.currency, lang),
            }
        )
    if policy.copay_enabled and policy.copay_minor:
        lines.append(
            {
                "label": tr(lang, "Copay for each attended session"),
                "amount": money(policy.copay_minor, policy.currency, lang),
            }
        )
    else:
        prices = sorted(set(policy.provider_prices.values()) | ({policy.self_pay_minor} - {0}))
        if prices:
            low, high = money(prices[0], policy.currency, lang), money(prices[-1], policy.currency, lang)
            lines.append(
                {
                    "label": tr(lang, "Each attended session (self-pay)")
                    if len(prices) == 1
                    else tr(lang, "Each attended session (self-pay), by provider"),
                    "amount": low if len(prices) == 1 else f"{low} – {high}",
                }
            )
    return lines


def stripe_mount_script(publishable_key: str, client_secret: str) -> str:
    """The browser's half of saving a card with Stripe: load Stripe.js from js.stripe.com (once), and mount Stripe's
    card form (the Payment Element, in Stripe's frames) for the SetupIntent. Resolves to '' or an error text."""
    return f"""(async () => {{
  const pk = {json.dumps(publishable_key)}, secret = {json.dumps(client_secret)};
  try {{
    if (!window.Stripe) {{
      await new Promise((resolve, reject) => {{
        let tag = document.querySelector('script[src="{STRIPE_JS_URL}"]');
        if (!tag) {{
          tag = document.createElement("script");
          tag.src = "{STRIPE_JS_URL}";
          document.head.appendChild(tag);
        }}
        tag.addEventListener("load", resolve);
        tag.addEventListener("error", () => reject(new Error("Stripe.js did not load")));
      }});
    }}
    let box = null;
    for (let i = 0; i < 100 && !(box = document.getElementById("{STRIPE_ELEMENT_ID}")); i++) {{
      await new Promise((r) => setTimeout(r, 50));
    }}
    if (!box) return "The card form did not open.";
    const previous = window.__waitwellStripe;
    if (previous) previous.element.destroy();
    const stripe = window.Stripe(pk);
    const elements = stripe.elements({{ clientSecret: secret, locale: document.documentElement.lang || "auto" }});
    const element = elements.create("payment", {{ layout: "tabs" }});
    element.mount(box);
    window.__waitwellStripe = {{ stripe, elements, element }};
    return "";
  }} catch (e) {{
    return String((e && e.message) || e);
  }}
}})()"""


# Confirm the SetupIntent in the browser (Stripe.js sends the card to Stripe, with 3-D Secure when the bank asks):
# resolves to {id, status} of the SetupIntent, or {error}. No card data comes back, only Stripe's ids.
STRIPE_CONFIRM_SCRIPT = """(async () => {
  const s = window.__waitwellStripe;
  if (!s) return { error: "The card form is not ready." };
  const result = await s.stripe.confirmSetup({
    elements: s.elements,
    redirect: "if_required",
    confirmParams: { return_url: window.location.href },
  });
  if (result.error) return { error: result.error.message || "The card was not saved." };
  return { id: result.setupIntent.id, status: result.setupIntent.status };
})()"""

STRIPE_CLOSE_SCRIPT = """(() => {
  const s = window.__waitwellStripe;
  if (s) s.element.destroy();
  window.__waitwellStripe = undefined;
})()"""


def stripe_in_browser() -> bool:
    """Cards are typed into Stripe's form: Stripe mode with a publishable key (else the fake, or not available)."""
    settings = get_settings()
    return settings.payments_mode == "stripe" and bool(settings.stripe_publishable_key)


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
    # Stripe's card form is open on the page (Stripe mode), and a confirmation is on its way.
    card_form_open: bool = False
    card_busy: bool = False
    card_error: str = ""
    charges: list[dict[str, str]] = []
    loaded: bool = False
    # The SetupIntent this page created: the only one it confirms (server side only, never sent to the browser).
    _setup_intent_id: str = ""

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
        lang = self.lang
        with UnitOfWork(actor) as uow:
            policy = service.get_fee_policy(actor, uow)
            cards = service.list_payment_methods(actor, uow)
            charges = service.list_payments(actor, uow)
        self.policy_text, self.policy_version, self.policy_source = policy.policy_text, policy.version, policy.source
        self.policy_id = str(policy.id) if policy.id else ""
        self.accepted_on = _day(policy.accepted_at, lang)
        self.card_required = policy.card_required
        self.fee_lines = fee_lines(policy, lang)
        self.card_label = (
            tr(lang, "{brand} ending in {last4}", brand=cards[0].brand.title(), last4=cards[0].last4) if cards else ""
        )
        self.payments_mode = mode()
        self.charges = [_row(v, lang) for v in charges]
        self.loaded = True

    @rx.event
    def accept(self):
        actor = self._patient()
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        try:
            with UnitOfWork(actor) as uow:
                service.accept_fee_policy(actor, uow, policy_id=uuid.UUID(self.policy_id), version=self.policy_version)
                uow.commit()
        except DomainError as exc:
            self._refresh(actor)
            return rx.toast.error(tr(self.lang, exc.message))
        self._refresh(actor)
        return rx.toast.success(tr(self.lang, "Thank you: the fee policy is accepted."))

    @rx.event
    def save_card(self):
        """Fake mode: the practice's test card is saved at once (no card number anywhere). Stripe mode: a SetupIntent
        for this patient, and Stripe's card form opens on the page (the browser confirms it: `submit_card`)."""
        actor = self._patient()
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        if mode() != "fake":
            return self._open_stripe_form(actor)
        try:
            with UnitOfWork(actor) as uow:
                setup = service.start_card_setup(actor, uow)
                uow.commit()
            with UnitOfWork(actor) as uow:
                service.confirm_card_setup(actor, uow, setup_intent_id=setup.setup_intent_id)
                uow.commit()
        except DomainError as exc:
            return rx.toast.error(tr(self.lang, exc.message))
        self._refresh(actor)
        return rx.toast.success(tr(self.lang, "Your card is saved."))

    def _open_stripe_form(self, actor: Actor):
        if not stripe_in_browser():
            return rx.toast.error(tr(self.lang, "Saving a card online is not available: please call the practice."))
        try:
            with UnitOfWork(actor) as uow:
                setup = service.start_card_setup(actor, uow)
                uow.commit()
        except DomainError as exc:
            return rx.toast.error(tr(self.lang, exc.message))
        self._setup_intent_id = setup.setup_intent_id
        self.card_form_open, self.card_busy, self.card_error = True, False, ""
        return rx.call_script(
            stripe_mount_script(setup.publishable_key or "", setup.client_secret),
            callback=PatientPaymentsState.card_form_mounted,
        )

    @rx.event
    def card_form_mounted(self, problem: str):
        if problem:
            self.card_error = tr(self.lang, "The card form could not be loaded. Please try again later.")

    @rx.event
    def close_card_form(self):
        self.card_form_open, self.card_busy, self.card_error, self._setup_intent_id = False, False, "", ""
        return rx.call_script(STRIPE_CLOSE_SCRIPT)

    @rx.event
    def submit_card(self):
        if not self.card_form_open or self.card_busy:
            return None
        self.card_busy, self.card_error = True, ""
        return rx.call_script(STRIPE_CONFIRM_SCRIPT, callback=PatientPaymentsState.card_confirmed)

    @rx.event
    def card_confirmed(self, result: dict[str, Any]):
        """Stripe.js confirmed (or refused) the SetupIntent: keep the card, read from Stripe by the SetupIntent id
        (which must be the one this page created). A refusal's text is Stripe's, in the form's language."""
        self.card_busy, self.card_error = False, ""
        actor = self._patient()
        if actor is None:
            return rx.toast.error(tr(self.lang, SESSION_ENDED))
        result = result if isinstance(result, dict) else {}
        if result.get("error"):
            self.card_error = str(result["error"])[:300]
            return None
        if not self._setup_intent_id or result.get("id") != self._setup_intent_id:
            self.card_error = tr(self.lang, "The card form is out of date: open it again.")
            return None
        try:
            with UnitOfWork(actor) as uow:
                service.confirm_card_setup(actor, uow, setup_intent_id=self._setup_intent_id)
                uow.commit()
        except Conflict:
            # Stripe is still confirming it (its webhook saves the card when it is done).
            self.card_form_open, self._setup_intent_id = False, ""
            return rx.toast.info(tr(self.lang, "Your bank is still confirming the card: it appears here once done."))
        except DomainError as exc:
            self.card_error = tr(self.lang, exc.message)
            return None
        self.card_form_open, self._setup_intent_id = False, ""
        self._refresh(actor)
        return [rx.call_script(STRIPE_CLOSE_SCRIPT), rx.toast.success(tr(self.lang, "Your card is saved."))]


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
    f_session_price: str = "0"
    f_copay_enabled: bool = False
    f_copay: str = "0"
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
            self.f_session_price = f"{policy.self_pay_minor / 100:.2f}"
            self.f_copay_enabled = policy.copay_enabled
            self.f_copay = f"{policy.copay_minor / 100:.2f}"
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
    def set_f_session_price(self, value: str):
        self.f_session_price = value

    @rx.event
    def set_f_copay_enabled(self, value: bool):
        self.f_copay_enabled = bool(value)

    @rx.event
    def set_f_copay(self, value: str):
        self.f_copay = value

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
        session, copay = cents(self.f_session_price), cents(self.f_copay)
        try:
            hours = Decimal(self.f_window_hours.strip() or "0")
        except InvalidOperation:
            hours = Decimal(-1)
        if late is None or no_show is None or session is None or copay is None:
            self.form_error = "Enter the fees as amounts, e.g. 25 or 25.50."
            return None
        if not Decimal(0) <= hours <= Decimal(168):
            self.form_error = "The cancellation window is 0 to 168 hours."
            return None
        changes: dict[str, Any] = {
            "late_cancel_fee_minor": late,
            "no_show_fee_minor": no_show,
            "self_pay_minor": session,
            "copay_enabled": self.f_copay_enabled,
            "copay_minor": copay,
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

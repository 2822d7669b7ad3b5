"""The payment gateway port and its two adapters: Stripe (the official SDK) and a fake for the embedded mode.

Every call that creates something at the gateway carries an idempotency key: the same request sent again (a worker
that died before it read the answer, a retried HTTP call) is answered with what the first one made, never a second
customer, card setup or charge. No card number passes through here: a card is saved in the browser (Stripe.js
against a SetupIntent), and this side only ever sees the gateway's ids, the brand and the last four digits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Protocol

from backend.settings import get_settings

if TYPE_CHECKING:
    from stripe.params import SetupIntentCreateParams

ChargeStatus = Literal["succeeded", "failed", "pending"]
TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class SetupStart:
    """What the browser needs to save a card: the SetupIntent's id and client secret, and its customer."""

    setup_intent_id: str
    client_secret: str
    customer_id: str


@dataclass(frozen=True)
class SavedCard:
    setup_intent_id: str
    customer_id: str
    method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    # The ids we put on the SetupIntent when we created it (a card is only ever saved for the patient it names).
    metadata: dict[str, str]


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    payment_intent_id: str | None
    charge_id: str | None = None
    # The gateway's decline code for a failed charge (never card data).
    error: str = ""


class Gateway(Protocol):
    name: str

    def create_customer(self, *, idempotency_key: str, metadata: dict[str, str]) -> str: ...

    def start_setup(self, *, customer_id: str, idempotency_key: str, metadata: dict[str, str]) -> SetupStart: ...

    def saved_card(self, setup_intent_id: str) -> SavedCard | None: ...

    def charge(
        self,
        *,
        amount_minor: int,
        currency: str,
        customer_id: str,
        method_id: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> ChargeResult: ...

    def refund(self, *, payment_intent_id: str, idempotency_key: str) -> str: ...


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


class FakeGateway:
    """The embedded default: no network, no account. Deterministic ids from the idempotency keys, so a repeated
    request gives the same answer, as Stripe's would. A card whose method id ends in '_declined' is declined."""

    name = "fake"
    DECLINED_SUFFIX = "_declined"

    def create_customer(self, *, idempotency_key: str, metadata: dict[str, str]) -> str:
        return f"cus_fake_{_digest(idempotency_key)}"

    def start_setup(self, *, customer_id: str, idempotency_key: str, metadata: dict[str, str]) -> SetupStart:
        # The fake SetupIntent's id carries what a real one keeps server-side: its customer and metadata.
        seti = f"seti_fake_{_digest(idempotency_key)}"
        _FAKE_SETUPS[seti] = (customer_id, dict(metadata))
        return SetupStart(setup_intent_id=seti, client_secret=f"{seti}_secret_fake", customer_id=customer_id)

    def saved_card(self, setup_intent_id: str) -> SavedCard | None:
        found = _FAKE_SETUPS.get(setup_intent_id)
        if found is None:
            return None
        customer_id, metadata = found
        return SavedCard(
            setup_intent_id=setup_intent_id,
            customer_id=customer_id,
            method_id=f"pm_fake_{_digest(setup_intent_id)}",
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=2030,
            metadata=metadata,
        )

    def charge(
        self,
        *,
        amount_minor: int,
        currency: str,
        customer_id: str,
        method_id: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> ChargeResult:
        pi = f"pi_fake_{_digest(idempotency_key)}"
        if method_id.endswith(self.DECLINED_SUFFIX):
            return ChargeResult("failed", pi, None, "card_declined")
        return ChargeResult("succeeded", pi, f"ch_fake_{_digest(idempotency_key)}")

    def refund(self, *, payment_intent_id: str, idempotency_key: str) -> str:
        return f"re_fake_{_digest(idempotency_key)}"


# The fake's SetupIntents (one process: the embedded mode). Lost on restart, like an unconfirmed browser form.
_FAKE_SETUPS: dict[str, tuple[str, dict[str, str]]] = {}


def _str_dict(value: Any) -> dict[str, str]:
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    try:
        return {str(k): str(v) for k, v in dict(value or {}).items()}
    except (TypeError, ValueError):
        return {}


class StripeGateway:
    """Stripe through the official SDK (`stripe.StripeClient`), at STRIPE_API_BASE (a local server in tests)."""

    name = "stripe"

    def __init__(self, secret_key: str, api_base: str) -> None:
        import stripe

        self._stripe = stripe
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base},
            max_network_retries=0,  # our own retries (the sweep) reuse the idempotency key
            http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
        )

    def create_customer(self, *, idempotency_key: str, metadata: dict[str, str]) -> str:
        customer = self._client.v1.customers.create(
            params={"metadata": metadata}, options={"idempotency_key": idempotency_key}
        )
        return str(customer.id)

    def start_setup(self, *, customer_id: str, idempotency_key: str, metadata: dict[str, str]) -> SetupStart:
        # A card (the browser's Stripe Elements form), kept for charges made later without the patient present.
        params: SetupIntentCreateParams = {
            "customer": customer_id,
            "usage": "off_session",
            "allowed_payment_method_types": ["card"],
            "metadata": metadata,
        }
        intent = self._client.v1.setup_intents.create(
            params=params,
            options={"idempotency_key": idempotency_key},
        )
        return SetupStart(
            setup_intent_id=str(intent.id), client_secret=str(intent.client_secret or ""), customer_id=customer_id
        )

    def saved_card(self, setup_intent_id: str) -> SavedCard | None:
        intent = self._client.v1.setup_intents.retrieve(setup_intent_id, params={"expand": ["payment_method"]})
        if intent.status != "succeeded" or not intent.payment_method:
            return None
        method = intent.payment_method
        customer = intent.customer
        if isinstance(method, str):
            method = self._client.v1.payment_methods.retrieve(method)
        card = getattr(method, "card", None)
        return SavedCard(
            setup_intent_id=str(intent.id),
            customer_id=str(customer if isinstance(customer, str) else getattr(customer, "id", "")),
            method_id=str(method.id),
            brand=str(getattr(card, "brand", "") or "")[:30],
            last4=str(getattr(card, "last4", "") or "")[:4],
            exp_month=int(getattr(card, "exp_month", 0) or 0),
            exp_year=int(getattr(card, "exp_year", 0) or 0),
            metadata=_str_dict(intent.metadata),
        )

    def charge(
        self,
        *,
        amount_minor: int,
        currency: str,
        customer_id: str,
        method_id: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> ChargeResult:
        stripe = self._stripe
        try:
            intent = self._client.v1.payment_intents.create(
                params={
                    "amount": amount_minor,
                    "currency": currency,
                    "customer": customer_id,
                    "payment_method": method_id,
                    "off_session": True,
                    "confirm": True,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            declined = exc.error.payment_intent if exc.error is not None else None
            pi_id = str(declined["id"]) if declined else None
            return ChargeResult("failed", pi_id, None, str(exc.code or "card_declined")[:60])
        charge = intent.latest_charge
        charge_id = charge if isinstance(charge, str) else getattr(charge, "id", None)
        if intent.status == "succeeded":
            return ChargeResult("succeeded", str(intent.id), charge_id)
        if intent.status in ("requires_payment_method", "canceled"):
            return ChargeResult("failed", str(intent.id), charge_id, str(intent.status))
        return ChargeResult("pending", str(intent.id), charge_id)  # processing: the webhook settles it

    def refund(self, *, payment_intent_id: str, idempotency_key: str) -> str:
        refund = self._client.v1.refunds.create(
            params={"payment_intent": payment_intent_id}, options={"idempotency_key": idempotency_key}
        )
        return str(refund.id)


def mode() -> str:
    return get_settings().payments_mode


@lru_cache(maxsize=4)
def _stripe(secret_key: str, api_base: str) -> StripeGateway:
    return StripeGateway(secret_key, api_base)


_FAKE = FakeGateway()


def get_gateway() -> Gateway:
    """The configured gateway: Stripe when PAYMENTS_MODE=stripe (with STRIPE_SECRET_KEY), else the fake."""
    settings = get_settings()
    if settings.payments_mode == "stripe":
        if not settings.stripe_secret_key:
            raise RuntimeError("PAYMENTS_MODE=stripe needs STRIPE_SECRET_KEY")
        return _stripe(settings.stripe_secret_key, settings.stripe_api_base)
    return _FAKE

"""Saving a card with Stripe Elements in Setup mode, the server's half: the SetupIntent (SDK, idempotency key, cards
only, off-session) for the browser, the patient page's events around Stripe.js (portal/state/payments.py), the
card recorded from Stripe by the SetupIntent's id only (never card data), and the Content-Security-Policy that
lets the pages load Stripe.js only when Stripe is configured. Stripe.js itself cannot run here (it is only served
from js.stripe.com): the local server (tests/stripe_server.py) plays the browser's confirmation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse

from backend.api.edge import EdgeMiddleware
from backend.errors import NotFound
from backend.payments import service
from backend.payments.models import PaymentMethod
from backend.settings import get_settings
from backend.tenancy.context import Actor
from portal.state.payments import STRIPE_ELEMENT_ID, PatientPaymentsState
from tests.factories import Practice, add_patient, call, make_practice, rows
from tests.stripe_server import StripeServer, running_stripe

PUBLISHABLE_KEY = "pk_test_waitwell"


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture(scope="module")
def stripe_api() -> Iterator[StripeServer]:
    yield from running_stripe()


@pytest.fixture
def stripe_mode(monkeypatch: pytest.MonkeyPatch, stripe_api: StripeServer) -> StripeServer:
    settings = get_settings()
    monkeypatch.setattr(settings, "payments_mode", "stripe")
    monkeypatch.setattr(settings, "stripe_secret_key", "sk_test_cards")
    monkeypatch.setattr(settings, "stripe_publishable_key", PUBLISHABLE_KEY)
    monkeypatch.setattr(settings, "stripe_api_base", stripe_api.url)
    stripe_api.requests.clear()
    return stripe_api


class PaymentsPage(SimpleNamespace):
    """Stands in for the patient's payments page state: its real handlers and helpers, the patient's session."""

    def __init__(self, actor: Actor, lang: str = "en") -> None:
        super().__init__(
            lang=lang, policy_text="", policy_id="", policy_version=0, policy_source="none", accepted_on="",
            fee_lines=[], card_required=False, card_label="", payments_mode="fake", card_form_open=False,
            card_busy=False, card_error="", charges=[], loaded=False, _setup_intent_id="",
        )  # fmt: skip
        self._me = actor

    def _patient(self) -> Actor:
        return self._me

    def _refresh(self, actor: Actor) -> None:
        PatientPaymentsState._refresh(self, actor)  # type: ignore[arg-type]

    def _open_stripe_form(self, actor: Actor) -> Any:
        return PatientPaymentsState._open_stripe_form(self, actor)  # type: ignore[arg-type]


def _script(spec: Any) -> str:
    """The JavaScript of an rx.call_script event."""
    found = {str(name): value for name, value in spec.args}
    return str(found["javascript_code"]._var_value)


def test_the_setup_intent_is_for_cards_off_session_with_an_idempotency_key(
    harbor: Practice, stripe_mode: StripeServer
) -> None:
    setup = call(harbor.patient_actor, service.start_card_setup)
    assert (setup.mode, setup.publishable_key) == ("stripe", PUBLISHABLE_KEY)
    assert setup.client_secret.startswith(setup.setup_intent_id + "_secret")
    (request,) = [r for r in stripe_mode.requests if r[:2] == ("POST", "/v1/setup_intents")]
    _, _, headers, form = request
    assert headers["idempotency-key"].startswith("setup:")
    assert form["usage"] == "off_session" and form["allowed_payment_method_types"] == ["card"]
    assert form["metadata"] == {"tenant_id": str(harbor.tenant_id), "patient_id": str(harbor.patient.id)}
    # A second start is a new SetupIntent (a new key) for the same gateway customer (the same key: one customer).
    again = call(harbor.patient_actor, service.start_card_setup)
    assert again.setup_intent_id != setup.setup_intent_id
    keys = [h["idempotency-key"] for m, p, h, _ in stripe_mode.requests if (m, p) == ("POST", "/v1/customers")]
    assert len(keys) == 2 and len(set(keys)) == 1
    assert (
        stripe_mode.setup_intents[again.setup_intent_id]["customer"]
        == stripe_mode.setup_intents[setup.setup_intent_id]["customer"]
    )


def test_the_page_mounts_stripe_elements_and_keeps_the_card_stripe_confirmed(
    harbor: Practice, stripe_mode: StripeServer
) -> None:
    page = PaymentsPage(harbor.patient_actor)
    opened = PatientPaymentsState.save_card.fn(page)  # type: ignore[arg-type]
    assert page.card_form_open and page._setup_intent_id.startswith("seti_")
    seti = page._setup_intent_id
    intent = stripe_mode.setup_intents[seti]
    js = _script(opened)
    # Stripe.js from js.stripe.com, mounted into the page's box, with this SetupIntent's client secret only.
    assert "https://js.stripe.com/v3/" in js and STRIPE_ELEMENT_ID in js
    assert json.dumps(intent["client_secret"]) in js and json.dumps(PUBLISHABLE_KEY) in js
    assert "sk_test" not in js
    assert PatientPaymentsState.submit_card.fn(page) is not None and page.card_busy  # type: ignore[arg-type]
    # The browser reports another SetupIntent (a stale tab, a forged event): refused, nothing saved.
    PatientPaymentsState.card_confirmed.fn(page, {"id": "seti_other", "status": "succeeded"})  # type: ignore[arg-type]
    assert page.card_error and rows(harbor, PaymentMethod) == []
    # Stripe refused the card in the browser: its message is shown, nothing saved.
    PatientPaymentsState.card_confirmed.fn(page, {"error": "Your card was declined."})  # type: ignore[arg-type]
    assert page.card_error == "Your card was declined." and rows(harbor, PaymentMethod) == []
    # Confirmed in the browser (Stripe.js -> Stripe): the server reads the card from Stripe by the id.
    stripe_mode.confirm_setup(seti, brand="amex", last4="0005")
    done = PatientPaymentsState.card_confirmed.fn(page, {"id": seti, "status": "succeeded"})  # type: ignore[arg-type]
    assert done is not None and not page.card_form_open and page.card_error == ""
    assert page.card_label == "Amex ending in 0005"
    (method,) = rows(harbor, PaymentMethod)
    assert (method.brand, method.last4, method.patient_id) == ("amex", "0005", harbor.patient.id)
    assert method.provider_method_id == intent["payment_method"]
    # Nothing the server sent or received carried a card number.
    for _, _, _, form in stripe_mode.requests:
        assert "number" not in json.dumps(form) and "cvc" not in json.dumps(form)


def test_a_setup_still_processing_is_left_to_the_webhook(harbor: Practice, stripe_mode: StripeServer) -> None:
    page = PaymentsPage(harbor.patient_actor, lang="es")
    PatientPaymentsState.save_card.fn(page)  # type: ignore[arg-type]
    seti = page._setup_intent_id
    toast = PatientPaymentsState.card_confirmed.fn(page, {"id": seti, "status": "processing"})  # type: ignore[arg-type]
    assert toast is not None and not page.card_form_open and rows(harbor, PaymentMethod) == []


def test_another_patients_setup_intent_is_not_saved_for_me(harbor: Practice, stripe_mode: StripeServer) -> None:
    setup = call(harbor.patient_actor, service.start_card_setup)
    stripe_mode.confirm_setup(setup.setup_intent_id)
    other = add_patient(harbor, "Omar Other")
    other_actor = Actor(tenant_id=harbor.tenant_id, role=harbor.patient_actor.role, patient_id=other.id,
                        user_id=uuid.uuid4())  # fmt: skip
    with pytest.raises(NotFound):
        call(other_actor, service.confirm_card_setup, setup_intent_id=setup.setup_intent_id)
    cove = make_practice("Cove Counselling", "cove")
    with pytest.raises(NotFound):
        call(cove.patient_actor, service.confirm_card_setup, setup_intent_id=setup.setup_intent_id)
    assert rows(harbor, PaymentMethod) == [] and rows(cove, PaymentMethod) == []


def test_stripe_mode_without_a_publishable_key_offers_no_card_form(
    harbor: Practice, stripe_mode: StripeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "stripe_publishable_key", None)
    page = PaymentsPage(harbor.patient_actor)
    PatientPaymentsState.save_card.fn(page)  # type: ignore[arg-type]
    assert not page.card_form_open and not stripe_mode.creates("/v1/setup_intents")


def test_fake_mode_stays_the_default_and_saves_a_test_card(harbor: Practice) -> None:
    assert get_settings().payments_mode == "fake"
    page = PaymentsPage(harbor.patient_actor, lang="es")
    PatientPaymentsState.save_card.fn(page)  # type: ignore[arg-type]
    assert not page.card_form_open and page.card_label == "Visa terminada en 4242"


def _page_csp() -> str:
    async def page(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("<html></html>", media_type="text/html")(scope, receive, send)

    return TestClient(EdgeMiddleware(page)).get("/").headers["content-security-policy"]


def _directive(csp: str, name: str) -> str:
    return next((d for d in csp.split("; ") if d.startswith(name + " ")), "")


def test_pages_may_load_stripe_js_only_when_stripe_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    fake = _page_csp()
    assert "stripe" not in fake and _directive(fake, "frame-src") == ""  # frames: default-src 'self'
    monkeypatch.setattr(settings, "payments_mode", "stripe")
    monkeypatch.setattr(settings, "stripe_publishable_key", None)
    assert "stripe" not in _page_csp()  # no key for the browser: no Stripe.js either
    monkeypatch.setattr(settings, "stripe_publishable_key", PUBLISHABLE_KEY)
    csp = _page_csp()
    assert "https://js.stripe.com" in _directive(csp, "script-src").split()
    assert _directive(csp, "frame-src").split()[1:] == ["https://js.stripe.com", "https://hooks.stripe.com"]
    assert _directive(csp, "connect-src").split()[1:] == ["'self'", "https://api.stripe.com"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp

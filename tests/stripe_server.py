"""A local HTTP server that records requests and answers like Stripe's API, so the real `stripe` SDK can be
exercised with no network (as tests/recording_server.py does for SendGrid and Twilio).

Routes (form-encoded requests, JSON answers, Stripe's object shapes as far as our code reads them):
    POST /v1/customers                    -> a customer
    POST /v1/setup_intents                -> a SetupIntent (requires_payment_method) with a client secret
    GET  /v1/setup_intents/{id}           -> it (payment_method expanded with expand[]=payment_method)
    GET  /v1/payment_methods/{id}         -> a card payment method
    POST /v1/payment_intents              -> a PaymentIntent: succeeded, or 402 card_error for a declined card
    POST /v1/refunds                      -> a refund

Idempotency as Stripe keeps it: a request with an Idempotency-Key seen before gets the first answer again
(header Idempotent-Replayed: true) and creates nothing. ``confirm_setup(id)`` plays the browser confirming a
SetupIntent with a card; ``decline(pm)`` makes charges of that card fail. ``hold_answers()`` makes the next
PaymentIntent create wait (after the charge is made) until ``release()``: a worker killed there never reads it.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (metadata[k]=v, expand[0]=x) back into dicts and lists."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        match = re.match(r"^(\w+)\[(\w*)\]$", key)
        if not match:
            out[key] = value
            continue
        name, sub = match.groups()
        if sub.isdigit() or sub == "":
            out.setdefault(name, []).append(value)
        else:
            out.setdefault(name, {})[sub] = value
    return out


class StripeServer:
    """``with StripeServer() as server:``; ``server.url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], dict[str, Any]]] = []
        self.customers: dict[str, dict[str, Any]] = {}
        self.setup_intents: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.declined: set[str] = set()
        self._replies: dict[str, tuple[int, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._hold = threading.Event()
        self._hold.set()
        self._holding = False
        self.held = threading.Event()  # set once a held answer is waiting
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> StripeServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="stripe-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ---------------------------------------------------------------- test controls

    def confirm_setup(self, setup_intent_id: str, *, brand: str = "visa", last4: str = "4242") -> str:
        """The browser confirmed the SetupIntent with a card: returns the new payment method id."""
        with self._lock:
            pm = f"pm_{next(self._ids)}"
            self.payment_methods[pm] = {
                "id": pm,
                "object": "payment_method",
                "type": "card",
                "card": {"brand": brand, "last4": last4, "exp_month": 4, "exp_year": 2031},
            }
            intent = self.setup_intents[setup_intent_id]
            intent.update(status="succeeded", payment_method=pm)
            return pm

    def decline(self, method_id: str) -> None:
        self.declined.add(method_id)

    def hold_answers(self) -> None:
        self._holding = True
        self.held.clear()
        self._hold.clear()

    def release(self) -> None:
        self._holding = False
        self._hold.set()

    def creates(self, path: str) -> list[dict[str, Any]]:
        return [form for method, p, _, form in self.requests if method == "POST" and p == path]

    # ---------------------------------------------------------------- answers

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    def _dispatch(self, method: str, path: str, form: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        if method == "POST" and path == "/v1/customers":
            customer = {"id": self._id("cus"), "object": "customer", "metadata": form.get("metadata", {})}
            self.customers[customer["id"]] = customer
            return 200, customer
        if method == "POST" and path == "/v1/setup_intents":
            seti = self._id("seti")
            intent = {
                "id": seti,
                "object": "setup_intent",
                "client_secret": f"{seti}_secret_test",
                "status": "requires_payment_method",
                "customer": form.get("customer"),
                "payment_method": None,
                "usage": form.get("usage", "off_session"),
                "metadata": form.get("metadata", {}),
            }
            self.setup_intents[seti] = intent
            return 200, intent
        if method == "GET" and path.startswith("/v1/setup_intents/"):
            intent = self.setup_intents.get(path.rsplit("/", 1)[1])
            if intent is None:
                return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
            answer = dict(intent)
            if "payment_method" in (query.get("expand") or []) and intent["payment_method"]:
                answer["payment_method"] = self.payment_methods[intent["payment_method"]]
            return 200, answer
        if method == "GET" and path.startswith("/v1/payment_methods/"):
            pm = self.payment_methods.get(path.rsplit("/", 1)[1])
            return (200, pm) if pm else (404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}})
        if method == "POST" and path == "/v1/payment_intents":
            pi = self._id("pi")
            declined = form.get("payment_method") in self.declined
            intent = {
                "id": pi,
                "object": "payment_intent",
                "amount": int(form["amount"]),
                "currency": form["currency"],
                "customer": form.get("customer"),
                "payment_method": form.get("payment_method"),
                "metadata": form.get("metadata", {}),
                "status": "requires_payment_method" if declined else "succeeded",
                "latest_charge": None if declined else self._id("ch"),
            }
            self.payment_intents[pi] = intent
            if declined:
                return 402, {
                    "error": {
                        "type": "card_error",
                        "code": "card_declined",
                        "decline_code": "insufficient_funds",
                        "message": "Your card was declined.",
                        "payment_intent": intent,
                    }
                }
            return 200, intent
        if method == "POST" and path == "/v1/refunds":
            refund = {
                "id": self._id("re"),
                "object": "refund",
                "payment_intent": form.get("payment_intent"),
                "status": "succeeded",
            }
            self.refunds[refund["id"]] = refund
            return 200, refund
        return 404, {"error": {"type": "invalid_request_error", "message": f"no route {method} {path}"}}

    def _answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        form = _nest(parse_qsl(body, keep_blank_values=True))
        query = _nest(parse_qsl(parts.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        key = headers.get("idempotency-key")
        with self._lock:
            self.requests.append((handler.command, parts.path, headers, form))
            if key and key in self._replies:
                status, answer = self._replies[key]
                return status, {"Idempotent-Replayed": "true", "Idempotency-Key": key}, answer
        status, answer = self._dispatch(handler.command, parts.path, form, query)
        with self._lock:
            if key and handler.command == "POST":
                self._replies[key] = (status, answer)
        if handler.command == "POST" and parts.path == "/v1/payment_intents" and self._holding:
            self.held.set()
            self._hold.wait(timeout=120)
        return status, ({"Idempotency-Key": key} if key else {}), answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                status, headers, answer = server._answer(self)
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Request-Id", f"req_{next(server._ids)}")
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client (a killed worker) is gone

            do_GET = _handle
            do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def running_stripe() -> Iterator[StripeServer]:
    with StripeServer() as server:
        yield server

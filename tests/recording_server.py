"""A local HTTP server that records requests and answers like SendGrid and Twilio, so the real SDKs can be
exercised with no network.

Routes:
    POST /v3/mail/send                                   -> 202, ``X-Message-Id`` header, empty body
    GET  /v3/messages?query=...                          -> 200 Email Activity list (messages sent here)
    POST /2010-04-01/Accounts/{sid}/Messages.json        -> 201 Twilio Message resource (status "queued")
    GET  /2010-04-01/Accounts/{sid}/Messages/{SM}.json   -> 200 the message, or 404
    GET  /2010-04-01/Accounts/{sid}/Messages.json        -> 200 a one-page list, filtered by To / From

``fail_next(status, n)`` makes the next ``n`` requests fail with a SendGrid- or Twilio-shaped error body;
``stall_next(seconds, n)`` makes them answer only after a delay (for client timeouts).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC\w+)/Messages\.json$")
_TWILIO_MESSAGE = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC\w+)/Messages/(?P<sid>SM\w+)\.json$")
_UNIQUE_ARG = re.compile(r"unique_args\['(?P<key>[^']+)'\]\s*=\s*\"(?P<value>[^\"]*)\"")

# Twilio error codes used for canned failures (https://www.twilio.com/docs/api/errors).
_TWILIO_CODES = {400: 21211, 401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # header names lower-cased
    body: bytes
    json: Any = None
    form: dict[str, list[str]] = field(default_factory=dict)

    def form_value(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None


@dataclass
class _Fault:
    status: int = 0
    delay: float = 0.0
    remaining: int = 0
    code: int | None = None


class RecordingServer:
    """Start with ``with RecordingServer() as server:``; ``server.url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.sendgrid_messages: list[dict[str, Any]] = []
        self.twilio_messages: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._fault = _Fault()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RecordingServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="recording-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- test controls

    def fail_next(self, status: int, n: int = 1, *, code: int | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` and a provider-shaped error body.

        ``code`` overrides the Twilio error code (e.g. 21610: the recipient replied STOP).
        """
        with self._lock:
            self._fault = _Fault(status=status, remaining=n, code=code)

    def stall_next(self, seconds: float, n: int = 1) -> None:
        """Answer the next ``n`` requests normally, but only after ``seconds``."""
        with self._lock:
            self._fault = _Fault(delay=seconds, remaining=n)

    def set_twilio_status(self, sid: str, status: str) -> None:
        with self._lock:
            self.twilio_messages[sid]["status"] = status

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.sendgrid_messages.clear()
            self.twilio_messages.clear()
            self._fault = _Fault()

    def requests_to(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and re.fullmatch(path_pattern, r.path)]

    # ---------------------------------------------------------------- request handling

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if self._fault.remaining <= 0:
                return None
            self._fault.remaining -= 1
            return _Fault(self._fault.status, self._fault.delay, 1, self._fault.code)

    def _record(self, handler: BaseHTTPRequestHandler) -> RecordedRequest:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
        recorded = RecordedRequest(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        if content_type == "application/json" and body:
            recorded.json = json.loads(body)
        elif content_type == "application/x-www-form-urlencoded":
            recorded.form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def _dispatch(self, req: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        fault = self._take_fault()
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status:
            return self._error(req, fault.status, fault.code)
        if req.method == "POST" and req.path == "/v3/mail/send":
            return self._sendgrid_send(req)
        if req.method == "GET" and req.path == "/v3/messages":
            return self._sendgrid_activity(req)
        if m := _TWILIO_MESSAGES.match(req.path):
            if req.method == "POST":
                return self._twilio_create(req, m["account"])
            if req.method == "GET":
                return self._twilio_list(req, m["account"])
        if (m := _TWILIO_MESSAGE.match(req.path)) and req.method == "GET":
            with self._lock:
                found = self.twilio_messages.get(m["sid"])
            if found is None or found["account_sid"] != m["account"]:
                return self._error(req, 404)
            return 200, {}, found
        return self._error(req, 404)

    @staticmethod
    def _error(req: RecordedRequest, status: int, code: int | None = None) -> tuple[int, dict[str, str], Any]:
        headers = {"Retry-After": "1"} if status == 429 else {}
        if req.path.startswith("/v3/"):
            return status, headers, {"errors": [{"message": f"simulated error {status}", "field": None, "help": None}]}
        code = code or _TWILIO_CODES.get(status, status)
        return (
            status,
            headers,
            {
                "code": code,
                "message": f"simulated error {status}",
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    def _sendgrid_send(self, req: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        message_id = f"sgmsg{next(self._ids):06d}"
        with self._lock:
            self.sendgrid_messages.append({"msg_id": message_id, "request": req.json or {}})
        return 202, {"X-Message-Id": message_id}, None

    def _sendgrid_activity(self, req: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        query = (req.query.get("query") or [""])[0]
        m = _UNIQUE_ARG.search(query)
        with self._lock:
            sent = list(self.sendgrid_messages)
        found = []
        for item in sent:
            body = item["request"]
            custom = dict(body.get("custom_args") or {})
            for personalization in body.get("personalizations") or []:
                custom.update(personalization.get("custom_args") or {})
            if m is None or custom.get(m["key"]) == m["value"]:
                to = (body.get("personalizations") or [{}])[0].get("to") or [{}]
                found.append(
                    {
                        "msg_id": f"{item['msg_id']}.filter0001.1.0",
                        "from_email": (body.get("from") or {}).get("email"),
                        "subject": body.get("subject"),
                        "to_email": to[0].get("email"),
                        "status": "delivered",
                        "opens_count": 0,
                        "clicks_count": 0,
                        "last_event_time": "2026-01-01T00:00:00Z",
                    }
                )
        return 200, {}, {"messages": found}

    def _twilio_create(self, req: RecordedRequest, account: str) -> tuple[int, dict[str, str], Any]:
        sid = f"SM{next(self._ids):032x}"
        now = formatdate(usegmt=True)
        body = req.form_value("Body") or ""
        resource = {
            "sid": sid,
            "account_sid": account,
            "api_version": "2010-04-01",
            "to": req.form_value("To"),
            "from": req.form_value("From"),
            "body": body,
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": "1",
            "num_media": "0",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "messaging_service_sid": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"},
        }
        with self._lock:
            self.twilio_messages[sid] = resource
        return 201, {}, resource

    def _twilio_list(self, req: RecordedRequest, account: str) -> tuple[int, dict[str, str], Any]:
        to = (req.query.get("To") or [None])[0]
        sender = (req.query.get("From") or [None])[0]
        with self._lock:
            items = [
                dict(m)
                for m in reversed(self.twilio_messages.values())
                if m["account_sid"] == account
                and (to is None or m["to"] == to)
                and (sender is None or m["from"] == sender)
            ]
        uri = f"/2010-04-01/Accounts/{account}/Messages.json"
        return (
            200,
            {},
            {
                "messages": items,
                "end": max(len(items) - 1, 0),
                "first_page_uri": f"{uri}?PageSize=50&Page=0",
                "next_page_uri": None,
                "previous_page_uri": None,
                "page": 0,
                "page_size": 50,
                "start": 0,
                "uri": f"{uri}?PageSize=50&Page=0",
            },
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                status, headers, payload = server._dispatch(server._record(self))
                data = b"" if payload is None else json.dumps(payload).encode("utf-8")
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    if payload is not None:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (a timeout test): nothing to answer

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def running_server() -> Iterator[RecordingServer]:
    """Generator body for a pytest fixture: ``yield from running_server()``."""
    with RecordingServer() as server:
        yield server

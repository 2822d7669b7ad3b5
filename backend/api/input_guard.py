"""Refuse hostile input before any route or parser sees it (invariant 6: never a 5xx, whatever the input).

An ASGI middleware checks the path, the query string, the headers and the body of every HTTP request:

- NUL characters anywhere (PostgreSQL cannot store them): 422.
- A body larger than MAX_BODY_BYTES: 413.
- JSON nested deeper than MAX_JSON_DEPTH (checked before parsing, so no RecursionError): 422.
- NaN, Infinity, numbers too large for a float, integers beyond 64 bits, and lone surrogates in JSON
  strings or keys: 422.

The body is read once, checked, and replayed to the app unchanged. Malformed JSON is left to the route
(FastAPI answers 422; the webhooks check their signature first).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI

from backend.types import INT64_MAX, INT64_MIN

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1024 * 1024  # SendGrid's event batches (the largest legitimate body) stay under 768 KB
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")
_FORM_TYPES = ("application/x-www-form-urlencoded",)


class BadInput(Exception):
    """A request refused before it reached the app."""

    def __init__(self, message: str, status_code: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.field = field


def _is_json(content_type: str) -> bool:
    # FastAPI parses a body without a content type as JSON, and any */json or */*+json.
    media = content_type.split(";", 1)[0].strip().lower()
    return not media or media.endswith("/json") or media.endswith("+json")


def check_json_depth(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than `max_depth`, without parsing it (strings are skipped)."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise BadInput(f"the JSON body is nested too deeply (at most {max_depth} levels)")
        else:
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise BadInput(f"{name} is not a valid JSON number: send a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise BadInput(f"the number {shown} is too large: send a finite number")
    return value


def _int64(text: str) -> int:
    # Checked on the digits first: int() of a 5,000-digit string is itself an error (and slow).
    if len(text.lstrip("-")) > 19 or not INT64_MIN <= int(text) <= INT64_MAX:
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise BadInput(f"the integer {shown} is out of range (at most 64 bits)")
    return int(text)


def _check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise BadInput(f"{where} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{where} must be valid Unicode (no lone surrogates)") from None


def _walk(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item, "text in the body")
        elif isinstance(item, dict):
            for key, sub in item.items():
                _check_text(key, "a key in the body")
                stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


def check_json_body(raw: bytes) -> None:
    """Refuse a JSON body that would crash a parser or PostgreSQL; leave malformed JSON to the route."""
    check_json_depth(raw)
    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_int64)
    except BadInput:
        raise
    except (ValueError, RecursionError):  # malformed JSON (or a >4300-digit integer): the route answers 422
        if b"\\u0000" in raw.lower():
            raise BadInput("text in the body must not contain NUL characters") from None
        return
    _walk(data)


def check_request(scope: Scope) -> None:
    """Check what is known before the body: the path, the query string and the headers."""
    path = scope.get("path", "")
    raw_path = scope.get("raw_path") or b""
    if "\x00" in path or b"\x00" in unquote_to_bytes(raw_path):
        raise BadInput("the path must not contain NUL characters")
    query: bytes = scope.get("query_string") or b""
    if b"\x00" in unquote_to_bytes(query.replace(b"+", b" ")):
        raise BadInput("query parameters must not contain NUL characters")
    try:
        query.decode("utf-8")
        unquote_to_bytes(query.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("query parameters must be UTF-8") from None
    for name, value in scope.get("headers") or []:
        if b"\x00" in name or b"\x00" in value:
            raise BadInput("headers must not contain NUL characters")


def check_body(raw: bytes, content_type: str) -> None:
    if not raw:
        return
    if _is_json(content_type):
        check_json_body(raw)
        return
    if b"\x00" in raw:
        raise BadInput("the body must not contain NUL characters")
    if content_type.split(";", 1)[0].strip().lower() in _FORM_TYPES:
        if b"\x00" in unquote_to_bytes(raw.replace(b"+", b" ")):
            raise BadInput("form fields must not contain NUL characters")


async def _refuse(send: Send, error: BadInput) -> None:
    code = "body_too_large" if error.status_code == 413 else "bad_value"
    body: dict[str, object] = {"detail": error.message, "code": code}
    if error.field:
        body["field"] = error.field
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class InputGuardMiddleware:
    """The checks above as a pure ASGI middleware (the body is buffered, bounded, and replayed)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_request(scope)
            headers = {k.lower(): v for k, v in scope.get("headers") or []}
            declared = headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise BadInput(f"the body is too large (at most {self.max_body_bytes} bytes)", status_code=413)
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":  # the client went away: nothing to answer
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise BadInput(f"the body is too large (at most {self.max_body_bytes} bytes)", status_code=413)
                chunks.append(chunk)
                more = message.get("more_body", False)
            raw = b"".join(chunks)
            check_body(raw, headers.get(b"content-type", b"").decode("latin-1"))
        except BadInput as error:
            await _refuse(send, error)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def install_input_guards(app: FastAPI) -> None:
    """Refuse hostile input early (middleware), and keep health data out of the logs."""
    from backend.logging_config import configure_logging

    configure_logging()
    app.add_middleware(InputGuardMiddleware)

"""One logging set-up for every process (API, Reflex backend, Celery worker): no health data in any log line.

What can carry PHI into a log, and what happens to it here:

- Exception messages: a driver error quotes the value it refused ("Key (email)=(...)"), a SQLAlchemy error
  prints the statement's parameters, a ValueError quotes its input. Tracebacks are rendered with their
  frames and exception types only; each message becomes "<message redacted>" (a database error keeps its
  SQLSTATE and its SQL text, which holds placeholders, never values). The engine also hides parameters
  (`create_engine(hide_parameters=True)` in backend.db.make_engine).
- SQLAlchemy's DEBUG logging prints result rows: those lines are replaced.
- Access logs (uvicorn, httpx) print URLs: the query string is dropped (search text, e-mail addresses),
  and so is any path segment that is not a route word or an id (an unsubscribe token).

The redaction runs in the log record factory, so it covers every logger and every handler, including
handlers added later; `PhiFilter` does the same for records built elsewhere and is put on the root
handlers and uvicorn's. Call `configure_logging()` once at start-up; calling it again changes nothing.
"""

from __future__ import annotations

import logging
import re
import traceback
from types import TracebackType
from typing import Any

REDACTED = "<message redacted>"
_SQL_LIMIT = 2000
_installed = False


def _exception_line(exc: BaseException) -> str:
    """`module.Type: <message redacted>`, with what is safe to keep of a database error."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    extra: list[str] = []
    orig = getattr(exc, "orig", None)
    if orig is not None:
        extra.append(f"driver error {type(orig).__module__}.{type(orig).__qualname__}")
    code = getattr(orig, "sqlstate", None) or getattr(exc, "sqlstate", None)
    if isinstance(code, str):
        extra.append(f"sqlstate {code}")
    statement = getattr(exc, "statement", None)
    if isinstance(statement, str):
        extra.append(f"SQL: {statement[:_SQL_LIMIT]}")
    return f"{name}: {REDACTED}" + (f" ({'; '.join(extra)})" if extra else "")


def redact_exception(
    exc_info: tuple[type[BaseException] | None, BaseException | None, TracebackType | None],
) -> str:
    """The traceback (every frame, the whole cause/context chain) without any exception message."""
    exc = exc_info[1]
    if exc is None:
        return ""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    cause = "\nThe above exception was the direct cause of the following exception:\n"
    context = "\nDuring handling of the above exception, another exception occurred:\n"
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, cause
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, context
        else:
            current = None
    parts: list[str] = []
    for index, (item, _link) in enumerate(reversed(chain)):
        if index:
            parts.append(chain[len(chain) - index][1])
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(item.__traceback__))
        parts.append(_exception_line(item) + "\n")
    return "".join(parts).rstrip("\n")


_PLAIN_SEGMENT = re.compile(r"^(?:[a-z][a-z0-9-]{0,39}|[0-9a-fA-F-]{32,36}|[0-9]{1,6})$")


def redact_url(url: Any) -> Any:
    """A URL or path as logged: no query string, and no path segment that could be free text or a token
    (route words, ids and small numbers stay, e.g. /api/v1/unsubscribe/<redacted>)."""
    text = str(url)
    path, has_query, _query = text.partition("?")
    scheme, sep, rest = path.rpartition("://")
    host, slash, tail = rest.partition("/") if sep else ("", "", rest)
    segments = [s if not s or _PLAIN_SEGMENT.match(s) else "<redacted>" for s in tail.split("/")]
    cleaned = (f"{scheme}{sep}{host}{slash}" if sep else "") + "/".join(segments)
    if cleaned == text:
        return url
    return cleaned + ("?<query redacted>" if has_query else "")


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Make one record safe to write (idempotent)."""
    if getattr(record, "_phi_redacted", False):
        return record
    record._phi_redacted = True  # type: ignore[attr-defined]
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact_exception(record.exc_info)
        record.exc_info = None  # no handler may render the original messages
    elif record.exc_text and ("[parameters:" in record.exc_text or "DETAIL:" in record.exc_text):
        record.exc_text = REDACTED
    name = record.name
    if name.startswith("sqlalchemy.engine") and record.levelno <= logging.DEBUG:
        record.msg, record.args = "%s", ("[result row redacted]",)
    elif name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) >= 3:
        args = list(record.args)
        args[2] = redact_url(args[2])
        record.args = tuple(args)
    elif name.startswith(("httpx", "httpcore")) and isinstance(record.args, tuple):
        record.args = tuple(redact_url(a) if "://" in str(a) else a for a in record.args)
    return record


class PhiFilter(logging.Filter):
    """A handler filter applying `redact_record` (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def _add_filter(handler: logging.Handler) -> None:
    if not any(isinstance(f, PhiFilter) for f in handler.filters):
        handler.addFilter(PhiFilter())


def configure_logging(level: int | None = None) -> None:
    """Install the redaction for this process (API, Reflex backend, Celery worker). Idempotent."""
    global _installed
    if not _installed:
        _installed = True
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task"):
        for handler in logging.getLogger(name).handlers:
            _add_filter(handler)

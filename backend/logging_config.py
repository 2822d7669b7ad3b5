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

On top of the redaction, one output for every process: structlog renders each record, from
`logging.getLogger(__name__)` and from `structlog.get_logger()` alike, as one JSON object a line (LOG_FORMAT=json,
the default on PostgreSQL) or as a line for people (LOG_FORMAT=console, the default in the embedded SQLite mode),
at LOG_LEVEL, to stderr. Each line carries what is bound for the request, Reflex event or Celery task
(backend.observability.logs: request_id, practice_id, actor_id); an exception is written as the redacted
traceback above, under "exception". The same call starts error tracking when SENTRY_DSN is set
(backend.observability.sentry) and carries request ids into Celery tasks.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import IO, Any

from backend.observability.redaction import REDACTED, redact_url

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
    name = record.name or ""  # logging.makeLogRecord builds a blank record first (name None)
    if name.startswith("sqlalchemy.engine") and record.levelno <= logging.DEBUG:
        record.msg, record.args = "%s", ("[result row redacted]",)
    elif name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) >= 3:
        args = list(record.args)
        args[2] = redact_url(args[2])
        record.args = tuple(args)
    elif name.startswith(("httpx", "httpcore")) and isinstance(record.args, tuple):
        record.args = tuple(redact_url(a) if "://" in str(a) else a for a in record.args)
    elif name == "reflex.app" and isinstance(record.msg, str):
        # Reflex's default handler of a page handler's exception logs the formatted traceback as the message,
        # exception messages included; the browser's error reports may quote the page.
        if record.msg.startswith("[Reflex Backend Exception]"):
            record.msg, record.args = redact_traceback_text(record.msg), ()
        elif record.msg.startswith("[Reflex Frontend Exception]"):
            record.msg, record.args = f"[Reflex Frontend Exception] {REDACTED}", ()
    return record


_TRACEBACK_HEADERS = (
    "Traceback (most recent call last):",
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)
_EXCEPTION_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::.*)?$")


def redact_traceback_text(text: str) -> str:
    """A traceback already formatted as text, without the exception messages: the frames (indented lines) and
    the chain's headers stay; each exception line keeps its type only, and the lines of its message after it go."""
    kept: list[str] = []
    in_message = False
    for index, line in enumerate(text.split("\n")):
        stripped = line.strip()
        if stripped in _TRACEBACK_HEADERS:
            in_message = False
            kept.append(line)
        elif in_message:
            continue
        elif not stripped or line.startswith((" ", "\t")) or (index == 0 and stripped.startswith("[Reflex ")):
            kept.append(line)
        else:
            match = _EXCEPTION_LINE.match(stripped)
            kept.append(f"{match['type'] if match else 'Exception'}: {REDACTED}")
            in_message = True
    return "\n".join(kept)


class PhiFilter(logging.Filter):
    """A handler filter applying `redact_record` (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def _add_filter(handler: logging.Handler) -> None:
    if not any(isinstance(f, PhiFilter) for f in handler.filters):
        handler.addFilter(PhiFilter())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (pytest swaps it), or the real stderr when Celery has redirected
    sys.stderr into a logger (writing there would log each line again)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        current = sys.stderr
        if current is None or type(current).__name__ == "LoggingProxy":
            return sys.__stderr__ or sys.stdout
        return current

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass  # always resolved at write time (see above)


def _redact_exc_info(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: `exc_info` (log.exception, exc_info=True) becomes the redacted traceback."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        elif not isinstance(exc_info, tuple):
            exc_info = sys.exc_info()
        if exc_info[1] is not None:
            event_dict["exception"] = redact_exception(exc_info)
    return event_dict


def _foreign_exception(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor for stdlib records: their traceback, already redacted by the record factory."""
    record = event_dict.get("_record")
    exc_text = getattr(record, "exc_text", None)
    if exc_text and "exception" not in event_dict:
        event_dict["exception"] = exc_text
    return event_dict


def _structlog_formatter(log_format: str) -> logging.Formatter:
    """Install structlog over stdlib logging; return the formatter for the root handler."""
    import structlog

    from backend.observability.logs import merge_late_fields

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        merge_late_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_exc_info,
    ]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if log_format == "console"
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _foreign_exception],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


# Loggers that servers configure with handlers of their own: their records go to the root handler instead.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task", "celery.redirected")


def configure_logging(level: int | None = None) -> None:
    """Install the redaction and the JSON (or console) rendering for this process (API, Reflex backend, Celery
    worker and beat), request-id propagation into Celery tasks, and error tracking if configured. Idempotent."""
    global _installed
    first = not _installed
    if first:
        _installed = True
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
    root = logging.getLogger()
    settings = None
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        from backend.settings import LogSettings

        settings = LogSettings()  # not get_settings(): that would fix every setting at import (see LogSettings)
        handler = _StderrHandler()
        handler.setFormatter(_structlog_formatter(settings.resolved_log_format))
        root.addHandler(handler)
        root.setLevel(level if level is not None else settings.log_level)
        for name in _SERVER_LOGGERS:  # one format: uvicorn's and Celery's own lines go through the root handler
            server_logger = logging.getLogger(name)
            server_logger.handlers = []
            server_logger.propagate = True
    elif level is not None:
        root.setLevel(level)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task"):
        for existing in logging.getLogger(name).handlers:
            _add_filter(existing)
    if first:
        from backend.observability.logs import install_task_propagation
        from backend.observability.sentry import init_sentry

        install_task_propagation()
        init_sentry(settings)

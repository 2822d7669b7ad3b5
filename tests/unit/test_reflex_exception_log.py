"""Reflex's default handler of a page handler's exception logs the formatted traceback as its message: the log
redaction (backend/logging_config.py) keeps its frames and exception types, not the messages."""

from __future__ import annotations

import logging
import traceback

from backend.logging_config import PhiFilter, redact_traceback_text

CANARY = "CANARY-PHI-7f3a"


def _formatted() -> str:
    try:
        try:
            raise KeyError(f"{CANARY} first")
        except KeyError as exc:
            raise ValueError(f"could not place {CANARY}\nsecond line {CANARY}\n  indented {CANARY}") from exc
    except ValueError as exc:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def test_the_reflex_backend_exception_line_keeps_frames_and_types_only() -> None:
    message = f"[Reflex Backend Exception]\n {_formatted()}\n"
    record = logging.LogRecord("reflex.app", logging.ERROR, __file__, 1, message, (), None)
    PhiFilter().filter(record)
    text = record.getMessage()
    assert CANARY not in text
    assert text.startswith("[Reflex Backend Exception]")
    assert "KeyError: <message redacted>" in text and "ValueError: <message redacted>" in text
    assert "The above exception was the direct cause of the following exception:" in text
    assert "in _formatted" in text  # the frames stay


def test_a_browser_error_report_is_not_logged() -> None:
    record = logging.LogRecord("reflex.app", logging.ERROR, __file__, 1, f"[Reflex Frontend Exception]\n {CANARY}\n",
                               (), None)  # fmt: skip
    PhiFilter().filter(record)
    assert CANARY not in record.getMessage()


def test_plain_traceback_text() -> None:
    assert redact_traceback_text('Traceback (most recent call last):\n  File "x", line 1, in f\nOSError') == (
        'Traceback (most recent call last):\n  File "x", line 1, in f\nOSError: <message redacted>'
    )

"""Column types and helpers shared by every domain's models."""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import AfterValidator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlmodel import SQLModel


def valid_timezone(name: str) -> str:
    """Return `name` if it is a known IANA zone, else raise ValueError with a clear message."""
    name = name.strip()
    if ("/" in name or name == "UTC") and ".." not in name:
        try:
            ZoneInfo(name)
            return name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise ValueError(f"unknown time zone {name!r}: use an IANA name such as America/New_York")


# A virtual clock, set only by the waitlist simulator (bench/simulate) around the work it drives. A context variable:
# it is seen by that context alone (a new thread or another request keeps the real time), and unset by default.
_VIRTUAL_CLOCK: contextvars.ContextVar[Callable[[], datetime] | None] = contextvars.ContextVar(
    "waitwell_virtual_clock", default=None
)


def utcnow() -> datetime:
    """Return the current time, aware, in UTC (the virtual clock's, inside `virtual_clock`)."""
    read = _VIRTUAL_CLOCK.get()
    if read is None:
        return datetime.now(UTC)
    moment = read()
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the virtual clock returned a naive datetime")
    return moment.astimezone(UTC)


@contextlib.contextmanager
def virtual_clock(read: Callable[[], datetime]) -> Iterator[None]:
    """Make utcnow() return `read()` inside this block, in this context only (for simulations, never the app)."""
    token = _VIRTUAL_CLOCK.set(read)
    try:
        yield
    finally:
        _VIRTUAL_CLOCK.reset(token)


def new_id() -> uuid.UUID:
    """Return a fresh random primary key."""
    return uuid.uuid4()


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """An aware datetime stored in UTC. Naive values are refused: they are always a bug here."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: pass an aware datetime")
        value = value.astimezone(UTC)
        # SQLite keeps no zone; store the UTC wall time and re-attach UTC on the way out.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL (indexable), plain JSON elsewhere.
JSONType: Any = sa.JSON().with_variant(JSONB(), "postgresql")


# Deterministic constraint names on every dialect, so migrations can name what they alter.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# --- Request-boundary types -------------------------------------------------------------------------------
# One place for what the API accepts, so every model refuses the same inputs with the same message (422)
# before they reach date arithmetic, time zone conversion or PostgreSQL.

MIN_YEAR = 1900
MAX_YEAR = 2200
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _in_year_range(value: date) -> None:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"the year must be between {MIN_YEAR} and {MAX_YEAR}")


def bounded_datetime(value: datetime) -> datetime:
    """Refuse a datetime outside years MIN_YEAR..MAX_YEAR (year 1 or 9999 overflows on conversion)."""
    _in_year_range(value)
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"the year must be between {MIN_YEAR} and {MAX_YEAR}") from exc
    return value


def bounded_date(value: date) -> date:
    """Refuse a date outside years MIN_YEAR..MAX_YEAR."""
    _in_year_range(value)
    return value


def clean_text(value: str) -> str:
    """Refuse text PostgreSQL cannot store: NUL characters, and lone surrogates (not encodable as UTF-8)."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


def int64(value: int) -> int:
    """Refuse an integer PostgreSQL's bigint cannot hold (Python's are unbounded)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("the integer is out of range (at most 64 bits)")
    return value


ApiDateTime = Annotated[datetime, AfterValidator(bounded_datetime)]
ApiDate = Annotated[date, AfterValidator(bounded_date)]
ApiText = Annotated[str, AfterValidator(clean_text)]
# A validator, not Field(ge=, le=): it composes with a field's own bounds (Field(ge=1) keeps its 1).
Int64 = Annotated[int, AfterValidator(int64)]

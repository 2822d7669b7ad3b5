"""Weekly availability -> bookable slots.

A pure module: standard library only, no I/O, no database, no ORM.  Callers load the provider's rules, time off,
active appointments and live holds, turn them into the plain values below and ask for slots.

Time model
----------
* A :class:`WeeklyRule` is wall-clock time in the clinic's IANA zone ("Mondays 09:00-12:00 in America/New_York").
  Session starts are laid on a wall-clock grid: ``start``, ``start + (session + buffer)``, ... while
  ``grid start + session <= end`` (wall clock).  Each start is converted to UTC on its own local date, so a
  10:00 session stays 10:00 local on both sides of a DST change (its UTC time moves by the offset change).
* Every slot lasts exactly ``session_minutes`` of *real* time: ``slot.end = slot.start (UTC) + session``.
* Local start times that do not exist (the spring-forward gap, e.g. 02:30 on the US change day) are skipped.
* Ambiguous local start times (the repeated hour when clocks fall back) use the first occurrence (``fold=0``).
  The grid is a list of wall-clock labels, each generated once per day, so the repeated hour never yields a
  second slot for the same label.

Sessions that span a DST transition (the documented rule)
--------------------------------------------------------
The only place where wall clock and real time disagree is a session whose real span crosses the change
(in practice: blocks that run through 02:00/03:00 at night).  The rule, applied per rule and local day, is:

1. ``end = start_utc + session`` in real minutes (never recomputed from the wall clock).
2. The session must fit inside the block in real time: ``end <= block_end``, where ``block_end`` is the rule's
   local ``end`` on that date converted to UTC at its *earliest* reading (first occurrence when ambiguous; the
   pre-gap reading -- i.e. wall length minus the lost hour -- when it falls in the spring-forward gap).
3. The session must start no earlier than the previous session of the same rule and day ended plus the buffer
   (real time).  Otherwise it is dropped.

On every ordinary day (2) and (3) are exactly the wall-clock grid, so they change nothing.  On a spring-forward
night, where an hour of wall clock is missing, they drop the sessions that would otherwise overlap the previous
one or run past the end of the block (e.g. 01:30-03:00 with 60-minute sessions on the change night gives
no slot: 01:30 EST + 60 real minutes is 03:30 EDT).  On a fall-back night they let a session last its real
minutes through the repeated hour (01:30 EDT + 60 min ends at 01:30 EST); nothing is added to fill the extra hour.
So the slots of one rule never overlap each other, never leave the block, and never differ from the wall-clock
grid on a normal day.

Filtering and status
--------------------
Intervals are half-open ``[start, end)``.  A slot is dropped when it overlaps any time-off interval, starts before
``now + min_notice``, starts after ``now + horizon`` (when a horizon is given; a slot starting exactly at the
horizon is kept) or starts outside ``[window_start, window_end)``.  A surviving slot is ``"booked"`` when its
``[start, end)`` overlaps a booked interval, else ``"held"`` when it overlaps a live hold, else ``"free"``
(the buffer after a session is not part of the slot).  Only free slots are returned unless ``include_taken``.

Two rules of one clinic producing the same start give one slot: a free one wins over a held one over a booked
one, and between equals the rule that comes first in ``rules`` (its end and modality are used).  Output is sorted
by start, then clinic id.

``now=None`` means the current time (``datetime.now(UTC)``) -- the one impure default; pass ``now`` explicitly for
deterministic results.
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "BOOKED",
    "FREE",
    "HELD",
    "Interval",
    "Slot",
    "WeeklyRule",
    "find_slot",
    "generate_slots",
    "overlaps",
]

FREE = "free"
HELD = "held"
BOOKED = "booked"

# Lower wins when two rules of one clinic produce the same start.
_STATUS_RANK = {FREE: 0, HELD: 1, BOOKED: 2}
_MIDNIGHT = time(0, 0)
_WEEK = timedelta(days=7)
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)


@lru_cache(maxsize=512)
def _zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ValueError, KeyError, TypeError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"unknown time zone: {key!r}") from exc


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _as_timedelta(value: time) -> timedelta:
    return timedelta(hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond)


@dataclass(frozen=True, slots=True)
class WeeklyRule:
    """A weekly block of bookable time in the clinic's local wall-clock time."""

    rule_id: uuid.UUID | None
    clinic_id: uuid.UUID
    timezone: str  # the clinic's IANA zone
    weekday: int  # 0 = Monday .. 6 = Sunday (local)
    start: time  # local wall-clock start of the block
    end: time  # local wall-clock end of the block
    session_minutes: int
    buffer_minutes: int
    modality: str  # "in_person" | "telehealth" (passed through to the slots)
    valid_from: date | None = None  # local dates, inclusive
    valid_until: date | None = None

    def __post_init__(self) -> None:
        _zone(self.timezone)
        if not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday must be 0 (Monday) .. 6 (Sunday), got {self.weekday}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("rule start and end are local wall-clock times and must be naive")
        if not self.start < self.end:
            raise ValueError("rule start must be before its end (blocks do not cross midnight)")
        if self.session_minutes <= 0:
            raise ValueError("session_minutes must be positive")
        if self.buffer_minutes < 0:
            raise ValueError("buffer_minutes must not be negative")
        if self.valid_from is not None and self.valid_until is not None and self.valid_from > self.valid_until:
            raise ValueError("valid_from must not be after valid_until")


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open span of real time ``[start, end)``; stored in UTC."""

    start: datetime  # aware UTC
    end: datetime  # aware UTC

    def __post_init__(self) -> None:
        _require_aware(self.start, "Interval.start")
        _require_aware(self.end, "Interval.end")
        if self.end < self.start:
            raise ValueError("Interval end must not be before its start")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "end", self.end.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime  # aware UTC
    end: datetime  # aware UTC
    clinic_id: uuid.UUID
    modality: str
    timezone: str
    status: str = FREE  # "free" | "held" | "booked"


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """Whether half-open ``[a_start, a_end)`` and ``[b_start, b_end)`` share any instant (an empty span shares none)."""
    return a_start < a_end and b_start < b_end and a_start < b_end and b_start < a_end


class _IntervalIndex:
    """Sorted, merged, disjoint intervals; an overlap query is one bisect.

    Only intervals meeting ``[lo, hi)`` are kept (a linear pass), so a narrow query over a long list sorts little.
    """

    __slots__ = ("_ends", "_starts")

    def __init__(self, intervals: Iterable[Interval], name: str, lo: datetime, hi: datetime) -> None:
        spans: list[tuple[datetime, datetime]] = []
        for interval in intervals:
            _require_aware(interval.start, f"{name} start")
            _require_aware(interval.end, f"{name} end")
            if interval.end > interval.start and interval.end > lo and interval.start < hi:
                spans.append((interval.start.astimezone(UTC), interval.end.astimezone(UTC)))
        spans.sort()
        starts: list[datetime] = []
        ends: list[datetime] = []
        for start, end in spans:
            if ends and start <= ends[-1]:
                if end > ends[-1]:
                    ends[-1] = end
            else:
                starts.append(start)
                ends.append(end)
        self._starts = starts
        self._ends = ends

    def hits(self, start: datetime, end: datetime) -> bool:
        # The first merged interval ending after `start` is the only candidate; ends are sorted because merged
        # intervals are disjoint.
        i = bisect_right(self._ends, start)
        return i < len(self._starts) and self._starts[i] < end


def _local_to_utc(naive: datetime, zone: ZoneInfo) -> datetime | None:
    """UTC of a local wall-clock time: first occurrence when ambiguous, None when it does not exist."""
    utc = naive.replace(tzinfo=zone).astimezone(UTC)  # naive.fold == 0: first occurrence
    if utc.astimezone(zone).replace(tzinfo=None) != naive:
        return None  # in the spring-forward gap: the round trip lands on another wall-clock time
    return utc


def _earliest_utc(naive: datetime, zone: ZoneInfo) -> datetime:
    """The earliest UTC reading of a local time (first occurrence; before the gap when it does not exist)."""
    return min(naive.replace(tzinfo=zone, fold=0).astimezone(UTC), naive.replace(tzinfo=zone, fold=1).astimezone(UTC))


@lru_cache(maxsize=1024)
def _grid(start: time, end: time, session_minutes: int, buffer_minutes: int) -> tuple[timedelta, ...]:
    """Wall-clock session starts, as offsets from local midnight."""
    session = timedelta(minutes=session_minutes)
    step = timedelta(minutes=session_minutes + buffer_minutes)
    first, last = _as_timedelta(start), _as_timedelta(end)
    offsets: list[timedelta] = []
    offset = first
    while offset + session <= last:
        offsets.append(offset)
        offset += step
    return tuple(offsets)


def generate_slots(
    rules: Sequence[WeeklyRule],
    *,
    window_start: datetime,
    window_end: datetime,
    time_off: Sequence[Interval] = (),
    booked: Sequence[Interval] = (),
    held: Sequence[Interval] = (),
    now: datetime | None = None,
    min_notice: timedelta = timedelta(0),
    horizon: timedelta | None = None,
    include_taken: bool = False,
) -> list[Slot]:
    """Bookable slots starting in ``[window_start, window_end)``, sorted by start then clinic.

    ``booked`` are the provider's active appointments, ``held`` its live holds.  With ``include_taken`` the slots
    overlapping them are returned too, with status ``"booked"`` (wins) or ``"held"``.  See the module docstring.
    """
    _require_aware(window_start, "window_start")
    _require_aware(window_end, "window_end")
    if now is None:
        now = datetime.now(UTC)
    _require_aware(now, "now")

    lo = max(window_start.astimezone(UTC), (now + min_notice).astimezone(UTC))  # inclusive
    hi = window_end.astimezone(UTC)  # exclusive
    if horizon is not None:
        hi = min(hi, (now + horizon).astimezone(UTC) + _TICK)  # a slot starting exactly at the horizon is kept
    if not rules or lo >= hi:
        return []

    # Every candidate slot lies in [lo, hi + longest session): intervals outside it cannot matter.
    reach = hi + timedelta(minutes=max(r.session_minutes for r in rules))
    off_index = _IntervalIndex(time_off, "time_off", lo, reach)
    booked_index = _IntervalIndex(booked, "booked", lo, reach)
    held_index = _IntervalIndex(held, "held", lo, reach)

    best: dict[tuple[datetime, uuid.UUID], tuple[int, int, Slot]] = {}
    for order, rule in enumerate(rules):
        offsets = _grid(rule.start, rule.end, rule.session_minutes, rule.buffer_minutes)
        if not offsets:
            continue
        zone = _zone(rule.timezone)
        session = timedelta(minutes=rule.session_minutes)
        buffer = timedelta(minutes=rule.buffer_minutes)
        block_end_offset = _as_timedelta(rule.end)

        # One local day of slack on each side covers any offset; slots outside [lo, hi) are filtered below.
        first_day = lo.astimezone(zone).date() - _DAY
        last_day = hi.astimezone(zone).date() + _DAY
        if rule.valid_from is not None and rule.valid_from > first_day:
            first_day = rule.valid_from
        if rule.valid_until is not None and rule.valid_until < last_day:
            last_day = rule.valid_until
        day = first_day + timedelta(days=(rule.weekday - first_day.weekday()) % 7)

        while day <= last_day:
            midnight = datetime.combine(day, _MIDNIGHT)
            block_end = _earliest_utc(midnight + block_end_offset, zone)
            # A day whose sessions all end by `lo`, or all start from `hi`, adds nothing (a day's UTC starts rise
            # with its wall-clock ones): skipping it keeps find_slot's one-instant window from building three
            # days of slots per rule.
            if block_end <= lo or _earliest_utc(midnight + offsets[0], zone) >= hi:
                day += _WEEK
                continue
            previous_end: datetime | None = None
            for offset in offsets:
                start = _local_to_utc(midnight + offset, zone)
                if start is None:
                    continue  # nonexistent local time
                if start >= hi:
                    break  # every later session starts later still
                end = start + session
                if end > block_end:
                    break  # would run past the block in real time (spring-forward night only)
                if previous_end is not None and start < previous_end + buffer:
                    continue  # would overlap the previous session (spring-forward night only)
                previous_end = end
                if start < lo or start >= hi or off_index.hits(start, end):
                    continue
                if booked_index.hits(start, end):
                    status = BOOKED
                elif held_index.hits(start, end):
                    status = HELD
                else:
                    status = FREE
                key = (start, rule.clinic_id)
                rank = _STATUS_RANK[status]
                current = best.get(key)
                if current is None or (rank, order) < (current[0], current[1]):
                    best[key] = (rank, order, Slot(start, end, rule.clinic_id, rule.modality, rule.timezone, status))
            day += _WEEK

    slots = [entry[2] for entry in best.values() if include_taken or entry[0] == 0]
    slots.sort(key=lambda slot: (slot.start, slot.clinic_id))
    return slots


def find_slot(
    rules: Sequence[WeeklyRule],
    start: datetime,
    *,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    time_off: Sequence[Interval] = (),
    booked: Sequence[Interval] = (),
    held: Sequence[Interval] = (),
    now: datetime | None = None,
    min_notice: timedelta = timedelta(0),
    horizon: timedelta | None = None,
    include_taken: bool = False,
) -> Slot | None:
    """The slot starting exactly at ``start`` under the same rules as :func:`generate_slots`, or None.

    With several clinics at that instant, the one with the lowest clinic id is returned (filter ``rules`` by
    clinic to ask for a specific one).  An optional window further restricts the answer.
    """
    _require_aware(start, "start")
    if window_start is not None:
        _require_aware(window_start, "window_start")
    if window_end is not None:
        _require_aware(window_end, "window_end")
    # Compare in UTC only: aware datetimes in an ambiguous hour never compare equal across zones (PEP 495).
    start_utc = start.astimezone(UTC)
    lo = start_utc if window_start is None else max(start_utc, window_start.astimezone(UTC))
    hi = start_utc + _TICK if window_end is None else min(start_utc + _TICK, window_end.astimezone(UTC))
    slots = generate_slots(
        rules,
        window_start=lo,
        window_end=hi,
        time_off=time_off,
        booked=booked,
        held=held,
        now=now,
        min_notice=min_notice,
        horizon=horizon,
        include_taken=include_taken,
    )
    for slot in slots:
        if slot.start == start_utc:
            return slot
    return None

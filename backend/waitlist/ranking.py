"""Waitlist ranking: who should be offered a slot first, and why. Pure: no I/O, no ORM.

score = urgency + time waited + fit of the slot to the preferred windows + continuity with the provider,
each scaled by the policy's weight. Every score carries its breakdown so a doctor can see why a patient
is next. Eligibility comes first: a slot outside the entry's dates, modality, provider or preferred
windows is never offered automatically (a doctor may still invite anyone to any slot).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

URGENCY_LABELS = {1: "Routine", 2: "Soon", 3: "Priority", 4: "Urgent"}
WEEKDAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MAX_WAIT_WEEKS = 26.0  # aging stops counting after half a year, so urgency still matters
NO_PREFERENCE_FIT = 0.6  # "any time" fits, but a slot inside a stated window fits better


@dataclass(frozen=True, slots=True)
class Weights:
    urgency: float = 10.0
    wait: float = 1.0
    fit: float = 5.0
    continuity: float = 3.0


@dataclass(frozen=True, slots=True)
class Window:
    """A preferred weekly window in local wall-clock time."""

    weekday: int
    start: time
    end: time

    @classmethod
    def parse(cls, raw: dict[str, object]) -> Window:
        """Read {"weekday": 1, "start": "09:00", "end": "12:00"}; raise ValueError when malformed."""
        weekday = int(raw["weekday"])  # type: ignore[call-overload]
        start, end = time.fromisoformat(str(raw["start"])), time.fromisoformat(str(raw["end"]))
        if not 0 <= weekday <= 6:
            raise ValueError("weekday must be 0 (Monday) to 6 (Sunday)")
        if start >= end:
            raise ValueError("a window must end after it starts")
        return cls(weekday, start, end)

    def label(self) -> str:
        return f"{WEEKDAY_NAMES[self.weekday]} {self.start:%H:%M}–{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class Candidate:
    entry_id: uuid.UUID
    patient_id: uuid.UUID
    urgency: int
    waiting_since: datetime  # aware
    timezone: str
    windows: tuple[Window, ...] = ()
    provider_id: uuid.UUID | None = None  # None: any provider of the clinic
    clinic_id: uuid.UUID | None = None
    modality: str | None = None  # None: either
    earliest_date: date | None = None
    latest_date: date | None = None
    current_provider_id: uuid.UUID | None = None  # who the patient already sees, for continuity


@dataclass(frozen=True, slots=True)
class OpenSlot:
    start: datetime  # aware
    end: datetime
    provider_id: uuid.UUID
    clinic_id: uuid.UUID
    modality: str


@dataclass(frozen=True)
class Score:
    total: float
    eligible: bool
    urgency: float = 0.0
    wait: float = 0.0
    fit: float = 0.0
    continuity: float = 0.0
    reasons: tuple[str, ...] = ()
    ineligible_reason: str = ""
    matched_window: str = ""


def _weeks_waited(since: datetime, now: datetime) -> float:
    return max(0.0, min((now - since) / timedelta(weeks=1), MAX_WAIT_WEEKS))


def _window_for(candidate: Candidate, slot: OpenSlot) -> Window | None:
    zone = ZoneInfo(candidate.timezone)
    start, end = slot.start.astimezone(zone), slot.end.astimezone(zone)
    if start.date() != end.date() and end.time() != time(0):
        return None
    for window in candidate.windows:
        if window.weekday == start.weekday() and window.start <= start.time() and (
            end.time() <= window.end or (end.time() == time(0) and window.end == time(23, 59))
        ):
            return window
    return None


def ineligibility(candidate: Candidate, slot: OpenSlot) -> str:
    """Why `slot` may not be offered to `candidate` automatically ('' when it may)."""
    if candidate.provider_id is not None and candidate.provider_id != slot.provider_id:
        return "wants another provider"
    if candidate.clinic_id is not None and candidate.clinic_id != slot.clinic_id:
        return "waits at another clinic"
    if candidate.modality is not None and candidate.modality != slot.modality:
        return "wants another modality"
    local_day = slot.start.astimezone(ZoneInfo(candidate.timezone)).date()
    if candidate.earliest_date is not None and local_day < candidate.earliest_date:
        return "before the earliest date"
    if candidate.latest_date is not None and local_day > candidate.latest_date:
        return "after the latest date"
    if candidate.windows and _window_for(candidate, slot) is None:
        return "outside the preferred times"
    return ""


def score(candidate: Candidate, slot: OpenSlot | None, weights: Weights, now: datetime) -> Score:
    """Score one candidate for one slot (or, with no slot, for the waitlist order alone)."""
    urgency = weights.urgency * candidate.urgency
    weeks = _weeks_waited(candidate.waiting_since, now)
    wait = weights.wait * weeks
    reasons = [
        f"{URGENCY_LABELS.get(candidate.urgency, str(candidate.urgency))} urgency (+{urgency:g})",
        f"Waiting {_waited_label(candidate.waiting_since, now)} (+{wait:.1f})",
    ]
    if slot is None:
        return Score(total=round(urgency + wait, 3), eligible=True, urgency=urgency, wait=wait, reasons=tuple(reasons))
    why_not = ineligibility(candidate, slot)
    if why_not:
        return Score(total=0.0, eligible=False, urgency=urgency, wait=wait, reasons=tuple(reasons),
                     ineligible_reason=why_not)  # fmt: skip
    window = _window_for(candidate, slot) if candidate.windows else None
    fit = weights.fit * (1.0 if window else NO_PREFERENCE_FIT)
    reasons.append(
        f"Fits preferred time {window.label()} (+{fit:g})" if window else f"Any time suits (+{fit:g})"
    )
    continuity = 0.0
    if candidate.current_provider_id is not None and candidate.current_provider_id == slot.provider_id:
        continuity = weights.continuity
        reasons.append(f"Already sees this provider (+{continuity:g})")
    return Score(
        total=round(urgency + wait + fit + continuity, 3),
        eligible=True,
        urgency=urgency,
        wait=wait,
        fit=fit,
        continuity=continuity,
        reasons=tuple(reasons),
        matched_window=window.label() if window else "",
    )


def rank(
    candidates: Sequence[Candidate], slot: OpenSlot | None, weights: Weights, now: datetime
) -> list[tuple[Candidate, Score]]:
    """Eligible candidates best first; ties go to whoever has waited longer, then by entry id (stable)."""
    scored = [(c, score(c, slot, weights, now)) for c in candidates]
    eligible = [(c, s) for c, s in scored if s.eligible]
    eligible.sort(key=lambda cs: (-cs[1].total, cs[0].waiting_since, str(cs[0].entry_id)))
    return eligible


def _waited_label(since: datetime, now: datetime) -> str:
    days = max(0, (now - since).days)
    if days < 1:
        return "less than a day"
    if days < 14:
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{days // 7} weeks"


def position_band(position: int) -> str:
    """What a patient is told about their place: a band, not an exact number that shifts with urgency."""
    if position <= 3:
        return "Near the top"
    if position <= 10:
        return "In the top 10"
    if position <= 25:
        return "In the top 25"
    return "Further down"

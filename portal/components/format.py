"""Formatting of times for people: always in the clinic's zone, with the zone named."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def local(dt: datetime, zone: str) -> datetime:
    return dt.astimezone(ZoneInfo(zone))


def day_label(dt: datetime, zone: str) -> str:
    """'Mon 23 Nov 2026' in the zone."""
    return local(dt, zone).strftime("%a %d %b %Y")


def time_range(start: datetime, end: datetime, zone: str) -> str:
    """'10:00–10:50 EST' in the zone."""
    s, e = local(start, zone), local(end, zone)
    return f"{s:%H:%M}–{e:%H:%M} {s.tzname()}"


def when(start: datetime, end: datetime, zone: str) -> str:
    """'Mon 23 Nov 2026, 10:00–10:50 EST'."""
    return f"{day_label(start, zone)}, {time_range(start, end, zone)}"


def moment(dt: datetime, zone: str) -> str:
    """'Sat 21 Nov 2026, 08:21 MST'."""
    return f"{day_label(dt, zone)}, {local(dt, zone):%H:%M %Z}"


def zone_label(zone: str) -> str:
    """'America/New_York' -> 'New York time'."""
    return zone.rsplit("/", 1)[-1].replace("_", " ") + " time"


MODALITY_LABELS = {"in_person": "In person", "telehealth": "Telehealth"}
STATUS_LABELS = {
    "held": "Held",
    "booked": "Booked",
    "cancelled": "Cancelled",
    "late_cancelled": "Late cancellation",
    "completed": "Completed",
    "no_show": "No-show",
    "waiting": "Waiting",
    "offered": "Offer pending",
    "expired": "Expired",
    "removed": "Removed",
}
URGENCY_LABELS = {1: "Routine", 2: "Soon", 3: "Priority", 4: "Urgent"}
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def windows_label(windows: list[dict[str, str | int]]) -> str:
    """'Tue 09:00–12:00, Thu 14:00–17:00'."""
    return ", ".join(f"{WEEKDAYS[int(w['weekday'])]} {w['start']}–{w['end']}" for w in windows) or "Any time"

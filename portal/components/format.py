"""Formatting of times for people: always in the clinic's zone, with the zone named, in the reader's language.

The dates come from backend/notifications/formatting.py (Babel, CLDR), the same helper the messages use; every
function takes the language last ('en' by default: the staff pages are in English).
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from backend.notifications import formatting
from portal.i18n import N_, tr


def local(dt: datetime, zone: str) -> datetime:
    return dt.astimezone(ZoneInfo(zone))


def day_label(dt: datetime, zone: str, lang: str = "en") -> str:
    """'Mon 23 Nov 2026' (es: 'lun, 23 nov 2026') in the zone."""
    return formatting.day_label(dt, zone, lang)


def date_label(value: date, lang: str = "en", *, weekday: bool = True, year: bool = True) -> str:
    """A calendar date: 'Mon 23 Nov 2026'; without the weekday or the year on request."""
    return formatting.date_label(value, lang, weekday=weekday, year=year)


def time_range(start: datetime, end: datetime, zone: str, lang: str = "en") -> str:
    """'10:00–10:50 EST' in the zone."""
    return formatting.time_range(start, end, zone, lang)


def when(start: datetime, end: datetime, zone: str, lang: str = "en") -> str:
    """'Mon 23 Nov 2026, 10:00–10:50 EST'."""
    return formatting.when(start, end, zone, lang)


def moment(dt: datetime, zone: str, lang: str = "en") -> str:
    """'Sat 21 Nov 2026, 08:21 MST'."""
    return formatting.moment_label(dt, zone, lang)


def short_when(dt: datetime, zone: str, lang: str = "en") -> str:
    """'Tue 24 Nov, 15:00 EST' in the zone."""
    return formatting.short_when(dt, zone, lang)


def time_of_day(dt: datetime, zone: str, lang: str = "en") -> str:
    """'15:00' in the zone (the zone not named)."""
    return formatting.time_of_day(dt, zone, lang)


def weekday(value: date, lang: str = "en") -> str:
    """'Mon' (es: 'lun')."""
    return formatting.weekday_names(lang)[value.weekday()]


def week_range(first: date, last: date, lang: str = "en") -> str:
    """'23 – 29 Nov 2026' (es: '23–29 nov 2026')."""
    return formatting.week_range(first, last, lang)


def clock(dt: datetime, zone: str, lang: str = "en") -> str:
    """'15:00 EST' in the zone."""
    return formatting.clock(dt, zone, lang)


def zone_label(zone: str, lang: str = "en") -> str:
    """'America/New_York' -> 'New York time' (es: 'hora de New York')."""
    return tr(lang, "{city} time", city=zone.rsplit("/", 1)[-1].replace("_", " "))


MODALITY_LABELS = {"in_person": N_("In person"), "telehealth": N_("Telehealth")}
STATUS_LABELS = {
    "held": N_("Held"),
    "booked": N_("Booked"),
    "cancelled": N_("Cancelled"),
    "late_cancelled": N_("Late cancellation"),
    "completed": N_("Completed"),
    "no_show": N_("No-show"),
    "waiting": N_("Waiting"),
    "offered": N_("Offer pending"),
    "expired": N_("Expired"),
    "removed": N_("Removed"),
}
URGENCY_LABELS = {1: N_("Routine"), 2: N_("Soon"), 3: N_("Priority"), 4: N_("Urgent")}
# The columns of a patient's appointment history (home and My appointments).
HISTORY_COLUMNS = (N_("Date"), N_("Time"), N_("With"), N_("Clinic"), N_("Status"))
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def label(lang: str, labels: dict, key: object, default: str | None = None) -> str:
    """`labels[key]` in `lang`; `default` (else the key itself) when the table has no entry."""
    text = labels.get(key)  # type: ignore[call-overload]
    return tr(lang, text) if text else (str(key) if default is None else default)


def windows_label(windows: list[dict[str, str | int]], lang: str = "en") -> str:
    """'Tue 09:00–12:00, Thu 14:00–17:00' (es: 'mar 09:00–12:00, ...')."""
    names = formatting.weekday_names(lang)
    return ", ".join(f"{names[int(w['weekday'])]} {w['start']}–{w['end']}" for w in windows) or tr(lang, "Any time")

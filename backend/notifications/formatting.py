"""Dates and times for people, in the clinic's zone and the reader's language (messages and the patient's pages).

The names of days and months, their order and punctuation come from the CLDR data that Babel ships, so a new
language needs no code here: its patterns are CLDR's own (`Locale.datetime_skeletons`). English keeps the
house style the pages have always shown ("Tue 24 Nov 2026, 15:00 EST": the day before the month, a 24-hour
clock), which CLDR's plain "en" (US) would turn into "Tue, Nov 24, 2026". A language we do not ship falls back
to English, like the message templates. The zone is always named (EST, CET...), from the zone database, because
a patient may read the message somewhere else than the clinic is.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_interval, get_datetime_format, get_day_names

from backend.notifications.templates import DEFAULT_LOCALE, LOCALES

# CLDR skeletons (what to show) -> the English house pattern (how). Other languages: CLDR's pattern.
_HOUSE_PATTERNS = {
    "en": {
        "yMMMEd": "EEE dd MMM y",  # Tue 24 Nov 2026
        "MMMEd": "EEE dd MMM",  # Tue 24 Nov
        "yMMMd": "dd MMM y",  # 24 Nov 2026
        "MMMd": "dd MMM",  # 24 Nov
        "Hm": "HH:mm",  # 15:00
    }
}


def language(locale: str | None) -> str:
    """'es-MX' / 'es_ES' -> 'es'; a language we do not ship (or none) -> 'en'."""
    lang = re.split(r"[-_]", (locale or "").strip().lower(), maxsplit=1)[0]
    return lang if lang in LOCALES else DEFAULT_LOCALE


@cache
def pattern(skeleton: str, locale: str) -> str:
    """The date/time pattern that shows `skeleton` ('yMMMEd', 'Hm' ...) in `locale`."""
    lang = language(locale)
    house = _HOUSE_PATTERNS.get(lang, {}).get(skeleton)
    if house:
        return house
    return str(Locale.parse(lang).datetime_skeletons[skeleton])


def _local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone))


def _fmt(local: datetime, skeleton: str, locale: str) -> str:
    return format_datetime(local, pattern(skeleton, locale), locale=language(locale))


def join_date_time(day: str, clock: str, locale: str) -> str:
    """A date and a time joined as the language does ('Tue 24 Nov, 15:00 EST')."""
    return str(get_datetime_format("medium", locale=language(locale))).replace("{1}", day).replace("{0}", clock)


def date_label(value: date, locale: str = "en", *, weekday: bool = True, year: bool = True) -> str:
    """A calendar date: 'Tue 24 Nov 2026' / 'mar, 24 nov 2026'; without the weekday or the year on request."""
    skeleton = ("y" if year else "") + "MMM" + ("E" if weekday else "") + "d"
    return format_date(value, pattern(skeleton, locale), locale=language(locale))


def day_label(moment: datetime, zone: str, locale: str = "en") -> str:
    """'Mon 23 Nov 2026' (en) / 'lun, 23 nov 2026' (es), in the zone."""
    return _fmt(_local(moment, zone), "yMMMEd", locale)


def short_day(moment: datetime, zone: str, locale: str = "en") -> str:
    """'Mon 23 Nov' (en) / 'lun, 23 nov' (es), in the zone."""
    return _fmt(_local(moment, zone), "MMMEd", locale)


def time_of_day(moment: datetime, zone: str, locale: str = "en") -> str:
    """'15:00' (es: '15:00', '9:00') in the zone, the zone not named."""
    return _fmt(_local(moment, zone), "Hm", locale)


def clock(moment: datetime, zone: str, locale: str = "en") -> str:
    """'15:00 EST' in the zone, the zone named."""
    local = _local(moment, zone)
    return f"{_fmt(local, 'Hm', locale)} {local.tzname()}"


def time_range(start: datetime, end: datetime, zone: str, locale: str = "en") -> str:
    """'10:00–10:50 EST' in the zone."""
    s, e = _local(start, zone), _local(end, zone)
    return f"{_fmt(s, 'Hm', locale)}–{_fmt(e, 'Hm', locale)} {s.tzname()}"


def when(start: datetime, end: datetime, zone: str, locale: str = "en") -> str:
    """'Mon 23 Nov 2026, 10:00–10:50 EST'."""
    return join_date_time(day_label(start, zone, locale), time_range(start, end, zone, locale), locale)


def moment_label(moment: datetime, zone: str, locale: str = "en") -> str:
    """'Sat 21 Nov 2026, 08:21 MST'."""
    return join_date_time(day_label(moment, zone, locale), clock(moment, zone, locale), locale)


def short_when(moment: datetime, zone: str, locale: str = "en") -> str:
    """'Tue 24 Nov, 15:00 EST': no year."""
    return join_date_time(short_day(moment, zone, locale), clock(moment, zone, locale), locale)


def weekday_names(locale: str = "en", width: Literal["abbreviated", "wide"] = "abbreviated") -> list[str]:
    """Monday first: ['Mon', ...] / ['lun', ...]; width 'wide' gives ['Monday', ...] / ['lunes', ...]."""
    return list(_weekday_names(language(locale), width))


@cache  # a handful of languages x two widths
def _weekday_names(lang: str, width: Literal["abbreviated", "wide"]) -> tuple[str, ...]:
    # Babel builds the locale's name table on every call: a console labels each row's windows with these.
    names = get_day_names(width, context="stand-alone", locale=lang)
    return tuple(str(names[i]) for i in range(7))


def week_range(first: date, last: date, locale: str = "en") -> str:
    """'23 – 29 Nov 2026' (en) / '23–29 nov 2026' (es): the days of one week."""
    lang = language(locale)
    if lang in _HOUSE_PATTERNS:
        if first.month == last.month and first.year == last.year:
            return f"{first:%d} – {date_label(last, lang, weekday=False)}"
        if first.year == last.year:
            return f"{date_label(first, lang, weekday=False, year=False)} – {date_label(last, lang, weekday=False)}"
        return f"{date_label(first, lang, weekday=False)} – {date_label(last, lang, weekday=False)}"
    return str(format_interval(first, last, "yMMMd", locale=lang))


def format_local(moment: datetime | None, zone: str, locale: str = "en") -> str:
    """For messages: 'Tue 24 Nov, 15:00 EST' (en) or 'mar, 24 nov, 15:00 EST' (es), with the year when it is not
    this one ('Mon 01 Feb 2027, 09:00 PST'); '' for None."""
    if moment is None:
        return ""
    local = _local(moment, zone)
    this_year = local.year == datetime.now(local.tzinfo).year
    day = _fmt(local, "MMMEd" if this_year else "yMMMEd", locale)
    return join_date_time(day, clock(moment, zone, locale), locale)

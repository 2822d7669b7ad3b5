"""Dates in a notification, in the clinic's zone and the patient's language.

No locale database is needed for the two languages we ship; the names are spelled out here, and an unknown
locale falls back to English. The zone is always named (EST, CET...), because a patient may read the message
somewhere else than the clinic is."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

_DAYS = {
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "es": ("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
}
_MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "es": ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"),
}


def format_local(moment: datetime | None, zone: str, locale: str = "en") -> str:
    """'Tue 24 Nov, 15:00 EST' (en) or 'mar 24 nov, 15:00 EST' (es), with the year when it is not this one
    ('Mon 01 Feb 2027, 09:00 PST'); '' for None."""
    if moment is None:
        return ""
    lang = (locale or "en").split("-")[0].split("_")[0].lower()
    if lang not in _DAYS:
        lang = "en"
    local = moment.astimezone(ZoneInfo(zone))
    day = _DAYS[lang][local.weekday()]
    month = _MONTHS[lang][local.month - 1]
    year = f" {local.year}" if local.year != datetime.now(local.tzinfo).year else ""
    return f"{day} {local.day:02d} {month}{year}, {local:%H:%M} {local.tzname()}"

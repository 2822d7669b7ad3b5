"""Dates in notifications: the clinic's zone, the patient's language, the year only when it is not this one.

Spanish follows CLDR through Babel ('mar, 25 nov 2031, 15:00 EST', 'H:mm' hours); English keeps the house style."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backend.notifications.formatting import format_local

THIS_YEAR = datetime.now(UTC).year


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "Tue 25 Nov 2031, 15:00 EST"),
        ("es", "mar, 25 nov 2031, 15:00 EST"),
        ("es-MX", "mar, 25 nov 2031, 15:00 EST"),
        ("fr", "Tue 25 Nov 2031, 15:00 EST"),  # a language we do not ship (no templates, no pages): English
        ("", "Tue 25 Nov 2031, 15:00 EST"),
    ],
)
def test_day_and_month_names_follow_the_patients_language(locale: str, expected: str) -> None:
    assert format_local(datetime(2031, 11, 25, 20, 0, tzinfo=UTC), "America/New_York", locale) == expected


def test_this_years_date_has_no_year() -> None:
    text = format_local(datetime(THIS_YEAR, 3, 2, 12, 0, tzinfo=UTC), "UTC", "en")
    assert text.endswith(" 02 Mar, 12:00 UTC") and str(THIS_YEAR) not in text


def test_the_zone_is_the_clinics_and_is_named_across_dst() -> None:
    summer = datetime(THIS_YEAR, 7, 1, 16, 0, tzinfo=UTC)
    assert format_local(summer, "America/New_York", "en").endswith("12:00 EDT")
    assert format_local(summer, "Europe/Berlin", "es").endswith("18:00 CEST")


def test_another_years_date_carries_its_year() -> None:
    later = datetime(THIS_YEAR + 1, 2, 1, 17, 0, tzinfo=UTC)
    assert format_local(later, "America/Los_Angeles", "en").endswith(f"01 Feb {THIS_YEAR + 1}, 09:00 PST")
    assert format_local(later, "America/Los_Angeles", "es").endswith(f" 1 feb {THIS_YEAR + 1}, 9:00 PST")


def test_none_is_empty() -> None:
    assert format_local(None, "UTC") == ""

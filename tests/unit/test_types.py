"""Shared column types and validators (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite

from backend.tenancy.models import ClinicCreate, ClinicUpdate
from backend.types import UTCDateTime, utcnow, valid_timezone


@pytest.mark.parametrize("zone", ["America/New_York", "UTC", "Europe/Berlin", "Asia/Kolkata", "Etc/UTC"])
def test_valid_timezone_accepts_iana_names(zone: str) -> None:
    assert valid_timezone(zone) == zone


def test_valid_timezone_strips_blanks() -> None:
    assert valid_timezone("  America/Chicago ") == "America/Chicago"


@pytest.mark.parametrize(
    "zone",
    ["Mars/Base", "../etc", "../../etc/passwd", "/etc/passwd", "America/../Europe/Paris", "EST", "", "America/"],
)
def test_valid_timezone_refuses_unknown_or_path_like_names(zone: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone") as info:
        valid_timezone(zone)
    assert repr(zone.strip()) in str(info.value)


def test_utcnow_is_aware_utc() -> None:
    now = utcnow()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)


@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()], ids=["postgresql", "sqlite"])
def test_utc_datetime_refuses_naive_values(dialect: object) -> None:
    with pytest.raises(ValueError, match="naive datetime refused"):
        UTCDateTime().process_bind_param(datetime(2026, 3, 8, 9, 0), dialect)  # noqa: DTZ001 - the point


def test_utc_datetime_converts_aware_values_to_utc() -> None:
    new_york_winter = timezone(timedelta(hours=-5))
    value = datetime(2026, 1, 15, 9, 30, tzinfo=new_york_winter)
    stored = UTCDateTime().process_bind_param(value, postgresql.dialect())
    assert stored == datetime(2026, 1, 15, 14, 30, tzinfo=UTC)
    assert stored is not None and stored.utcoffset() == timedelta(0)


def test_utc_datetime_on_sqlite_stores_utc_wall_time_and_reattaches_utc() -> None:
    value = datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    stored = UTCDateTime().process_bind_param(value, sqlite.dialect())
    assert stored == datetime(2026, 7, 1, 10, 0)  # noqa: DTZ001 - SQLite keeps no zone
    loaded = UTCDateTime().process_result_value(stored, sqlite.dialect())
    assert loaded == value and loaded is not None and loaded.tzinfo == UTC


def test_utc_datetime_passes_none() -> None:
    assert UTCDateTime().process_bind_param(None, postgresql.dialect()) is None
    assert UTCDateTime().process_result_value(None, postgresql.dialect()) is None


def test_clinic_create_validates_zone_and_name() -> None:
    clinic = ClinicCreate(name="  Harbor Downtown ", timezone="America/New_York")
    assert clinic.name == "Harbor Downtown"
    with pytest.raises(ValidationError, match="Mars/Base"):
        ClinicCreate(name="Harbor", timezone="Mars/Base")
    with pytest.raises(ValidationError, match="at least 2 characters"):
        ClinicCreate(name=" x ", timezone="UTC")


def test_clinic_update_validates_zone_and_name() -> None:
    assert ClinicUpdate(timezone="Europe/Berlin").timezone == "Europe/Berlin"
    assert ClinicUpdate(name=" Harbor East ").name == "Harbor East"
    assert ClinicUpdate().model_dump(exclude_unset=True) == {}
    with pytest.raises(ValidationError, match="Mars/Base"):
        ClinicUpdate(timezone="Mars/Base")
    with pytest.raises(ValidationError):
        ClinicUpdate(name=" x ")

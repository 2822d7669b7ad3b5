"""When appointment reminders are due (pure: no database), and how offsets are validated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from backend.notifications.reminder_schedule import (
    NOTHING,
    ReminderDecision,
    check_offsets,
    decide_reminder,
    parse_offsets,
)
from backend.settings import Settings

START = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
BOOKED = START - timedelta(days=10)
OFFSETS = (2880, 120)  # 48 h and 2 h


def decide(
    now: datetime, *, created_at: datetime = BOOKED, done: tuple[int, ...] = (), offsets: tuple[int, ...] = OFFSETS
) -> ReminderDecision:
    return decide_reminder(now=now, start=START, created_at=created_at, offsets=offsets, done=done)


def test_nothing_before_the_first_moment() -> None:
    assert decide(START - timedelta(hours=48, seconds=1)) == NOTHING


def test_each_offset_is_due_at_its_moment_and_not_again_once_done() -> None:
    at_48h = START - timedelta(hours=48)
    assert decide(at_48h) == ReminderDecision(send=2880, mark_done=(2880,))
    assert decide(at_48h + timedelta(minutes=1), done=(2880,)) == NOTHING
    assert decide(START - timedelta(hours=3), done=(2880,)) == NOTHING
    at_2h = START - timedelta(hours=2)
    assert decide(at_2h, done=(2880,)) == ReminderDecision(send=120, mark_done=(120,))
    assert decide(at_2h + timedelta(minutes=30), done=(2880, 120)) == NOTHING


def test_booked_after_an_offsets_moment_skips_that_offset_only() -> None:
    booked = START - timedelta(hours=30)  # inside 48 h: that reminder is owed no longer
    first = decide(START - timedelta(hours=29), created_at=booked)
    assert first == ReminderDecision(send=None, mark_done=(2880,))
    # The 2 h reminder still goes out.
    assert decide(START - timedelta(hours=2), created_at=booked, done=(2880,)) == ReminderDecision(120, (120,))


def test_booked_exactly_at_the_moment_or_after_every_moment_sends_nothing() -> None:
    assert decide(START - timedelta(hours=48), created_at=START - timedelta(hours=48)).send is None
    late = START - timedelta(minutes=90)  # booked 90 minutes ahead: both moments had passed
    assert decide(late + timedelta(seconds=1), created_at=late) == ReminderDecision(send=None, mark_done=(2880, 120))


def test_worker_down_across_several_offsets_sends_only_the_nearest() -> None:
    decision = decide(START - timedelta(minutes=90))
    assert decision == ReminderDecision(send=120, mark_done=(2880, 120))
    # The older one is done now: it never fires later.
    assert decide(START - timedelta(minutes=60), done=decision.mark_done) == NOTHING


def test_four_offsets_down_for_a_while() -> None:
    offsets = (7 * 24 * 60, 2880, 1440, 120)
    decision = decide(START - timedelta(hours=20), offsets=offsets)
    assert decision == ReminderDecision(send=1440, mark_done=(10080, 2880, 1440))


def test_the_nearest_already_sent_only_marks_forgotten_older_ones() -> None:
    decision = decide(START - timedelta(hours=1), done=(120,))
    assert decision == ReminderDecision(send=None, mark_done=(2880,))


def test_started_or_past_appointment_gets_nothing() -> None:
    assert decide(START) == NOTHING
    assert decide(START + timedelta(minutes=5)) == NOTHING


def test_no_offsets_no_reminders() -> None:
    assert decide(START - timedelta(minutes=30), offsets=()) == NOTHING


def test_instants_in_other_zones_are_the_same_instants() -> None:
    """A DST change cannot move a reminder: the moments are UTC instants, whatever zone they are written in."""
    new_york = ZoneInfo("America/New_York")
    # 2026-03-08 is the US spring-forward day; START is two days later, 48 h spans the change.
    now_local = (START - timedelta(hours=48)).astimezone(new_york)
    assert decide(now_local) == ReminderDecision(send=2880, mark_done=(2880,))
    assert decide(now_local - timedelta(seconds=1)) == NOTHING


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide_reminder(now=datetime(2026, 3, 1), start=START, created_at=BOOKED, offsets=OFFSETS)  # noqa: DTZ001


# -- offsets ------------------------------------------------------------------------------------------------


def test_offsets_are_sorted_largest_first() -> None:
    assert check_offsets([120, 2880, 15, 20160]) == [20160, 2880, 120, 15]
    assert check_offsets([]) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([120, 120], "only once"),
        ([14], "between 15 minutes and 14 days"),
        ([20161], "between 15 minutes and 14 days"),
        ([0], "between"),
        ([-60], "between"),
        ([60, 120, 180, 240, 300], "At most 4"),
        ([True], "whole number"),
        ([90.5], "whole number"),
        (["120"], "whole number"),
    ],
)
def test_bad_offsets_are_refused_with_a_reason(values: list[object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_offsets(values)


def test_parse_offsets_from_the_setting() -> None:
    assert parse_offsets("120, 2880") == [2880, 120]
    assert parse_offsets("") == []
    with pytest.raises(ValueError, match="whole minutes separated by commas"):
        parse_offsets("2h,48h")


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, secret_key="s" * 40, **values)


def test_settings_default_is_48_and_2_hours_and_is_validated() -> None:
    assert _settings().reminder_offsets_minutes == [2880, 120]
    assert _settings(reminder_offsets="60").reminder_offsets_minutes == [60]
    assert _settings(reminder_offsets=" 120 , 1440 ").reminder_offsets_minutes == [1440, 120]
    assert _settings(reminder_offsets="").reminder_offsets_minutes == []
    with pytest.raises(ValueError, match="only once"):
        _settings(reminder_offsets="120,120")

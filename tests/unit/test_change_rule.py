"""The cancellation window as the patient reads it before clicking (booking dialog, My appointments)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from portal.state.my_appointments import change_rule, window_label

START = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 11:00 in New York (EDT)
DAY = timedelta(hours=24)


def test_before_the_window_it_names_the_deadline_in_the_clinics_zone() -> None:
    text, late = change_rule(START, DAY, START - timedelta(days=3), "America/New_York")
    assert not late
    assert text.startswith("Free to cancel or move online until Mon 09 Mar 2026, 11:00 EDT (24 hours before).")
    assert "a cancellation counts as late" in text


def test_inside_the_window_it_says_what_happens_now() -> None:
    for now in (START - DAY, START - timedelta(hours=2)):
        text, late = change_rule(START, DAY, now, "America/New_York")
        assert late
        assert text.startswith("Less than 24 hours to go: cancelling now counts as a late cancellation")
        assert "call the clinic" in text


def test_the_booking_dialog_words_it_for_a_time_not_booked_yet() -> None:
    text, late = change_rule(START, DAY, START - timedelta(days=2), "America/Denver", booking=True)
    assert not late and text.startswith("You can cancel or move it online until Mon 09 Mar 2026, 09:00 MDT")
    text, late = change_rule(START, DAY, START - timedelta(hours=5), "America/Denver", booking=True)
    assert late and text.startswith("This time is less than 24 hours away: once booked, cancelling it counts as a late")


def test_window_labels() -> None:
    assert window_label(DAY) == "24 hours"
    assert window_label(timedelta(hours=1)) == "1 hour"
    assert window_label(timedelta(minutes=90)) == "90 minutes"
    assert window_label(timedelta(hours=72)) == "3 days"
    assert window_label(timedelta(hours=36)) == "36 hours"

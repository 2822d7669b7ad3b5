"""The patient's appointment history says what the doctor's pages say (portal/state/my_appointments.py past_status).

Regression (issue 10 item 6): a finished session showed "Booked" to the patient while the doctor saw it done; a
session that has started or ended without being marked was called "Booked" as if it were still to come."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal.components.format import STATUS_LABELS
from portal.state.my_appointments import IN_PROGRESS, NOT_RECORDED, past_status

NOW = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("status", "start", "reason", "label", "tone"),
    [
        ("completed", NOW - 3 * HOUR, "", "Completed", "green"),
        ("no_show", NOW - 3 * HOUR, "", "No-show", "red"),
        ("booked", NOW - 3 * HOUR, "", NOT_RECORDED, "gray"),
        ("booked", NOW - HOUR / 2, "", IN_PROGRESS, "teal"),
        ("late_cancelled", NOW - 3 * HOUR, "", "Late cancellation", "red"),
        ("cancelled", NOW - 3 * HOUR, "rescheduled", "Moved", "gray"),
        ("cancelled", NOW + 3 * HOUR, "", "Cancelled", "gray"),
    ],
)
def test_history_labels(status: str, start: datetime, reason: str, label: str, tone: str) -> None:
    assert past_status(status, start, start + timedelta(minutes=50), NOW, reason) == (label, tone)


def test_a_marked_session_uses_the_doctors_word() -> None:
    for status in ("completed", "no_show"):
        assert past_status(status, NOW - 3 * HOUR, NOW - 2 * HOUR, NOW)[0] == STATUS_LABELS[status]
    assert "Booked" not in {past_status("booked", NOW - d * HOUR, NOW - d * HOUR + HOUR, NOW)[0] for d in (0.5, 3)}

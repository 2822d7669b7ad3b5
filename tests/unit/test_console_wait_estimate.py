"""The doctor's waitlist console shows the same honest estimated wait as the patient's My waitlist card
(portal/state/waitlist_console.py entry_row; the patient's wording: portal/state/waitlist_patient.py).

Regression (issue 10 item 6): the console's estimate was blank: "~N days" when there was a number, nothing at all
when the queue's fills could not say, and the page did not show it anyway."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend.waitlist.service import EntryView
from portal.state.waitlist_console import entry_row
from portal.state.waitlist_patient import HARD_TO_ESTIMATE, entry_card

NOW = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)


def _view(status: str, estimate: int | None, position: int | None = 1) -> EntryView:
    return EntryView(
        id=uuid.uuid4(), status=status, urgency=2, created_at=NOW - timedelta(days=12), patient_id=uuid.uuid4(),
        patient_name="Pat", provider_id=uuid.uuid4(), provider_name="Dr. Rivera", clinic_id=uuid.uuid4(),
        clinic_name="Harbor Downtown", timezone="America/New_York", preferred_windows=[], position=position,
        estimated_wait_days=estimate,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "estimate", "position", "shown"),
    [
        ("waiting", None, 1, HARD_TO_ESTIMATE),
        ("waiting", 1, 1, "About a day"),
        ("waiting", 10, 2, "About 10 days"),
        ("waiting", 30, 3, "About 4 weeks"),
        ("offered", None, 1, ""),
        ("booked", None, None, ""),
    ],
)
def test_the_console_says_what_the_patient_is_told(status: str, estimate: Any, position: Any, shown: str) -> None:
    view = _view(status, estimate, position)
    assert entry_row(view, NOW, position=1).estimated == shown
    if status == "waiting":
        assert entry_card(view, [], NOW, {}).wait == shown

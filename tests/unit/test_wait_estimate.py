"""The patient's estimated wait (backend/waitlist/estimate.py) and how the My waitlist card shows it.

Regression (issue 10, item 6): "Estimated wait: about a day" was shown to a patient who had already waited
12 days, because the estimate was position × the median gap between freed slots, whatever the patient
had waited and however few slots were actually filled from the waitlist. How the card shows "no number":
tests/unit/test_waitlist_patient_card.py."""

from __future__ import annotations

import pytest

from backend.waitlist.estimate import MIN_FILLS, estimate_wait_days

QUICK_FILLS = [0.5, 1.0, 1.0, 1.5, 2.0] * 6  # 30 fills in 60 days, each booked within two days


def test_a_patient_who_waited_longer_than_every_fill_gets_no_number() -> None:
    """The reported case: the practice fills fast and usually within two days, the patient waited 12."""
    assert estimate_wait_days(position=1, waited_days=0, fill_waits_days=QUICK_FILLS, lookback_days=60) == 2
    assert estimate_wait_days(position=1, waited_days=12, fill_waits_days=QUICK_FILLS, lookback_days=60) is None


def test_the_remaining_wait_counts_only_fills_that_waited_longer() -> None:
    waits = [1, 1, 2, 10, 14, 20]  # 6 fills in 60 days: one every 10 days
    # Just joined, first in line: the pace (10 days per fill) outweighs the median wait (6 days).
    assert estimate_wait_days(position=1, waited_days=0, fill_waits_days=waits, lookback_days=60) == 10
    # Waited 8 days: compared with the fills that waited 10, 14 and 20 days: 6 more days at the median,
    # but never shorter than the pace.
    assert estimate_wait_days(position=1, waited_days=8, fill_waits_days=waits, lookback_days=60) == 10
    assert estimate_wait_days(position=1, waited_days=8, fill_waits_days=waits * 4, lookback_days=60) == 6
    # Waited 15 days: only one fill waited longer, too few to say.
    assert estimate_wait_days(position=1, waited_days=15, fill_waits_days=waits, lookback_days=60) is None


@pytest.mark.parametrize("waited", [0.0, 3.0, 7.0, 12.0, 30.0])
def test_never_shorter_than_the_pace_of_actual_fills(waited: float) -> None:
    waits = [float(w) for w in range(1, 41)]  # 40 fills in 60 days: 1.5 days per fill
    for position in (1, 4, 10):
        days = estimate_wait_days(position=position, waited_days=waited, fill_waits_days=waits, lookback_days=60)
        assert days is not None and days >= position * 1.5
        assert days >= (40 - waited) / 2  # and not shorter than the comparable fills' median remaining


def test_too_few_fills_say_too_little() -> None:
    assert estimate_wait_days(position=1, waited_days=0, fill_waits_days=[], lookback_days=60) is None
    few = [5.0] * (MIN_FILLS - 1)
    assert estimate_wait_days(position=1, waited_days=0, fill_waits_days=few, lookback_days=60) is None
    assert estimate_wait_days(position=None, waited_days=0, fill_waits_days=QUICK_FILLS, lookback_days=60) is None

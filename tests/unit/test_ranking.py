"""Waitlist ranking: eligibility, scoring, order and the reasons shown to the doctor."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest

from backend.waitlist.ranking import (
    Candidate,
    OpenSlot,
    Weights,
    Window,
    ineligibility,
    position_band,
    rank,
    score,
)

NOW = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
NY = "America/New_York"
PROVIDER, OTHER_PROVIDER = uuid.uuid4(), uuid.uuid4()
CLINIC = uuid.uuid4()
# Tuesday 24 Nov 2026, 10:00-10:50 New York time (UTC-5).
SLOT = OpenSlot(
    start=datetime(2026, 11, 24, 15, 0, tzinfo=UTC),
    end=datetime(2026, 11, 24, 15, 50, tzinfo=UTC),
    provider_id=PROVIDER,
    clinic_id=CLINIC,
    modality="in_person",
)
TUESDAY_MORNING = Window(1, time(9), time(12))


def cand(**kw: object) -> Candidate:
    base: dict[str, object] = {
        "entry_id": uuid.uuid4(),
        "patient_id": uuid.uuid4(),
        "urgency": 2,
        "waiting_since": NOW - timedelta(days=7),
        "timezone": NY,
    }
    base.update(kw)
    return Candidate(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"provider_id": OTHER_PROVIDER}, "wants another provider"),
        ({"clinic_id": uuid.uuid4()}, "waits at another clinic"),
        ({"modality": "telehealth"}, "wants another modality"),
        ({"earliest_date": date(2026, 11, 25)}, "before the earliest date"),
        ({"latest_date": date(2026, 11, 23)}, "after the latest date"),
        ({"windows": (Window(1, time(13), time(17)),)}, "outside the preferred times"),
        ({"windows": (Window(2, time(9), time(12)),)}, "outside the preferred times"),
        ({"windows": (Window(1, time(10, 30), time(12)),)}, "outside the preferred times"),
    ],
)
def test_ineligible_candidates_are_never_ranked(kw: dict[str, object], reason: str) -> None:
    candidate = cand(**kw)
    assert ineligibility(candidate, SLOT) == reason
    result = score(candidate, SLOT, Weights(), NOW)
    assert not result.eligible and result.ineligible_reason == reason
    assert rank([candidate], SLOT, Weights(), NOW) == []


def test_window_boundaries_are_inclusive_in_the_entry_zone() -> None:
    exact = cand(windows=(Window(1, time(10), time(10, 50)),))
    assert ineligibility(exact, SLOT) == ""
    # The same wall-clock window read in another zone does not match.
    berlin = cand(windows=(Window(1, time(10), time(10, 50)),), timezone="Europe/Berlin")
    assert ineligibility(berlin, SLOT) == "outside the preferred times"


def test_urgency_outranks_a_few_weeks_of_waiting() -> None:
    urgent = cand(urgency=4, waiting_since=NOW - timedelta(days=1))
    routine = cand(urgency=1, waiting_since=NOW - timedelta(weeks=20))
    ranked = rank([routine, urgent], SLOT, Weights(), NOW)
    assert [c for c, _ in ranked] == [urgent, routine]


def test_aging_lets_a_long_wait_pass_a_slightly_more_urgent_recent_entry() -> None:
    old = cand(urgency=2, waiting_since=NOW - timedelta(weeks=15))
    new = cand(urgency=3, waiting_since=NOW - timedelta(days=1))
    assert [c for c, _ in rank([new, old], SLOT, Weights(), NOW)] == [old, new]


def test_aging_is_capped() -> None:
    a = score(cand(waiting_since=NOW - timedelta(weeks=30)), None, Weights(), NOW)
    b = score(cand(waiting_since=NOW - timedelta(weeks=300)), None, Weights(), NOW)
    assert a.wait == b.wait == 26.0


def test_fit_and_continuity_add_points_with_reasons() -> None:
    fitting = cand(windows=(TUESDAY_MORNING,), current_provider_id=PROVIDER)
    anytime = cand()
    s_fit, s_any = score(fitting, SLOT, Weights(), NOW), score(anytime, SLOT, Weights(), NOW)
    assert s_fit.fit == 5.0 and s_any.fit == 3.0
    assert s_fit.continuity == 3.0 and s_any.continuity == 0.0
    assert s_fit.total == pytest.approx(s_any.total + 2.0 + 3.0)
    assert "Fits preferred time Tue 09:00–12:00 (+5)" in s_fit.reasons
    assert "Already sees this provider (+3)" in s_fit.reasons
    assert s_fit.matched_window == "Tue 09:00–12:00"
    assert any(r.startswith("Soon urgency") for r in s_fit.reasons)


def test_weights_come_from_the_policy() -> None:
    urgent = cand(urgency=4, waiting_since=NOW - timedelta(days=1))
    patient = cand(urgency=1, waiting_since=NOW - timedelta(weeks=20))
    only_wait = Weights(urgency=0, wait=1, fit=0, continuity=0)
    assert [c for c, _ in rank([urgent, patient], SLOT, only_wait, NOW)] == [patient, urgent]


def test_ties_go_to_the_longest_waiting_then_are_stable() -> None:
    first = cand(waiting_since=NOW - timedelta(days=10))
    second = cand(waiting_since=NOW - timedelta(days=10))
    earlier = cand(waiting_since=NOW - timedelta(days=10, seconds=1))
    zero = Weights(urgency=0, wait=0, fit=0, continuity=0)
    ranked = [c for c, _ in rank([first, second, earlier], SLOT, zero, NOW)]
    assert ranked[0] == earlier
    assert ranked[1:] == sorted([first, second], key=lambda c: str(c.entry_id))


def test_window_parse_validates() -> None:
    assert Window.parse({"weekday": 1, "start": "09:00", "end": "12:00"}) == TUESDAY_MORNING
    for bad in ({"weekday": 7, "start": "09:00", "end": "12:00"}, {"weekday": 1, "start": "12:00", "end": "09:00"},
                {"weekday": 1, "start": "nine", "end": "12:00"}):  # fmt: skip
        with pytest.raises(ValueError):
            Window.parse(bad)


@pytest.mark.parametrize(("position", "band"), [(1, "Near the top"), (3, "Near the top"), (4, "In the top 10"),
                                                (25, "In the top 25"), (26, "Further down")])  # fmt: skip
def test_position_bands(position: int, band: str) -> None:
    assert position_band(position) == band

"""Weekly availability -> slots (pure, no database)."""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from backend.scheduling.slots import Interval, Slot, WeeklyRule, find_slot, generate_slots, overlaps

NY = "America/New_York"
BERLIN = "Europe/Berlin"
CLINIC = uuid.UUID("00000000-0000-0000-0000-00000000000a")
OTHER_CLINIC = uuid.UUID("00000000-0000-0000-0000-00000000000b")
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)  # `now` that filters nothing in 2026-2027
MONDAY = date(2026, 1, 12)  # an ordinary Monday, far from any DST change
H = timedelta(hours=1)
M = timedelta(minutes=1)

EST, EDT = timedelta(hours=-5), timedelta(hours=-4)
CET, CEST = timedelta(hours=1), timedelta(hours=2)

# (zone, change day (a Sunday), offset before, offset after)
SPRING = [
    (NY, date(2026, 3, 8), EST, EDT),
    (NY, date(2027, 3, 14), EST, EDT),
    (BERLIN, date(2026, 3, 29), CET, CEST),
    (BERLIN, date(2027, 3, 28), CET, CEST),
]
FALL = [
    (NY, date(2026, 11, 1), EDT, EST),
    (NY, date(2027, 11, 7), EDT, EST),
    (BERLIN, date(2026, 10, 25), CEST, CET),
    (BERLIN, date(2027, 10, 31), CEST, CET),
]
# The repeated local hour when clocks fall back: 01:00-02:00 in New York, 02:00-03:00 in Berlin.
REPEATED_HOUR = {NY: 1, BERLIN: 2}


def ids(cases: list[tuple[str, date, timedelta, timedelta]]) -> list[str]:
    return [f"{zone}-{day}" for zone, day, _, _ in cases]


def local(zone: str, day: date, hour: int, minute: int = 0, *, fold: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)


def rule(
    weekday: int = 0,
    start: time = time(9, 0),
    end: time = time(12, 0),
    *,
    session: int = 50,
    buffer: int = 10,
    zone: str = NY,
    clinic: uuid.UUID = CLINIC,
    modality: str = "in_person",
    valid_from: date | None = None,
    valid_until: date | None = None,
) -> WeeklyRule:
    return WeeklyRule(
        rule_id=uuid.uuid4(),
        clinic_id=clinic,
        timezone=zone,
        weekday=weekday,
        start=start,
        end=end,
        session_minutes=session,
        buffer_minutes=buffer,
        modality=modality,
        valid_from=valid_from,
        valid_until=valid_until,
    )


def day_window(zone: str, first: date, last: date) -> dict[str, datetime]:
    """Local midnight of `first` up to local midnight after `last`."""
    return {
        "window_start": local(zone, first, 0),
        "window_end": local(zone, last + timedelta(days=1), 0),
    }


def slots_on(rules: list[WeeklyRule], zone: str, day: date, **kwargs: object) -> list[Slot]:
    kwargs.setdefault("now", LONG_AGO)
    return generate_slots(rules, **day_window(zone, day, day), **kwargs)  # type: ignore[arg-type]


def local_hm(slot: Slot) -> str:
    return slot.start.astimezone(ZoneInfo(slot.timezone)).strftime("%H:%M")


def iv(zone: str, day: date, start: tuple[int, int], end: tuple[int, int]) -> Interval:
    return Interval(local(zone, day, *start), local(zone, day, *end))


def assert_no_overlaps(slots: list[Slot]) -> None:
    for earlier, later in itertools.pairwise(slots):
        assert earlier.end <= later.start, (earlier, later)


# --- DST ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "change", "before", "after"), SPRING + FALL, ids=ids(SPRING + FALL))
def test_ten_oclock_stays_ten_oclock_local_across_the_change(
    zone: str, change: date, before: timedelta, after: timedelta
) -> None:
    friday, monday = change - timedelta(days=2), change + timedelta(days=1)
    rules = [rule(weekday, time(10), time(11), session=60, zone=zone) for weekday in (4, 6, 0)]
    slots = generate_slots(rules, **day_window(zone, friday, monday), now=LONG_AGO)

    assert [s.start.astimezone(ZoneInfo(zone)).date() for s in slots] == [friday, change, monday]
    for slot in slots:
        assert local_hm(slot) == "10:00"
        assert slot.end - slot.start == H
        assert slot.start.tzinfo is UTC
    naive_ten = [datetime.combine(d, time(10)) for d in (friday, change, monday)]
    expected = [
        (wall - offset).replace(tzinfo=UTC) for wall, offset in zip(naive_ten, (before, after, after), strict=True)
    ]
    assert [s.start for s in slots] == expected
    offsets = [s.start.astimezone(ZoneInfo(zone)).utcoffset() for s in slots]
    assert offsets == [before, after, after]
    assert before != after


@pytest.mark.parametrize(("zone", "change", "before", "after"), SPRING, ids=ids(SPRING))
def test_spring_forward_skips_the_nonexistent_times(
    zone: str, change: date, before: timedelta, after: timedelta
) -> None:
    slots = slots_on([rule(6, time(1), time(4), session=30, buffer=0, zone=zone)], zone, change)

    assert [local_hm(s) for s in slots] == ["01:00", "01:30", "03:00", "03:30"]  # 02:00 and 02:30 do not exist
    assert [s.start.astimezone(ZoneInfo(zone)).utcoffset() for s in slots] == [before, before, after, after]
    assert all(s.end - s.start == 30 * M for s in slots)
    assert slots[1].end == slots[2].start  # 01:30 + 30 real minutes is the change instant, 03:00
    assert_no_overlaps(slots)


@pytest.mark.parametrize(("zone", "change", "before", "after"), SPRING, ids=ids(SPRING))
def test_spring_forward_hourly_grid(zone: str, change: date, before: timedelta, after: timedelta) -> None:
    slots = slots_on([rule(6, time(1), time(4), session=60, buffer=0, zone=zone)], zone, change)

    assert [local_hm(s) for s in slots] == ["01:00", "03:00"]
    assert slots[0].end == slots[1].start


@pytest.mark.parametrize(("zone", "change", "before", "after"), FALL, ids=ids(FALL))
def test_fall_back_gives_no_duplicates_and_uses_the_first_occurrence(
    zone: str, change: date, before: timedelta, after: timedelta
) -> None:
    slots = slots_on([rule(6, time(1), time(4), session=30, buffer=0, zone=zone)], zone, change)

    labels = [local_hm(s) for s in slots]
    assert labels == ["01:00", "01:30", "02:00", "02:30", "03:00", "03:30"]
    assert len({s.start for s in slots}) == len(slots)
    assert_no_overlaps(slots)
    repeated = REPEATED_HOUR[zone]
    for slot in slots:
        wall = slot.start.astimezone(ZoneInfo(zone))
        assert wall.fold == 0
        # Ambiguous labels read as the first occurrence (summer time); later ones are after the change.
        assert wall.utcoffset() == (before if wall.hour <= repeated else after)


@pytest.mark.parametrize(("zone", "change", "before", "after"), FALL, ids=ids(FALL))
def test_fall_back_repeated_hour_block_gives_one_slot_per_label(
    zone: str, change: date, before: timedelta, after: timedelta
) -> None:
    h = REPEATED_HOUR[zone]
    slots = slots_on([rule(6, time(h), time(h + 1), session=20, buffer=0, zone=zone)], zone, change)

    assert [local_hm(s) for s in slots] == [f"0{h}:00", f"0{h}:20", f"0{h}:40"]
    assert {s.start.astimezone(ZoneInfo(zone)).utcoffset() for s in slots} == {before}


@pytest.mark.parametrize(("zone", "change", "before", "after"), SPRING, ids=ids(SPRING))
def test_session_spanning_spring_forward_lasts_real_minutes_and_drops_the_overlapping_one(
    zone: str, change: date, before: timedelta, after: timedelta
) -> None:
    # Wall grid 01:30, 02:15 (does not exist), 03:00, 03:45. 01:30 + 45 real minutes = 03:15 new time, so the
    # 03:00 session would overlap it and is dropped.
    slots = slots_on([rule(6, time(1, 30), time(5), session=45, buffer=0, zone=zone)], zone, change)

    assert [local_hm(s) for s in slots] == ["01:30", "03:45"]
    assert slots[0].end.astimezone(ZoneInfo(zone)).strftime("%H:%M") == "03:15"
    assert all(s.end - s.start == 45 * M for s in slots)
    assert_no_overlaps(slots)


@pytest.mark.parametrize(("zone", "change", "before", "after"), SPRING, ids=ids(SPRING))
def test_session_that_would_run_past_the_block_on_spring_forward_is_dropped(
    zone: str, change: date, before: timedelta, after: timedelta
) -> None:
    # 01:30 + 60 real minutes is 03:30 new time, past the 03:00 end of the block.
    rules = [rule(6, time(1, 30), time(3), session=60, buffer=0, zone=zone)]
    assert slots_on(rules, zone, change) == []
    # The same rule a week later is an ordinary night: one slot.
    assert len(slots_on(rules, zone, change + timedelta(days=7))) == 1


@pytest.mark.parametrize(("zone", "change", "before", "after"), FALL, ids=ids(FALL))
def test_session_spanning_fall_back_lasts_real_minutes(
    zone: str, change: date, before: timedelta, after: timedelta
) -> None:
    h = REPEATED_HOUR[zone]
    slots = slots_on([rule(6, time(h, 30), time(h + 2), session=60, buffer=0, zone=zone)], zone, change)

    assert len(slots) == 1
    assert slots[0].end - slots[0].start == H  # real time (both UTC)
    start, end = (t.astimezone(ZoneInfo(zone)) for t in (slots[0].start, slots[0].end))
    assert start.utcoffset() == before
    assert (end.hour, end.minute, end.utcoffset()) == (h, 30, after)  # the second h:30


@pytest.mark.parametrize(("zone", "change", "before", "after"), SPRING + FALL, ids=ids(SPRING + FALL))
def test_find_slot_agrees_with_generate_slots_on_change_days(
    zone: str, change: date, before: timedelta, after: timedelta
) -> None:
    rules = [rule(6, time(0, 30), time(4, 30), session=25, buffer=5, zone=zone)]
    slots = slots_on(rules, zone, change)
    assert slots
    for slot in slots:
        assert find_slot(rules, slot.start, now=LONG_AGO) == slot
    grid_starts = {s.start for s in slots}  # UTC: ambiguous local times never equal other zones (PEP 495)
    probe = local(zone, change, 0)
    while probe < local(zone, change, 5):
        if probe.astimezone(UTC) not in grid_starts:
            assert find_slot(rules, probe, now=LONG_AGO) is None, probe
        probe = (probe.astimezone(UTC) + 5 * M).astimezone(ZoneInfo(zone))


def test_ninety_day_window_across_spring_forward_keeps_local_time() -> None:
    rules = [rule(0, time(10), time(11), session=60)]
    slots = generate_slots(rules, **day_window(NY, date(2026, 1, 5), date(2026, 4, 5)), now=LONG_AGO)

    assert len(slots) == 13
    assert {local_hm(s) for s in slots} == {"10:00"}
    assert {s.start.hour for s in slots} == {15, 14}  # EST then EDT


# --- grid, buffer, windows ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session", "buffer", "start", "end", "expected"),
    [
        (50, 10, time(9), time(12), ["09:00", "10:00", "11:00"]),
        (45, 15, time(9), time(11, 30), ["09:00", "10:00"]),
        (30, 0, time(9), time(10), ["09:00", "09:30"]),
        (50, 20, time(9), time(12), ["09:00", "10:10"]),
        (25, 5, time(9, 15), time(10, 45), ["09:15", "09:45", "10:15"]),
        (60, 0, time(9), time(9, 59), []),
        (60, 30, time(9), time(10), ["09:00"]),
    ],
)
def test_buffer_spacing(session: int, buffer: int, start: time, end: time, expected: list[str]) -> None:
    slots = slots_on([rule(0, start, end, session=session, buffer=buffer)], NY, MONDAY)

    assert [local_hm(s) for s in slots] == expected
    assert all(s.end - s.start == session * M for s in slots)


def test_slot_fields() -> None:
    telehealth = rule(0, modality="telehealth", zone=BERLIN)
    slot = slots_on([telehealth], BERLIN, MONDAY)[0]

    assert slot == Slot(
        start=datetime(2026, 1, 12, 8, 0, tzinfo=UTC),
        end=datetime(2026, 1, 12, 8, 50, tzinfo=UTC),
        clinic_id=CLINIC,
        modality="telehealth",
        timezone=BERLIN,
        status="free",
    )


def test_windows_spanning_several_weeks_count_right() -> None:
    rules = [rule(weekday) for weekday in (0, 2, 4)]  # Mon, Wed, Fri: 3 slots each
    four_weeks = generate_slots(rules, **day_window(NY, MONDAY, MONDAY + timedelta(days=27)), now=LONG_AGO)
    assert len(four_weeks) == 4 * 3 * 3
    assert [s.start for s in four_weeks] == sorted(s.start for s in four_weeks)
    one_week = generate_slots(rules, **day_window(NY, MONDAY, MONDAY + timedelta(days=6)), now=LONG_AGO)
    assert len(one_week) == 9
    partial = generate_slots(  # Tuesday to the next Tuesday: Wed, Fri, Mon
        rules, **day_window(NY, MONDAY + timedelta(days=1), MONDAY + timedelta(days=7)), now=LONG_AGO
    )
    assert len(partial) == 9
    assert partial[0].start.astimezone(ZoneInfo(NY)).weekday() == 2


def test_window_bounds_are_start_inclusive_end_exclusive() -> None:
    rules = [rule(0)]
    slots = generate_slots(rules, window_start=local(NY, MONDAY, 10), window_end=local(NY, MONDAY, 11), now=LONG_AGO)
    assert [local_hm(s) for s in slots] == ["10:00"]
    slots = generate_slots(
        rules, window_start=local(NY, MONDAY, 10, 1), window_end=local(NY, MONDAY, 11, 1), now=LONG_AGO
    )
    assert [local_hm(s) for s in slots] == ["11:00"]
    assert (
        generate_slots(rules, window_start=local(NY, MONDAY, 11), window_end=local(NY, MONDAY, 10), now=LONG_AGO) == []
    )


def test_window_in_another_zone_is_the_same_instants() -> None:
    rules = [rule(0)]
    ny_window = day_window(NY, MONDAY, MONDAY)
    berlin_window = {k: v.astimezone(ZoneInfo(BERLIN)) for k, v in ny_window.items()}
    utc_window = {k: v.astimezone(UTC) for k, v in ny_window.items()}
    expected = generate_slots(rules, **ny_window, now=LONG_AGO)
    assert len(expected) == 3
    assert generate_slots(rules, **berlin_window, now=LONG_AGO) == expected
    assert generate_slots(rules, **utc_window, now=LONG_AGO) == expected


def test_rules_in_different_zones_sort_by_real_time() -> None:
    ny = rule(0, time(10), time(11), session=60, zone=NY, clinic=CLINIC)
    berlin = rule(0, time(10), time(11), session=60, zone=BERLIN, clinic=OTHER_CLINIC)
    window = {"window_start": datetime(2026, 1, 12, tzinfo=UTC), "window_end": datetime(2026, 1, 13, tzinfo=UTC)}
    slots = generate_slots([ny, berlin], **window, now=LONG_AGO)

    assert [(s.start.hour, s.clinic_id, s.timezone) for s in slots] == [(9, OTHER_CLINIC, BERLIN), (15, CLINIC, NY)]


# --- valid_from / valid_until ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "mondays"),
    [
        (None, None, [0, 1, 2, 3]),
        (MONDAY + timedelta(days=7), None, [1, 2, 3]),
        (None, MONDAY + timedelta(days=7), [0, 1]),
        (MONDAY + timedelta(days=7), MONDAY + timedelta(days=14), [1, 2]),
        (MONDAY + timedelta(days=8), MONDAY + timedelta(days=13), []),
        (MONDAY + timedelta(days=6), MONDAY + timedelta(days=8), [1]),
    ],
)
def test_valid_from_and_until_are_inclusive_local_dates(
    valid_from: date | None, valid_until: date | None, mondays: list[int]
) -> None:
    rules = [rule(0, valid_from=valid_from, valid_until=valid_until)]
    slots = generate_slots(rules, **day_window(NY, MONDAY, MONDAY + timedelta(days=27)), now=LONG_AGO)

    days = sorted({s.start.astimezone(ZoneInfo(NY)).date() for s in slots})
    assert days == [MONDAY + timedelta(days=7 * i) for i in mondays]
    assert len(slots) == 3 * len(mondays)


# --- time off, notice, horizon --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("off", "expected"),
    [
        ([((10, 0), (10, 50))], ["09:00", "11:00"]),  # exactly one session
        ([((10, 49), (10, 51))], ["09:00", "11:00"]),  # partial overlap at its end
        ([((9, 59), (10, 1))], ["09:00", "11:00"]),  # partial overlap at its start
        ([((10, 50), (11, 0))], ["09:00", "10:00", "11:00"]),  # only the buffer
        ([((8, 0), (9, 0))], ["09:00", "10:00", "11:00"]),  # ends where a session starts
        ([((8, 0), (9, 1))], ["10:00", "11:00"]),
        ([((11, 49), (13, 0))], ["09:00", "10:00"]),
        ([((8, 0), (12, 0))], []),
        ([((9, 30), (10, 5)), ((10, 0), (10, 10))], ["11:00"]),  # overlapping time-off entries
        ([((12, 0), (13, 0)), ((9, 10), (9, 20))], ["10:00", "11:00"]),  # unsorted input
    ],
)
def test_time_off_removes_exactly_the_slots_it_covers(
    off: list[tuple[tuple[int, int], tuple[int, int]]], expected: list[str]
) -> None:
    time_off = [iv(NY, MONDAY, start, end) for start, end in off]
    slots = slots_on([rule(0)], NY, MONDAY, time_off=time_off)
    assert [local_hm(s) for s in slots] == expected
    # Time off is a hard removal: it does not come back with include_taken.
    assert [local_hm(s) for s in slots_on([rule(0)], NY, MONDAY, time_off=time_off, include_taken=True)] == expected


def test_time_off_spanning_days_removes_whole_days() -> None:
    rules = [rule(weekday) for weekday in range(5)]
    vacation = [Interval(local(NY, MONDAY, 0), local(NY, MONDAY + timedelta(days=3), 0))]  # Mon-Wed
    slots = generate_slots(rules, **day_window(NY, MONDAY, MONDAY + timedelta(days=6)), now=LONG_AGO, time_off=vacation)
    assert sorted({s.start.astimezone(ZoneInfo(NY)).weekday() for s in slots}) == [3, 4]
    assert len(slots) == 6


@pytest.mark.parametrize(
    ("now", "notice", "expected"),
    [
        (local(NY, MONDAY, 8), 2 * H, ["10:00", "11:00"]),  # exactly now + notice is bookable
        (local(NY, MONDAY, 8) + timedelta(microseconds=1), 2 * H, ["11:00"]),
        (local(NY, MONDAY, 9), timedelta(0), ["09:00", "10:00", "11:00"]),
        (local(NY, MONDAY, 9, 1), timedelta(0), ["10:00", "11:00"]),  # already started: past
        (local(NY, MONDAY, 12), timedelta(0), []),
        (local(NY, MONDAY - timedelta(days=1), 10), 24 * H, ["10:00", "11:00"]),
        (local(NY, MONDAY - timedelta(days=1), 10, 1), 24 * H, ["11:00"]),
    ],
)
def test_min_notice(now: datetime, notice: timedelta, expected: list[str]) -> None:
    slots = slots_on([rule(0)], NY, MONDAY, now=now, min_notice=notice)
    assert [local_hm(s) for s in slots] == expected
    assert [
        local_hm(s) for s in slots_on([rule(0)], NY, MONDAY, now=now, min_notice=notice, include_taken=True)
    ] == expected


@pytest.mark.parametrize(
    ("horizon", "expected"),
    [
        (None, ["09:00", "10:00", "11:00"]),
        (10 * H, ["09:00", "10:00"]),  # a slot starting exactly at the horizon is kept
        (10 * H - timedelta(microseconds=1), ["09:00"]),
        (8 * H, []),
    ],
)
def test_horizon(horizon: timedelta | None, expected: list[str]) -> None:
    slots = slots_on([rule(0)], NY, MONDAY, now=local(NY, MONDAY, 0), horizon=horizon)
    assert [local_hm(s) for s in slots] == expected


def test_horizon_over_several_weeks() -> None:
    rules = [rule(0)]
    window = day_window(NY, MONDAY, MONDAY + timedelta(days=41))
    assert len(generate_slots(rules, **window, now=local(NY, MONDAY, 0))) == 6 * 3
    slots = generate_slots(rules, **window, now=local(NY, MONDAY, 0), horizon=timedelta(days=14))
    assert len(slots) == 2 * 3
    assert max(s.start for s in slots) < local(NY, MONDAY + timedelta(days=14), 0)


def test_now_defaults_to_the_current_time() -> None:
    rules = [rule(weekday) for weekday in range(7)]
    past = generate_slots(rules, **day_window(NY, date(2020, 1, 6), date(2020, 1, 12)))
    assert past == []
    soon = datetime.now(UTC) + timedelta(days=2)
    future = generate_slots(rules, window_start=soon, window_end=soon + timedelta(days=7))
    assert len(future) == 7 * 3


# --- booked / held --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("booked", "held", "expected"),
    [
        ([], [], {"09:00": "free", "10:00": "free", "11:00": "free"}),
        ([((10, 0), (10, 50))], [], {"09:00": "free", "10:00": "booked", "11:00": "free"}),
        ([], [((11, 20), (11, 30))], {"09:00": "free", "10:00": "free", "11:00": "held"}),
        ([((9, 0), (9, 50))], [((9, 30), (10, 30))], {"09:00": "booked", "10:00": "held", "11:00": "free"}),
        ([((10, 50), (11, 0))], [((9, 50), (10, 0))], {"09:00": "free", "10:00": "free", "11:00": "free"}),
        ([((8, 0), (13, 0))], [], {"09:00": "booked", "10:00": "booked", "11:00": "booked"}),
    ],
)
def test_booked_and_held_statuses(
    booked: list[tuple[tuple[int, int], tuple[int, int]]],
    held: list[tuple[tuple[int, int], tuple[int, int]]],
    expected: dict[str, str],
) -> None:
    kwargs = {
        "booked": [iv(NY, MONDAY, s, e) for s, e in booked],
        "held": [iv(NY, MONDAY, s, e) for s, e in held],
    }
    everything = slots_on([rule(0)], NY, MONDAY, include_taken=True, **kwargs)
    assert {local_hm(s): s.status for s in everything} == expected
    free_only = slots_on([rule(0)], NY, MONDAY, **kwargs)
    assert [local_hm(s) for s in free_only] == [k for k, v in expected.items() if v == "free"]
    assert all(s.status == "free" for s in free_only)


def brute_status(slot: Slot, booked: list[Interval], held: list[Interval]) -> str:
    if any(overlaps(slot.start, slot.end, b.start, b.end) for b in booked):
        return "booked"
    if any(overlaps(slot.start, slot.end, h.start, h.end) for h in held):
        return "held"
    return "free"


def random_intervals(rng: random.Random, n: int, base: datetime, days: int) -> list[Interval]:
    out = []
    for _ in range(n):
        start = base + timedelta(minutes=rng.randrange(days * 24 * 60))
        out.append(Interval(start, start + timedelta(minutes=rng.choice([0, 1, 10, 30, 50, 90, 600]))))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_interval_index_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    rules = [
        rule(weekday, time(8), time(18), session=rng.choice([20, 30, 50]), buffer=rng.choice([0, 5, 10]))
        for weekday in range(5)
    ]
    window = day_window(NY, MONDAY, MONDAY + timedelta(days=20))
    base = window["window_start"].astimezone(UTC)
    booked = random_intervals(rng, rng.choice([5, 50, 300]), base, 21)
    held = random_intervals(rng, rng.choice([5, 50, 300]), base, 21)
    time_off = random_intervals(rng, rng.choice([0, 5, 20]), base, 21)

    everything = generate_slots(
        rules, **window, now=LONG_AGO, booked=booked, held=held, time_off=time_off, include_taken=True
    )
    untouched = generate_slots(rules, **window, now=LONG_AGO)
    expected = [
        replace(s, status=brute_status(s, booked, held))
        for s in untouched
        if not any(overlaps(s.start, s.end, t.start, t.end) for t in time_off)
    ]
    assert everything == expected
    assert {s.status for s in everything} >= {"free"}


@pytest.mark.parametrize("seed", range(12))
def test_a_narrow_window_sees_exactly_the_wide_windows_slots_in_it(seed: int) -> None:
    """Random rules in zones with DST (half-hour ones too) across the changes: the slots of any narrow window, and
    find_slot at any instant, are exactly what a month-wide window gives there (generate_slots skips the days a
    window cannot reach: that skip must never drop a slot)."""
    rng = random.Random(seed)
    zones = [NY, BERLIN, "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Chatham", "UTC"]
    rules = []
    for _ in range(rng.randint(1, 4)):
        start = time(rng.randint(0, 22), rng.choice([0, 15, 30, 45]))
        end_minutes = min(24 * 60 - 1, start.hour * 60 + start.minute + rng.choice([45, 90, 240, 600, 1440]))
        rules.append(rule(rng.randint(0, 6), start, time(end_minutes // 60, end_minutes % 60),
                          session=rng.choice([20, 25, 50, 60]), buffer=rng.choice([0, 5, 10]),
                          zone=rng.choice(zones)))  # fmt: skip
    base = datetime(rng.choice([2026, 2027]), rng.choice([3, 4, 10, 11]), 1, tzinfo=UTC)
    wide = generate_slots(rules, window_start=base, window_end=base + timedelta(days=35), now=LONG_AGO)
    for _ in range(200):
        lo = base + timedelta(minutes=5 * rng.randint(0, 33 * 24 * 12))  # hi stays inside the wide window
        hi = lo + timedelta(minutes=rng.choice([1, 5, 30, 60, 24 * 60]))
        narrow = generate_slots(rules, window_start=lo, window_end=hi, now=LONG_AGO)
        assert narrow == [s for s in wide if lo <= s.start < hi], (lo, hi)
    for slot in wide:
        assert find_slot([r for r in rules if r.clinic_id == slot.clinic_id], slot.start, now=LONG_AGO) is not None


# --- duplicates and ordering ----------------------------------------------------------------------


def test_overlapping_rules_in_one_clinic_give_one_slot_per_start() -> None:
    rules = [rule(0, time(9), time(12), session=60, buffer=0), rule(0, time(10), time(11), session=60, buffer=0)]
    slots = slots_on(rules, NY, MONDAY)
    assert [local_hm(s) for s in slots] == ["09:00", "10:00", "11:00"]


def test_duplicate_start_first_rule_wins_between_equals() -> None:
    tele = rule(0, time(10), time(11), session=60, modality="telehealth")
    office = rule(0, time(10), time(11), session=60, modality="in_person")
    assert [s.modality for s in slots_on([tele, office], NY, MONDAY)] == ["telehealth"]
    assert [s.modality for s in slots_on([office, tele], NY, MONDAY)] == ["in_person"]


def test_duplicate_start_free_wins_over_taken() -> None:
    long = rule(0, time(10), time(11), session=60, buffer=0, modality="telehealth")
    short = rule(0, time(10), time(11), session=30, buffer=0, modality="in_person")
    booked = [iv(NY, MONDAY, (10, 40), (10, 50))]  # overlaps the 60-minute session only
    for include_taken in (False, True):
        slots = slots_on([long, short], NY, MONDAY, booked=booked, include_taken=include_taken)
        at_ten = [s for s in slots if local_hm(s) == "10:00"]
        assert len(at_ten) == 1
        assert (at_ten[0].status, at_ten[0].modality, at_ten[0].end - at_ten[0].start) == ("free", "in_person", 30 * M)


def test_same_start_in_two_clinics_gives_two_slots_sorted_by_clinic() -> None:
    rules = [rule(0, clinic=OTHER_CLINIC), rule(0, clinic=CLINIC)]
    slots = slots_on(rules, NY, MONDAY)
    assert [(local_hm(s), s.clinic_id) for s in slots] == [
        (hm, clinic) for hm in ("09:00", "10:00", "11:00") for clinic in (CLINIC, OTHER_CLINIC)
    ]


def test_output_sorted_whatever_the_rule_order() -> None:
    rules = [rule(weekday) for weekday in (6, 4, 2, 0)]
    slots = generate_slots(rules, **day_window(NY, MONDAY, MONDAY + timedelta(days=13)), now=LONG_AGO)
    assert len(slots) == 2 * 4 * 3
    assert [s.start for s in slots] == sorted(s.start for s in slots)
    assert len({s.start for s in slots}) == len(slots)


# --- find_slot ------------------------------------------------------------------------------------


def test_find_slot_exact_start() -> None:
    rules = [rule(0)]
    slot = find_slot(rules, local(NY, MONDAY, 10), now=LONG_AGO)
    assert slot is not None
    assert (slot.start, slot.end, slot.status) == (local(NY, MONDAY, 10), local(NY, MONDAY, 10, 50), "free")
    assert slot.start.tzinfo is UTC
    # The same instant written in another zone.
    assert find_slot(rules, local(NY, MONDAY, 10).astimezone(ZoneInfo(BERLIN)), now=LONG_AGO) == slot


@pytest.mark.parametrize(
    "start",
    [
        local(NY, MONDAY, 10, 5),  # off the grid
        local(NY, MONDAY, 9, 50),  # in the buffer
        local(NY, MONDAY, 10) + timedelta(microseconds=1),
        local(NY, MONDAY, 12),  # end of the block
        local(NY, MONDAY + timedelta(days=1), 10),  # another weekday
        local(BERLIN, MONDAY, 10),  # 10:00 in the wrong zone
    ],
)
def test_find_slot_off_the_grid_is_none(start: datetime) -> None:
    assert find_slot([rule(0)], start, now=LONG_AGO) is None


def test_find_slot_in_time_off_is_none() -> None:
    rules = [rule(0)]
    time_off = [iv(NY, MONDAY, (10, 30), (10, 31))]
    assert find_slot(rules, local(NY, MONDAY, 10), now=LONG_AGO, time_off=time_off) is None
    assert find_slot(rules, local(NY, MONDAY, 10), now=LONG_AGO, time_off=time_off, include_taken=True) is None
    assert find_slot(rules, local(NY, MONDAY, 11), now=LONG_AGO, time_off=time_off) is not None


def test_find_slot_booked_and_held() -> None:
    rules = [rule(0)]
    taken = {"booked": [iv(NY, MONDAY, (10, 0), (10, 50))], "held": [iv(NY, MONDAY, (11, 0), (11, 50))]}
    assert find_slot(rules, local(NY, MONDAY, 10), now=LONG_AGO, **taken) is None
    assert find_slot(rules, local(NY, MONDAY, 11), now=LONG_AGO, **taken) is None
    booked = find_slot(rules, local(NY, MONDAY, 10), now=LONG_AGO, include_taken=True, **taken)
    held = find_slot(rules, local(NY, MONDAY, 11), now=LONG_AGO, include_taken=True, **taken)
    assert booked is not None and booked.status == "booked"
    assert held is not None and held.status == "held"


def test_find_slot_honours_notice_horizon_and_window() -> None:
    rules = [rule(0)]
    ten = local(NY, MONDAY, 10)
    assert find_slot(rules, ten, now=ten - H, min_notice=2 * H) is None
    assert find_slot(rules, ten, now=ten - H, min_notice=H) is not None
    assert find_slot(rules, ten, now=ten - 3 * H, horizon=2 * H) is None
    assert find_slot(rules, ten, now=ten - 3 * H, horizon=3 * H) is not None
    assert find_slot(rules, ten, now=ten + M) is None  # in the past
    assert find_slot(rules, ten, now=LONG_AGO, window_start=ten + M, window_end=ten + H) is None
    assert find_slot(rules, ten, now=LONG_AGO, window_start=ten - H, window_end=ten) is None
    assert find_slot(rules, ten, now=LONG_AGO, window_start=ten, window_end=ten + M) is not None


def test_find_slot_picks_the_lowest_clinic_when_several() -> None:
    rules = [rule(0, clinic=OTHER_CLINIC), rule(0, clinic=CLINIC)]
    slot = find_slot(rules, local(NY, MONDAY, 10), now=LONG_AGO)
    assert slot is not None and slot.clinic_id == CLINIC
    only_other = find_slot([r for r in rules if r.clinic_id == OTHER_CLINIC], local(NY, MONDAY, 10), now=LONG_AGO)
    assert only_other is not None and only_other.clinic_id == OTHER_CLINIC


# --- overlaps, validation, speed ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 10), (10, 20), False),  # touching
        ((10, 20), (0, 10), False),
        ((0, 10), (9, 20), True),
        ((0, 10), (2, 3), True),  # contains
        ((2, 3), (0, 10), True),
        ((0, 10), (0, 10), True),
        ((0, 10), (11, 20), False),
        ((5, 5), (0, 10), False),  # empty
    ],
)
def test_overlaps_is_half_open(a: tuple[int, int], b: tuple[int, int], expected: bool) -> None:
    t = [datetime(2026, 1, 1, tzinfo=UTC) + i * M for i in range(21)]
    assert overlaps(t[a[0]], t[a[1]], t[b[0]], t[b[1]]) is expected


@pytest.mark.parametrize(
    "changes",
    [
        {"weekday": 7},
        {"weekday": -1},
        {"start": time(12), "end": time(12)},
        {"start": time(13), "end": time(12)},
        {"session_minutes": 0},
        {"buffer_minutes": -1},
        {"timezone": "Mars/Base"},
        {"timezone": "../etc/passwd"},
        {"valid_from": date(2026, 2, 1), "valid_until": date(2026, 1, 1)},
        {"start": time(9, tzinfo=UTC)},
    ],
)
def test_invalid_rules_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        replace(rule(0), **changes)  # type: ignore[arg-type]


def test_naive_datetimes_are_refused() -> None:
    naive = datetime.combine(MONDAY, time(10))
    aware = local(NY, MONDAY, 10)
    with pytest.raises(ValueError, match="aware"):
        generate_slots([rule(0)], window_start=naive, window_end=aware + H, now=LONG_AGO)
    with pytest.raises(ValueError, match="aware"):
        generate_slots([rule(0)], window_start=aware, window_end=aware + H, now=naive)
    with pytest.raises(ValueError, match="aware"):
        find_slot([rule(0)], naive, now=LONG_AGO)
    with pytest.raises(ValueError, match="aware"):
        Interval(naive, aware)
    with pytest.raises(ValueError):
        Interval(aware, aware - H)


def test_interval_is_stored_in_utc() -> None:
    interval = Interval(local(BERLIN, MONDAY, 10), local(BERLIN, MONDAY, 11))
    assert interval.start == datetime(2026, 1, 12, 9, tzinfo=UTC)
    assert interval.start.tzinfo is UTC and interval.end.tzinfo is UTC


def test_five_rules_over_ninety_days_with_long_busy_lists() -> None:
    # Timing lives in bench/slots.py; here only the result over long lists is checked.
    rules = [rule(weekday, time(8), time(18)) for weekday in range(5)]
    window = day_window(NY, MONDAY, MONDAY + timedelta(days=89))
    base = window["window_start"].astimezone(UTC)
    all_slots = generate_slots(rules, **window, now=LONG_AGO)
    booked = [Interval(s.start, s.end) for s in all_slots[::2]]
    held = random_intervals(random.Random(1), 2000, base, 90)
    slots = generate_slots(rules, **window, now=LONG_AGO, booked=booked, held=held, include_taken=True)
    assert len(slots) == len(all_slots) == 13 * 5 * 10  # 90 days from a Monday: 13 of each weekday, 10 sessions
    assert sum(s.status == "booked" for s in slots) == len(booked)


def test_find_slot_sees_long_intervals_that_began_earlier() -> None:
    rules = [rule(0)]
    ten = local(NY, MONDAY, 10)
    vacation = [Interval(ten - timedelta(days=10), ten + timedelta(days=10))]
    assert find_slot(rules, ten, now=LONG_AGO, time_off=vacation) is None
    long_hold = [Interval(ten - timedelta(days=3), ten + M)]
    slot = find_slot(rules, ten, now=LONG_AGO, held=long_hold, include_taken=True)
    assert slot is not None and slot.status == "held"
    # Neighbours that only touch the slot leave it free; far-away ones are irrelevant.
    around = [Interval(ten - H, ten), Interval(ten + 50 * M, ten + H)]
    around += [Interval(ten + timedelta(days=d), ten + timedelta(days=d, hours=1)) for d in range(-400, 400) if d]
    slot = find_slot(rules, ten, now=LONG_AGO, booked=around, held=around, time_off=around)
    assert slot is not None and slot.status == "free"

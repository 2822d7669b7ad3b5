"""The waitlist simulator (backend/waitlist/simulation.py): a day whose outcome is worked out by hand (on SQLite and
PostgreSQL), the same figures for the same seed, no patient offered two slots at once (in the simulator and in the
engine), and a practice's own weeks read back for replaying under its settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import col

from backend.db import UnitOfWork
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.types import virtual_clock
from backend.waitlist import offers
from backend.waitlist.models import OfferStatus, WaitlistOffer, WaitlistPolicy
from backend.waitlist.policy import effective_policy
from backend.waitlist.simulation import (
    OURS,
    Policy,
    SimAppointment,
    SimClinic,
    SimEntry,
    SimPatient,
    SimProvider,
    World,
    policy_from_settings,
    shift_world,
    simulate,
    world_from_practice,
)
from bench.simulate.month import make_month
from bench.simulate.postgres import postgres_copies
from tests.factories import (
    add_appointment,
    add_availability,
    add_patient,
    add_provider,
    add_waitlist_entry,
    call,
    local_start,
    make_practice,
    rows,
)

MONDAY = datetime(2027, 3, 1, tzinfo=UTC)
THURSDAY = MONDAY + timedelta(days=3)
YES = SimPatient(answers=1.0, reply_minutes=5, keenness=1.0, reply_spread=0.0)
NO = SimPatient(answers=1.0, reply_minutes=1, keenness=0.0, reply_spread=0.0)
SILENT = SimPatient(answers=0.0)


def _at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute)


def hand_day() -> World:
    """One provider (Thursday 09:00-17:00 UTC, hourly sessions), four cancellations, four waiting patients.

    Waiting (by rank): W0 urgent, Thursday mornings, says yes after 5 min; W2 priority, Thursday afternoons,
    never answers; W3 soon, Thursday afternoons, says no after 1 min; W1 routine, all Thursday, yes after 5 min.
    A  Thu 10:00 freed Mon 08:00: W0 at once, yes at 08:05 (5 min).
    B  Thu 13:00 freed Mon 09:00: W2 (expires 09:30), W3 (declines 09:31), W1 (yes 09:36): 36 min, 3 offers.
    C  Thu 15:00 freed Thu 12:40: W2 again, held until 13:10, past the 2-hour cutoff (13:00): lost to the hold.
    D  Thu 16:00 freed Thu 14:30: inside the cutoff, never offered.
    """
    thursday_hours = ((3, time(9, 0), time(17, 0)),)
    cancellations = [
        (10, _at(MONDAY, 8)),
        (13, _at(MONDAY, 9)),
        (15, _at(THURSDAY, 12, 40)),
        (16, _at(THURSDAY, 14, 30)),
    ]
    appointments = tuple(
        SimAppointment(provider=0, patient=i, start=_at(THURSDAY, hour), booked_at=MONDAY - timedelta(days=14),
                       cancelled_at=when)
        for i, (hour, when) in enumerate(cancellations)
    )
    entries = (
        SimEntry(patient=4, clinic=0, provider=0, joined_at=MONDAY - timedelta(days=7, hours=14), urgency=4,
                 windows=((3, "09:00", "12:00"),)),
        SimEntry(patient=5, clinic=0, provider=0, joined_at=MONDAY - timedelta(days=4, hours=11), urgency=1,
                 windows=((3, "09:00", "17:00"),)),
        SimEntry(patient=6, clinic=0, provider=0, joined_at=MONDAY - timedelta(days=9), urgency=3,
                 windows=((3, "12:00", "17:00"),)),
        SimEntry(patient=7, clinic=0, provider=0, joined_at=MONDAY - timedelta(days=8), urgency=2,
                 windows=((3, "12:00", "17:00"),)),
    )
    return World(
        start=MONDAY,
        end=MONDAY + timedelta(days=4),
        seed=7,
        clinics=(SimClinic("Test clinic", "UTC"),),
        providers=(SimProvider("Provider", clinic=0, specialty="Anxiety", hours=thursday_hours),),
        patients=(YES, YES, YES, YES, YES, YES, SILENT, NO),
        appointments=appointments,
        entries=entries,
    )


@pytest.mark.parametrize("databases", [None, postgres_copies], ids=["sqlite", "postgresql"])
def test_a_day_worked_out_by_hand(databases: Any) -> None:
    (figures,) = simulate(hand_day(), [Policy("Ours, no quiet hours", quiet_hours=None)], databases=databases)
    assert (figures.freed, figures.filled, figures.fill_rate) == (4, 2, 0.5)
    assert (figures.median_minutes_to_fill, figures.p90_minutes_to_fill) == (20.5, 36.0)
    assert (figures.offers, figures.messages, figures.acceptance) == (5, 5, 0.4)
    assert figures.lost_to_hold == 1
    # W0 (urgent) joined Feb 21 10:00, seen Thu Mar 4 10:00; W1 (routine) joined Feb 24 13:00, seen Thu 13:00.
    assert (figures.median_wait_days_urgent, figures.median_wait_days_routine) == (11.0, 8.0)
    assert figures.median_days_sooner is None  # neither had a later appointment
    assert figures.max_live_offers_per_patient == 1


def test_a_batch_list_of_one_round_stops_after_the_first_patients_on_it() -> None:
    """The hand day under a batch of 2 without preferred times, in order of joining: W2 (silent), W3 (no), W0 and
    W1 (yes after 5 min). One round: A, B and C each reach only W2 and W3, so nothing is filled (6 offers). Two
    rounds: A's second round at 08:10 reaches W0 and W1, both say yes at 08:15, one books and the other hears
    "someone was quicker"; B's second round reaches the one left (09:15); C finds nobody new: 9 offers, 10
    messages, 15 minutes each. Unlimited rounds change nothing more here."""

    def run(cycles: int | None) -> tuple[int, int, int, float | None]:
        batch = Policy("Batch of 2", kind="batch", batch_size=2, cycle_minutes=10, max_cycles=cycles, quiet_hours=None)
        (figures,) = simulate(hand_day(), [batch])
        return figures.filled, figures.offers, figures.messages, figures.median_minutes_to_fill

    assert run(1) == (0, 6, 6, None)
    assert run(2) == (2, 9, 10, 15.0)
    assert run(None) == run(2)


def test_the_same_seed_gives_the_same_figures_and_one_offer_at_a_time() -> None:
    policies = [OURS, Policy("Batch", kind="batch", batch_size=5, cycle_minutes=10), Policy("Desk", kind="desk")]

    def small(seed: int) -> World:
        return make_month(seed, providers=2, days=4, waitlist_before=20, waitlist_during=5)

    first = simulate(small(3), policies)
    again = simulate(small(3), policies)
    assert [f.row() for f in first] == [f.row() for f in again]
    assert first[0].offers > 0 and first[0].filled > 0  # the month is not empty
    # Ours never had two live offers for one patient (simulate checks the offers' times in the database too).
    assert first[0].max_live_offers_per_patient == 1


def test_a_patient_waiting_twice_is_offered_one_slot_at_a_time(db: sa.Engine) -> None:
    p = make_practice("Harbor Mental Health", "harbor")
    with UnitOfWork(p.system) as uow:
        # NULL written as NULL: None through the ORM would let the column default (21:00-08:00) in.
        uow.session.add(WaitlistPolicy(tenant_id=p.tenant_id, quiet_hours_start=sa.null(), quiet_hours_end=sa.null()))
        uow.commit()
    other = add_provider(p, "Dr Other", clinic=p.clinic)
    add_availability(p)
    add_availability(p, provider=other)
    first, second = local_start(3, 10), local_start(3, 11)  # New York, the first clinic's zone
    patient = add_patient(p, "Two Lists")
    windows = [{"weekday": first.astimezone(ZoneInfo("America/New_York")).weekday(), "start": "09:00", "end": "13:00"}]
    add_waitlist_entry(p, patient=patient, provider=p.provider, urgency=4, windows=windows)
    add_waitlist_entry(p, patient=patient, any_provider=True, urgency=4, windows=windows)
    runner_up = add_waitlist_entry(p, patient=add_patient(p, "Runner Up"), any_provider=True, windows=windows)

    taken = call(p.system, offers.offer_freed_slot, provider_id=p.provider.id, start=first)
    again = call(p.system, offers.offer_freed_slot, provider_id=other.id, start=second)

    assert taken is not None and again is not None
    assert again.entry_id == runner_up.id  # not the patient who already holds an offer
    live = rows(p, WaitlistOffer, status=OfferStatus.PENDING)
    assert len(live) == 2


def test_a_practice_s_own_weeks_replay_under_its_settings(db: sa.Engine) -> None:
    ny = ZoneInfo("America/New_York")
    t0 = datetime(2030, 1, 7, 12, tzinfo=UTC)  # a Monday, 07:00 in New York

    def ny_at(day: int, hour: int) -> datetime:
        return datetime.combine(t0.date() + timedelta(days=day), time(hour), tzinfo=ny).astimezone(UTC)

    with virtual_clock(lambda: t0):  # the practice's history, written "then"
        p = make_practice("Harbor Mental Health", "harbor")
        add_availability(p)
        kept = add_appointment(p, ny_at(3, 10))
        freed = add_appointment(p, ny_at(4, 10), patient=add_patient(p, "Cancels Later"))
        waiting = add_patient(p, "Wants Sooner")
        add_appointment(p, ny_at(13, 10), patient=waiting)  # after the weeks: the one to move up
        add_waitlist_entry(p, patient=waiting, urgency=3, windows=[{"weekday": 4, "start": "09:00", "end": "12:00"}])
    with UnitOfWork(p.system) as uow:
        uow.session.execute(
            sa.update(Appointment)
            .where(col(Appointment.id) == freed.id)
            .values(status=AppointmentStatus.CANCELLED, cancelled_at=t0 + timedelta(days=2))
        )
        uow.commit()

    with UnitOfWork(p.system) as uow:
        world = world_from_practice(uow, start=t0 + timedelta(days=1), end=t0 + timedelta(days=8), seed=5)
        settings = policy_from_settings("Ours as set", effective_policy(uow, p.clinic.id))

    assert sorted(c.timezone for c in world.clinics) == sorted([p.clinic.timezone, p.clinic2.timezone])
    assert len(world.providers) == 1 and world.clinics[world.providers[0].clinic].timezone == p.clinic.timezone
    starts = {a.start: a for a in world.appointments}
    assert starts[kept.start_at].cancelled_at is None
    assert starts[freed.start_at].cancelled_at == t0 + timedelta(days=2)
    (entry,) = world.entries
    assert entry.urgency == 3 and entry.windows == ((4, "09:00", "12:00"),)
    assert entry.original is not None and world.appointments[entry.original].start == ny_at(13, 10)
    assert "Harbor" not in repr(world) and "Sooner" not in repr(world)  # ids and numbers only

    (figures,) = simulate(world, [settings])
    assert figures.freed == 1 and figures.offers >= 1


def test_a_provider_at_two_clinics_keeps_the_weeks_of_both(db: sa.Engine) -> None:
    t0 = datetime(2030, 1, 7, 12, tzinfo=UTC)  # a Monday
    berlin = ZoneInfo("Europe/Berlin")
    with virtual_clock(lambda: t0):
        p = make_practice("Harbor Mental Health", "harbor")  # Downtown in New York, Uptown in Berlin
        add_availability(p, 1, 3, clinic=p.clinic)  # Tuesdays and Thursdays in New York
        add_availability(p, 2, clinic=p.clinic2, start=time(9, 0), end=time(17, 0))  # Wednesdays in Berlin
        in_berlin = datetime.combine(t0.date() + timedelta(days=2), time(10), tzinfo=berlin).astimezone(UTC)
        there = add_appointment(p, in_berlin, clinic=p.clinic2, patient=add_patient(p, "Berlin Patient"))
        here = add_appointment(p, t0 + timedelta(days=1, hours=3))  # Tuesday 10:00 in New York
        waiting = add_patient(p, "Waits Twice")
        add_waitlist_entry(p, patient=waiting, clinic=p.clinic)
        add_waitlist_entry(p, patient=waiting, clinic=p.clinic2)
        add_appointment(p, t0 + timedelta(days=15, hours=3), patient=waiting)  # after the weeks, once

    with UnitOfWork(p.system) as uow:
        world = world_from_practice(uow, start=t0 + timedelta(hours=1), end=t0 + timedelta(days=7), seed=2)
        only_berlin = world_from_practice(uow, start=t0 + timedelta(hours=1), end=t0 + timedelta(days=7), seed=2,
                                          clinic_id=p.clinic2.id)  # fmt: skip

    # One simulated provider per clinic they work at, each with that clinic's hours and appointments.
    assert sorted((world.clinics[s.clinic].timezone, s.hours[0][0]) for s in world.providers) == [
        ("America/New_York", 1),
        ("Europe/Berlin", 2),
    ]
    zone_of = {a.start: world.clinics[world.providers[a.provider].clinic].timezone for a in world.appointments}
    assert zone_of[there.start_at] == "Europe/Berlin" and zone_of[here.start_at] == "America/New_York"
    # The patient on two waitlists moves up one and the same later appointment.
    originals = {e.original for e in world.entries}
    assert len(world.entries) == 2 and len(originals) == 1 and None not in originals
    # A clinic alone: its clinic, its provider's hours there, its appointments and its waitlist.
    assert [c.timezone for c in only_berlin.clinics] == ["Europe/Berlin"]
    assert [a.start for a in only_berlin.appointments] == [there.start_at]
    assert len(only_berlin.entries) == 1


def test_shifted_weeks_keep_every_weekday_and_local_time_across_a_clock_change() -> None:
    ny = ZoneInfo("America/New_York")
    # Tuesday 09:00 in New York, two weeks before the clocks go forward (Sunday March 10, 2030).
    nine = datetime(2030, 2, 26, 9, tzinfo=ny).astimezone(UTC)
    world = World(
        start=nine - timedelta(days=1), end=nine + timedelta(days=1), seed=1,
        clinics=(SimClinic("Clinic", "America/New_York"),),
        providers=(SimProvider("Provider", clinic=0, specialty="Anxiety", hours=((1, time(9), time(17)),)),),
        patients=(YES, YES),
        appointments=(SimAppointment(provider=0, patient=0, start=nine, booked_at=nine - timedelta(days=9),
                                     cancelled_at=nine - timedelta(hours=20)),),
        entries=(SimEntry(patient=1, clinic=0, joined_at=nine - timedelta(days=3),
                          earliest_date=date(2030, 2, 20)),),
    )  # fmt: skip
    moved = shift_world(world, 3)
    (appointment,) = moved.appointments
    local = appointment.start.astimezone(ny)
    assert (local.date(), local.hour, local.minute) == (date(2030, 3, 19), 9, 0)  # still Tuesday 09:00
    assert appointment.start - nine == timedelta(weeks=3, hours=-1)  # an hour less of real time: EST to EDT
    assert appointment.cancelled_at is not None and appointment.cancelled_at.astimezone(ny).hour == 13
    assert moved.entries[0].earliest_date == date(2030, 3, 13)
    (figures,) = simulate(moved, [Policy("Ours", quiet_hours=None)])
    assert (figures.freed, figures.filled) == (1, 1)  # the moved session is one the booking rules know

"""A synthetic month of a practice, the same for a given seed (random.Random(seed), no wall clock).

Default: 10 providers at 2 clinics in different time zones (New York and Los Angeles), Monday to Friday
09:00-17:00 local in 50-minute sessions (8 a day), about 88% of sessions booked (~1,500 appointments), ~10% of
them cancelled with a lead time mixed from same-day, a few days and a few weeks ahead (at a waking hour, 07:00-23:00
local); a waitlist of patients who
joined in the 8 weeks before the month and during it, with preferred windows, urgencies and date ranges; about
two thirds of them hold a later appointment (5-10 weeks out) they would like to move up.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from backend.waitlist.simulation import SimAppointment, SimClinic, SimEntry, SimPatient, SimProvider, World

MONTH_START = datetime(2027, 3, 1, tzinfo=UTC)  # a Monday; the US changes to summer time inside it
HOURS = tuple((weekday, time(9, 0), time(17, 0)) for weekday in range(5))
WINDOW_CHOICES = (("08:00", "12:00"), ("12:00", "17:00"), ("09:00", "17:00"), ("15:00", "18:00"))


def session_starts(provider: SimProvider, zone: str, first: date, last: date) -> list[datetime]:
    """The provider's session starts (UTC) on the days first..last (inclusive)."""
    starts = []
    day = first
    step = timedelta(minutes=provider.session_minutes + provider.buffer_minutes)
    length = timedelta(minutes=provider.session_minutes)
    while day <= last:
        for weekday, begin, end in provider.hours:
            if weekday != day.weekday():
                continue
            moment = datetime.combine(day, begin, tzinfo=ZoneInfo(zone))
            closes = datetime.combine(day, end, tzinfo=ZoneInfo(zone))
            while moment + length <= closes:
                starts.append(moment.astimezone(UTC))
                moment += step
        day += timedelta(days=1)
    return starts


def _lead(rng: random.Random) -> timedelta:
    """How long before the start a cancellation comes: a third the same or next day, most within a week."""
    roll = rng.random()
    if roll < 0.35:
        return timedelta(hours=rng.uniform(2.5, 30))
    if roll < 0.8:
        return timedelta(days=rng.uniform(1.2, 7))
    return timedelta(days=rng.uniform(7, 21))


def _awake_hours(moment: datetime, zone: str, rng: random.Random) -> datetime:
    """Patients cancel while awake: a moment between 23:00 and 07:00 (local) moves to 07:00-23:00 that day."""
    local = moment.astimezone(ZoneInfo(zone))
    if time(7, 0) <= local.time() < time(23, 0):
        return moment
    day = local.date()
    if local.time() < time(7, 0):
        day -= timedelta(days=1)  # after midnight: the evening before
    awake = datetime.combine(day, time(7, 0), tzinfo=ZoneInfo(zone)) + timedelta(minutes=rng.randrange(16 * 60))
    return awake.astimezone(UTC)


def make_month(
    seed: int = 1,
    *,
    providers: int = 10,
    days: int = 30,
    booked_share: float = 0.88,
    cancel_share: float = 0.10,
    waitlist_before: int = 140,
    waitlist_during: int = 80,
    start: datetime = MONTH_START,
) -> World:
    """Generate the month (see the module docstring)."""
    rng = random.Random(seed)
    clinics = (SimClinic("Harbor (New York)", "America/New_York"), SimClinic("Bay (Los Angeles)", "America/Los_Angeles"))
    specialties = ("Anxiety", "Depression")
    sim_providers = tuple(
        SimProvider(name=f"Provider {i:02d}", clinic=i % 2, specialty=specialties[(i // 2) % 2], hours=HOURS)
        for i in range(providers)
    )
    end = start + timedelta(days=days)
    regular = 6 * providers * days // 2  # patients with an appointment this month
    waiting = waitlist_before + waitlist_during
    patients: list[SimPatient] = []
    for _ in range(regular + waiting):
        patients.append(SimPatient(answers=rng.uniform(0.7, 0.97), reply_minutes=rng.uniform(2, 15),
                                   keenness=rng.uniform(0.3, 0.8)))  # fmt: skip
    appointments: list[SimAppointment] = []
    busy: dict[int, set[datetime]] = {}
    for p, provider in enumerate(sim_providers):
        zone = clinics[provider.clinic].timezone
        for slot in session_starts(provider, zone, start.date(), (end - timedelta(days=1)).date()):
            if slot < start or slot >= end or rng.random() >= booked_share:
                continue
            patient = rng.randrange(regular)
            while slot in busy.setdefault(patient, set()):
                patient = rng.randrange(regular)
            busy[patient].add(slot)
            booked_at = start - timedelta(days=rng.uniform(1, 30), minutes=rng.randrange(1440))
            cancelled_at = None
            if rng.random() < cancel_share:
                cancelled_at = _awake_hours(slot - _lead(rng), zone, rng)
                cancelled_at = max(cancelled_at, start + timedelta(minutes=rng.randrange(1, 600)))
                if cancelled_at >= slot - timedelta(hours=1):
                    cancelled_at = None
            appointments.append(SimAppointment(p, patient, slot, booked_at, cancelled_at))
    entries: list[SimEntry] = []
    later = {p: session_starts(pr, clinics[pr.clinic].timezone, (start + timedelta(days=35)).date(),
                               (start + timedelta(days=70)).date()) for p, pr in enumerate(sim_providers)}  # fmt: skip
    taken_later: set[tuple[int, datetime]] = set()
    for k in range(waiting):
        patient = regular + k
        if k < waitlist_before:
            joined = start - timedelta(days=rng.uniform(0.5, 56), seconds=rng.randrange(86400))
        else:
            joined = start + timedelta(days=rng.uniform(0, days - 1), seconds=rng.randrange(86400))
        provider_index = rng.randrange(providers)
        clinic = sim_providers[provider_index].clinic
        specific = rng.random() < 0.6
        windows: tuple[tuple[int, str, str], ...] = ()
        if rng.random() < 0.7:
            chosen = rng.sample(range(5), rng.randint(1, 4))
            begin, finish = rng.choice(WINDOW_CHOICES)
            windows = tuple((d, begin, finish) for d in sorted(chosen))
        urgency = rng.choices((1, 2, 3, 4), weights=(50, 30, 15, 5))[0]
        original = None
        latest = None
        if rng.random() < 0.65:
            slot = rng.choice(later[provider_index])
            while (provider_index, slot) in taken_later:
                slot = rng.choice(later[provider_index])
            taken_later.add((provider_index, slot))
            original = len(appointments)
            appointments.append(SimAppointment(provider_index, patient, slot,
                                               min(joined, start) - timedelta(days=1)))  # fmt: skip
            latest = (slot - timedelta(days=2)).date()
        earliest = (joined + timedelta(days=rng.randint(1, 7))).date() if rng.random() < 0.15 else None
        entry = SimEntry(patient=patient, clinic=clinic, joined_at=joined,
                         provider=provider_index if specific else None, windows=windows, urgency=urgency,
                         earliest_date=earliest, latest_date=latest, original=original)  # fmt: skip
        entries.append(entry)
        if not specific and rng.random() < 0.15:
            # Some also wait for one provider in particular: two entries, never two offers at once.
            entries.append(SimEntry(patient=patient, clinic=clinic, joined_at=joined + timedelta(minutes=3),
                                    provider=provider_index, windows=windows, urgency=urgency,
                                    latest_date=latest, original=original))  # fmt: skip
    return World(start=start, end=end, seed=seed, clinics=clinics, providers=sim_providers,
                 patients=tuple(patients), appointments=tuple(appointments), entries=tuple(entries))  # fmt: skip

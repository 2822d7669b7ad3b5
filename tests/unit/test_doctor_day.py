"""The doctor's Today page (portal/state/doctor.py doctor_day): every session of the day with its status, held
offers shown as held and never counted as booked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from backend.scheduling.service import AppointmentView
from portal.state.doctor import HELD_LABEL, doctor_day

NOW = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)  # 12:00 in New York


def view(hours_from_now: float, status: str, patient: str = "Pat") -> AppointmentView:
    start = NOW + timedelta(hours=hours_from_now)
    return AppointmentView(
        id=uuid.uuid4(), start_at=start, end_at=start + timedelta(minutes=50), status=status, modality="in_person",
        provider_id=uuid.uuid4(), provider_name="Dr. Rivera", patient_id=uuid.uuid4(), patient_name=patient,
        clinic_id=uuid.uuid4(), clinic_name="Harbor Downtown", clinic_timezone="America/New_York",
    )  # fmt: skip


def test_today_shows_every_session_of_the_day_with_its_status() -> None:
    """Regression: sessions marked Completed vanished ("Sessions today 0, No sessions today")."""
    day = [
        view(-3, "completed", "Cleo Completed"),
        view(-2, "no_show", "Nia Noshow"),
        view(-1, "late_cancelled", "Lee Late"),
        view(-4, "cancelled", "Cal Cancelled"),  # a plain cancellation freed the time: not a session
        view(2, "booked", "Bo Booked"),
        view(3, "held", "Hiro Held"),
    ]
    today, later, booked_ahead = doctor_day(day, NOW)
    assert [(r["patient"], r["status"]) for r in today] == [
        ("Cleo Completed", "Completed"),
        ("Nia Noshow", "No-show"),
        ("Lee Late", "Late cancellation"),
        ("Bo Booked", "Booked"),
        ("Held slot", HELD_LABEL),
    ]
    assert [r["past"] for r in today] == ["1", "1", "1", "", ""]
    assert later == [] and booked_ahead == 1


def test_held_offers_are_shown_as_held_and_not_counted_as_booked() -> None:
    """Regression: offers patients had not accepted were listed under Coming up and counted in Next 7 days."""
    ahead = [view(48, "booked", "Ann Ahead"), view(72, "held", "Hiro Held"), view(96, "cancelled", "Cy Gone")]
    today, later, booked_ahead = doctor_day(ahead, NOW)
    assert today == []
    assert [(r["patient"], r["status"]) for r in later] == [("Ann Ahead", "Booked"), ("Held slot", HELD_LABEL)]
    assert booked_ahead == 1
    beyond = doctor_day([view(24 * 7.5, "booked")], NOW)
    assert beyond[2] == 0  # past the 7 days

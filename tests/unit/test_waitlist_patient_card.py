"""The patient's My waitlist cards (portal/state/waitlist_patient.py entry_card), from service EntryViews."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from backend.waitlist.service import EntryView
from portal.state.waitlist_patient import HARD_TO_ESTIMATE, entry_card

NOW = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)  # 12:00 in New York


def _view(status: str, estimate: int | None = None, position: int | None = 1, **more: Any) -> EntryView:
    return EntryView(
        id=uuid.uuid4(), status=status, urgency=2, created_at=NOW - timedelta(days=12), patient_id=uuid.uuid4(),
        patient_name="Pat", provider_id=uuid.uuid4(), provider_name="Dr. Rivera", clinic_id=uuid.uuid4(),
        clinic_name="Harbor Downtown", timezone="America/New_York", preferred_windows=[], position=position,
        estimated_wait_days=estimate, **more,
    )  # fmt: skip


def _offer(modality: str | None) -> dict[str, Any]:
    start = NOW + timedelta(days=2)
    offer: dict[str, Any] = {"offer_id": uuid.uuid4(), "slot_start": start, "slot_end": start + timedelta(minutes=50),
                             "expires_at": NOW + timedelta(hours=3), "status": "pending"}  # fmt: skip
    if modality is not None:
        offer["modality"] = modality
    return offer


def test_the_card_says_hard_to_estimate_instead_of_a_number_it_does_not_have() -> None:
    """Regression (issue 10, item 6): no estimate showed nothing, and a bad one "About a day"."""
    assert entry_card(_view("waiting", None), [], NOW, {}).wait == HARD_TO_ESTIMATE == "Hard to estimate yet"
    assert entry_card(_view("waiting", 10), [], NOW, {}).wait == "About 10 days"
    assert entry_card(_view("booked", None, None), [], NOW, {}).wait == ""


def test_the_offer_card_says_telehealth_or_in_person() -> None:
    """Regression (issue 10, item 6): the offer card did not say how the held slot would take place."""
    tele = entry_card(_view("offered", live_offer=_offer("telehealth")), [], NOW, {})
    assert tele.offer_id and tele.offer_time and tele.offer_modality == "Telehealth"
    in_person = entry_card(_view("offered", live_offer=_offer("in_person")), [], NOW, {})
    assert in_person.offer_modality == "In person"
    assert entry_card(_view("offered", live_offer=_offer(None)), [], NOW, {}).offer_modality == ""

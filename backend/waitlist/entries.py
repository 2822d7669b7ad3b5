"""How the rest of the waitlist looks at entries: which rows an actor may see (as a WHERE clause), and the
ranking's view of one entry. Shared by the waitlist service (lists, positions) and the offers engine."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import and_, false, or_, true
from sqlmodel import col, select

from backend.identity.models import ProviderClinic
from backend.tenancy.context import Actor, Role
from backend.waitlist.models import WaitlistEntry
from backend.waitlist.ranking import Candidate, Window

logger = logging.getLogger(__name__)


def entry_visibility(actor: Actor) -> Any:
    """The WHERE clause of the entries `actor` may see (the same rule as `service.can_see_entry`)."""
    if actor.role == Role.PATIENT:
        return col(WaitlistEntry.patient_id) == actor.patient_id
    if actor.role == Role.DOCTOR:
        # Entries for this doctor, or for "any provider" at a clinic where this doctor works.
        works_at = select(ProviderClinic.clinic_id).where(ProviderClinic.provider_id == actor.provider_id)
        return or_(
            col(WaitlistEntry.provider_id) == actor.provider_id,
            and_(col(WaitlistEntry.provider_id).is_(None), col(WaitlistEntry.clinic_id).in_(works_at)),
        )
    if actor.role in (Role.ADMIN, Role.SYSTEM):
        return true()
    return false()


def _windows(entry: WaitlistEntry) -> tuple[Window, ...]:
    found = []
    for raw in entry.preferred_windows or []:
        try:
            found.append(Window.parse(raw))
        except (ValueError, KeyError, TypeError):
            # Validated on join; a row written otherwise must not stop the whole queue from ranking.
            logger.warning("ignoring a malformed preferred window on entry %s", entry.id)
    return tuple(found)


def candidate_of(entry: WaitlistEntry, current_provider_id: uuid.UUID | None = None) -> Candidate:
    """The ranking's view of an entry (with the provider the patient already sees, for continuity)."""
    return Candidate(
        entry_id=entry.id,
        patient_id=entry.patient_id,
        urgency=entry.urgency,
        waiting_since=entry.created_at,
        timezone=entry.timezone,
        windows=_windows(entry),
        provider_id=entry.provider_id,
        clinic_id=entry.clinic_id,
        modality=entry.modality,
        earliest_date=entry.earliest_date,
        latest_date=entry.latest_date,
        current_provider_id=current_provider_id,
    )

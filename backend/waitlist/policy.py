"""Which waitlist policy applies where: a clinic's override, else the practice default, else built-ins."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import col, select

from backend.db import UnitOfWork
from backend.waitlist.models import WaitlistPolicy
from backend.waitlist.ranking import Weights

# The fields an admin may set, with the bounds the policy page and PUT /waitlist-policy enforce.
POLICY_BOUNDS: dict[str, tuple[float, float]] = {
    "max_active_per_provider": (1, 10_000),
    "max_active_per_clinic": (1, 100_000),
    "max_entries_per_patient": (1, 20),
    "entry_ttl_days": (1, 730),
    "reconfirm_interval_days": (1, 365),
    "offer_hold_minutes": (5, 24 * 60),
    "offers_per_batch": (1, 20),
    "cutoff_minutes_before_slot": (0, 7 * 24 * 60),
    "urgency_weight": (0, 100),
    "wait_weight": (0, 100),
    "fit_weight": (0, 100),
    "continuity_weight": (0, 100),
}


@dataclass(frozen=True)
class EffectivePolicy:
    """The rules in force for one clinic, and where they came from."""

    source: str  # "clinic", "practice" or "default"
    max_active_per_provider: int
    max_active_per_clinic: int
    max_entries_per_patient: int
    entry_ttl: timedelta
    reconfirm_interval: timedelta
    offer_hold: timedelta
    offers_per_batch: int
    cutoff: timedelta
    quiet_hours_start: time | None
    quiet_hours_end: time | None
    weights: Weights
    auto_offer: bool
    expire_entry_on_decline: bool

    @classmethod
    def of(cls, policy: WaitlistPolicy, source: str) -> EffectivePolicy:
        return cls(
            source=source,
            max_active_per_provider=policy.max_active_per_provider,
            max_active_per_clinic=policy.max_active_per_clinic,
            max_entries_per_patient=policy.max_entries_per_patient,
            entry_ttl=timedelta(days=policy.entry_ttl_days),
            reconfirm_interval=timedelta(days=policy.reconfirm_interval_days),
            offer_hold=timedelta(minutes=policy.offer_hold_minutes),
            offers_per_batch=policy.offers_per_batch,
            cutoff=timedelta(minutes=policy.cutoff_minutes_before_slot),
            quiet_hours_start=policy.quiet_hours_start,
            quiet_hours_end=policy.quiet_hours_end,
            weights=Weights(
                urgency=policy.urgency_weight,
                wait=policy.wait_weight,
                fit=policy.fit_weight,
                continuity=policy.continuity_weight,
            ),
            auto_offer=policy.auto_offer,
            expire_entry_on_decline=policy.expire_entry_on_decline,
        )

    def in_quiet_hours(self, moment: datetime, zone: str) -> bool:
        """Whether `moment` falls in the quiet hours, read in the clinic's zone (windows may cross midnight)."""
        if self.quiet_hours_start is None or self.quiet_hours_end is None:
            return False
        local = moment.astimezone(ZoneInfo(zone)).time()
        start, end = self.quiet_hours_start, self.quiet_hours_end
        return start <= local < end if start < end else local >= start or local < end

    def quiet_hours_end_after(self, moment: datetime, zone: str) -> datetime:
        """The end of the quiet hours that contain `moment` (or `moment` itself when not in quiet hours)."""
        if not self.in_quiet_hours(moment, zone) or self.quiet_hours_end is None:
            return moment
        local = moment.astimezone(ZoneInfo(zone))
        end = datetime.combine(local.date(), self.quiet_hours_end, tzinfo=ZoneInfo(zone))
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(moment.tzinfo)


def effective_policy(uow: UnitOfWork, clinic_id: uuid.UUID | None) -> EffectivePolicy:
    """The clinic's override, else the practice default, else the built-in defaults."""
    rows = list(
        uow.session.exec(
            select(WaitlistPolicy).where(
                (col(WaitlistPolicy.clinic_id) == clinic_id) | col(WaitlistPolicy.clinic_id).is_(None)
            )
        )
    )
    rows.sort(key=lambda p: p.clinic_id is None)
    if rows:
        return EffectivePolicy.of(rows[0], "clinic" if rows[0].clinic_id is not None else "practice")
    return EffectivePolicy.of(WaitlistPolicy(tenant_id=uuid.UUID(int=0)), "default")

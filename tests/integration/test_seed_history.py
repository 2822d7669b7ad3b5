"""The demo's history for the Insights page (backend/seed.py, `_history`): the weeks before this one hold what the
services would have left behind - completed visits and no-shows, cancellations (some late) whose slots went through
the waitlist (offers declined, expired, accepted; the released holds) or were booked directly, and two dead letters
at Harbor - so the admin's default Insights range shows every figure. The same on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlmodel import select

from backend import seed
from backend.db import UnitOfWork, make_engine
from backend.identity.models import Membership
from backend.insights.service import Insights, practice_insights
from backend.notifications.models import Notification, NotificationDelivery, NotificationStatus
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.settings import PROJECT_ROOT
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Tenant
from backend.types import utcnow
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _insights(engine: sa.Engine | None) -> dict[str, Insights]:
    """Each demo practice's Insights as its admin sees them by default (this week and the 11 before)."""
    with UnitOfWork(system=True, engine=engine) as uow:
        admins = uow.session.exec(
            select(Tenant.slug, Membership.tenant_id, Membership.user_id)
            .join(Membership, Membership.tenant_id == Tenant.id)
            .where(Membership.role == Role.ADMIN)
        ).all()
    found = {}
    for slug, tenant_id, user_id in admins:
        admin = Actor(tenant_id=tenant_id, role=Role.ADMIN, user_id=user_id)
        with UnitOfWork(admin, engine=engine) as uow:
            found[slug] = practice_insights(admin, uow)
    return found


def _rows(engine: sa.Engine | None, model: Any) -> list[Any]:
    with UnitOfWork(system=True, engine=engine) as uow:
        return list(uow.session.exec(select(model)).all())


def _assert_history(engine: sa.Engine | None) -> dict[str, Any]:
    insights = _insights(engine)
    assert set(insights) == {"harbor", "summit"}
    for slug, found in insights.items():
        t = found.totals
        assert t.cancellations >= 20 and 0 < t.late_cancellations < t.cancellations, slug
        assert 0 < t.filled_from_waitlist < t.filled < t.cancellations, slug  # some filled directly, some never
        assert t.offers_accepted == t.filled_from_waitlist, slug
        assert t.offers_declined > 0 and t.offers_expired > 0, slug
        assert t.no_shows > 0 and t.attendance_recorded > 10 * seed.HISTORY_WEEKS, slug
        assert t.median_minutes_to_fill is not None and t.median_minutes_to_fill > 0, slug
        # Every past week has data, every clinic and provider of the practice too.
        assert sum(1 for w in found.weeks if w.cancellations and w.attendance_recorded) >= seed.HISTORY_WEEKS - 1
        assert all(p.cancellations and p.attendance_recorded for p in found.providers), slug
        assert all(c.attendance_recorded for c in found.clinics), slug
    assert insights["harbor"].dead_letters_total == 2
    assert {d.channel for d in insights["harbor"].dead_letters} == {"email", "sms"}
    assert insights["summit"].dead_letters_total == 0

    # As the services leave them: an accepted offer's hold became the visit; the others' holds were released.
    appointments = {a.id: a for a in _rows(engine, Appointment)}
    offers = _rows(engine, WaitlistOffer)
    for offer in offers:
        hold = appointments[offer.appointment_id]
        assert (hold.provider_id, hold.start_at) == (offer.provider_id, offer.slot_start)
        assert offer.created_at < offer.responded_at <= offer.expires_at
        assert offer.reasons and offer.score > 0
        if offer.status == OfferStatus.ACCEPTED:
            assert hold.status in (AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW)
            assert hold.booked_by_user_id is not None and hold.created_at == offer.created_at
        else:
            assert offer.status in (OfferStatus.DECLINED, OfferStatus.EXPIRED)
            assert hold.status == AppointmentStatus.CANCELLED and hold.cancelled_at == offer.responded_at
            assert hold.cancel_reason == f"offer {offer.status}"
    # An entry offered again after a decline or an expiry, booked by the offer it accepted (its last), or left.
    entries = {e.id: e for e in _rows(engine, WaitlistEntry)}
    for entry_id in {o.entry_id for o in offers}:
        mine = sorted((o for o in offers if o.entry_id == entry_id), key=lambda o: o.created_at)
        accepted = [o for o in mine if o.status == OfferStatus.ACCEPTED]
        if accepted:
            assert accepted == mine[-1:] and entries[entry_id].status == EntryStatus.BOOKED
        else:
            assert entries[entry_id].status == EntryStatus.CANCELLED
        assert entries[entry_id].created_at < mine[0].created_at
    assert any(len([o for o in offers if o.entry_id == e]) > 1 for e in entries)
    # The past stays past: nothing booked or held before now (the upcoming appointments are the demo's own).
    now = utcnow()
    assert not [a for a in appointments.values() if a.start_at < now - timedelta(days=1) and a.status == "booked"]
    # Dead letters: the outbox row and its ledger row agree.
    notes = _rows(engine, Notification)
    ledger = {d.notification_id: d for d in _rows(engine, NotificationDelivery)}
    dead = [n for n in notes if n.status == NotificationStatus.DEAD]
    assert len(dead) == 2
    assert all((ledger[n.id].status, ledger[n.id].attempts, ledger[n.id].last_error) ==
               (n.status, n.attempts, n.last_error) for n in dead)  # fmt: skip
    return {slug: found.totals.model_dump() for slug, found in insights.items()}


def test_the_demo_history_gives_insights_every_figure(db: sa.Engine, sqlite_engine: sa.Engine) -> None:
    assert seed.seed_demo() == ["harbor", "summit"]
    on_postgres = _assert_history(None)
    # Deterministic: the same figures from another run, on the embedded database.
    assert seed.seed_demo(engine=sqlite_engine) == ["harbor", "summit"]
    assert _assert_history(sqlite_engine) == on_postgres

"""Issue 14 item 8 in a real browser: the admin opens Insights from the navigation, narrows it to a past week that
holds data of this test's own, and sees the numbers of that data in the figures, the week's table and the charts;
the dead letter of this test is listed with a link to the outbox. axe at 1280 and 390 px; screenshots of both."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import delete
from sqlmodel import select

from backend.db import UnitOfWork, make_engine
from backend.identity.models import Patient, Provider, ProviderClinic
from backend.notifications.models import Channel, Notification, NotificationStatus
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.types import utcnow
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
from tests.conftest import TEST_DB_NAME, _db_url
from tests.e2e.axe import BLOCKING, axe_source, scan
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

SHOTS = Path("/tmp/shots/insights")  # noqa: S108 - where the screenshots are looked at
WIDTHS = {"desktop": (1280, 860), "phone": (390, 844)}
CHARTS = "[role=img][aria-label^='Chart:']"
ERROR_TEXT = "Insights probe: mailbox full"
# A week long past, which the demo data does not reach (it lives around today).
TODAY = datetime.now(UTC).date()
MONDAY = datetime.combine(TODAY - timedelta(days=TODAY.weekday(), weeks=40), time(0), tzinfo=UTC)


def _at(days: float, hours: float = 0) -> datetime:
    return MONDAY + timedelta(days=days, hours=hours)


@dataclass
class Made:
    """The rows this test wrote, removed after it (other e2e tests count the outbox and the waitlists)."""

    appointments: list[Any] = field(default_factory=list)
    offers: list[Any] = field(default_factory=list)
    entries: list[Any] = field(default_factory=list)
    notifications: list[Any] = field(default_factory=list)


def _write(engine: sa.Engine) -> Made:
    """Dr. Rivera's week: two cancellations (one late), one filled from the waitlist two hours later after an
    expired offer; a no-show and a completed visit; and a dead letter."""
    made = Made()
    with UnitOfWork(system=True, engine=engine) as uow:
        s = uow.session
        rivera = s.exec(select(Provider).where(Provider.full_name == "Dr. Elena Rivera")).one()
        ben = s.exec(select(Patient).where(Patient.email == "ben@harbor.example")).one()
        clinic_id = s.exec(select(ProviderClinic.clinic_id).where(ProviderClinic.provider_id == rivera.id)).first()
        tenant = rivera.tenant_id

        def appointment(start: datetime, status: AppointmentStatus, **fields: Any) -> Appointment:
            end = start + timedelta(minutes=50)
            row = Appointment(tenant_id=tenant, provider_id=rivera.id, patient_id=ben.id, clinic_id=clinic_id,
                              start_at=start, end_at=end, status=status, **fields)  # fmt: skip
            s.add(row)
            s.flush()
            made.appointments.append(row.id)
            return row

        slot = _at(3, 14)
        cancelled = appointment(slot, AppointmentStatus.CANCELLED, cancelled_at=_at(0, 9), created_at=_at(-20))
        lapsed = appointment(slot, AppointmentStatus.CANCELLED, cancelled_at=_at(0, 9.5), created_at=_at(0, 9.1))
        filled = appointment(slot, AppointmentStatus.BOOKED, created_at=_at(0, 10))
        appointment(_at(4, 15), AppointmentStatus.LATE_CANCELLED, cancelled_at=_at(2, 8), created_at=_at(-20))
        appointment(_at(1, 16), AppointmentStatus.NO_SHOW, created_at=_at(-20))
        appointment(_at(2, 16), AppointmentStatus.COMPLETED, created_at=_at(-20))
        entry = WaitlistEntry(tenant_id=tenant, patient_id=ben.id, clinic_id=clinic_id, provider_id=rivera.id,
                              timezone="America/New_York", status=EntryStatus.BOOKED, created_at=_at(-30))  # fmt: skip
        s.add(entry)
        s.flush()
        made.entries.append(entry.id)
        for hold, status, created, answered in (
            (lapsed, OfferStatus.EXPIRED, _at(0, 9.1), _at(0, 9.5)),
            (filled, OfferStatus.ACCEPTED, _at(0, 10), _at(0, 11)),
        ):
            offer = WaitlistOffer(tenant_id=tenant, entry_id=entry.id, appointment_id=hold.id, provider_id=rivera.id,
                                  clinic_id=cancelled.clinic_id, slot_start=slot, slot_end=slot + timedelta(minutes=50),
                                  status=status, expires_at=created + timedelta(minutes=30), responded_at=answered,
                                  created_at=created)  # fmt: skip
            s.add(offer)
            s.flush()
            made.offers.append(offer.id)
        note = Notification(tenant_id=tenant, patient_id=ben.id, event_type="waitlist_offer", channel=Channel.EMAIL,
                            status=NotificationStatus.DEAD, attempts=6, last_error=ERROR_TEXT,
                            created_at=utcnow())  # fmt: skip
        s.add(note)
        s.flush()
        made.notifications.append(note.id)
        uow.commit()
    return made


def _remove(engine: sa.Engine, made: Made) -> None:
    with UnitOfWork(system=True, engine=engine) as uow:
        for model, ids in (
            (Notification, made.notifications),
            (WaitlistOffer, made.offers),
            (WaitlistEntry, made.entries),
            (Appointment, made.appointments),
        ):
            uow.session.execute(delete(model).where(model.id.in_(ids)))  # type: ignore[attr-defined]
        uow.commit()


@pytest.fixture
def made(app_url: str) -> Iterator[Made]:
    engine = make_engine(_db_url(f"{TEST_DB_NAME}_e2e"))
    rows = _write(engine)
    try:
        yield rows
    finally:
        _remove(engine, rows)
        engine.dispose()


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _figure(page: Page, label: str) -> Any:
    return page.locator(".insights-figure").filter(has_text=label)


def test_admin_sees_the_numbers_of_the_data(browser: Browser, app_url: str, made: Made) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        sign_in(page, app_url, "admin@harbor.example")
        expect(page).to_have_url(re.compile(r"/admin/?$"))
        page.get_by_role("link", name="Insights").click()
        expect(page).to_have_url(re.compile(r"/admin/insights$"))
        expect(page.get_by_role("heading", name="Insights", exact=True)).to_be_visible()
        expect(page.locator(".insights-range")).to_be_visible()
        expect(page.locator(CHARTS).first.locator("svg")).to_be_visible()
        _shot(page, "insights-default-12-weeks-desktop")

        # The week of this test's data, for Dr. Rivera.
        sunday = (MONDAY + timedelta(days=6)).date()
        page.fill("#in-start", MONDAY.date().isoformat())
        page.fill("#in-end", sunday.isoformat())
        expect(page.locator(".insights-range")).to_have_text(f"{MONDAY:%b %d, %Y} – {sunday:%b %d, %Y}")
        page.locator("#in-provider").click()
        page.get_by_role("option", name="Dr. Elena Rivera").click()
        expect(page.locator("#in-provider")).to_contain_text("Dr. Elena Rivera")

        expect(_figure(page, "Fill rate of cancelled slots")).to_contain_text("50%")
        expect(_figure(page, "Fill rate of cancelled slots")).to_contain_text("1 of 2 filled, 1 from the waitlist")
        expect(_figure(page, "Median time to fill")).to_contain_text("2.0 h")
        expect(_figure(page, "Offer acceptance")).to_contain_text("50%")
        expect(_figure(page, "Offer acceptance")).to_contain_text("1 accepted, 0 declined, 1 expired")
        expect(_figure(page, "Offers per fill")).to_contain_text("2")
        expect(_figure(page, "No-shows")).to_contain_text("50% of 2 recorded visits")
        expect(_figure(page, "Late cancellations")).to_contain_text("of 2 cancellations")

        # The same numbers in the week's table (the charts' text alternative), and the charts drawn.
        weeks = page.get_by_role("table", name="By week")
        expect(weeks.get_by_role("row")).to_have_count(2)  # header + the one week
        week = weeks.get_by_role("row").nth(1)
        expect(week).to_contain_text(f"Week of {MONDAY:%b %d}")
        for text in ("1 (1 from waitlist)", "50%", "2.0 h", "1 of 2"):
            expect(week).to_contain_text(text)
        providers = page.get_by_role("table", name="By provider")
        expect(providers.get_by_role("row").filter(has_text="Dr. Elena Rivera")).to_contain_text("2.0 h")
        charts = page.locator(CHARTS)
        expect(charts).to_have_count(4)
        # The charts drawn from the same week (SVG from the server's geometry): a bar per series of the refills
        # (2 cancelled, 1 filled, 1 from the waitlist) and of the attendance, a point per line, the week labelled.
        refills, rates, speed, attendance = (charts.nth(i) for i in range(4))
        expect(refills.locator("rect")).to_have_count(3)
        expect(refills.locator("rect title")).to_have_text(
            [f"{MONDAY:%b %d} · Cancelled: 2", f"{MONDAY:%b %d} · Filled: 1", f"{MONDAY:%b %d} · From waitlist: 1"]
        )
        expect(refills.locator(".chart-x")).to_have_text([f"{MONDAY:%b %d}"])
        expect(attendance.locator("rect")).to_have_count(2)
        expect(rates.locator("path title")).to_have_text([f"{MONDAY:%b %d} · Fill rate: 50%",
                                                          f"{MONDAY:%b %d} · Acceptance: 50%"])  # fmt: skip
        expect(rates).to_contain_text("100%")  # the percent axis runs to 100
        expect(speed.locator("path title")).to_have_count(2)
        for legend in ("Cancelled", "Filled", "From waitlist"):
            expect(refills).to_contain_text(legend)

        # The dead letter of this test, practice-wide, with the way to the outbox.
        dead = page.locator(f'tr[data-dead-letter="{made.notifications[0]}"]')
        expect(dead).to_contain_text(ERROR_TEXT)
        expect(dead).to_contain_text("6")
        expect(page.get_by_role("link", name="Open the outbox")).to_have_attribute("href", "/admin/outbox")

        axe = axe_source()
        for width, (w, h) in WIDTHS.items():
            page.set_viewport_size({"width": w, "height": h})
            expect(page.get_by_role("heading", name="Insights", exact=True)).to_be_visible()
            blocking = [v for v in scan(page, axe, f"/admin/insights ({width})") if v.impact in BLOCKING]
            assert not blocking, "\n".join(str(v) for v in blocking)
            # Nothing wider than the screen: the tables stack, the charts shrink.
            assert page.evaluate("() => document.documentElement.scrollWidth") <= w
            _shot(page, f"insights-{width}")
    finally:
        context.close()

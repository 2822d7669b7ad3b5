"""Encrypted free text in a real browser: the seeded notes to the care team are Fernet tokens in the database, and
the pages show the words (the patient's My waitlist, the doctor's console). Reads only; uses Harbor's Chloe and
Dr. Rivera, whose seeded entry no other e2e test changes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import TEST_DB_NAME, _db_url
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

NOTE = "Would like an earlier medication review"  # backend/seed.py, Chloe's entry with Dr. Rivera
SEEDED_NOTES = (NOTE, "Any therapist, afternoons only", "Prefers Fridays", "Needs to be seen soon",
                "Asked for an earlier start", "Evenings impossible, lunchtime works", "Referred as urgent")  # fmt: skip
SHOTS = Path(os.environ.get("ENCRYPT_SHOTS_DIR", Path(__file__).resolve().parents[2] / "test-artifacts"))


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"encrypt-{name}.png"), full_page=True)


def test_notes_are_tokens_in_the_database_and_words_on_the_pages(app_url: str, page: Page) -> None:
    dsn = _db_url(f"{TEST_DB_NAME}_e2e").replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        stored = [row[0] for row in conn.execute("SELECT reason FROM waitlist_entries WHERE reason <> ''")]
    assert len(stored) >= len(SEEDED_NOTES)
    assert all(value.startswith("gAAAAA") for value in stored)
    assert not any(note in value for value in stored for note in SEEDED_NOTES)

    sign_in(page, app_url, "chloe@harbor.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.goto(f"{app_url}/patient/waitlist")
    # Chloe reads her pages in Spanish (her preference in the demo data).
    expect(page.get_by_role("heading", name="Mi lista de espera")).to_be_visible()
    expect(page.get_by_text(NOTE)).to_be_visible()
    expect(page.get_by_text("Su nota para el equipo de atención:")).to_be_visible()
    _shot(page, "patient-waitlist")

    page.context.clear_cookies()
    sign_in(page, app_url, "dr.rivera@harbor.example")
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    page.get_by_role("link", name="Waitlist").first.click()
    expect(page).to_have_url(re.compile(r"/doctor/waitlist/?$"))
    chloe = page.get_by_role("list", name="Waitlist").get_by_role("listitem", name="Chloe Martinez")
    expect(chloe.get_by_text(NOTE)).to_be_visible()
    _shot(page, "doctor-console")

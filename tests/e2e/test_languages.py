"""Languages in a real browser: a patient chooses Español in their preferences and at once reads their pages in
Spanish, with Spanish dates (Babel); they book, and the message about it is in Spanish too (their history and the
admin's copy). The pages are scanned with axe in Spanish (html[lang] follows), at desktop and phone width.

The patient is new (invited here), so no other test's demo login changes language. Set E2E_SHOTS_DIR to keep
screenshots of the Spanish pages at desktop and 390 px.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.axe import BLOCKING, axe_source, scan
from tests.e2e.test_booking_pages import api_token, first_free
from tests.e2e.test_notifications import _sql
from tests.e2e.test_onboarding import GOOD_PASSWORD, _api, invited_patient, shot
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

# A date as Babel writes it in Spanish (CLDR): 'mar, 12 ene 2027'.
ES_DAY = r"(lun|mar|mié|jue|vie|sáb|dom), \d{1,2} (ene|feb|mar|abr|may|jun|jul|ago|sept|oct|nov|dic) \d{4}"
ES_WHEN = ES_DAY + r", \d{1,2}:\d\d–\d{1,2}:\d\d [A-Z]{3,4}"


def reads_in(base: str, email: str, language: str) -> None:
    """Set a demo patient's language through the REST API (their other preferences kept): for a test that reads
    the pages in one language whatever the demo data chose (Chloe and Carla prefer Spanish)."""
    headers = {"Authorization": f"Bearer {api_token(base, email)}"}
    kept = httpx.get(f"{base}/api/v1/me/notification-preferences", headers=headers, timeout=20).json()
    body = {
        k: kept[k] for k in ("email_opt_in", "sms_opt_in", "whatsapp_opt_in", "quiet_hours_start", "quiet_hours_end")
    }
    response = httpx.put(
        f"{base}/api/v1/me/notification-preferences", json={**body, "language": language}, headers=headers, timeout=20
    )
    response.raise_for_status()
    assert response.json()["language"] == language


def _no_serious_violations(page: Page, where: str) -> None:
    """axe at desktop and phone width: nothing critical or serious (html[lang] is checked too)."""
    source = axe_source()
    size = page.viewport_size or {"width": 1280, "height": 860}
    found = []
    for width, height in ((1280, 860), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        found += [v for v in scan(page, source, f"{where} at {width}px") if v.impact in BLOCKING]
    page.set_viewport_size(size)
    assert not found, "\n".join(str(v) for v in found)


def test_a_patient_switches_to_spanish_and_reads_pages_and_messages_in_spanish(browser: Browser, app_url: str) -> None:
    admin_token = api_token(app_url, "admin@harbor.example")
    name, email = invited_patient(app_url, admin_token)
    first_name = name.split()[0]
    # The CSP refuses the inline script axe is run from: this context bypasses it (tests/e2e/axe.py).
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    sign_in(page, app_url, email, GOOD_PASSWORD)
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    expect(page.get_by_role("heading", name=f"Hello, {name}")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "en"

    # Preferences: Language / Idioma -> Español. The page turns Spanish at once, without a reload.
    page.get_by_role("link", name="Messages").first.click()
    expect(page.get_by_role("heading", name="Messages", exact=True)).to_be_visible()
    page.evaluate("window.__marker = 'same page'")
    page.get_by_label("Language / Idioma").click()
    page.get_by_role("option", name="Español").click()
    expect(
        page.get_by_role("status").filter(has_text="Guardado: sus páginas y mensajes ahora están en Español.")
    ).to_be_visible()
    expect(page.get_by_role("heading", name="Mensajes", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Cómo nos comunicamos con usted")).to_be_visible()
    expect(page.get_by_role("link", name="Buscar atención").first).to_be_visible()
    expect(page.get_by_role("button", name="Cerrar sesión").first).to_be_attached()
    assert page.evaluate("window.__marker") == "same page"
    expect(page.locator("html")).to_have_attribute("lang", "es")
    ((locale,),) = _sql("SELECT locale FROM patients WHERE email = %s", email)
    assert locale == "es"
    # Kept: a reload (a new page load, a new guard) is still in Spanish.
    page.reload()
    expect(page.get_by_role("heading", name="Mensajes", exact=True)).to_be_visible()
    expect(page.get_by_label("Language / Idioma")).to_contain_text("Español")
    shot(page, "languages-es-messages")
    _no_serious_violations(page, "/patient/notifications (es)")

    # Home.
    page.get_by_role("link", name="Inicio").first.click()
    expect(page.get_by_role("heading", name=f"Hola, {name}")).to_be_visible()
    expect(page.get_by_role("heading", name="Próximas citas")).to_be_visible()
    expect(page.get_by_text("No tiene citas próximas.")).to_be_visible()
    expect(page).to_have_title(re.compile(r"^Mi atención · Waitwell"))
    shot(page, "languages-es-home")
    _no_serious_violations(page, "/patient (es)")

    # Find care: labels, buttons and the next free time with a Spanish date.
    page.get_by_role("link", name="Buscar atención").first.click()
    expect(page.get_by_role("heading", name="Buscar atención")).to_be_visible()
    page.get_by_label("Nombre").fill("Brooks")
    page.get_by_role("button", name="Buscar", exact=True).click()
    card = page.get_by_role("article", name=re.compile("Jordan Brooks"))
    expect(card).to_contain_text(re.compile(r"Próxima hora libre: " + ES_DAY[: ES_DAY.index(r" \d{4}")]))
    expect(page.get_by_text(re.compile(r"^1 profesional$"))).to_be_visible()
    shot(page, "languages-es-find")
    _no_serious_violations(page, "/patient/find (es)")

    # The provider's week: Spanish days and week, and a booking confirmed in Spanish.
    card.get_by_role("link", name="Ver horas").click()
    expect(page.locator("#week-label")).to_have_text(
        re.compile(r"\d{1,2}.*(ene|feb|mar|abr|may|jun|jul|ago|sept|oct|nov|dic).* \d{4}")
    )
    week = page.locator("#week-label")
    for _ in range(7):  # past the seeded appointments and other tests' bookings
        shown = week.inner_text()
        page.get_by_role("button", name="Semana siguiente").click()
        expect(week).not_to_have_text(shown)
    expect(page.get_by_role("group", name=re.compile(r"^lun \d{1,2} "))).to_be_visible()
    shot(page, "languages-es-provider")
    slot = first_free(page)
    expect(slot).to_have_attribute("aria-label", re.compile(ES_DAY + r", .*, libre$"))
    slot.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Confirme su cita")).to_be_visible()
    expect(dialog).to_contain_text(re.compile(ES_WHEN))
    shot(page, "languages-es-confirm")
    dialog.get_by_role("button", name="Confirmar la reserva").click()
    expect(dialog.get_by_text("Cita confirmada")).to_be_visible()
    dialog.get_by_role("button", name="Mis citas").click()

    # My appointments: the new one with its Spanish date and the rule in Spanish.
    expect(page.get_by_role("heading", name="Mis citas")).to_be_visible()
    upcoming = page.get_by_role("region", name="Próximas")
    booked = upcoming.get_by_role("article", name=re.compile("^" + ES_DAY + ", "))
    expect(booked).to_have_count(1)
    expect(booked).to_contain_text("Se puede cancelar o cambiar en línea sin cargo hasta el")
    expect(booked.get_by_role("button", name="Cambiar fecha")).to_be_visible()
    shot(page, "languages-es-appointments")
    _no_serious_violations(page, "/patient/appointments (es)")

    # My waitlist.
    page.get_by_role("link", name="Mi lista de espera").first.click()
    expect(page.get_by_role("heading", name="Mi lista de espera")).to_be_visible()
    expect(page.get_by_text("Ahora mismo no está en ninguna lista de espera.")).to_be_visible()
    shot(page, "languages-es-waitlist")
    _no_serious_violations(page, "/patient/waitlist (es)")

    # The message about the booking: in Spanish in the patient's history (rendered in their language)...
    page.get_by_role("link", name="Mensajes").first.click()
    row = page.locator("tr", has_text="Cita reservada").first
    expect(row).to_be_visible()
    expect(row).to_contain_text("Enviado")
    row.get_by_role("button", name="Leer").click()
    message = page.get_by_role("dialog")
    expect(message).to_contain_text("Su cita está reservada")
    expect(message).to_contain_text(re.compile(r"está reservada para el (lun|mar|mié|jue|vie|sáb|dom), \d{1,2} "))
    shot(page, "languages-es-message")
    ctx.close()

    # ...and in the admin's copy of it (the outbox renders it in the patient's language too).
    notes = _api(app_url, admin_token, "GET", "/notifications", params={"event_type": "appointment_booked"}).json()
    note = next(n for n in notes if n["patient_name"] == name)
    text = _api(app_url, admin_token, "GET", f"/notifications/{note['id']}").json()
    assert text["subject"].startswith("Su cita está reservada"), text
    assert re.search(r"Hola, " + re.escape(first_name) + r"|Su cita", text["text"]), text

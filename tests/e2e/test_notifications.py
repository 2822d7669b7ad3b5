"""Notifications in a real browser: the patient's preferences and history, the admin outbox with its filters,
a dead letter sent again, staff reading (not editing) a patient's choices, and the e-mail unsubscribe link.

The app runs in the embedded default (console channel): every message lands in the outbox and is "sent" there.
These tests use Grace Liu (Summit), whom no other e2e test uses.
"""

from __future__ import annotations

import re
import uuid

import httpx
import psycopg
import pytest
from playwright.sync_api import Page, expect
from twilio.request_validator import RequestValidator

from backend.notifications.channels import TWILIO_STATUS_PATH
from backend.notifications.preferences import unsubscribe_token
from backend.settings import get_settings
from tests.conftest import ADMIN_URL, TEST_DB_NAME
from tests.e2e.conftest import E2E_TWILIO_TOKEN
from tests.e2e.test_booking_pages import book_via_api
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

GRACE = "grace@summit.example"


def _sql(query: str, *args: object) -> list[tuple[object, ...]]:
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{TEST_DB_NAME}_e2e"
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, args)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def _grace() -> tuple[uuid.UUID, uuid.UUID]:
    ((tenant_id, patient_id),) = _sql("SELECT tenant_id, id FROM patients WHERE email = %s", GRACE)
    return uuid.UUID(str(tenant_id)), uuid.UUID(str(patient_id))


def test_patient_sets_preferences_and_reads_a_message_in_the_history(page: Page, app_url: str) -> None:
    sign_in(page, app_url, GRACE)
    page.get_by_role("link", name="Messages").first.click()
    expect(page.get_by_role("heading", name="Messages", exact=True)).to_be_visible()
    expect(page.get_by_text("demo mode")).to_be_visible()
    # The seed opted Grace into e-mail and SMS.
    expect(page.get_by_label("E-mail")).to_be_checked()
    expect(page.get_by_label("Text message (SMS)")).to_be_checked()
    expect(page.get_by_label("WhatsApp")).not_to_be_checked()

    # Quiet hours that start and end at the same time: refused beside the field, nothing saved.
    page.get_by_label("Quiet hours").click()
    page.get_by_label("From").fill("22:00")
    page.get_by_label("Until").fill("22:00")
    page.get_by_role("button", name="Save preferences").click()
    expect(page.locator("#err-quiet_hours_end")).to_have_text("Quiet hours must not start and end at the same time")
    assert _sql(
        "SELECT quiet_hours_start FROM notification_preferences np JOIN patients p ON p.id = np.patient_id "
        "WHERE p.email = %s",
        GRACE,
    ) == [(None,)]

    page.get_by_label("Until").fill("07:30")
    page.get_by_label("WhatsApp").click()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible()
    page.reload()
    expect(page.get_by_label("WhatsApp")).to_be_checked()
    expect(page.get_by_label("From")).to_have_value("22:00")
    expect(page.get_by_label("Until")).to_have_value("07:30")

    # A booking made elsewhere (a phone booking) shows up in the open page's history without a reload.
    page.evaluate("window.__marker = 'still here'")
    booked = book_via_api(app_url, GRACE, "Sofia Alvarez", weeks_ahead=9)
    row = page.locator("tr", has_text="Appointment booked").first
    expect(row).to_be_visible(timeout=15_000)
    expect(row).to_contain_text("In-app outbox")
    expect(row).to_contain_text("Sent")
    assert page.evaluate("window.__marker") == "still here"
    row.get_by_role("button", name="Read").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Sofia Alvarez")
    expect(dialog).to_contain_text("/patient/appointments")
    expect(dialog).to_contain_text("To: grace@summit.example")
    assert booked["id"]


def test_admin_outbox_filters_retries_a_dead_letter_and_shows_read_only_preferences(page: Page, app_url: str) -> None:
    book_via_api(app_url, GRACE, "Sofia Alvarez", weeks_ahead=10)
    # Make the newest of Grace's messages a dead letter, as five failed attempts would.
    ((note_id,),) = _sql(
        "SELECT n.id FROM notifications n JOIN patients p ON p.id = n.patient_id WHERE p.email = %s "
        "ORDER BY n.created_at DESC LIMIT 1",
        GRACE,
    )
    dead = "SET status = 'dead', attempts = 5, last_error = 'ChannelError (sendgrid-500): down'"
    _sql(f"UPDATE notifications {dead} WHERE id = %s", note_id)
    _sql(f"UPDATE notification_deliveries {dead} WHERE notification_id = %s", note_id)

    sign_in(page, app_url, "admin@summit.example")
    page.get_by_role("link", name="Outbox").first.click()
    expect(page.get_by_role("heading", name="Outbox")).to_be_visible()
    page.get_by_role("button", name="Show dead letters").click()
    expect(page.locator("#ob-status")).to_contain_text("Dead letter")
    row = page.locator(f'tr[data-notification-id="{note_id}"]')
    expect(row).to_contain_text("Grace Liu")
    expect(row).to_contain_text("Gave up after 5 attempts")
    expect(row).to_contain_text("sendgrid-500")
    expect(page.locator("tbody tr")).to_have_count(1)

    row.get_by_role("button", name="Retry").click()
    expect(page.get_by_text("Queued to send again.")).to_be_visible()
    # Sent again (console channel, eager in the embedded mode): it leaves the dead-letter view.
    expect(row).to_have_count(0)
    assert _sql("SELECT status, attempts FROM notification_deliveries WHERE notification_id = %s", note_id) == [
        ("sent", 1)
    ]
    ((audits,),) = _sql(
        "SELECT count(*) FROM audit_events WHERE action = 'notification.retried' AND entity_id = %s", note_id
    )
    assert audits == 1

    # Staff see the patient's choices, read-only.
    page.get_by_role("button", name="Clear filters").click()
    page.locator(f'tr[data-notification-id="{note_id}"]').get_by_role("link", name="Grace Liu").click()
    card = page.get_by_label("Patient notification preferences")
    expect(card).to_contain_text("Messages to Grace Liu")
    expect(card).to_contain_text(re.compile(r"Channels: E-mail"))
    expect(card).to_contain_text("only the patient can change them")
    expect(card.get_by_role("switch")).to_have_count(0)
    expect(page.locator("tbody tr").first).to_contain_text("Grace Liu")


def test_unsubscribe_link_turns_email_off_without_signing_in(page: Page, app_url: str) -> None:
    tenant_id, patient_id = _grace()
    page.goto(f"{app_url}/unsubscribe/not-a-real-token")
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()

    page.goto(f"{app_url}/unsubscribe/{unsubscribe_token(tenant_id, patient_id)}")
    expect(page.get_by_role("heading", name="Stop messages from Summit Counseling")).to_be_visible()
    page.get_by_role("button", name="Stop e-mails").click()
    expect(page.get_by_role("status")).to_have_text("Summit Counseling will not send you any more e-mails.")
    assert _sql("SELECT email_opt_in, sms_opt_in FROM notification_preferences WHERE patient_id = %s", patient_id) == [
        (False, True)
    ]
    ((audits,),) = _sql(
        "SELECT count(*) FROM audit_events WHERE action = 'notification.opted_out' AND entity_id = %s", patient_id
    )
    assert audits >= 1


def test_admin_sets_reminder_times_and_the_quiet_hours_rule(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "admin@summit.example")
    page.goto(f"{app_url}/admin/outbox")
    field = page.get_by_label("Remind patients before each appointment")
    expect(field).to_have_value("48h, 2h")

    field.fill("24h, 5m")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#err-reminders")).to_contain_text("between 15 minutes and 14 days")
    assert _sql("SELECT count(*) FROM notification_settings ns JOIN tenants t ON t.id = ns.tenant_id "
                "WHERE t.name = 'Summit Counseling'") == [(0,)]  # fmt: skip

    field.fill("24h, 90m")
    page.get_by_label("In a patient's quiet hours, e-mail still goes at once").click()
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    assert _sql(
        "SELECT reminder_offsets_minutes, quiet_hours_email_now FROM notification_settings ns "
        "JOIN tenants t ON t.id = ns.tenant_id WHERE t.name = 'Summit Counseling'"
    ) == [([1440, 90], False)]
    page.reload()
    expect(page.get_by_label("Remind patients before each appointment")).to_have_value("24h, 90m")
    expect(page.get_by_label("In a patient's quiet hours, e-mail still goes at once")).not_to_be_checked()


def _twilio_status(app_url: str, notification_id: object, status: str, sid: str, code: str = "") -> int:
    """Post a status callback signed as Twilio signs it (the public URL it called plus the form fields)."""
    path = f"{TWILIO_STATUS_PATH}?notification_id={notification_id}"
    params = {"MessageSid": sid, "MessageStatus": status, **({"ErrorCode": code} if code else {})}
    url = get_settings().public_url.rstrip("/") + path
    signature = RequestValidator(E2E_TWILIO_TOKEN).compute_signature(url, params)
    return httpx.post(app_url + path, data=params, headers={"X-Twilio-Signature": signature}).status_code


def test_the_outbox_shows_what_the_provider_reported_live(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "admin@summit.example")
    page.get_by_role("link", name="Outbox").first.click()
    expect(page.get_by_role("heading", name="Outbox")).to_be_visible()
    book_via_api(app_url, GRACE, "Sofia Alvarez", weeks_ahead=11)
    ((first, second),) = _sql(
        "SELECT (array_agg(n.id ORDER BY n.created_at DESC))[1], (array_agg(n.id ORDER BY n.created_at DESC))[2] "
        "FROM notifications n JOIN patients p ON p.id = n.patient_id WHERE p.email = %s",
        GRACE,
    )
    delivered, undelivered = (
        page.locator(f'tr[data-notification-id="{first}"]'),
        page.locator(f'tr[data-notification-id="{second}"]'),
    )
    expect(delivered).to_contain_text("Sent")

    # Twilio reports delivery of one and failure of the other: the open page shows both without a reload.
    assert _twilio_status(app_url, first, "delivered", "SM" + "1" * 32) == 204
    assert _twilio_status(app_url, second, "undelivered", "SM" + "2" * 32, code="30003") == 204
    expect(delivered.get_by_test_id("provider-report")).to_contain_text("Delivered", timeout=15_000)
    expect(undelivered).to_contain_text("Dead letter", timeout=15_000)
    expect(undelivered).to_contain_text("Not delivered")
    expect(undelivered).to_contain_text("code 30003")
    expect(undelivered.get_by_role("button", name="Retry")).to_be_visible()
    # A callback that is not Twilio's changes nothing.
    assert httpx.post(app_url + f"{TWILIO_STATUS_PATH}?notification_id={first}",
                      data={"MessageSid": "SMx", "MessageStatus": "failed"}).status_code == 403  # fmt: skip
    assert _sql("SELECT status, provider_status FROM notification_deliveries WHERE notification_id = %s", first) == [
        ("sent", "delivered")
    ]

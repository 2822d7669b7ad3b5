"""Invariant 5 with a real worker: a waitlist offer reaches the patient once per opted-in channel, even when the
worker is SIGKILLed mid-send, the provider answers too late, or the broker is down at commit.

A real `celery worker` (prefork, as deployed; with embedded beat where the outbox sweep matters) on its own Redis
database; the real SendGrid and Twilio SDKs, pointed at the local recording server (tests/recording_server.py),
so "exactly once" is a count of the requests the provider received. Conditions are polled with deadlines.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import update
from sqlmodel import col

from backend.db import UnitOfWork
from backend.identity.models import Patient
from backend.notifications.channels import (
    DEFAULT_TIMEOUT_SECONDS,
    SendGridEmailChannel,
    TwilioSmsChannel,
    channel_for,
)
from backend.notifications.formatting import format_local
from backend.notifications.models import Notification, NotificationDelivery, NotificationPreference
from backend.notifications.models import NotificationStatus as S
from backend.settings import Settings, get_settings
from backend.waitlist import offers
from backend.waitlist.models import WaitlistEntry, WaitlistOffer
from tests.conftest import free_port
from tests.factories import Practice, add_availability, add_waitlist_entry, make_practice, rows
from tests.integration.test_offers import call, no_quiet_hours, slot_at, window_for
from tests.recording_server import RecordedRequest, RecordingServer, running_server
from tests.worker_process import WorkerProcess, app_publishing_to, own_queue, wait_for

# A Redis database no other test uses (test_worker_cascade uses 7); flushed before and after this module.
BROKER_URL = os.environ.get("TEST_NOTIFY_BROKER_URL", "redis://127.0.0.1:6379/8")

SG_KEY = "SG.worker-test-key"
FROM_EMAIL = "clinic@waitwell.test"
ACCOUNT = "AC" + "0" * 31 + "5"
TOKEN = "worker-test-token"
SMS_FROM = "+15550000101"
WA_FROM = "+15550000102"
PUBLIC_URL = "https://portal.waitwell.test"
LEASE_SECONDS = 5  # the smallest lease settings allow
SWEEP_SECONDS = 1

MAIL_SEND = "/v3/mail/send"
TWILIO_MESSAGES = rf"/2010-04-01/Accounts/{ACCOUNT}/Messages\.json"
SWEEP_DONE = r"Task notifications\.sweep_outbox_tick\[[^\]]+\] succeeded"
# What the patient told the practice when joining the waitlist: PHI that must never leave in a notification.
REASON = "Panic attacks since the accident"


# -- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    yield from running_server()


@pytest.fixture(autouse=True)
def _clean_server(server: RecordingServer) -> None:
    server.clear()


@pytest.fixture
def queue() -> Iterator[str]:
    # A queue of this test's own: a message a killed worker left unacked must not reach the next test's worker,
    # and runs sharing the broker never meet. Only its own keys are deleted afterwards, nothing else.
    with own_queue(BROKER_URL, "notify") as name:
        yield name


@pytest.fixture
def providers_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process writes the outbox (notify chooses the channels by the mode): as in production, providers."""
    monkeypatch.setattr(get_settings(), "notifications_channel_mode", "providers")


class Workers:
    """Starts worker subprocesses against the recording server; the fixture kills every one of them."""

    def __init__(self, tmp_path: Path, server: RecordingServer, queue: str) -> None:
        self.tmp_path = tmp_path
        self.server = server
        self.queue = queue
        self.started: list[WorkerProcess] = []

    def start(
        self,
        *,
        beat: bool,
        lease: int = 120,
        sendgrid_url: str | None = None,
        twilio_url: str | None = None,
    ) -> WorkerProcess:
        n = len(self.started) + 1
        env = {
            "CELERY_BROKER_URL": BROKER_URL,
            "CELERY_QUEUE": self.queue,
            "PUBLIC_URL": PUBLIC_URL,
            "NOTIFICATIONS_CHANNEL_MODE": "providers",
            "SENDGRID_API_KEY": SG_KEY,
            "SENDGRID_FROM_EMAIL": FROM_EMAIL,
            "SENDGRID_BASE_URL": sendgrid_url or self.server.url,
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_SMS_FROM": SMS_FROM,
            "TWILIO_WHATSAPP_FROM": WA_FROM,
            "TWILIO_BASE_URL": twilio_url or self.server.url,
            "NOTIFICATIONS_PER_SECOND": "50",
            "NOTIFICATIONS_LEASE_SECONDS": str(lease),
            "NOTIFICATIONS_SWEEP_SECONDS": str(SWEEP_SECONDS),
        }
        worker = WorkerProcess(
            self.tmp_path / f"worker-{n}.log",
            env,
            beat_schedule=self.tmp_path / f"beat-{n}" if beat else None,
            name_prefix=f"notify{n}",
        )
        self.started.append(worker)
        worker.start().wait_ready()
        return worker


@pytest.fixture
def workers(tmp_path: Path, server: RecordingServer, queue: str) -> Iterator[Workers]:
    started = Workers(tmp_path, server, queue)
    try:
        yield started
    finally:
        for worker in started.started:
            worker.kill()  # SIGKILL is enough: the broker database is flushed, the rows are the test's own


@pytest.fixture
def publishing(queue: str) -> Iterator[None]:
    """This process enqueues (after commit) to the real broker, on the workers' queue."""
    with app_publishing_to(BROKER_URL, queue):
        yield


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    add_availability(p)
    return p


class BlackHole:
    """A TCP port that accepts connections and never reads or answers: a request sent here has not reached the
    provider, and the sender waits (until its timeout)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    @property
    def connections(self) -> int:
        return len(self._held)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        except OSError:
            pass
        self._sock.close()
        for conn in self._held:
            conn.close()
        self._thread.join(timeout=5)


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


# -- scene ----------------------------------------------------------------------------------------------------


@dataclass
class Invited:
    patient: Patient
    entry: WaitlistEntry
    offer: WaitlistOffer


def waiting_patient(p: Practice, name: str, *, email: str, phone: str, sms: bool, whatsapp: bool,
                    start: datetime) -> tuple[Patient, WaitlistEntry]:  # fmt: skip
    """A patient with contact details, channel preferences, and a waiting entry (with a reason) matching `start`."""
    with UnitOfWork(p.system) as uow:
        patient = Patient(tenant_id=p.tenant_id, full_name=name, email=email, phone=phone, home_clinic_id=p.clinic.id)
        uow.session.add(patient)
        uow.flush()
        uow.session.add(NotificationPreference(tenant_id=p.tenant_id, patient_id=patient.id, email_opt_in=True,
                                               sms_opt_in=sms, whatsapp_opt_in=whatsapp))  # fmt: skip
        uow.commit()
    entry = add_waitlist_entry(p, patient=patient, windows=window_for(start))
    with UnitOfWork(p.system) as uow:
        uow.session.execute(update(WaitlistEntry).where(col(WaitlistEntry.id) == entry.id).values(reason=REASON))
        uow.commit()
    return patient, entry


def invite(p: Practice, patient: Patient, entry: WaitlistEntry, start: datetime) -> Invited:
    """Staff offer the slot at `start` to the entry: the offer, its hold and its outbox rows commit together."""
    offer = call(p.admin, offers.invite_entry, entry.id, start=start)
    return Invited(patient, entry, offer)


def notifications_of(p: Practice, patient: Patient) -> dict[str, Notification]:
    found = rows(p, Notification, patient_id=patient.id)
    by_channel = {str(n.channel): n for n in found}
    assert len(by_channel) == len(found), found
    return by_channel


def ledger(p: Practice) -> dict[uuid.UUID, NotificationDelivery]:
    return {row.notification_id: row for row in rows(p, NotificationDelivery)}


def all_in(p: Practice, ids: list[uuid.UUID], status: S) -> Callable[[], dict[uuid.UUID, NotificationDelivery] | None]:
    """A probe: the ledger once every one of `ids` has `status`, else None."""

    def probe() -> dict[uuid.UUID, NotificationDelivery] | None:
        current = ledger(p)
        return current if all(i in current and current[i].status == status for i in ids) else None

    return probe


def quiesce(worker: WorkerProcess, sweeps: int = 2) -> None:
    """Let `sweeps` more outbox sweeps complete, so a duplicate send (a retry, a reconcile) would have happened."""
    before = worker.count_in_log(SWEEP_DONE)
    wait_for(f"{sweeps} more outbox sweeps", lambda: worker.count_in_log(SWEEP_DONE) >= before + sweeps,
             seconds=10 + sweeps * SWEEP_SECONDS, log=worker.log)  # fmt: skip


def mails_for(server: RecordingServer, notification_id: uuid.UUID) -> list[RecordedRequest]:
    return [r for r in server.requests_to("POST", MAIL_SEND)
            if (r.json or {}).get("custom_args", {}).get("notification_id") == str(notification_id)]  # fmt: skip


def twilio_creates(server: RecordingServer, to: str) -> list[RecordedRequest]:
    return [r for r in server.requests_to("POST", TWILIO_MESSAGES) if r.form_value("To") == to]


def sendgrid_id(server: RecordingServer, notification_id: uuid.UUID) -> str:
    """The X-Message-Id SendGrid answered for the mail carrying this notification id."""
    (found,) = [m["msg_id"] for m in server.sendgrid_messages
                if m["request"].get("custom_args", {}).get("notification_id") == str(notification_id)]  # fmt: skip
    return str(found)


def hold_deadline(p: Practice, offer: WaitlistOffer) -> str:
    return format_local(offer.expires_at, p.clinic.timezone, "en")


def assert_no_phi_in(worker: WorkerProcess, *patients: Patient) -> None:
    log = worker.log_text()
    secrets = [REASON, *(value for p in patients for value in (p.phone, p.email, p.full_name))]
    for secret in secrets:
        assert secret not in log, f"{secret!r} in the worker log"


def mail_text(req: RecordedRequest) -> str:
    (text,) = [c["value"] for c in req.json["content"] if c["type"] == "text/plain"]
    return str(text)


# -- a. one message per opted-in channel ----------------------------------------------------------------------


def test_an_offer_reaches_the_patient_once_on_each_opted_in_channel(
    harbor: Practice, server: RecordingServer, workers: Workers, publishing: None, providers_mode: None
) -> None:
    worker = workers.start(beat=True, lease=LEASE_SECONDS)
    first, second = slot_at(2, 10), slot_at(2, 11)
    ana, ana_entry = waiting_patient(harbor, "Ana Alvarez", email="ana@mail.test", phone="+15557650001", sms=True,
                                     whatsapp=True, start=first)  # fmt: skip
    ben, ben_entry = waiting_patient(harbor, "Ben Brown", email="ben@mail.test", phone="+15557650002", sms=False,
                                     whatsapp=False, start=second)  # fmt: skip

    offered = [invite(harbor, ana, ana_entry, first), invite(harbor, ben, ben_entry, second)]

    ana_notes, ben_notes = notifications_of(harbor, ana), notifications_of(harbor, ben)
    assert sorted(ana_notes) == ["email", "sms", "whatsapp"]
    assert sorted(ben_notes) == ["email"]  # opted out of SMS and WhatsApp: no rows, so nothing can ever be sent
    ids = [n.id for n in (*ana_notes.values(), *ben_notes.values())]
    wait_for("every ledger row 'sent'", all_in(harbor, ids, S.SENT), seconds=20, log=worker.log)
    quiesce(worker)

    # E-mail: one POST per patient, to them, carrying the notification id; a link and the deadline, no PHI.
    assert len(server.requests_to("POST", MAIL_SEND)) == 2
    provider_name = harbor.provider.full_name
    for invited, notes in zip(offered, (ana_notes, ben_notes), strict=True):
        (mail,) = mails_for(server, notes["email"].id)
        body = mail.json
        assert body["personalizations"][0]["to"] == [{"email": invited.patient.email}]
        assert body["from"]["email"] == FROM_EMAIL
        assert body["subject"] == "An appointment is available – Harbor Mental Health"
        assert body["custom_args"] == {"notification_id": str(notes["email"].id)}
        text = mail_text(mail)
        assert f"{PUBLIC_URL}/patient/waitlist" in text
        assert hold_deadline(harbor, invited.offer) in text
        raw = mail.body.decode()
        assert REASON not in raw
        assert not any(reason in raw for reason in invited.offer.reasons), invited.offer.reasons

    # SMS: one, to Ana's phone from the SMS sender; short; no provider name, no reason.
    sms_requests = server.requests_to("POST", TWILIO_MESSAGES)
    (sms,) = [r for r in sms_requests if not (r.form_value("To") or "").startswith("whatsapp:")]
    assert sms.form_value("To") == ana.phone and sms.form_value("From") == SMS_FROM
    sms_body = sms.form_value("Body") or ""
    assert len(sms_body) <= 320
    assert f"{PUBLIC_URL}/patient/waitlist" in sms_body and hold_deadline(harbor, offered[0].offer) in sms_body
    assert provider_name not in sms_body and REASON not in sms_body
    # Twilio is told where to report on it: our status callback, naming the notification (ids only).
    status_callback = f"{PUBLIC_URL}/api/v1/webhooks/twilio/status?notification_id="
    assert sms.form_value("StatusCallback") == status_callback + str(ana_notes["sms"].id)

    # WhatsApp: one, both addresses with the whatsapp: prefix.
    (whatsapp,) = [r for r in sms_requests if (r.form_value("To") or "").startswith("whatsapp:")]
    assert whatsapp.form_value("To") == f"whatsapp:{ana.phone}"
    assert whatsapp.form_value("From") == f"whatsapp:{WA_FROM}"
    assert REASON not in (whatsapp.form_value("Body") or "")
    assert whatsapp.form_value("StatusCallback") == status_callback + str(ana_notes["whatsapp"].id)
    assert len(sms_requests) == 2  # nothing for Ben's phone
    assert twilio_creates(server, ben.phone) == [] and twilio_creates(server, f"whatsapp:{ben.phone}") == []

    # The ledger (and the outbox rows the admin reads) say sent, with the provider's ids, after one attempt.
    sids = {str(m["to"]): sid for sid, m in server.twilio_messages.items()}
    expected_ids = {
        ana_notes["email"].id: sendgrid_id(server, ana_notes["email"].id),
        ben_notes["email"].id: sendgrid_id(server, ben_notes["email"].id),
        ana_notes["sms"].id: sids[ana.phone],
        ana_notes["whatsapp"].id: sids[f"whatsapp:{ana.phone}"],
    }
    current = ledger(harbor)
    for notification_id, provider_id in expected_ids.items():
        row = current[notification_id]
        assert (row.status, row.attempts, row.provider_message_id) == (S.SENT, 1, provider_id)
        (note,) = rows(harbor, Notification, id=notification_id)
        assert (note.status, note.provider_message_id) == (S.SENT, provider_id)
    assert_no_phi_in(worker, ana, ben)


# -- b. a worker SIGKILLed mid-delivery -----------------------------------------------------------------------


def test_worker_killed_after_the_provider_took_the_message_does_not_send_it_again(
    harbor: Practice, server: RecordingServer, workers: Workers, publishing: None, providers_mode: None
) -> None:
    first = workers.start(beat=False)
    start = slot_at(2, 10)
    ana, entry = waiting_patient(harbor, "Ana Alvarez", email="ana@mail.test", phone="+15557650001", sms=True,
                                 whatsapp=False, start=start)  # fmt: skip
    # The provider takes both requests at once but answers only after the worker is dead.
    server.stall_next(2.0, n=2)
    invite(harbor, ana, entry, start)
    notes = notifications_of(harbor, ana)
    assert sorted(notes) == ["email", "sms"]
    email_id, sms_id = notes["email"].id, notes["sms"].id

    wait_for("both requests at the provider and both rows 'sending'",
             lambda: len(mails_for(server, email_id)) == 1 and len(twilio_creates(server, ana.phone)) == 1
             and all_in(harbor, [email_id, sms_id], S.SENDING)(), seconds=15, log=first.log)  # fmt: skip
    first.kill()
    # The provider went on to accept both (it answered a dead socket): it has the messages, we have no ids.
    wait_for(
        "the provider to have accepted both",
        lambda: len(server.sendgrid_messages) == 1 and len(server.twilio_messages) == 1,
        seconds=10,
    )
    current = ledger(harbor)
    assert [current[i].status for i in (email_id, sms_id)] == [S.SENDING, S.SENDING]
    assert [current[i].provider_message_id for i in (email_id, sms_id)] == [None, None]

    second = workers.start(beat=True, lease=LEASE_SECONDS)
    wait_for("both rows reconciled to 'sent'", all_in(harbor, [email_id, sms_id], S.SENT), seconds=30,
             log=second.log)  # fmt: skip
    quiesce(second)

    # Found by lookup, not sent again: one request each, ever. SendGrid by our custom arg, Twilio by the body.
    assert len(mails_for(server, email_id)) == 1 and len(server.requests_to("POST", MAIL_SEND)) == 1
    assert len(twilio_creates(server, ana.phone)) == 1 and len(server.requests_to("POST", TWILIO_MESSAGES)) == 1
    (activity, *_) = server.requests_to("GET", "/v3/messages")
    assert str(email_id) in activity.query["query"][0]
    (listing, *_) = server.requests_to("GET", TWILIO_MESSAGES)
    assert listing.query["To"] == [ana.phone] and listing.query["From"] == [SMS_FROM]
    current = ledger(harbor)
    assert [(current[i].status, current[i].attempts) for i in (email_id, sms_id)] == [(S.SENT, 1), (S.SENT, 1)]
    notes = notifications_of(harbor, ana)
    assert notes["email"].status == S.SENT and notes["sms"].status == S.SENT
    assert_no_phi_in(second, ana)  # the lookups query Twilio by the patient's number: not logged


def test_worker_killed_before_the_request_reached_the_provider_sends_it_once(
    harbor: Practice,
    server: RecordingServer,
    workers: Workers,
    publishing: None,
    providers_mode: None,
    black_hole: BlackHole,
) -> None:
    # The first worker's requests go into a black hole: claimed ('sending'), connected, never received.
    first = workers.start(beat=False, sendgrid_url=black_hole.url, twilio_url=black_hole.url)
    start = slot_at(2, 10)
    ana, entry = waiting_patient(harbor, "Ana Alvarez", email="ana@mail.test", phone="+15557650001", sms=True,
                                 whatsapp=False, start=start)  # fmt: skip
    invite(harbor, ana, entry, start)
    notes = notifications_of(harbor, ana)
    email_id, sms_id = notes["email"].id, notes["sms"].id
    wait_for("both sends under way and both rows 'sending'",
             lambda: black_hole.connections >= 2 and all_in(harbor, [email_id, sms_id], S.SENDING)(),
             seconds=15, log=first.log)  # fmt: skip
    first.kill()
    assert server.requests == []

    second = workers.start(beat=True, lease=LEASE_SECONDS)
    wait_for("both rows sent after reconciling", all_in(harbor, [email_id, sms_id], S.SENT), seconds=30,
             log=second.log)  # fmt: skip
    quiesce(second)

    # Looked up first (nothing there), then sent: exactly once each.
    assert len(mails_for(server, email_id)) == 1 and len(server.requests_to("POST", MAIL_SEND)) == 1
    assert len(twilio_creates(server, ana.phone)) == 1 and len(server.requests_to("POST", TWILIO_MESSAGES)) == 1
    assert server.requests_to("GET", "/v3/messages") and server.requests_to("GET", TWILIO_MESSAGES)
    lookups_before_send = [r.method for r in server.requests]
    assert lookups_before_send.index("GET") < lookups_before_send.index("POST")
    current = ledger(harbor)
    assert [(current[i].status, current[i].attempts) for i in (email_id, sms_id)] == [(S.SENT, 2), (S.SENT, 2)]
    assert current[email_id].provider_message_id == server.sendgrid_messages[0]["msg_id"]
    assert current[sms_id].provider_message_id == next(iter(server.twilio_messages))


def test_no_answer_from_the_provider_is_looked_up_not_sent_again(
    harbor: Practice, server: RecordingServer, workers: Workers, publishing: None, providers_mode: None
) -> None:
    # The worker lives, but the provider answers only after the client gave up (its timeout is a third of the
    # lease, 1.7 s here): the request went out, so the outcome is unknown, not a failure to retry blindly.
    worker = workers.start(beat=True, lease=LEASE_SECONDS)
    start = slot_at(2, 10)
    ana, entry = waiting_patient(harbor, "Ana Alvarez", email="ana@mail.test", phone="+15557650001", sms=True,
                                 whatsapp=False, start=start)  # fmt: skip
    server.stall_next(4.0, n=2)
    invite(harbor, ana, entry, start)
    notes = notifications_of(harbor, ana)
    email_id, sms_id = notes["email"].id, notes["sms"].id

    unknown = wait_for("both rows 'unknown' after the timeouts", all_in(harbor, [email_id, sms_id], S.UNKNOWN),
                       seconds=15, log=worker.log)  # fmt: skip
    assert "SendGrid did not answer" in unknown[email_id].last_error
    assert "Twilio did not answer" in unknown[sms_id].last_error
    wait_for("both rows reconciled to 'sent'", all_in(harbor, [email_id, sms_id], S.SENT), seconds=30,
             log=worker.log)  # fmt: skip
    quiesce(worker)

    assert len(mails_for(server, email_id)) == 1 and len(server.requests_to("POST", MAIL_SEND)) == 1
    assert len(twilio_creates(server, ana.phone)) == 1 and len(server.requests_to("POST", TWILIO_MESSAGES)) == 1
    assert server.requests_to("GET", "/v3/messages") and server.requests_to("GET", TWILIO_MESSAGES)
    current = ledger(harbor)
    assert [(current[i].status, current[i].attempts) for i in (email_id, sms_id)] == [(S.SENT, 1), (S.SENT, 1)]


def test_a_send_gives_up_well_within_its_lease() -> None:
    """Connect and read each get the channel's timeout: both together end before the lease, so a slow but live
    sender's row is never reconciled (and sent again) as if its worker had died."""

    def timeouts(**extra: Any) -> list[float]:
        settings = Settings(notifications_channel_mode="providers", sendgrid_api_key=SG_KEY,
                            sendgrid_from_email=FROM_EMAIL, twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN,
                            twilio_sms_from=SMS_FROM, twilio_whatsapp_from=WA_FROM, **extra)  # fmt: skip
        found = [channel_for(name, settings) for name in ("email", "sms", "whatsapp")]
        return [c.timeout for c in found if isinstance(c, SendGridEmailChannel | TwilioSmsChannel)]

    for lease in (5, 20, 120):
        assert [2 * t < lease for t in timeouts(notifications_lease_seconds=lease)] == [True] * 3, lease
    assert timeouts() == [DEFAULT_TIMEOUT_SECONDS] * 3  # the default lease (120 s) leaves the usual 10 s


# -- c. broker unreachable at commit --------------------------------------------------------------------------


def test_broker_down_at_commit_loses_nothing(
    harbor: Practice,
    server: RecordingServer,
    workers: Workers,
    queue: str,
    providers_mode: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = slot_at(2, 10), slot_at(2, 11)
    ana, ana_entry = waiting_patient(harbor, "Ana Alvarez", email="ana@mail.test", phone="+15557650001", sms=True,
                                     whatsapp=True, start=first)  # fmt: skip
    ben, ben_entry = waiting_patient(harbor, "Ben Brown", email="ben@mail.test", phone="+15557650002", sms=False,
                                     whatsapp=False, start=second)  # fmt: skip
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with (
        app_publishing_to(closed, queue, broker_connection_timeout=0.5, broker_connection_max_retries=0,
                          task_publish_retry=False),
        caplog.at_level(logging.ERROR, logger="backend.notifications.outbox"),
    ):  # fmt: skip
        invite(harbor, ana, ana_entry, first)
        invite(harbor, ben, ben_entry, second)

    # The commits stand; every enqueue failed and said so; the rows wait for the sweep.
    notes = [*notifications_of(harbor, ana).values(), *notifications_of(harbor, ben).values()]
    ids = [n.id for n in notes]
    assert len(ids) == 4
    assert len(rows(harbor, WaitlistOffer)) == 2
    failed = {m for r in caplog.records if (m := r.getMessage()).startswith("could not enqueue notification")}
    assert failed == {f"could not enqueue notification {i}; the outbox sweep will deliver it" for i in ids}
    current = ledger(harbor)
    assert all((current[i].status, current[i].attempts) == (S.PENDING, 0) for i in ids)

    with app_publishing_to(BROKER_URL, queue):
        worker = workers.start(beat=True, lease=LEASE_SECONDS)
        wait_for("the sweep to deliver every row", all_in(harbor, ids, S.SENT), seconds=20, log=worker.log)
        quiesce(worker)

    # Exactly once each: two e-mails, one SMS, one WhatsApp message.
    for note in notes:
        if note.channel == "email":
            assert len(mails_for(server, note.id)) == 1
    assert len(server.requests_to("POST", MAIL_SEND)) == 2
    assert len(twilio_creates(server, ana.phone)) == 1
    assert len(twilio_creates(server, f"whatsapp:{ana.phone}")) == 1
    assert len(server.requests_to("POST", TWILIO_MESSAGES)) == 2
    current = ledger(harbor)
    assert all((current[i].status, current[i].attempts) == (S.SENT, 1) for i in ids)
    assert json.dumps([r.form for r in server.requests_to("POST", TWILIO_MESSAGES)]).count(REASON) == 0


# -- d. workers killed again and again, and the queue lost ----------------------------------------------------

FAULT_PATIENTS = 20  # e-mail, SMS and WhatsApp each: 60 messages
FAULT_KILLS = 3
PROVIDER_LATENCY = 0.2  # every provider request takes this long, so kills land mid-send and batches are slow


def booked_patients(p: Practice, n: int) -> list[tuple[Patient, uuid.UUID]]:
    """`n` patients opted in to every channel, each with an appointment (distinct times, so distinct texts)."""
    from backend.notifications import outbox
    from tests.factories import add_appointment, local_start

    booked = []
    for i in range(n):
        with UnitOfWork(p.system) as uow:
            patient = Patient(tenant_id=p.tenant_id, full_name=f"Fault Patient {i}", email=f"fault{i}@mail.test",
                              phone=f"+1555765{i:04d}", home_clinic_id=p.clinic.id)  # fmt: skip
            uow.session.add(patient)
            uow.flush()
            uow.session.add(NotificationPreference(tenant_id=p.tenant_id, patient_id=patient.id, email_opt_in=True,
                                                   sms_opt_in=True, whatsapp_opt_in=True))  # fmt: skip
            uow.commit()
        appointment = add_appointment(p, local_start(2 + i // 8, 9 + i % 8), patient=patient)
        with UnitOfWork(p.system) as uow:
            notes = outbox.notify(p.system, uow, patient_id=patient.id, event_type="appointment_booked",
                                  payload={"appointment_id": str(appointment.id)})  # fmt: skip
            uow.commit()  # the enqueues go to the workers' queue after this commit
        booked.extend((patient, note.id) for note in notes)
    return booked


def sends_of(server: RecordingServer, patient: Patient, channel: str, notification_id: uuid.UUID) -> int:
    """The requests that asked the provider to send this message (a request it received counts, answered or not)."""
    if channel == "email":
        return len(mails_for(server, notification_id))
    return len(twilio_creates(server, patient.phone if channel == "sms" else f"whatsapp:{patient.phone}"))


def purge(queue: str) -> int:
    """Lose the queue: every delivery task still waiting in it is gone (the sweep must find the rows)."""
    from backend.worker import celery_app

    with celery_app.connection_for_write() as conn:
        return int(conn.default_channel.queue_purge(queue) or 0)


def test_killed_workers_and_a_lost_queue_send_every_message_exactly_once(
    harbor: Practice,
    server: RecordingServer,
    workers: Workers,
    queue: str,
    publishing: None,
    providers_mode: None,
) -> None:
    """Issue 10, item 7: SIGKILL the worker mid-send again and again and lose its queue each time, so the sweeps
    (each one's batch slower than the lease) deliver the rest. Every message reaches the provider exactly once:
    its lookups (Twilio by recipient, sender and body; SendGrid's Email Activity API) answer for what a killed
    worker sent."""
    server.stall_next(PROVIDER_LATENCY, n=1_000_000)
    worker = workers.start(beat=True, lease=LEASE_SECONDS)
    booked = booked_patients(harbor, FAULT_PATIENTS)
    ids = [nid for _, nid in booked]
    assert len(ids) == 3 * FAULT_PATIENTS

    def sends() -> int:
        return len(server.requests_to("POST", MAIL_SEND)) + len(server.requests_to("POST", TWILIO_MESSAGES))

    step = len(ids) // (FAULT_KILLS + 2)
    purged = 0
    for kill in range(FAULT_KILLS):
        goal = (kill + 1) * step
        wait_for(f"{goal} sends, with a row 'sending' (kill {kill + 1})",
                 lambda goal=goal: sends() >= goal and any(r.status == S.SENDING for r in ledger(harbor).values()),
                 seconds=30, log=worker.log)  # fmt: skip
        worker.kill()  # mid-send: a row is 'sending', its request maybe at the provider
        purged += purge(queue)
        worker = workers.start(beat=True, lease=LEASE_SECONDS)
    wait_for("every ledger row 'sent'", all_in(harbor, ids, S.SENT), seconds=60, log=worker.log)
    quiesce(worker)

    counts = {nid: sends_of(server, patient, str(note.channel), nid)
              for patient, nid in booked for note in rows(harbor, Notification, id=nid)}  # fmt: skip
    duplicates = {nid: n for nid, n in counts.items() if n != 1}
    lookups = len(server.requests_to("GET", "/v3/messages")) + len(server.requests_to("GET", TWILIO_MESSAGES))
    print(f"\n{len(ids)} messages, {FAULT_KILLS} kills, {purged} queued tasks lost, {lookups} lookups, "
          f"{sends()} sends, {len(duplicates)} not sent exactly once")  # fmt: skip
    assert duplicates == {}
    assert sends() == len(ids)
    assert lookups > 0  # rows the killed workers left 'sending' were reconciled, not just sent again
    assert all(row.claim_generation >= 1 for row in ledger(harbor).values())

"""The real SendGrid and Twilio SDKs, pointed at a local recording server: no network."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import pytest

from backend.notifications.channels import (
    Channel,
    ChannelError,
    ConsoleChannel,
    OutgoingMessage,
    SendGridEmailChannel,
    TwilioSmsChannel,
    TwilioWhatsAppChannel,
    channel_for,
)
from backend.notifications.templates import render
from backend.settings import Settings
from tests.recording_server import RecordingServer, running_server

ACCOUNT = "AC" + "0" * 31 + "1"
TOKEN = "test-auth-token"
SG_KEY = "SG.test-key"
FROM_EMAIL = "clinic@example.com"
SMS_FROM = "+15550000001"
WA_FROM = "+15550000002"
PATIENT = "+15557654321"
TWILIO_MESSAGES = rf"/2010-04-01/Accounts/{ACCOUNT}/Messages\.json"


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    yield from running_server()


@pytest.fixture(autouse=True)
def _clean(server: RecordingServer) -> None:
    server.clear()


def _email(key: str = "n-1") -> OutgoingMessage:
    return OutgoingMessage(
        channel="email",
        to="ana@example.org",
        subject="Your appointment is booked",
        text="Hello Ana, see https://app.example.com/a/1",
        html="<p>Hello Ana</p>",
        idempotency_key=key,
    )


def _sms(
    key: str = "n-2", channel: str = "sms", text: str = "Clinic: booked. https://app.example.com/a/1"
) -> OutgoingMessage:
    return OutgoingMessage(channel=channel, to=PATIENT, subject="", text=text, html=None, idempotency_key=key)


def _sendgrid(server: RecordingServer, timeout: float = 5.0) -> SendGridEmailChannel:
    return SendGridEmailChannel(SG_KEY, FROM_EMAIL, server.url, timeout=timeout)


def _twilio(server: RecordingServer, timeout: float = 5.0) -> TwilioSmsChannel:
    return TwilioSmsChannel(ACCOUNT, TOKEN, SMS_FROM, base_url=server.url, timeout=timeout)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ------------------------------------------------------------------------------------------------ SendGrid


def test_sendgrid_send_posts_the_mail_with_auth_and_custom_args(server: RecordingServer) -> None:
    result = _sendgrid(server).send(_email("notif-123"))

    [req] = server.requests_to("POST", "/v3/mail/send")
    assert req.headers["authorization"] == f"Bearer {SG_KEY}"
    assert req.headers["content-type"] == "application/json"
    body = req.json
    assert body["from"]["email"] == FROM_EMAIL
    assert body["personalizations"][0]["to"] == [{"email": "ana@example.org"}]
    assert body["subject"] == "Your appointment is booked"
    assert body["content"] == [
        {"type": "text/plain", "value": "Hello Ana, see https://app.example.com/a/1"},
        {"type": "text/html", "value": "<p>Hello Ana</p>"},
    ]
    assert body["custom_args"] == {"notification_id": "notif-123"}
    assert result.provider_message_id == server.sendgrid_messages[0]["msg_id"]
    assert len(server.requests) == 1
    assert "headers" not in body  # no unsubscribe URL given: no list headers


def test_sendgrid_send_carries_one_click_unsubscribe_headers(server: RecordingServer) -> None:
    message = _email("notif-124")
    url = "https://app.example.com/api/v1/unsubscribe/abc"
    _sendgrid(server).send(OutgoingMessage(**{**message.__dict__, "unsubscribe_url": url}))

    [req] = server.requests_to("POST", "/v3/mail/send")
    assert req.json["headers"] == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


@pytest.mark.parametrize(
    ("status", "transient"), [(429, True), (500, True), (503, True), (400, False), (401, False), (403, False)]
)
def test_sendgrid_errors_map_to_transient_or_permanent(server: RecordingServer, status: int, transient: bool) -> None:
    server.fail_next(status)
    with pytest.raises(ChannelError) as info:
        _sendgrid(server).send(_email())
    assert info.value.transient is transient
    assert info.value.code == f"sendgrid-{status}"
    assert "simulated error" in info.value.message
    # The next request goes through again.
    assert _sendgrid(server).send(_email()).provider_message_id


def test_sendgrid_unreachable_and_timeout_are_transient(server: RecordingServer) -> None:
    with pytest.raises(ChannelError) as info:
        SendGridEmailChannel(SG_KEY, FROM_EMAIL, _closed_port_url(), timeout=2).send(_email())
    assert info.value.transient is True
    assert info.value.code == "sendgrid-network"

    server.stall_next(1.5)
    with pytest.raises(ChannelError) as info:
        _sendgrid(server, timeout=0.3).send(_email())
    assert info.value.transient is True
    assert info.value.code == "sendgrid-network"


def test_sendgrid_lookup_finds_the_message_by_notification_id(server: RecordingServer) -> None:
    channel = _sendgrid(server)
    sent = channel.send(_email("notif-a"))
    channel.send(_email("notif-b"))

    assert channel.lookup("notif-a", sent.provider_message_id) == "sent"
    assert channel.lookup("notif-a", None) == "sent"
    assert channel.lookup("notif-never", None) is None
    [req, *_] = server.requests_to("GET", "/v3/messages")
    assert req.headers["authorization"] == f"Bearer {SG_KEY}"
    assert req.query["query"] == ["unique_args['notification_id']=\"notif-a\""]

    # Without the Email Activity add-on SendGrid answers 403: unknown, not an exception.
    server.fail_next(403)
    assert channel.lookup("notif-a", None) is None


# ------------------------------------------------------------------------------------------------ Twilio


def test_twilio_sms_send_posts_the_message_with_basic_auth(server: RecordingServer) -> None:
    result = _twilio(server).send(_sms(text="Clinic: your appointment is booked. https://app.example.com/a/1"))

    [req] = server.requests_to("POST", TWILIO_MESSAGES)
    expected = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert req.headers["authorization"] == f"Basic {expected}"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.form_value("To") == PATIENT
    assert req.form_value("From") == SMS_FROM
    assert req.form_value("Body") == "Clinic: your appointment is booked. https://app.example.com/a/1"
    assert result.provider_message_id.startswith("SM")
    assert result.provider_message_id in server.twilio_messages
    assert len(server.requests) == 1


def test_twilio_whatsapp_uses_whatsapp_addresses(server: RecordingServer) -> None:
    channel = TwilioWhatsAppChannel(ACCOUNT, TOKEN, WA_FROM, base_url=server.url)
    result = channel.send(_sms(channel="whatsapp", text="Hello Ana, your appointment is booked."))

    [req] = server.requests_to("POST", TWILIO_MESSAGES)
    assert req.form_value("To") == f"whatsapp:{PATIENT}"
    assert req.form_value("From") == f"whatsapp:{WA_FROM}"
    assert req.form_value("Body") == "Hello Ana, your appointment is booked."
    assert result.provider_message_id.startswith("SM")
    # An address that already carries the prefix is not prefixed twice.
    channel.send(OutgoingMessage("whatsapp", f"whatsapp:{PATIENT}", "", "hi", None, "n-9"))
    assert server.requests_to("POST", TWILIO_MESSAGES)[-1].form_value("To") == f"whatsapp:{PATIENT}"


@pytest.mark.parametrize(
    ("status", "code", "transient", "expected_code"),
    [
        (429, None, True, "twilio-20429"),
        (500, None, True, "twilio-20500"),
        (503, None, True, "twilio-20503"),
        (400, 21211, False, "twilio-21211"),  # invalid 'To' number
        (400, 21610, False, "twilio-21610"),  # recipient unsubscribed (replied STOP)
        (401, None, False, "twilio-20003"),
    ],
)
def test_twilio_errors_map_to_transient_or_permanent(
    server: RecordingServer, status: int, code: int | None, transient: bool, expected_code: str
) -> None:
    server.fail_next(status, code=code)
    with pytest.raises(ChannelError) as info:
        _twilio(server).send(_sms())
    assert info.value.transient is transient
    assert info.value.code == expected_code
    assert len(server.requests_to("POST", TWILIO_MESSAGES)) == 1  # the SDK itself does not retry


def test_twilio_unreachable_and_timeout_are_transient(server: RecordingServer) -> None:
    with pytest.raises(ChannelError) as info:
        TwilioSmsChannel(ACCOUNT, TOKEN, SMS_FROM, base_url=_closed_port_url(), timeout=2).send(_sms())
    assert info.value.transient is True
    assert info.value.code == "twilio-network"

    server.stall_next(1.5)
    with pytest.raises(ChannelError) as info:
        _twilio(server, timeout=0.3).send(_sms())
    assert info.value.transient is True
    assert info.value.code == "twilio-network"


def test_twilio_lookup_by_sid_and_by_message(server: RecordingServer) -> None:
    channel = _twilio(server)
    message = _sms("notif-t", text="Clinic: reminder. https://app.example.com/a/7")
    sid = channel.send(message).provider_message_id

    assert channel.lookup("notif-t", sid) == "sent"
    [fetch] = server.requests_to("GET", rf"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}\.json")
    assert fetch.headers["authorization"].startswith("Basic ")

    # A worker killed before it stored the sid: found by recipient, sender and exact body.
    assert channel.lookup("notif-t", None, message=message) == "sent"
    [listing] = server.requests_to("GET", TWILIO_MESSAGES)
    assert listing.query["To"] == [PATIENT]
    assert listing.query["From"] == [SMS_FROM]
    other = _sms("notif-u", text="Clinic: something else. https://app.example.com/a/8")
    assert channel.lookup("notif-u", None, message=other) is None
    assert channel.lookup("notif-t", None) is None  # nothing to go on: unknown

    server.set_twilio_status(sid, "failed")
    assert channel.lookup("notif-t", sid) == "failed"
    assert channel.lookup("notif-x", "SM" + "f" * 32) is None  # 404: unknown, not an exception
    server.fail_next(500)
    assert channel.lookup("notif-t", sid) is None


def test_twilio_message_that_is_created_failed_is_a_permanent_error(server: RecordingServer) -> None:
    # Twilio may accept the request but report the message failed straight away.
    original = server._twilio_create

    def failed_create(req, account):  # type: ignore[no-untyped-def]
        status, headers, resource = original(req, account)
        resource.update(status="failed", error_code=30008, error_message="Unknown error")
        return status, headers, resource

    server._twilio_create = failed_create  # type: ignore[method-assign]
    try:
        with pytest.raises(ChannelError) as info:
            _twilio(server).send(_sms())
    finally:
        del server._twilio_create
    assert info.value.transient is False
    assert info.value.code == "twilio-30008"


# ------------------------------------------------------------------------------------------------ console


def test_console_channel_sends_nothing_and_reconciles_as_sent(server: RecordingServer) -> None:
    channel = ConsoleChannel()
    assert isinstance(channel, Channel)
    result = channel.send(_email("notif-c"))
    assert result.provider_message_id == "console-notif-c"
    assert channel.lookup("notif-c", "console-notif-c") == "sent"
    assert channel.lookup("notif-c", None) == "sent"
    assert channel.lookup("notif-c", "console-other") is None
    assert server.requests == []


# ------------------------------------------------------------------------------------------------ factory


def _settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


def test_console_mode_maps_every_channel_to_console() -> None:
    settings = _settings(notifications_channel_mode="console", sendgrid_api_key=SG_KEY, sendgrid_from_email=FROM_EMAIL)
    for name in ("email", "sms", "whatsapp", "console"):
        assert isinstance(channel_for(name, settings), ConsoleChannel)
    with pytest.raises(ValueError, match="unknown channel"):
        channel_for("pigeon", settings)


def test_provider_mode_sends_rendered_templates_through_the_sdks(server: RecordingServer) -> None:
    settings = _settings(
        notifications_channel_mode="providers",
        sendgrid_api_key=SG_KEY,
        sendgrid_from_email=FROM_EMAIL,
        sendgrid_base_url=server.url,
        twilio_account_sid=ACCOUNT,
        twilio_auth_token=TOKEN,
        twilio_sms_from=SMS_FROM,
        twilio_whatsapp_from=WA_FROM,
        twilio_base_url=server.url,
    )
    context = {
        "practice_name": "Mindful Care",
        "patient_first_name": "Ana",
        "start_local": "Tue 24 Nov, 15:00 EST",
        "hold_until_local": "Mon 23 Nov, 18:00 EST",
        "link": "https://app.example.com/portal/offers/42",
        "unsubscribe_link": "https://app.example.com/u/abc",
        "reason": "panic attacks",
    }
    email, sms, whatsapp = (channel_for(n, settings) for n in ("email", "sms", "whatsapp"))
    assert isinstance(email, SendGridEmailChannel)
    assert type(sms) is TwilioSmsChannel
    assert isinstance(whatsapp, TwilioWhatsAppChannel)
    for name, channel in (("email", email), ("sms", sms), ("whatsapp", whatsapp)):
        rendered = render("waitlist_offer", name, context, "en")
        channel.send(
            OutgoingMessage(
                name,
                "ana@example.org" if name == "email" else PATIENT,
                rendered.subject,
                rendered.text,
                rendered.html,
                f"notif-{name}",
            )
        )

    [mail] = server.requests_to("POST", "/v3/mail/send")
    assert mail.json["custom_args"] == {"notification_id": "notif-email"}
    assert "Mon 23 Nov, 18:00 EST" in mail.json["content"][0]["value"]
    assert mail.json["content"][1]["type"] == "text/html"
    bodies = [r.form_value("Body") or "" for r in server.requests_to("POST", TWILIO_MESSAGES)]
    assert len(bodies) == 2
    for body in bodies:
        assert "Mon 23 Nov, 18:00 EST" in body
        assert "https://app.example.com/portal/offers/42" in body
        assert "panic" not in body
    assert len(server.requests) == 3  # everything went to the local server


def test_provider_mode_without_credentials_is_a_permanent_error() -> None:
    settings = _settings(notifications_channel_mode="providers")
    for name in ("email", "sms", "whatsapp"):
        with pytest.raises(ChannelError) as info:
            channel_for(name, settings)
        assert info.value.transient is False
        assert info.value.code == "not-configured"


def test_settings_validate_sender_formats() -> None:
    with pytest.raises(ValueError, match="e-mail"):
        _settings(sendgrid_from_email="not-an-address")
    with pytest.raises(ValueError, match=r"E\.164"):
        _settings(twilio_sms_from="555-1234")
    assert _settings(twilio_whatsapp_from="whatsapp:+15550000002").twilio_whatsapp_from == "+15550000002"
    assert _settings().sendgrid_base_url == "https://api.sendgrid.com"
    assert _settings().twilio_base_url is None
    assert _settings().notifications_channel_mode == "console"

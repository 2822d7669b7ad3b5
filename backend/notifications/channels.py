"""Delivery channels: one small interface over the console outbox, SendGrid (e-mail) and Twilio (SMS, WhatsApp).

Every channel turns an ``OutgoingMessage`` into one provider request and returns the provider's message id,
or raises ``ChannelError`` whose ``transient`` flag tells the delivery engine whether a retry can help
(429, 5xx, timeouts, connection errors) or not (invalid number, unsubscribed recipient, other 4xx).

``lookup`` answers "did this notification go out?" for a row a killed worker left in ``sending``:
``"sent"`` (the provider accepted it: do not send again), ``"failed"`` (the provider has it and reports it
failed), or ``None`` (the provider cannot tell us). It never raises.

Credentials come from settings (the environment), never from the repository. With
``NOTIFICATIONS_CHANNEL_MODE=console`` (the embedded default) nothing leaves the process.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import urllib.error
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from backend.settings import Settings

CHANNEL_NAMES = ("email", "sms", "whatsapp", "console")
DEFAULT_TIMEOUT_SECONDS = 10.0

# The Twilio SDK logs every request at INFO with its query string, and a lookup's query is the patient's number
# (To=+1...). Its requests log here instead, warnings only, so the worker's INFO log carries no phone numbers.
_twilio_http_log = logging.getLogger("backend.notifications.twilio_http")
_twilio_http_log.setLevel(logging.WARNING)


# Twilio's status callbacks for our messages (backend/api/routes/webhooks.py).
TWILIO_STATUS_PATH = "/api/v1/webhooks/twilio/status"


class ChannelError(Exception):
    """A send that did not go through. ``transient``: a later retry may succeed. ``code``: short machine tag.
    ``maybe_sent``: the request went out and no answer came back (a read timeout, a connection dropped
    mid-answer), so the provider may have accepted it: look it up before sending it again."""

    def __init__(self, message: str, *, transient: bool, code: str, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.code = code
        self.maybe_sent = maybe_sent

    def __repr__(self) -> str:
        return f"ChannelError({self.message!r}, transient={self.transient}, code={self.code!r})"


@dataclass(frozen=True)
class OutgoingMessage:
    channel: str  # "email" | "sms" | "whatsapp" | "console"
    to: str  # e-mail address, or E.164 phone number (WhatsApp: with or without the "whatsapp:" prefix)
    subject: str
    text: str
    html: str | None
    idempotency_key: str  # the notification id
    # E-mail only: the one-click unsubscribe endpoint (RFC 8058 List-Unsubscribe / List-Unsubscribe-Post).
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str


@runtime_checkable
class Channel(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> SendResult: ...

    def lookup(
        self, idempotency_key: str, provider_message_id: str | None, *, message: OutgoingMessage | None = None
    ) -> str | None:
        """``"sent"`` | ``"failed"`` | ``None`` (unknown).

        ``message`` (the same message rendered again) helps channels whose provider keeps no reference of
        ours (Twilio: matched by recipient, sender and body).
        """
        ...


def _transient_status(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


# --------------------------------------------------------------------------------------------------- console


class ConsoleChannel:
    """The embedded default and demos: sends nothing; the outbox row itself is the message the admin reads."""

    name = "console"

    def send(self, message: OutgoingMessage) -> SendResult:
        return SendResult(provider_message_id=f"console-{message.idempotency_key}")

    def lookup(
        self, idempotency_key: str, provider_message_id: str | None, *, message: OutgoingMessage | None = None
    ) -> str | None:
        # Sending has no side effect here, so a row a worker left behind is as "sent" as it will ever be.
        if provider_message_id is None or provider_message_id == f"console-{idempotency_key}":
            return "sent"
        return None


# --------------------------------------------------------------------------------------------------- SendGrid


class SendGridEmailChannel:
    """E-mail through the official ``sendgrid`` SDK. The notification id travels as ``custom_args``."""

    name = "email"

    def __init__(
        self,
        api_key: str,
        from_email: str,
        base_url: str = "https://api.sendgrid.com",
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.api_key = api_key
        self.from_email = from_email
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _client(self) -> Any:
        from sendgrid import SendGridAPIClient

        client = SendGridAPIClient(api_key=self.api_key, host=self.base_url)
        # python_http_client passes this to urlopen for every request built from this client.
        client.client.timeout = self.timeout
        return client

    def send(self, message: OutgoingMessage) -> SendResult:
        from sendgrid.helpers.mail import CustomArg, Header, Mail

        mail = Mail(
            from_email=self.from_email,
            to_emails=message.to,
            subject=message.subject,
            plain_text_content=message.text,
            html_content=message.html,
        )
        mail.custom_arg = CustomArg("notification_id", message.idempotency_key)
        if message.unsubscribe_url:
            mail.header = [
                Header("List-Unsubscribe", f"<{message.unsubscribe_url}>"),
                Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ]
        try:
            response = self._client().send(mail)
        except Exception as exc:
            raise _sendgrid_error(exc) from exc
        message_id = response.headers.get("X-Message-Id") if response.headers is not None else None
        return SendResult(provider_message_id=message_id or f"sendgrid-{message.idempotency_key}")

    def lookup(
        self, idempotency_key: str, provider_message_id: str | None, *, message: OutgoingMessage | None = None
    ) -> str | None:
        """Ask the Email Activity API (a paid SendGrid add-on) for messages carrying our notification id.

        Without the add-on, or on any error, the answer is ``None``. Accepted messages count as sent even
        when later bounced or dropped: sending them again would not help.
        """
        query = f"unique_args['notification_id']=\"{idempotency_key}\""
        try:
            response = self._client().client.messages.get(query_params={"query": query, "limit": 10})
            payload = json.loads(response.body or b"{}")
        except Exception:  # noqa: BLE001 - lookup never raises: unknown is a valid answer
            return None
        found = payload.get("messages") or []
        if provider_message_id:
            matching = [m for m in found if str(m.get("msg_id", "")).startswith(provider_message_id)]
            found = matching or found
        if not found:
            return None
        return "sent" if any(m.get("status") in ("processed", "delivered", "not_delivered") for m in found) else None


def _sendgrid_error(exc: Exception) -> ChannelError:
    from python_http_client.exceptions import HTTPError

    if isinstance(exc, HTTPError):
        status = int(exc.status_code)
        detail = ""
        try:
            body = exc.body.decode("utf-8") if isinstance(exc.body, bytes) else str(exc.body or "")
            errors = json.loads(body).get("errors") or []
            detail = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
        except (ValueError, AttributeError):
            detail = ""
        return ChannelError(
            f"SendGrid answered {status}" + (f": {detail}" if detail else ""),
            transient=_transient_status(status),
            code=f"sendgrid-{status}",
        )
    if isinstance(exc, urllib.error.URLError):  # urllib wraps what fails while connecting or sending
        return ChannelError(f"SendGrid unreachable: {exc}", transient=True, code="sendgrid-network")
    if isinstance(exc, TimeoutError | socket.timeout | OSError | http.client.HTTPException):
        # Raised while waiting for the answer: the request was sent and SendGrid may have accepted it.
        return ChannelError(f"SendGrid did not answer: {exc}", transient=True, code="sendgrid-network",
                            maybe_sent=True)  # fmt: skip
    return ChannelError(f"SendGrid send failed: {exc}", transient=False, code="sendgrid-error")


# --------------------------------------------------------------------------------------------------- Twilio

_TWILIO_SENT = {"accepted", "scheduled", "queued", "sending", "sent", "delivered", "undelivered", "read"}
_TWILIO_FAILED = {"failed", "canceled"}


class TwilioSmsChannel:
    """SMS through the official ``twilio`` SDK (``client.messages.create``)."""

    name = "sms"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        status_callback: str | None = None,
    ) -> None:
        self.account_sid = account_sid
        # Where Twilio posts the message's status (the notification id is added): see backend.notifications.reports.
        self.status_callback = status_callback
        self.auth_token = auth_token
        self.from_number = from_number
        self.base_url = base_url.rstrip("/") if base_url else None
        self.timeout = timeout
        self._twilio: Any = None

    def _address(self, number: str) -> str:
        return number

    @property
    def client(self) -> Any:
        if self._twilio is None:
            from twilio.http.http_client import TwilioHttpClient
            from twilio.rest import Client

            http_client = TwilioHttpClient(timeout=self.timeout, logger=_twilio_http_log)
            client = Client(self.account_sid, self.auth_token, http_client=http_client)
            if self.base_url:
                # Point the Api domain (https://api.twilio.com) at another server, e.g. a local test
                # recorder; region/edge (also read from TWILIO_REGION/TWILIO_EDGE) would rewrite the host.
                client.region = None
                client.edge = None
                client.api.base_url = self.base_url
                if http_client.session is not None:
                    http_client.session.trust_env = False  # no proxy from the environment for a local URL
            self._twilio = client
        return self._twilio

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            extra = {}
            if self.status_callback:
                extra["status_callback"] = f"{self.status_callback}?notification_id={message.idempotency_key}"
            created = self.client.messages.create(
                to=self._address(message.to), from_=self._address(self.from_number), body=message.text, **extra
            )
        except Exception as exc:
            raise _twilio_error(exc) from exc
        if created.status in _TWILIO_FAILED:
            raise ChannelError(
                f"Twilio refused the message: {created.error_message or created.status}",
                transient=False,
                code=f"twilio-{created.error_code or created.status}",
            )
        return SendResult(provider_message_id=str(created.sid))

    def lookup(
        self, idempotency_key: str, provider_message_id: str | None, *, message: OutgoingMessage | None = None
    ) -> str | None:
        """Fetch by sid when we have it; else, given the message, find it by recipient, sender and exact body.

        Twilio keeps no client reference for messages, so without a sid and without the message the answer
        is ``None`` (unknown).
        """
        try:
            if provider_message_id:
                return _twilio_state(self.client.messages(provider_message_id).fetch().status)
            if message is None:
                return None
            listed = self.client.messages.list(
                to=self._address(message.to), from_=self._address(self.from_number), limit=50
            )
        except Exception:  # noqa: BLE001 - lookup never raises: unknown is a valid answer
            return None
        states = [_twilio_state(m.status) for m in listed if (m.body or "") == message.text]
        if "sent" in states:
            return "sent"
        return "failed" if states else None


class TwilioWhatsAppChannel(TwilioSmsChannel):
    """WhatsApp through Twilio: the same Messages API with ``whatsapp:+E164`` addresses."""

    name = "whatsapp"

    def _address(self, number: str) -> str:
        return number if number.startswith("whatsapp:") else f"whatsapp:{number}"


def _twilio_state(status: str | None) -> str | None:
    if status in _TWILIO_SENT:
        return "sent"
    if status in _TWILIO_FAILED:
        return "failed"
    return None


def _twilio_error(exc: Exception) -> ChannelError:
    import requests
    from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException

    if isinstance(exc, TwilioRestException | TwilioServiceException):
        status = int(exc.status)
        code = exc.code if exc.code is not None else status
        text = exc.msg if isinstance(exc, TwilioRestException) else exc.title
        return ChannelError(
            f"Twilio answered {status}: {text}", transient=_transient_status(status), code=f"twilio-{code}"
        )
    if isinstance(exc, requests.RequestException | TimeoutError | ConnectionError):
        maybe_sent = _twilio_maybe_sent(exc)
        what = "did not answer" if maybe_sent else "unreachable"
        return ChannelError(f"Twilio {what}: {exc}", transient=True, code="twilio-network", maybe_sent=maybe_sent)
    if isinstance(exc, TwilioException):
        return ChannelError(f"Twilio error: {exc}", transient=True, code="twilio-error")
    return ChannelError(f"Twilio send failed: {exc}", transient=False, code="twilio-error")


def _twilio_maybe_sent(exc: Exception) -> bool:
    """Whether a failed request may have reached Twilio: everything but a failure to connect."""
    import requests
    from urllib3.exceptions import MaxRetryError

    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        # requests reports a failed connection as ConnectionError(MaxRetryError(...)); a connection dropped
        # after the request was sent as ConnectionError(ProtocolError(...)).
        return not any(isinstance(arg, MaxRetryError) for arg in exc.args)
    return True


# --------------------------------------------------------------------------------------------------- factory


def channel_for(name: str, settings: Settings | None = None) -> Channel:
    """The channel that delivers ``name`` messages. In console mode every name maps to the console channel.

    Raises ``ChannelError`` (permanent, code ``not-configured``) when provider mode lacks credentials.
    """
    if name not in CHANNEL_NAMES:
        raise ValueError(f"unknown channel {name!r}")
    if settings is None:
        from backend.settings import get_settings

        settings = get_settings()
    if settings.notifications_channel_mode == "console" or name == "console":
        return ConsoleChannel()
    # A send gives up well within its lease (connect and read each get the timeout), so a slow but live sender's
    # row is never reconciled, and sent again, as if its worker had died.
    timeout = min(DEFAULT_TIMEOUT_SECONDS, settings.notifications_lease_seconds / 3)
    if name == "email":
        if not (settings.sendgrid_api_key and settings.sendgrid_from_email):
            raise ChannelError("SendGrid is not configured", transient=False, code="not-configured")
        return SendGridEmailChannel(settings.sendgrid_api_key, settings.sendgrid_from_email, settings.sendgrid_base_url,
                                    timeout=timeout)  # fmt: skip
    sender = settings.twilio_sms_from if name == "sms" else settings.twilio_whatsapp_from
    if not (settings.twilio_account_sid and settings.twilio_auth_token and sender):
        raise ChannelError(f"Twilio {name} is not configured", transient=False, code="not-configured")
    cls = TwilioSmsChannel if name == "sms" else TwilioWhatsAppChannel
    return cls(
        settings.twilio_account_sid, settings.twilio_auth_token, sender, settings.twilio_base_url, timeout=timeout,
        status_callback=settings.public_url.rstrip("/") + TWILIO_STATUS_PATH,
    )

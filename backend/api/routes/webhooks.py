"""Provider callbacks. Authenticated by the provider's signature, not by a bearer token."""

from __future__ import annotations

import binascii
import json
import logging
import re
import uuid

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from twilio.request_validator import RequestValidator

from backend.api.ratelimit import rate_limit
from backend.errors import PermissionDenied, ValidationFailed
from backend.notifications.channels import TWILIO_STATUS_PATH
from backend.notifications.preferences import is_stop, opt_out_by_phone
from backend.notifications.reports import SENDGRID_EVENTS, TWILIO_STATUSES, Report, apply_report
from backend.ratelimit import WEBHOOKS
from backend.settings import get_settings

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], dependencies=[rate_limit(WEBHOOKS)])
logger = logging.getLogger(__name__)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
TWILIO_INBOUND_PATH = "/api/v1/webhooks/twilio/inbound"
SENDGRID_EVENTS_PATH = "/api/v1/webhooks/sendgrid/events"
MAX_EVENTS = 1000  # SendGrid batches up to about 1,000 events (and 768 KB) per request
_CODE = re.compile(r"[^0-9A-Za-z.\-]")


async def _twilio_params(request: Request, path: str) -> dict[str, str]:
    """The posted form, once its X-Twilio-Signature checks out against the public URL Twilio called."""
    settings = get_settings()
    if not settings.twilio_auth_token:
        raise PermissionDenied("the Twilio webhook is not configured")
    form = await request.form()
    params = {key: str(value) for key, value in form.items()}
    # Twilio signs the exact public URL it called (with its query string) plus the posted form fields.
    url = settings.public_url.rstrip("/") + path + (f"?{request.url.query}" if request.url.query else "")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(settings.twilio_auth_token).validate(url, params, signature):
        raise PermissionDenied("invalid Twilio signature")
    return params


def _code(value: object) -> str:
    """A provider's error code as kept: short, and only code characters (never a quoted address)."""
    return _CODE.sub("", str(value or ""))[:20]


@router.post("/twilio/inbound")
async def twilio_inbound(request: Request) -> Response:
    """An incoming SMS or WhatsApp reply. STOP (and Twilio's other opt-out words) turns that channel off."""
    params = await _twilio_params(request, TWILIO_INBOUND_PATH)
    sender = params.get("From", "")
    if is_stop(params.get("Body", "")):
        channel = "whatsapp" if sender.startswith("whatsapp:") else "sms"
        await run_in_threadpool(opt_out_by_phone, sender, channel)
    return Response(EMPTY_TWIML, media_type="text/xml")


@router.post("/twilio/status", status_code=204)
async def twilio_status(request: Request, notification_id: uuid.UUID) -> Response:
    """Twilio's status callback for one of our SMS or WhatsApp messages (the URL names the notification)."""
    params = await _twilio_params(request, TWILIO_STATUS_PATH)
    status = TWILIO_STATUSES.get(params.get("MessageStatus", ""))
    sid = params.get("MessageSid", "")
    if status and sid:
        report = Report(notification_id, sid, status, _code(params.get("ErrorCode")))
        await run_in_threadpool(apply_report, report)
    return Response(status_code=204)


@router.post("/sendgrid/events")
async def sendgrid_events(request: Request) -> dict[str, int]:
    """SendGrid's signed Event Webhook: delivery events for our e-mails (custom arg `notification_id`)."""
    key = get_settings().sendgrid_webhook_public_key
    if not key:
        raise PermissionDenied("the SendGrid event webhook is not configured")
    body = (await request.body()).decode("utf-8", errors="replace")
    signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
    timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
    try:
        verified = EventWebhook(key).verify_signature(body, signature, timestamp)
    except (ValueError, TypeError, binascii.Error):
        verified = False
    if not verified:
        raise PermissionDenied("invalid SendGrid event webhook signature")
    try:
        events = json.loads(body)
    except ValueError as exc:
        raise ValidationFailed("the body must be a JSON array of events") from exc
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValidationFailed("the body must be a JSON array of events")
    if len(events) > MAX_EVENTS:
        raise ValidationFailed(f"at most {MAX_EVENTS} events per request")
    return await run_in_threadpool(_apply_sendgrid_events, events)


def _apply_sendgrid_events(events: list[dict[str, object]]) -> dict[str, int]:
    """Apply a batch (in one worker thread, not one hop per event); returns how many of each outcome."""
    counts: dict[str, int] = {}
    for event in events:
        outcome = _sendgrid_event(event)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _sendgrid_event(event: dict[str, object]) -> str:
    status = SENDGRID_EVENTS.get(str(event.get("event", "")))
    if status is None:
        return "ignored"
    try:
        notification_id = uuid.UUID(str(event.get("notification_id", "")))
    except ValueError:
        return "not ours"  # a message sent by something else on the same SendGrid account
    # sg_message_id is the X-Message-Id SendGrid answered the send with, plus ".<filter and recipient part>".
    message_id = str(event.get("sg_message_id", "")).split(".", 1)[0]
    if not message_id:
        return "ignored"
    return apply_report(Report(notification_id, message_id, status, _code(event.get("status"))))

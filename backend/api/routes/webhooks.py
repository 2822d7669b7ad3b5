"""Provider callbacks. Authenticated by the provider's signature, not by a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from twilio.request_validator import RequestValidator

from backend.errors import PermissionDenied
from backend.notifications.preferences import is_stop, opt_out_by_phone
from backend.settings import get_settings

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
TWILIO_INBOUND_PATH = "/api/v1/webhooks/twilio/inbound"


@router.post("/twilio/inbound")
async def twilio_inbound(request: Request) -> Response:
    """An incoming SMS or WhatsApp reply. STOP (and Twilio's other opt-out words) turns that channel off."""
    settings = get_settings()
    if not settings.twilio_auth_token:
        raise PermissionDenied("the Twilio webhook is not configured")
    form = await request.form()
    params = {key: str(value) for key, value in form.items()}
    # Twilio signs the exact public URL it called plus the posted form fields.
    url = settings.public_url.rstrip("/") + TWILIO_INBOUND_PATH
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(settings.twilio_auth_token).validate(url, params, signature):
        raise PermissionDenied("invalid Twilio signature")
    sender = params.get("From", "")
    if is_stop(params.get("Body", "")):
        channel = "whatsapp" if sender.startswith("whatsapp:") else "sms"
        opt_out_by_phone(sender, channel)
    return Response(EMPTY_TWIML, media_type="text/xml")

"""Notification preferences (patients), history and the admin outbox, and the e-mail unsubscribe link."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as BodyError
from starlette.concurrency import run_in_threadpool

from backend.api.deps import ActorDep, UowDep
from backend.api.ratelimit import rate_limit
from backend.db import UnitOfWork
from backend.errors import NotFound, PermissionDenied, ValidationFailed
from backend.notifications.models import Channel, NotificationStatus
from backend.notifications.preferences import read_unsubscribe_token, set_language
from backend.notifications.service import (
    MAX_PAGE,
    PreferencesUpdate,
    get_preferences,
    list_notifications,
    outbox_counts,
    read_message,
    retry_notification,
    unsubscribe_with_token,
    update_preferences,
)
from backend.ratelimit import UNSUBSCRIBE
from backend.tenancy.context import Actor, Role
from backend.types import ApiText

router = APIRouter(prefix="/api/v1", tags=["notifications"])

HHMM_HELP = '"HH:MM" in your clinic\'s time zone, or null; give both ends or neither'
JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class PreferencesBody(BaseModel):
    """PUT /me/notification-preferences: every channel's opt-in, and optional quiet hours."""

    model_config = ConfigDict(extra="forbid")

    email_opt_in: bool
    sms_opt_in: bool
    whatsapp_opt_in: bool
    quiet_hours_start: ApiText | None = Field(default=None, max_length=8, description=HHMM_HELP)
    quiet_hours_end: ApiText | None = Field(default=None, max_length=8, description=HHMM_HELP)
    language: ApiText | None = Field(
        default=None, max_length=10, description='the language of pages and messages ("en", "es"); null keeps it'
    )


class PreferencesOut(BaseModel):
    patient_id: uuid.UUID
    email_opt_in: bool
    sms_opt_in: bool
    whatsapp_opt_in: bool
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    unsubscribed: bool = Field(description="every channel stopped through the unsubscribe link")
    has_email: bool
    has_phone: bool
    channel_mode: str = Field(description='"console": nothing leaves the system; the outbox is the message')
    updated_at: datetime | None
    language: str = Field(description="the language of the patient's pages and messages")


class NotificationOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID | None = Field(description="None: an account message to a staff member")
    patient_name: str
    event_type: str
    event_label: str
    channel: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str


class MessageOut(NotificationOut):
    """A notification rendered as its patient got (or will get) it."""

    to: str
    subject: str
    text: str


class UnsubscribeBody(BaseModel):
    """POST /unsubscribe/{token} as JSON (optional): `everything` stops every channel, not only e-mail."""

    model_config = ConfigDict(extra="forbid")

    everything: bool = False


class UnsubscribeOut(BaseModel):
    """What the link changed; nothing else about the patient (the caller is not signed in)."""

    practice: str
    email_opt_in: bool
    sms_opt_in: bool
    whatsapp_opt_in: bool
    unsubscribed: bool


# --- preferences ------------------------------------------------------------------------------------------


@router.get("/me/notification-preferences", response_model=PreferencesOut)
def get_my_preferences(actor: ActorDep, uow: UowDep) -> PreferencesOut:
    """The signed-in patient's channel opt-ins and quiet hours (staff read a patient's under /patients)."""
    if actor.role != Role.PATIENT:
        raise PermissionDenied("only patients have notification preferences of their own")
    return PreferencesOut.model_validate(get_preferences(actor, uow).as_dict())


@router.put("/me/notification-preferences", response_model=PreferencesOut)
def put_my_preferences(body: PreferencesBody, actor: ActorDep, uow: UowDep) -> PreferencesOut:
    """Change the signed-in patient's preferences (patients only; 422 changes nothing)."""
    if body.language is not None:
        set_language(actor, uow, body.language)
    view = update_preferences(actor, uow, PreferencesUpdate(**body.model_dump(exclude={"language"})))
    uow.commit()
    return PreferencesOut.model_validate(view.as_dict())


@router.get("/patients/{patient_id}/notification-preferences", response_model=PreferencesOut)
def get_patient_preferences(patient_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> PreferencesOut:
    """Read a patient's preferences: the admin any patient, a doctor their own patients, a patient themself."""
    return PreferencesOut.model_validate(get_preferences(actor, uow, patient_id).as_dict())


# --- history and outbox -----------------------------------------------------------------------------------


@router.get("/notifications", response_model=list[NotificationOut])
def get_notifications(
    actor: ActorDep,
    uow: UowDep,
    status: NotificationStatus | None = None,
    channel: Channel | None = None,
    event_type: Annotated[ApiText | None, Query(max_length=60)] = None,
    patient_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[NotificationOut]:
    """Newest first: a patient's own history, or the practice's outbox (admin)."""
    views = list_notifications(
        actor,
        uow,
        status=status.value if status else None,
        channel=channel.value if channel else None,
        event_type=event_type or None,
        patient_id=patient_id,
        limit=limit,
    )
    return [NotificationOut.model_validate(v.as_dict()) for v in views]


@router.get("/notifications/counts", response_model=dict[str, int])
def get_notification_counts(actor: ActorDep, uow: UowDep) -> dict[str, int]:
    """How many of the practice's notifications are in each status (admin)."""
    return outbox_counts(actor, uow)


@router.get("/notifications/{notification_id}", response_model=MessageOut)
def get_notification(notification_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> MessageOut:
    """One notification with its message as the patient got it (the patient their own, the admin any)."""
    return MessageOut.model_validate(read_message(actor, uow, notification_id).as_dict())


@router.post("/notifications/{notification_id}/retry", response_model=NotificationOut)
def post_notification_retry(notification_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> NotificationOut:
    """Send a failed or dead-lettered message again (admin); 409 when it is sent, waiting or in flight."""
    view = retry_notification(actor, uow, notification_id)
    uow.commit()
    return NotificationOut.model_validate(view.as_dict())


# --- the unsubscribe link ---------------------------------------------------------------------------------


async def _wants_everything(request: Request) -> bool:
    """Read the optional body: JSON {"everything": bool}, or RFC 8058's one-click form (e-mail only)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type in FORM_TYPES:
        form = await request.form()
        if form.get("List-Unsubscribe") != "One-Click":
            raise ValidationFailed("a one-click unsubscribe posts List-Unsubscribe=One-Click", field="List-Unsubscribe")
        return False
    raw = await request.body()
    if not raw.strip():
        return False
    if media_type not in JSON_TYPES:
        raise ValidationFailed('send JSON {"everything": true|false}, or the one-click form List-Unsubscribe=One-Click')
    try:
        data: Any = json.loads(raw)
        return UnsubscribeBody.model_validate(data).everything
    except (ValueError, BodyError):  # JSONDecodeError is a ValueError
        raise ValidationFailed('the body must be {"everything": true|false}', field="everything") from None


def _unsubscribe(token: str, everything: bool) -> UnsubscribeOut:
    try:
        practice = unsubscribe_with_token(token, everything=everything)
        tenant_id, patient_id = read_unsubscribe_token(token)
    except ValueError:
        raise NotFound("unsubscribe link") from None
    system = Actor.system(tenant_id)
    with UnitOfWork(system) as uow:
        view = get_preferences(system, uow, patient_id)
    return UnsubscribeOut(
        practice=practice,
        email_opt_in=view.email_opt_in,
        sms_opt_in=view.sms_opt_in,
        whatsapp_opt_in=view.whatsapp_opt_in,
        unsubscribed=view.unsubscribed,
    )


@router.post(
    "/unsubscribe/{token}",
    response_model=UnsubscribeOut,
    dependencies=[rate_limit(UNSUBSCRIBE)],
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": UnsubscribeBody.model_json_schema()},
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
                        "required": ["List-Unsubscribe"],
                    }
                },
            },
        }
    },
)
async def post_unsubscribe(token: str, request: Request) -> UnsubscribeOut:
    """The link in every e-mail (no sign-in: the signed token names the patient). Turns e-mail off, or with
    {"everything": true} every channel; also takes the RFC 8058 one-click post. 404 for an invalid link."""
    everything = await _wants_everything(request)
    return await run_in_threadpool(_unsubscribe, token, everything)

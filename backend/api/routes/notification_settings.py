"""The practice's notification settings: when appointment reminders go out (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from backend.api.deps import ActorDep, UowDep
from backend.notifications.reminders import (
    NotificationSettingsView,
    get_notification_settings,
    update_notification_settings,
)
from backend.types import INT64_MAX, INT64_MIN

router = APIRouter(prefix="/api/v1", tags=["notifications"])


class NotificationSettingsBody(BaseModel):
    """PUT /notification-settings: the whole setting (the offsets replace the current ones)."""

    model_config = ConfigDict(extra="forbid")

    reminder_offsets_minutes: list[Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]] = Field(
        description="Minutes before the start: 0-4 values, each 15 .. 20160 (14 days), no duplicates. "
        "[] sends no reminders. Example: [2880, 120] (48 h and 2 h)."
    )
    quiet_hours_email_now: StrictBool | None = Field(
        default=None,
        description="In a patient's quiet hours, offers and reminders wait. true (the default): e-mail still "
        "goes at once and only SMS and WhatsApp wait; false: every channel waits. Omitted: unchanged.",
    )


@router.get("/notification-settings", response_model=NotificationSettingsView)
def get_settings_route(actor: ActorDep, uow: UowDep) -> NotificationSettingsView:
    """The practice's reminder offsets, and whether they are its own or the default."""
    return get_notification_settings(actor, uow)


@router.put("/notification-settings", response_model=NotificationSettingsView)
def put_settings_route(body: NotificationSettingsBody, actor: ActorDep, uow: UowDep) -> NotificationSettingsView:
    """Set the practice's reminder offsets (audited)."""
    view = update_notification_settings(
        actor,
        uow,
        reminder_offsets_minutes=list(body.reminder_offsets_minutes),
        quiet_hours_email_now=body.quiet_hours_email_now,
    )
    uow.commit()
    return view

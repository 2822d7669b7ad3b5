"""Typed settings, read once from the environment (and an optional .env file)."""

from __future__ import annotations

import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"


_EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")


def _default_database_url() -> str:
    return f"sqlite:///{DATA_DIR / 'clinic.db'}"


def _load_or_create_secret() -> str:
    """Keep a per-checkout signing secret on disk so sessions survive restarts in the embedded mode."""
    path = DATA_DIR / "secret.key"
    if path.exists():
        return path.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value)
    path.chmod(0o600)
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Embedded default: a SQLite file; set DATABASE_URL=postgresql+psycopg://... for the real service.
    database_url: str = Field(default_factory=_default_database_url)
    # Optional: with no Redis the app uses in-process fallbacks (cache, locks, pub/sub).
    redis_url: str | None = None
    # Optional: with no broker Celery tasks run in-process (task_always_eager).
    celery_broker_url: str | None = None
    # Run tasks in-process even with a broker configured (tests, and an app served without a worker).
    celery_eager: bool = False
    # The queue tasks go to and workers read (separate runs may share one broker).
    celery_queue: str = "celery"

    secret_key: str = Field(default_factory=_load_or_create_secret, min_length=32)
    jwt_algorithm: str = "HS256"
    access_token_minutes: int = Field(default=60, ge=1, le=24 * 60)
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    session_cookie_name: str = "clinic_session"
    # Secure cookies need HTTPS; the local default serves plain HTTP on localhost.
    cookie_secure: bool = False

    # Login throttling: after this many consecutive failures each attempt must wait.
    login_free_failures: int = 5
    login_backoff_base_seconds: float = 2.0
    login_backoff_max_seconds: float = 300.0

    public_url: str = "http://localhost:3000"
    sql_echo: bool = False

    # Notifications. "console" (the default) sends nothing out: the outbox row is the message the admin reads.
    # "providers" sends e-mail through SendGrid and SMS/WhatsApp through Twilio with the credentials below,
    # which come from the environment only and never from the repository.
    notifications_channel_mode: Literal["console", "providers"] = "console"
    sendgrid_api_key: str | None = None
    sendgrid_from_email: str | None = None
    sendgrid_base_url: str = "https://api.sendgrid.com"
    # The Event Webhook's verification key (Mail Settings -> Signed Event Webhook), base64 as SendGrid shows it.
    # Without it the event webhook refuses every request.
    sendgrid_webhook_public_key: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_sms_from: str | None = None
    # A bare E.164 number; the channel adds the "whatsapp:" prefix.
    twilio_whatsapp_from: str | None = None
    # None: the real https://api.twilio.com. Set only to point the SDK at a local test server.
    twilio_base_url: str | None = None
    # Sends per second per practice (a Redis reservation limiter; burst of the same size).
    notifications_per_second: float = Field(default=10.0, gt=0)
    # A ledger row 'sending' for longer than this belonged to a worker that died: it is reconciled (asked of the
    # provider) before it is ever sent again.
    notifications_lease_seconds: int = Field(default=120, ge=5)
    # Appointment reminders: minutes before the start, comma-separated (48 h and 2 h); empty for none. A practice
    # may override them (notification_settings). 0-4 offsets, each 15 minutes .. 14 days.
    reminder_offsets: str = "2880,120"
    # How often beat's outbox sweep runs (delivers rows a lost enqueue or a retry left behind, reconciles stale
    # 'sending' rows).
    notifications_sweep_seconds: float = Field(default=30.0, ge=1)

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres_driver(cls, value: str) -> str:
        # Plain postgresql:// would pick psycopg2, which we do not ship; we use psycopg 3.
        if value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://") :]
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://") :]
        return value

    @field_validator("jwt_algorithm")
    @classmethod
    def _pin_algorithm(cls, value: str) -> str:
        if value not in {"HS256", "HS384", "HS512"}:
            raise ValueError("jwt_algorithm must be one of HS256, HS384, HS512")
        return value

    @field_validator("sendgrid_from_email")
    @classmethod
    def _check_from_email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL_RE.match(value):
            raise ValueError("sendgrid_from_email must be an e-mail address")
        return value

    @field_validator("twilio_sms_from", "twilio_whatsapp_from")
    @classmethod
    def _check_phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("whatsapp:"):
            value = value[len("whatsapp:") :]
        if not _E164_RE.match(value):
            raise ValueError("Twilio sender numbers must be in E.164 form, e.g. +15550001111")
        return value

    @field_validator("reminder_offsets")
    @classmethod
    def _check_reminder_offsets(cls, value: str) -> str:
        from backend.notifications.reminder_schedule import parse_offsets

        return ",".join(str(offset) for offset in parse_offsets(value))

    @field_validator("sendgrid_base_url", "twilio_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("provider base URLs must start with https:// (or http:// for a local test server)")
        return value.rstrip("/") if value else value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def reminder_offsets_minutes(self) -> list[int]:
        """The default reminder offsets in minutes, largest first."""
        return [int(part) for part in self.reminder_offsets.split(",") if part]

    @property
    def broker_url(self) -> str | None:
        """The Celery broker: explicit CELERY_BROKER_URL, else Redis when configured, else none (eager)."""
        return self.celery_broker_url or self.redis_url


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()

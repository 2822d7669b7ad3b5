"""Typed settings, read once from the environment (and an optional .env file)."""

from __future__ import annotations

import json
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
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


class LogSettings(BaseSettings):
    """The settings a process reads when it sets up logging and error tracking, at import (backend.logging_config):
    the same environment as Settings, read without caching, so a test or script that chooses its database after
    importing the app still gets it in Settings."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # --- Logs and error tracking (backend/logging_config.py, backend/observability) --------------------------------
    # LOG_FORMAT: "json" (one JSON object a line) or "console" (for people). Empty: json on PostgreSQL, console in
    # the embedded SQLite mode. LOG_LEVEL: a standard level name.
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Optional error tracking: the Sentry (or compatible) DSN. Empty: off. Events are scrubbed of health data
    # before they leave the process (backend/observability/sentry.py).
    sentry_dsn: str | None = None
    sentry_environment: str | None = None
    database_url: str = Field(default_factory=_default_database_url)
    # --- end logs and error tracking -------------------------------------------------------------------------------

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", "sentry_dsn", "sentry_environment", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def resolved_log_format(self) -> Literal["json", "console"]:
        """LOG_FORMAT, else json in production (PostgreSQL) and console in the embedded mode."""
        return self.log_format or ("console" if self.database_url.startswith("sqlite") else "json")


class Settings(LogSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Embedded default: a SQLite file; set DATABASE_URL=postgresql+psycopg://... for the real service.
    # PostgreSQL: DATABASE_URL is the app's role (no superuser, no BYPASSRLS: row-level security applies to it).
    database_url: str = Field(default_factory=_default_database_url)
    # PostgreSQL: the role that owns the tables and runs the migrations (alembic, `make migrate`) and the grants
    # (python -m backend.dbroles). Empty: DATABASE_URL (then one role does everything, as in the embedded mode).
    database_owner_url: str | None = Field(
        default=None, validation_alias=AliasChoices("database_owner_url", "migration_database_url")
    )
    # PostgreSQL: the system scope (UnitOfWork(system=True): sweeps, webhooks, login and session lookups across
    # practices), a role with BYPASSRLS. Empty: DATABASE_URL (SQLite; on PostgreSQL such work then sees no rows).
    system_database_url: str | None = None
    # Optional: with no Redis the app uses in-process fallbacks (cache, locks, pub/sub).
    redis_url: str | None = None
    # Optional: with no broker Celery tasks run in-process (task_always_eager).
    celery_broker_url: str | None = None
    # Run tasks in-process even with a broker configured (tests, and an app served without a worker).
    celery_eager: bool = False
    # Threads per web process for live pages' re-reads (portal/state/live.py): apart from the handlers' own, so a
    # burst of re-reads never queues a person's click; few, since they share one interpreter lock (bench.live:
    # 2 beat 6 at 500 sessions on 2 cores).
    live_read_threads: int = Field(default=2, ge=1, le=32)
    # The queue tasks go to and workers read (separate runs may share one broker).
    celery_queue: str = "celery"

    secret_key: str = Field(default_factory=_load_or_create_secret, min_length=32)
    # Application-level encryption (backend/crypto): comma-separated Fernet keys, the first current, the others
    # still able to decrypt (key rotation). Empty: one key derived from SECRET_KEY (fine for development only).
    encryption_keys: str = ""
    jwt_algorithm: str = "HS256"
    # Where `make backup` (python -m backend.backup) writes database dumps and, in separate files, the keys.
    # Empty: data/backups. Keep copies off this machine; keep the key files apart from the dumps.
    backup_dir: Path = Field(default_factory=lambda: DATA_DIR / "backups")

    # ---- Identity: tokens, sessions, cookies, login throttling (backend/identity, backend/api/routes/auth.py) ----
    # Bearer access tokens are short-lived and bound to a revocable session row; clients renew them with the
    # rotating refresh token, which lives as long as the API session.
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=14, ge=1, le=90)
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    # The base name; the browser sees `session_cookie` (with the __Host- prefix whenever the cookie is Secure).
    session_cookie_name: str = "clinic_session"
    # None (auto): Secure when PUBLIC_URL is https://, and with a real database unless PUBLIC_URL is this machine
    # over plain http (localhost, 127.0.0.1). Set true/false to override.
    cookie_secure: bool | None = None
    # Comma-separated proxy addresses or networks (e.g. "10.0.0.0/8,127.0.0.1") whose X-Forwarded-For is believed.
    # Empty (the default): the client address is the TCP peer, and X-Forwarded-For is ignored.
    trusted_proxies: str = ""
    # Prefix of this app's Redis keys: login throttling, rate limits (<prefix>:ratelimit:...) and their breach
    # counters (<prefix>:metrics:rate_limited:login, <prefix>:ratelimit:metrics:rate_limited:<class>).
    redis_key_prefix: str = Field(default="clinic", min_length=1, max_length=60)
    min_password_length: int = Field(default=10, ge=8, le=128)
    # Onboarding and recovery (backend/identity/onboarding.py): how long an invitation link and a password-reset
    # link work; password-reset requests per client address per 15 minutes (then 429), and reset e-mails per
    # account per hour (more requests get the same answer and send nothing).
    invite_link_hours: int = Field(default=72, ge=1, le=24 * 30)
    reset_link_minutes: int = Field(default=60, ge=5, le=24 * 60)
    # Self-registration (off by default, per practice): how long the e-mail verification link works. Registrations
    # are rate-limited like password resets (the two limits above and below, counted separately).
    registration_link_hours: int = Field(default=24, ge=1, le=24 * 7)
    password_reset_address_max: int = Field(default=10, ge=1)
    password_reset_account_max: int = Field(default=3, ge=1)
    # Login throttling, kept in Redis (in process without Redis). Per (client network, account): after this many
    # failures in a row each attempt from that network waits, doubling from the base up to the max.
    login_free_failures: int = Field(default=5, ge=1)
    login_backoff_base_seconds: float = Field(default=2.0, gt=0)
    login_backoff_max_seconds: float = Field(default=300.0, gt=0)
    # A network's failures on an account are forgotten after this long without an attempt.
    login_pair_reset_seconds: float = Field(default=24 * 3600.0, gt=0)
    # Per client network, across all accounts: at most this many failed attempts per window.
    login_address_max_failures: int = Field(default=50, ge=1)
    login_address_window_seconds: float = Field(default=900.0, gt=0)
    # Per account, across all networks: past this many failures per window, networks that never signed in to the
    # account wait for the window to end (networks it signed in from before are not held back).
    login_account_max_failures: int = Field(default=20, ge=1)
    login_account_window_seconds: float = Field(default=900.0, gt=0)
    login_known_network_days: int = Field(default=90, ge=1, le=365)
    # Automatic logoff (backend/identity/idle.py): a session unused by its person for this long ends, on top of its
    # absolute lifetime (session_hours, refresh_token_days). Staff are doctors and admins. A session keeps the
    # timeout it was opened with (user_sessions.idle_timeout_seconds).
    idle_timeout_staff_seconds: int = Field(default=15 * 60, ge=10, le=24 * 3600)
    idle_timeout_patient_seconds: int = Field(default=30 * 60, ge=10, le=24 * 3600)
    # The page asks "Still there?" this long before (at most half the timeout).
    idle_warning_seconds: int = Field(default=60, ge=1, le=3600)
    # The idle clock lives in Redis; its coarse copy in the database (user_sessions.last_seen_at) is written at most
    # this often per session.
    idle_persist_seconds: int = Field(default=120, ge=1, le=3600)

    @field_validator("encryption_keys")
    @classmethod
    def _check_encryption_keys(cls, value: str) -> str:
        import base64
        import binascii

        keys = [part.strip() for part in value.split(",") if part.strip()]
        for position, key in enumerate(keys, start=1):
            try:
                raw = base64.urlsafe_b64decode(key.encode())
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    f"encryption_keys: key {position} is not a Fernet key (32 bytes, url-safe base64;"
                    " `python -m backend.crypto generate-key` makes one)"
                )
        return ",".join(keys)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        import ipaddress

        parts = [part.strip() for part in value.split(",") if part.strip()]
        for part in parts:
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {part!r} is not an IP address or network") from exc
        return ",".join(parts)

    @property
    def secure_cookies(self) -> bool:
        """Whether cookies carry Secure: explicit COOKIE_SECURE; else when the public URL is HTTPS, and by default
        outside the embedded mode unless the public URL is this machine over plain HTTP (local `make run`, tests)."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        if self.public_url.lower().startswith("https://"):
            return True
        host = (urlsplit(self.public_url).hostname or "").lower()
        return not self.is_sqlite and host not in _LOOPBACK_HOSTS

    @property
    def session_cookie(self) -> str:
        """The session cookie's effective name: `__Host-` prefixed whenever it is Secure (path=/, no Domain)."""
        return f"__Host-{self.session_cookie_name}" if self.secure_cookies else self.session_cookie_name

    # ---- end of the identity block ----

    public_url: str = "http://localhost:3000"
    sql_echo: bool = False

    # ---- Single sign-on for staff (OpenID Connect, backend/identity/sso.py) ----
    # Timeout of each call to a practice's identity provider (discovery, keys, token, userinfo).
    sso_http_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # How long a provider's discovery document and signing keys are reused before they are fetched again.
    sso_metadata_cache_seconds: int = Field(default=3600, ge=0, le=7 * 24 * 3600)
    # How long a started sign-in may take at the provider (the state cookie's lifetime).
    sso_state_minutes: int = Field(default=10, ge=1, le=60)
    # Allow a provider at http://localhost or 127.0.0.1 (a local test provider). Off: every provider URL is https.
    sso_allow_http_loopback: bool = False
    # Where providers send the browser back (<this>/auth/sso/<practice>/callback). Empty: PUBLIC_URL.
    sso_redirect_base_url: str = ""

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

    # --- Payments (backend/payments) -------------------------------------------------------------------------
    # "fake" (the default): cards and charges are simulated in-process, nothing leaves the machine. "stripe":
    # through the official SDK with the secret key below (environment only, never the repository).
    payments_mode: Literal["fake", "stripe"] = "fake"
    stripe_secret_key: str | None = None
    stripe_publishable_key: str | None = None
    # The webhook endpoint's signing secret (whsec_...). Without it the webhook refuses every request.
    stripe_webhook_secret: str | None = None
    # Set only to point the SDK at a local test server.
    stripe_api_base: str = "https://api.stripe.com"
    # How often beat sweeps charges a lost enqueue or a dead worker left 'requested'.
    payments_sweep_seconds: float = Field(default=60.0, ge=1)
    # A charge claimed longer ago than this belonged to a worker that died between request and result: it is
    # asked for again with the same idempotency key (the gateway answers with the charge it already made).
    payments_lease_seconds: int = Field(default=120, ge=5)

    # --- Edge: CORS, cross-site request checks and security headers (backend/api/edge.py) -------------------
    # Extra origins (scheme://host[:port]) trusted for CORS with credentials, cookie-authenticated POSTs and the
    # event socket, comma-separated or a JSON list. The origin of public_url is always trusted, and so is the
    # request's own origin (its scheme and Host header). Any other Origin is refused.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # X-Forwarded-Proto (for HSTS and the request's own origin) is believed only from `trusted_proxies` above.
    # Strict-Transport-Security max-age, sent only on HTTPS requests (or when public_url is https).
    hsts_max_age_seconds: int = Field(default=63072000, ge=0)

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or not origin.startswith(("https://", "http://")):
                raise ValueError("allowed_origins must be explicit http(s)://host[:port] origins, never '*'")
        return [origin.rstrip("/").lower() for origin in value]

    @property
    def trusted_origins(self) -> tuple[str, ...]:
        """The origin of public_url, then allowed_origins: the configured cross-origin allow-list."""
        parts = urlsplit(self.public_url)
        origins = [f"{parts.scheme}://{parts.netloc}".lower(), *self.allowed_origins]
        return tuple(dict.fromkeys(origins))

    # --- end of the edge block --------------------------------------------------------------------------------

    # --- Rate limiting (backend/ratelimit.py) ---------------------------------------------------------------------
    # Per client address, and per practice where the caller's practice is known. Limit strings as the `limits`
    # library reads them ("120/minute", "10/second"). Stored in Redis (REDIS_URL), else in process memory.
    rate_limit_enabled: bool = True
    rate_limit_search: str = "120/minute"
    rate_limit_slots: str = "120/minute"
    rate_limit_booking: str = "30/minute"
    rate_limit_waitlist_join: str = "10/minute"
    rate_limit_auth: str = "20/minute"
    rate_limit_unsubscribe: str = "20/minute"
    rate_limit_webhooks: str = "600/minute"
    rate_limit_practice_search: str = "3000/minute"
    rate_limit_practice_slots: str = "3000/minute"
    rate_limit_practice_booking: str = "600/minute"
    rate_limit_practice_waitlist_join: str = "300/minute"
    # --- end rate limiting ----------------------------------------------------------------------------------------

    # --- Metrics (backend/observability/metrics.py) ---------------------------------------------------------------
    # GET /metrics (Prometheus text) answers only `Authorization: Bearer <METRICS_TOKEN>`; unset: 404 (off).
    metrics_token: str | None = Field(default=None, min_length=16)
    # Several processes on one machine (web workers, Celery workers) count together through PROMETHEUS_MULTIPROC_DIR,
    # a directory they share, emptied when the machine boots. prometheus_client reads it from the process environment
    # at import, so it is not a setting here (an .env file does not set it). Unset: each process counts alone.
    # The stand-alone exporter (python -m backend.observability.metrics), for machines that serve no /metrics
    # (Celery workers): it serves the aggregate of PROMETHEUS_MULTIPROC_DIR on METRICS_HOST:METRICS_PORT.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=1, le=65535)
    # Scrape-time readings (outbox by status, queue depths, backing services up) are reused for this long.
    metrics_scrape_cache_seconds: float = Field(default=10.0, ge=0, le=300)
    # --- end metrics ----------------------------------------------------------------------------------------------

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _blank_metrics_setting_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", "database_owner_url", "system_database_url")
    @classmethod
    def _normalise_postgres_driver(cls, value: str | None) -> str | None:
        # Plain postgresql:// would pick psycopg2, which we do not ship; we use psycopg 3.
        if not value:
            return value  # unset (None) or empty: the properties below fall back to DATABASE_URL
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

    @field_validator("sendgrid_base_url", "twilio_base_url", "stripe_api_base")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("provider base URLs must start with https:// (or http:// for a local test server)")
        return value.rstrip("/") if value else value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def owner_url(self) -> str:
        """The migrations' (table owner's) database URL: DATABASE_OWNER_URL, else DATABASE_URL."""
        return self.database_owner_url or self.database_url

    @property
    def system_url(self) -> str:
        """The system scope's database URL: SYSTEM_DATABASE_URL, else DATABASE_URL."""
        return self.system_database_url or self.database_url

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

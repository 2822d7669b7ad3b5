"""Prometheus metrics: every `waitwell_*` metric, the HTTP middleware, the domain-event and Celery hooks, the
scrape-time readings, and the operator's endpoint.

What is counted where:
- HTTP requests, latency and errors per route template: `MetricsMiddleware` (installed by `install_metrics(app)`);
  409 answers of the booking routes count as booking conflicts there too. Per request it only reads a clock and
  bumps in-memory (or memory-mapped) values: no database, no Redis;
- bookings and waitlist offers (made, accepted, declined, expired, withdrawn) and the time from a cancellation to
  the accepted offer of its slot: subscribers of the domain events (backend.events), counted once the change commits;
- provider-search cache hits and misses (backend.scheduling.cache), rate-limit refusals by route and practice
  (backend.ratelimit, and the login throttle), login and MFA failures (backend.identity.service): one call each;
- Celery task outcomes, run time and time waiting in the queue: Celery signals (`install_celery_metrics()`);
- connected live sessions: the pages' server samples its open sockets (portal.live_bridge);
- read when Prometheus scrapes (`ScrapeTimeCollector`, cached for METRICS_SCRAPE_CACHE_SECONDS): the outbox by
  status and its dead letters per practice (one GROUP BY, as the system role), the Celery queue depths (LLEN on
  the broker's Redis lists, or a passive declare on RabbitMQ), the beat heartbeat, whether PostgreSQL and Redis
  answer.

Several processes (web workers, Celery workers) on one machine share PROMETHEUS_MULTIPROC_DIR (from the process
environment): each writes its values to files there and a scrape of any of them sums them all
(prometheus_client.multiprocess). The directory is emptied when the machine boots (one under /run), not when a
service restarts: the files of ended processes keep their counts, so counters never go back. Without it every
process counts alone.

The endpoint: GET /metrics with `Authorization: Bearer <METRICS_TOKEN>` (404 while no token is configured, 401 for
a wrong one); or `python -m backend.observability.metrics` serves the same text on METRICS_HOST:METRICS_PORT
(127.0.0.1:9464 by default) for a machine that runs only workers. Label values are route templates, task names,
queue names, limit classes and practice ids: never a path with ids in it, an address or anything about a patient.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request  # at run time: FastAPI reads the endpoint's annotation

from backend.settings import get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from backend.db import UnitOfWork
    from backend.events import DomainEvent

logger = logging.getLogger(__name__)


def _prepare_multiprocess_dir() -> str | None:
    """The shared directory of the multiprocess mode, created if absent, before prometheus_client is imported (it
    picks its value storage then). From the process environment only: settings are not read at import."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if not path:
        return None
    os.makedirs(path, exist_ok=True)
    return path


MULTIPROC_DIR = _prepare_multiprocess_dir()

from prometheus_client import (  # noqa: E402 - after the multiprocess directory is set, see above
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead  # noqa: E402

disable_created_metrics()  # no *_created series: they double the output and nothing here reads them

# ---- the metrics ----------------------------------------------------------------------------------------------

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# From a cancellation to the accepted offer of its slot: minutes to days.
FILL_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 172800.0, 604800.0)

HTTP_REQUESTS = Counter(
    "waitwell_http_requests_total", "REST requests answered, by route template, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "waitwell_http_request_duration_seconds", "REST request latency by route template and method.",
    ["route", "method"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
HTTP_EXCEPTIONS = Counter(
    "waitwell_http_exceptions_total", "REST requests that ended in an unhandled exception (answered 500).", ["route"]
)
BOOKINGS = Counter(
    "waitwell_bookings_total", "Appointments booked (committed), by source: direct, waitlist, reschedule.", ["source"]
)
BOOKING_CONFLICTS = Counter(
    "waitwell_booking_conflicts_total", "Booking requests answered 409 (slot taken, hold expired), by route.",
    ["route"],
)  # fmt: skip
SEARCH_CACHE = Counter(
    "waitwell_search_cache_lookups_total", "Provider-search cache lookups, by result: hit or miss.", ["result"]
)
RATE_LIMITED = Counter(
    "waitwell_rate_limited_total",
    "Requests refused by a rate limit or the login throttle, by limit class, route (template) and practice id.",
    ["limit_class", "route", "practice"],
)
LOGIN_FAILURES = Counter("waitwell_login_failures_total", "Failed sign-ins (wrong or unknown e-mail or password).")
MFA_FAILURES = Counter("waitwell_mfa_failures_total", "Wrong second-factor codes (TOTP or recovery) at sign-in.")
TASKS = Counter("waitwell_celery_tasks_total", "Celery tasks run, by task name and outcome.", ["task", "outcome"])
TASK_DURATION = Histogram(
    "waitwell_celery_task_duration_seconds", "Celery task run time, by task name.", ["task"], buckets=TASK_BUCKETS
)
TASK_QUEUE_WAIT = Histogram(
    "waitwell_celery_task_queue_wait_seconds", "Time a Celery task waited in the broker before a worker started it.",
    ["task"], buckets=TASK_BUCKETS,
)  # fmt: skip
OFFERS = Counter(
    "waitwell_waitlist_offers_total", "Waitlist offers by event: made, accepted, declined, expired, withdrawn.",
    ["event"],
)  # fmt: skip
CANCELLATION_TO_ACCEPTANCE = Histogram(
    "waitwell_waitlist_cancellation_to_acceptance_seconds",
    "From the cancellation that freed a slot to the accepted waitlist offer of that slot.",
    buckets=FILL_BUCKETS,
)
LIVE_SESSIONS = Gauge(
    "waitwell_live_sessions", "Connected live page sessions (open sockets) of the pages' servers.",
    multiprocess_mode="livesum",
)  # fmt: skip

OFFER_EVENTS = ("made", "accepted", "declined", "expired", "withdrawn")
# POST routes whose 409 means "someone else got the slot first" (or the hold ran out).
BOOKING_ROUTES = frozenset(
    {
        "/api/v1/appointments",
        "/api/v1/appointments/series",
        "/api/v1/appointments/{appointment_id}/reschedule",
        "/api/v1/holds",
        "/api/v1/holds/{hold_id}/confirm",
        "/api/v1/offers/{offer_id}/accept",
    }
)
METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "<unmatched>"


# ---- counting helpers (the one line other modules call) ---------------------------------------------------------


def record_cache_lookups(*, hits: int, misses: int) -> None:
    """Count provider-search cache hits and misses."""
    if hits:
        SEARCH_CACHE.labels(result="hit").inc(hits)
    if misses:
        SEARCH_CACHE.labels(result="miss").inc(misses)


def record_rate_limited(limit_class: str, *, route: str, practice: str | None) -> None:
    """Count one refused request (never the client address: practices and routes are bounded, addresses are not)."""
    RATE_LIMITED.labels(limit_class=limit_class, route=route, practice=practice or "").inc()


def record_login_failure() -> None:
    LOGIN_FAILURES.inc()


def record_mfa_failure() -> None:
    MFA_FAILURES.inc()


def set_live_sessions(count: int) -> None:
    """This process's connected live sessions (the pages' server samples them; the endpoint sums the processes)."""
    LIVE_SESSIONS.set(count)


# ---- domain events ------------------------------------------------------------------------------------------------


def _after_commit(uow: UnitOfWork, count: Callable[[], None]) -> None:
    uow.after_commit(count)  # a rolled-back change is not counted


def _on_booked(uow: UnitOfWork, event: DomainEvent) -> None:
    if event.data.get("offer_id"):
        source = "waitlist"
    elif event.data.get("rescheduled_from"):
        source = "reschedule"
    else:
        source = "direct"
    _after_commit(uow, BOOKINGS.labels(source=source).inc)


def _on_offer(outcome: str) -> Callable[[UnitOfWork, DomainEvent], None]:
    def handler(uow: UnitOfWork, _event: DomainEvent) -> None:
        _after_commit(uow, OFFERS.labels(event=outcome).inc)

    handler.__name__ = f"_on_offer_{outcome}"
    return handler


def _seconds_since_cancellation(uow: UnitOfWork, offer_id: uuid.UUID) -> float | None:
    """From the latest cancellation of a real appointment at the offer's slot (not another offer's hold) to now."""
    from sqlalchemy import exists
    from sqlmodel import col, select

    from backend.scheduling.models import Appointment, AppointmentStatus
    from backend.types import utcnow
    from backend.waitlist.models import WaitlistOffer

    offer = uow.session.get(WaitlistOffer, offer_id)
    if offer is None:
        return None
    # Not a hold of an offer: checked per cancelled appointment at this slot (a few), by the offers' appointment
    # index, instead of listing every offer of the practice that ever held a slot.
    an_offers_hold = exists().where(col(WaitlistOffer.appointment_id) == col(Appointment.id))
    cancelled_at = uow.session.exec(
        select(Appointment.cancelled_at)
        .where(
            Appointment.provider_id == offer.provider_id,
            Appointment.start_at == offer.slot_start,
            Appointment.status == AppointmentStatus.CANCELLED,
            col(Appointment.cancelled_at).is_not(None),
            ~an_offers_hold,
        )
        .order_by(col(Appointment.cancelled_at).desc())
        .limit(1)
    ).first()
    if cancelled_at is None:
        return None  # an open slot offered by a doctor, not a cancellation
    return max(0.0, (utcnow() - cancelled_at).total_seconds())


def _on_offer_accepted(uow: UnitOfWork, event: DomainEvent) -> None:
    _after_commit(uow, OFFERS.labels(event="accepted").inc)
    if not event.entity_id:
        return
    try:
        # In a savepoint: a failed reading must not abort the transaction that books the patient.
        with uow.session.begin_nested():
            waited = _seconds_since_cancellation(uow, uuid.UUID(event.entity_id))
    except Exception:
        logger.warning("could not measure the time from cancellation to acceptance", exc_info=True)
        return
    if waited is not None:
        _after_commit(uow, lambda: CANCELLATION_TO_ACCEPTANCE.observe(waited))


_SUBSCRIPTIONS: tuple[tuple[str, Callable[[UnitOfWork, DomainEvent], None]], ...] = (
    ("appointment.booked", _on_booked),
    ("waitlist.offer_created", _on_offer("made")),
    ("waitlist.offer_accepted", _on_offer_accepted),
    ("waitlist.offer_declined", _on_offer("declined")),
    ("waitlist.offer_expired", _on_offer("expired")),
    ("waitlist.offer_withdrawn", _on_offer("withdrawn")),
)


def install_event_metrics() -> None:
    """Count bookings and offers from the domain events (idempotent). Every entry point calls it."""
    from backend import events

    for name, handler in _SUBSCRIPTIONS:
        events.subscribe(name, handler)


# ---- Celery ---------------------------------------------------------------------------------------------------

PUBLISHED_HEADER = "waitwell_published_at"
_task_started: dict[str, float] = {}
_task_lock = threading.Lock()


def _on_publish(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    if headers is not None:
        headers.setdefault(PUBLISHED_HEADER, time.time())


def _on_prerun(task_id: str | None = None, task: Any = None, **_kwargs: Any) -> None:
    if task_id is None:
        return
    with _task_lock:
        _task_started[task_id] = time.perf_counter()
    request = getattr(task, "request", None)
    published = getattr(request, PUBLISHED_HEADER, None) if request is not None else None
    if published is None and request is not None:
        published = (getattr(request, "headers", None) or {}).get(PUBLISHED_HEADER)
    if isinstance(published, int | float) and not getattr(request, "is_eager", False):
        TASK_QUEUE_WAIT.labels(task=getattr(task, "name", "unknown")).observe(max(0.0, time.time() - published))


def _on_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_kwargs: Any) -> None:
    with _task_lock:
        started = _task_started.pop(task_id, None) if task_id else None
    name = getattr(task, "name", None) or "unknown"
    TASKS.labels(task=name, outcome=(state or "unknown").lower()).inc()
    if started is not None:
        TASK_DURATION.labels(task=name).observe(time.perf_counter() - started)


def _on_worker_process_shutdown(pid: int | None = None, **_kwargs: Any) -> None:
    if MULTIPROC_DIR:
        mark_process_dead(pid or os.getpid(), MULTIPROC_DIR)


def install_celery_metrics() -> None:
    """Count task outcomes, run time and queue wait from Celery's signals (idempotent)."""
    from celery import signals

    signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid="waitwell-metrics-publish")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="waitwell-metrics-prerun")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="waitwell-metrics-postrun")
    signals.worker_process_shutdown.connect(
        _on_worker_process_shutdown, weak=False, dispatch_uid="waitwell-metrics-shutdown"
    )


# ---- beat heartbeat -----------------------------------------------------------------------------------------------

_local_heartbeat: float | None = None


def heartbeat_key() -> str:
    return f"{get_settings().redis_key_prefix}:metrics:beat_heartbeat"


def record_beat_heartbeat(now: float | None = None) -> None:
    """Note that beat's schedule ran (a beat-scheduled task calls this): in Redis, or in this process without it."""
    global _local_heartbeat
    stamp = time.time() if now is None else now
    if get_settings().redis_url:
        from backend.redis_client import get_redis

        get_redis().set(heartbeat_key(), repr(stamp))
    else:
        _local_heartbeat = stamp


def last_beat_heartbeat() -> float | None:
    if get_settings().redis_url:
        from backend.redis_client import get_redis

        raw = get_redis().get(heartbeat_key())
        return float(raw) if raw is not None else None  # type: ignore[arg-type]
    return _local_heartbeat


# ---- scrape-time readings -----------------------------------------------------------------------------------------

# Statuses read from the outbox: every one but 'sent' (the delivered history only grows; the index on status keeps
# the query to the rows still in flight).
OUTBOX_STATUSES = ("pending", "sending", "failed", "unknown", "dead")
_PRIORITY_SEPARATOR = "\x06\x16"  # kombu's Redis transport keeps priorities 3, 6, 9 in lists of their own
_PRIORITY_STEPS = (3, 6, 9)


def _outbox_counts() -> tuple[dict[str, int], dict[str, int]]:
    """(rows per status, dead rows per practice id): one GROUP BY over the rows still in flight."""
    from sqlalchemy import bindparam, text

    from backend.db import UnitOfWork

    by_status = dict.fromkeys(OUTBOX_STATUSES, 0)
    dead: dict[str, int] = {}
    query = text(
        "SELECT status, tenant_id, count(*) FROM notifications WHERE status IN :statuses GROUP BY status, tenant_id"
    ).bindparams(bindparam("statuses", expanding=True))
    with UnitOfWork(system=True) as uow:
        rows = uow.session.connection().execute(query, {"statuses": list(OUTBOX_STATUSES)}).all()
    for status, tenant_id, count in rows:
        by_status[str(status)] = by_status.get(str(status), 0) + int(count)
        if status == "dead":
            practice = str(uuid.UUID(hex=str(tenant_id))) if tenant_id is not None else ""
            dead[practice] = dead.get(practice, 0) + int(count)
    return by_status, dead


def queue_names() -> tuple[str, ...]:
    """The Celery queues the workers read."""
    return (get_settings().celery_queue,)


def _queue_depths() -> dict[str, int]:
    settings = get_settings()
    url = settings.broker_url
    if not url:
        return {}
    if url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            depths = {}
            for queue in queue_names():
                keys = [queue, *(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)]
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.llen(key)
                depths[queue] = sum(int(n) for n in pipe.execute())
            return depths
        finally:
            client.close()
    from kombu import Connection

    depths = {}
    with Connection(url, connect_timeout=2) as conn:
        channel = conn.channel()
        try:
            for queue in queue_names():
                try:
                    _, count, _ = channel.queue_declare(queue=queue, passive=True)
                except Exception:  # noqa: BLE001 - a queue not declared yet holds nothing
                    count = 0
                    channel = conn.channel()  # AMQP closes the channel that asked
                depths[queue] = int(count)
        finally:
            channel.close()
    return depths


def _database_up() -> bool:
    from sqlalchemy import text

    from backend.db import get_engine

    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
    return True


def _redis_up() -> bool:
    from backend.redis_client import get_redis

    return bool(get_redis().ping())


class _Cached:
    """One reading, reused for METRICS_SCRAPE_CACHE_SECONDS; None while it fails."""

    def __init__(self, name: str, read: Callable[[], Any]) -> None:
        self.name = name
        self.read = read
        self._value: Any = None
        self._at = -float("inf")
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if time.monotonic() - self._at < get_settings().metrics_scrape_cache_seconds:
                return self._value
            try:
                self._value = self.read()
            except Exception as exc:  # noqa: BLE001 - a failed reading is reported as absent, not as a scrape error
                logger.warning("metrics: reading %s failed (%s)", self.name, type(exc).__name__)
                self._value = None
            self._at = time.monotonic()
            return self._value

    def clear(self) -> None:
        with self._lock:
            self._at = -float("inf")


class ScrapeTimeCollector:
    """Readings taken when Prometheus scrapes: shared state (database, broker, Redis), the same from every process."""

    def __init__(self) -> None:
        self.outbox = _Cached("outbox", _outbox_counts)
        self.queues = _Cached("queue depth", _queue_depths)
        self.database = _Cached("database", _database_up)
        self.redis = _Cached("redis", _redis_up)

    def clear(self) -> None:
        """Forget the cached readings (tests, and right after a deploy)."""
        for reading in (self.outbox, self.queues, self.database, self.redis):
            reading.clear()

    def collect(self) -> Iterator[Metric]:
        outbox = GaugeMetricFamily(
            "waitwell_outbox_messages", "Outbox notifications still in flight, by status (sent ones are not counted).",
            labels=["status"],
        )  # fmt: skip
        dead = GaugeMetricFamily(
            "waitwell_outbox_dead_letters", "Dead-lettered outbox notifications, by practice id.", labels=["practice"]
        )
        counts = self.outbox.get()
        if counts is not None:
            by_status, by_practice = counts
            for status, count in sorted(by_status.items()):
                outbox.add_metric([status], count)
            for practice, count in sorted(by_practice.items()):
                dead.add_metric([practice], count)
        yield outbox
        yield dead

        depth = GaugeMetricFamily(
            "waitwell_celery_queue_depth", "Messages waiting in each Celery queue (read from the broker).",
            labels=["queue"],
        )  # fmt: skip
        for queue, count in sorted((self.queues.get() or {}).items()):
            depth.add_metric([queue], count)
        yield depth

        beat = GaugeMetricFamily(
            "waitwell_beat_heartbeat_timestamp_seconds", "Unix time of the last run of beat's heartbeat task."
        )
        try:
            stamp = last_beat_heartbeat()
        except Exception as exc:  # noqa: BLE001 - Redis down: no sample, WaitwellRedisDown says why
            logger.warning("metrics: reading the beat heartbeat failed (%s)", type(exc).__name__)
            stamp = None
        if stamp is not None:
            beat.add_metric([], stamp)
        yield beat

        up = GaugeMetricFamily(
            "waitwell_dependency_up", "Whether a backing service answers (1) or not (0): database, redis.",
            labels=["dependency"],
        )  # fmt: skip
        up.add_metric(["database"], 1.0 if self.database.get() else 0.0)
        if get_settings().redis_url:
            up.add_metric(["redis"], 1.0 if self.redis.get() else 0.0)
        yield up


SCRAPE_TIME = ScrapeTimeCollector()


class _ThisProcess:
    """This process's own metrics (the single-process mode)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def build_registry(multiproc_dir: str | None = None) -> CollectorRegistry:
    """What a scrape reads: every process's values (multiprocess mode) or this one's, plus the scrape-time readings."""
    registry = CollectorRegistry()
    path = multiproc_dir or MULTIPROC_DIR
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(_ThisProcess())  # type: ignore[arg-type]
    registry.register(SCRAPE_TIME)  # type: ignore[arg-type]
    return registry


def exposition() -> bytes:
    """The Prometheus text of one scrape."""
    return generate_latest(build_registry())


# ---- HTTP ---------------------------------------------------------------------------------------------------------


class MetricsMiddleware:
    """Counts every REST request by route template, method and status, and times it. Cheap by design."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        method = str(scope.get("method", "GET"))
        try:
            await self.app(scope, receive, send_and_note)
        except BaseException:
            HTTP_EXCEPTIONS.labels(route=_route_of(scope)).inc()
            status = 500
            raise
        finally:
            route = _route_of(scope)
            HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
            HTTP_LATENCY.labels(route=route, method=method).observe(time.perf_counter() - started)
            if status == 409 and method == "POST" and route in BOOKING_ROUTES:
                BOOKING_CONFLICTS.labels(route=route).inc()


def _route_of(scope: Scope) -> str:
    """The matched route's template (never the raw path: ids would make a series per request)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def metrics_endpoint(request: Request) -> Any:
    """Prometheus text for an operator: `Authorization: Bearer <METRICS_TOKEN>`; 404 while no token is set."""
    from fastapi import HTTPException
    from fastapi.responses import Response

    expected = get_settings().metrics_token
    if not expected:
        raise HTTPException(status_code=404, detail="Not Found")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def install_metrics(app: FastAPI) -> None:
    """Count the app's requests, serve GET /metrics to the operator, and count the domain events' outcomes."""
    from fastapi.responses import PlainTextResponse

    install_event_metrics()
    app.add_middleware(MetricsMiddleware)
    app.add_api_route(
        METRICS_PATH,
        metrics_endpoint,
        methods=["GET"],
        tags=["operations"],
        summary="Prometheus metrics (operators: bearer METRICS_TOKEN; 404 when unset)",
        response_class=PlainTextResponse,
    )


# ---- the stand-alone exporter ---------------------------------------------------------------------------------


def serve(host: str | None = None, port: int | None = None) -> None:
    """Serve the metrics text on host:port until interrupted (for machines that run only Celery workers)."""
    from prometheus_client import start_http_server

    settings = get_settings()
    server, thread = start_http_server(
        port or settings.metrics_port, addr=host or settings.metrics_host, registry=build_registry()
    )
    logger.info("metrics exporter on %s:%s", host or settings.metrics_host, port or settings.metrics_port)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    serve()

"""Shared fixtures and helpers for the REST security suite (tests/security).

Everything here is generic, so any tests/security/test_*.py can use it:

- `operations()`: every operation of the OpenAPI document (backend.api.app.api.openapi()), with its path and
  query parameters and its request body schema. Tests iterate over it, so a new route is covered without anyone
  remembering to add it.
- `PUBLIC_OPERATIONS`: the explicit allow-list of routes that need no bearer token, each with the reason.
  test_cross_tenant.py checks it for staleness (every entry exists and is really public, and every route
  without security is on it).
- `KIND_BY_PARAM` / `KIND_BY_SEGMENT` / `param_kind()`: which kind of object a path or query parameter names
  (clinic, provider, appointment, entry, offer, ...). An unmapped kind is a test failure, never a skip.
- `sample_body()` / `sample_query()` / `fill_path()`: a schema-valid request for an operation, with the ids of
  a chosen practice's objects in every *_id field.
- `security_world` (module-scoped fixture): two practices "A" and "B", each with one object of every kind and a
  real bearer token per role (patient, doctor, admin), obtained from POST /api/v1/auth/token. The data is
  truncated when the module ends (like the `db` fixture does per test).
- `tenant_snapshot()` / `tenant_uuids()`: a per-table hash of every row a tenant owns, and every UUID value in
  those rows (to assert "nothing changed" and "no id of that tenant appears in a response").
- `api_client` (session-scoped fixture): a fastapi TestClient over backend.api.app.api that returns 5xx
  responses instead of raising, so a test can report them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api

API_PREFIX = "/api/v1"
ROLES = ("patient", "doctor", "admin")
HTTP_METHODS = ("get", "put", "post", "delete", "patch")

# Routes that intentionally take no bearer token. Keep this list short and say why each one is safe.
PUBLIC_OPERATIONS: dict[tuple[str, str], str] = {
    ("GET", "/api/health"): "liveness probe: constant body, no data",
    ("GET", "/api/ready"): "readiness probe: reports only whether each backing service answers",
    ("POST", "/api/v1/auth/token"): "login: exchanges email + password for a token",
    ("POST", "/api/v1/auth/refresh"): "token refresh: the opaque single-use refresh token is the credential",
    ("POST", "/api/v1/auth/password-reset"): "forgot password: one answer whether or not the e-mail has an account",
    ("POST", "/api/v1/auth/password-reset/confirm"): "reset link: the single-use, expiring token is the credential",
    ("POST", "/api/v1/auth/invitation/accept"): "invitation link: the single-use, expiring token is the credential",
    ("POST", "/api/v1/auth/register"): "self-registration (off unless the practice turns it on): one answer whether "
    "or not the e-mail has an account; nothing usable until the e-mailed link is opened",
    ("POST", "/api/v1/auth/register/verify"): "registration link: the single-use, expiring token (and the password "
    "chosen) is the credential",
    ("POST", "/api/v1/unsubscribe/{token}"): "e-mail unsubscribe link: the signed token is the credential",
    ("POST", "/api/v1/webhooks/twilio/inbound"): "Twilio callback: X-Twilio-Signature checked",
    ("POST", "/api/v1/webhooks/twilio/status"): "Twilio callback: X-Twilio-Signature checked",
    ("POST", "/api/v1/webhooks/sendgrid/events"): "SendGrid Event Webhook: ECDSA signature checked",
    ("POST", "/api/v1/webhooks/stripe"): "Stripe webhook: Stripe-Signature (HMAC, timestamp) checked",
    ("GET", "/api/v1/practices/{practice}/texts/{kind}"): "a practice's public Terms/Privacy text: published "
    "for anyone, read-only, no patient data",
    ("GET", "/metrics"): "operators' Prometheus metrics: not a tenant route and no user token opens it; its own "
    "METRICS_TOKEN (constant-time compare; 404 while unset, 401 otherwise); counts and ids only, never PHI",
}

# Parameter (or body field) name -> the kind of object it names. Add a line here for a new id parameter.
KIND_BY_PARAM: dict[str, str] = {
    "clinic_id": "clinic",
    "move_to_clinic_id": "clinic",
    "provider_id": "provider",
    "patient_id": "patient",
    "user_id": "user",
    "appointment_id": "appointment",
    "series_id": "series",
    "hold_id": "hold",
    "entry_id": "entry",
    "offer_id": "offer",
    "notification_id": "notification",
    "time_off_id": "time_off",
    "rule_id": "availability_rule",
    "audit_event_id": "audit_event",
    "entity_id": "audit_event",
    "policy_id": "fee_policy",
    "payment_id": "payment",
    "job_id": "policy_preview",
}
# Path segment before a generic `{id}` (or an unknown `{..._id}`) -> the kind of object. Add new collections here.
KIND_BY_SEGMENT: dict[str, str] = {
    "clinics": "clinic",
    "providers": "provider",
    "patients": "patient",
    "users": "user",
    "appointments": "appointment",
    "series": "series",
    "holds": "hold",
    "waitlists": "entry",
    "waitlist-entries": "entry",
    "offers": "offer",
    "notifications": "notification",
    "time-off": "time_off",
    "availability": "availability_rule",
    "audit-events": "audit_event",
    "payments": "payment",
}


# --- the OpenAPI document ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One method + path of the OpenAPI document."""

    method: str  # upper case
    path: str
    spec: dict[str, Any] = field(hash=False, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def public(self) -> bool:
        return (self.method, self.path) in PUBLIC_OPERATIONS

    @property
    def secured(self) -> bool:
        """The document says it needs a bearer token."""
        return bool(self.spec.get("security"))

    def params(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p.get("in") == where]

    @property
    def path_params(self) -> list[str]:
        return [p["name"] for p in self.params("path")]

    @property
    def body_schema(self) -> dict[str, Any] | None:
        content = (self.spec.get("requestBody") or {}).get("content", {})
        media = content.get("application/json")
        return media.get("schema") if media else None


@cache
def openapi_document() -> dict[str, Any]:
    return api.openapi()


@cache
def operations() -> tuple[Operation, ...]:
    """Every operation of the document, in document order."""
    found = []
    for path, item in openapi_document()["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                found.append(Operation(method.upper(), path, item[method]))
    return tuple(found)


def param_kind(path: str, name: str) -> str | None:
    """The kind of object a path parameter names: by its name, else by the path segment before it."""
    if name in KIND_BY_PARAM:
        return KIND_BY_PARAM[name]
    segments = path.split("/")
    placeholder = "{" + name + "}"
    if placeholder in segments:
        index = segments.index(placeholder)
        if index > 0 and (name == "id" or name.endswith("_id")):
            return KIND_BY_SEGMENT.get(segments[index - 1])
    return None


def unmapped_message(op: Operation, name: str) -> str:
    return (
        f"{op}: cannot tell which kind of object the path parameter {{{name}}} names. Add it to KIND_BY_PARAM "
        "(or the collection segment to KIND_BY_SEGMENT) in tests/security/conftest.py, give the world an object "
        "of that kind (build_practice), or, if the route is meant to be public, add it to PUBLIC_OPERATIONS."
    )


# --- request builders ----------------------------------------------------------------------------------------

IdLookup = Callable[[str], "uuid.UUID | None"]  # body/query field name -> the id to send (None: not an id field)


def _day(days: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days)


SAMPLE_START = _day(9) + timedelta(hours=15)  # a future slot start on the hour (UTC)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = openapi_document()["components"]["schemas"][name]
    return schema


def _sample_string(name: str, schema: dict[str, Any]) -> str:
    fmt = schema.get("format")
    later = name.endswith("end") or name in {"end", "until", "valid_until", "latest_date"}
    if fmt == "date-time":
        return (SAMPLE_START + timedelta(hours=1 if later else 0)).isoformat()
    if fmt == "date":
        return (SAMPLE_START + timedelta(days=30 if later else 0)).date().isoformat()
    if fmt == "time":
        return "17:00:00" if later else "09:00:00"
    if fmt == "uuid":
        return str(uuid.uuid4())
    if fmt == "email" or name == "email":
        return "probe@example.test"
    if name == "timezone":
        return "America/New_York"
    if name == "modality":
        return "in_person"
    if "pattern" in schema and ("HH" in str(schema.get("description", "")) or ":" in schema["pattern"]):
        return "18:00" if later else "09:00"
    if name.endswith("hours_start") or name.endswith("hours_end"):
        return "22:00" if name.endswith("start") else "07:00"
    text = "Security probe"
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    text = text.ljust(low, "x")
    return text[:high] if high else text


_INT_BY_NAME = {"weekday": 1, "session_minutes": 50, "buffer_minutes": 10, "version": 1, "count": 2,
                "every_weeks": 1, "urgency": 2}  # fmt: skip


def _sample_number(name: str, schema: dict[str, Any], kind: type) -> Any:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        low = low + (1 if kind is int else 0.5)
    high = schema.get("maximum")
    value = _INT_BY_NAME.get(name, low if low is not None else 1)
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return kind(value)


def sample_value(schema: dict[str, Any], name: str, ids: IdLookup, *, top: bool = False) -> Any:
    """A plausible, schema-valid value for `schema` (ids from `ids` for id fields)."""
    schema = _resolve(schema)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_resolve(part))
        schema = merged
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [b for b in schema[key] if _resolve(b).get("type") != "null"]
            return sample_value(branches[0], name, ids, top=top) if branches else None
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    found = ids(name)
    if found is not None and schema.get("type") in (None, "string"):
        return str(found)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return sample_object(schema, ids, top=top)
    if kind == "array":
        items = _resolve(schema.get("items", {}))
        count = max(schema.get("minItems", 0), 1 if "properties" in items else 0)
        return [sample_value(items, name, ids) for _ in range(count)]
    if kind == "string":
        return _sample_string(name, schema)
    if kind == "integer":
        return _sample_number(name, schema, int)
    if kind == "number":
        return _sample_number(name, schema, float)
    if kind == "boolean":
        return False
    return None


def sample_object(schema: dict[str, Any], ids: IdLookup, *, top: bool = False) -> dict[str, Any]:
    """Required fields, every id field, and (for a top-level body with nothing required, e.g. a PATCH) all
    fields, so that a write that should have been refused would really change something."""
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    chosen = [
        name
        for name in properties
        if name in required or name in KIND_BY_PARAM or name == "count" or (top and not required)
    ]
    return {name: sample_value(properties[name], name, ids) for name in chosen}


def sample_body(op: Operation, ids: IdLookup) -> Any:
    """A schema-valid JSON body for `op` (even when the body is optional), or None when it takes none."""
    schema = op.body_schema
    return None if schema is None else sample_value(schema, "body", ids, top=True)


def sample_query(op: Operation, ids: IdLookup) -> dict[str, str]:
    """Every required query parameter, and every query parameter that takes an id (with ids from `ids`)."""
    query: dict[str, str] = {}
    for param in op.params("query"):
        name = param["name"]
        found = ids(name)
        if found is not None:
            query[name] = str(found)
        elif param.get("required"):
            value = sample_value(param.get("schema", {}), name, ids)
            query[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return query


def fill_path(op: Operation, value_of: Callable[[str], uuid.UUID]) -> str:
    """The path with each {param} replaced by value_of(param)."""
    path = op.path
    for name in op.path_params:
        path = path.replace("{" + name + "}", str(value_of(name)))
    return path


def id_lookup(objects: dict[str, uuid.UUID]) -> IdLookup:
    """Field name -> the id of that kind in `objects` (None when the name is not an id field we know)."""

    def lookup(name: str) -> uuid.UUID | None:
        kind = KIND_BY_PARAM.get(name)
        return objects.get(kind) if kind else None

    return lookup


def call(client: TestClient, op: Operation, path: str, *, token: str | None, query: dict[str, str] | None = None,
         body: Any = None, headers: dict[str, str] | None = None) -> Any:  # fmt: skip
    """Send one request (JSON body when `body` is not None); returns the httpx response."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    kwargs: dict[str, Any] = {"params": query or {}, "headers": sent}
    if body is not None:
        kwargs["json"] = body
    return client.request(op.method, path, **kwargs)


def describe(response: Any, body: Any = None) -> str:
    """The request and the response, for a failure message."""
    request = response.request
    sent = f" body={body!r}" if body is not None else ""
    return f"{request.method} {request.url}{sent} -> {response.status_code} {response.text[:600]}"


# --- the database --------------------------------------------------------------------------------------------


def _tenant_tables() -> list[sa.Table]:
    from backend.models import metadata

    return [t for t in metadata.sorted_tables if "tenant_id" in t.columns]


def tenant_snapshot(engine: sa.Engine, tenant_id: uuid.UUID) -> dict[str, str]:
    """table -> "rows:md5" of every row the tenant owns (and its tenants row), in one query."""
    parts = ["SELECT 'tenants' AS t, count(*) AS n, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
             "AS h FROM tenants x WHERE x.id = :tid"]  # fmt: skip
    for table in _tenant_tables():
        rows = "md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
        parts.append(f"SELECT '{table.name}', count(*), {rows} FROM \"{table.name}\" x WHERE x.tenant_id = :tid")  # noqa: S608
    with engine.connect() as conn:
        result = conn.execute(sa.text(" UNION ALL ".join(parts)), {"tid": tenant_id})
        return {row[0]: f"{row[1]}:{row[2]}" for row in result}


def snapshot_diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))


def tenant_uuids(engine: sa.Engine, tenant_id: uuid.UUID) -> set[str]:
    """Every UUID value (ids and references) in the tenant's rows, plus the tenant id, as lower-case strings."""
    found = {str(tenant_id)}
    with engine.connect() as conn:
        for table in _tenant_tables():
            columns = [c for c in table.columns if _is_uuid(c)]
            if not columns:
                continue
            select = ", ".join(f'"{c.name}"::text' for c in columns)
            query = f'SELECT {select} FROM "{table.name}" WHERE tenant_id = :tid'  # noqa: S608 - our own metadata
            for row in conn.execute(sa.text(query), {"tid": tenant_id}):
                found.update(v.lower() for v in row if v)
    return found


def _is_uuid(column: sa.Column[Any]) -> bool:
    try:
        return column.type.python_type is uuid.UUID
    except NotImplementedError:
        return False


def leaked(text: str, foreign_ids: set[str], *, sent: set[str] = frozenset()) -> set[str]:  # type: ignore[assignment]
    """The foreign ids that appear in `text`, other than those the caller sent itself."""
    lowered = text.lower()
    return {i for i in foreign_ids - sent if i in lowered}


# --- the world: two practices with one object of every kind ---------------------------------------------------


@dataclass
class PracticeWorld:
    """One practice: its tenant id, one object id per kind, and a real bearer token per role."""

    name: str
    tenant_id: uuid.UUID
    objects: dict[str, uuid.UUID]
    tokens: dict[str, str]
    emails: dict[str, str]
    user_ids: dict[str, uuid.UUID]

    @property
    def ids(self) -> IdLookup:
        return id_lookup(self.objects)


@dataclass
class World:
    practices: dict[str, PracticeWorld]
    engine: sa.Engine

    _uuids: dict[str, set[str]] = field(default_factory=dict)

    def __getitem__(self, key: str) -> PracticeWorld:
        return self.practices[key]

    def uuids_of(self, key: str) -> set[str]:
        """Every UUID in the practice's rows as built (cached: tests assert that those rows never change)."""
        if key not in self._uuids:
            self._uuids[key] = tenant_uuids(self.engine, self.practices[key].tenant_id)
        return self._uuids[key]


def build_practice(label: str, name: str) -> tuple[Any, dict[str, uuid.UUID]]:
    """A practice (tests.factories) plus one object of every kind; returns it with {kind: id}."""
    from backend.db import UnitOfWork
    from backend.notifications.models import (
        Channel,
        Notification,
        NotificationDelivery,
        NotificationPreference,
        NotificationSettings,
        NotificationStatus,
    )
    from backend.payments.models import FeePolicy, Payment, PaymentMethod, PolicyAcceptance
    from backend.scheduling.models import Appointment, AppointmentStatus
    from backend.tenancy.context import Role
    from backend.types import utcnow
    from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistOffer, WaitlistPolicy
    from tests.factories import (
        add_appointment,
        add_audit_event,
        add_availability,
        add_time_off,
        add_user,
        add_waitlist_entry,
        make_practice,
        set_booking_policy,
    )

    slug = f"sec-{label.lower()}-{uuid.uuid4().hex[:6]}"
    p = make_practice(name, slug)
    rules = add_availability(p)
    extra_user = add_user(p, f"second.admin@{slug}.test", Role.ADMIN, full_name="Second Admin")
    set_booking_policy(p, hold_minutes=10)
    series_id = uuid.uuid4()
    first = add_appointment(p, _day(4) + timedelta(hours=14))
    second = add_appointment(p, _day(11) + timedelta(hours=14))
    entry = add_waitlist_entry(p)
    offered_entry = add_waitlist_entry(p, any_provider=True, status=EntryStatus.OFFERED)
    time_off = add_time_off(p, _day(20) + timedelta(hours=9), _day(20) + timedelta(hours=12), reason="training")
    audit = add_audit_event(p, "test.security")
    now = utcnow()
    with UnitOfWork(p.system) as uow:
        s = uow.session
        for a in (first, second):
            row = s.get(Appointment, a.id)
            assert row is not None
            row.series_id = series_id
            s.add(row)
        hold = Appointment(tenant_id=p.tenant_id, provider_id=p.provider.id, patient_id=p.patient.id,
                           clinic_id=p.clinic.id, start_at=_day(6) + timedelta(hours=14),
                           end_at=_day(6) + timedelta(hours=14, minutes=50), status=AppointmentStatus.HELD,
                           hold_expires_at=now + timedelta(hours=2))  # fmt: skip
        offer_slot = Appointment(tenant_id=p.tenant_id, provider_id=p.provider.id, patient_id=p.patient.id,
                                 clinic_id=p.clinic.id, start_at=_day(8) + timedelta(hours=14),
                                 end_at=_day(8) + timedelta(hours=14, minutes=50), status=AppointmentStatus.HELD,
                                 hold_expires_at=now + timedelta(hours=2))  # fmt: skip
        s.add_all([hold, offer_slot])
        s.flush()
        offer = WaitlistOffer(tenant_id=p.tenant_id, entry_id=offered_entry.id, appointment_id=offer_slot.id,
                              provider_id=p.provider.id, clinic_id=p.clinic.id, slot_start=offer_slot.start_at,
                              slot_end=offer_slot.end_at, status=OfferStatus.PENDING, kind="invite",
                              offered_by_user_id=p.admin_user.id, score=1.0, reasons=["security probe"],
                              expires_at=now + timedelta(hours=2))  # fmt: skip
        note = Notification(tenant_id=p.tenant_id, patient_id=p.patient.id, event_type="appointment_booked",
                            channel=Channel.EMAIL, payload={"appointment_id": str(first.id)},
                            status=NotificationStatus.DEAD, attempts=5, last_error="probe")  # fmt: skip
        s.add_all([offer, note])
        s.add(NotificationPreference(tenant_id=p.tenant_id, patient_id=p.patient.id))
        s.add(NotificationSettings(tenant_id=p.tenant_id, reminder_offsets_minutes=[2880, 120]))
        s.add(WaitlistPolicy(tenant_id=p.tenant_id, clinic_id=p.clinic.id, offer_hold_minutes=45))
        s.flush()
        s.add(NotificationDelivery(tenant_id=p.tenant_id, notification_id=note.id, status=NotificationStatus.DEAD,
                                   attempts=5, last_error="probe"))  # fmt: skip
        fee_policy = FeePolicy(tenant_id=p.tenant_id, late_cancel_fee_minor=2500, no_show_fee_minor=5000)
        payment_id = uuid.uuid4()
        payment = Payment(id=payment_id, tenant_id=p.tenant_id, patient_id=p.patient.id, appointment_id=first.id,
                          kind="no_show_fee", status="failed", amount_minor=5000, currency="usd",
                          idempotency_key=f"payment:{payment_id}:1", last_error="card_declined")  # fmt: skip
        s.add_all([fee_policy, payment])
        s.add(PaymentMethod(tenant_id=p.tenant_id, patient_id=p.patient.id, provider_customer_id="cus_probe",
                            provider_method_id=f"pm_probe_{slug}", brand="visa", last4="4242"))  # fmt: skip
        s.flush()
        s.add(PolicyAcceptance(tenant_id=p.tenant_id, patient_id=p.patient.id, policy_id=fee_policy.id,
                               policy_version=fee_policy.version))  # fmt: skip
        uow.commit()
    objects = {
        "clinic": p.clinic.id,
        "provider": p.provider.id,
        "patient": p.patient.id,
        "user": extra_user.id,  # a second admin (not a login the tests use)
        "appointment": first.id,
        "series": series_id,
        "hold": hold.id,
        "entry": entry.id,
        "offer": offer.id,
        "notification": note.id,
        "time_off": time_off.id,
        "availability_rule": rules[0].id,
        "audit_event": audit.id,
        "fee_policy": fee_policy.id,
        "payment": payment.id,
        "policy_preview": _finished_preview(p),
    }
    return p, objects


def _finished_preview(p: Any) -> uuid.UUID:
    """A policy preview job of the practice (too little history here: it finishes at once), waited for."""
    import time

    from backend.db import UnitOfWork
    from backend.waitlist import preview

    with UnitOfWork(p.admin) as uow:
        job_id = preview.preview_policy(p.admin, uow, None, {"offer_hold_minutes": 20})
    deadline = time.monotonic() + 60
    while True:
        with UnitOfWork(p.admin) as uow:
            if preview.preview_status(p.admin, uow, job_id).state in preview.FINISHED:
                return job_id
        assert time.monotonic() < deadline, "the practice's policy preview did not finish"
        time.sleep(0.05)


def login(client: TestClient, email: str, password: str) -> str:
    """A full sign-in: with an MFA code for an account that has MFA (every admin the factories make)."""
    from tests.factories import token_request

    response = client.post(f"{API_PREFIX}/auth/token", json=token_request(email, password))
    assert response.status_code == 200, response.text
    # A token limited to MFA enrolment would be refused everywhere (403) and so pass every probe for nothing.
    assert response.json()["mfa_enrolment_required"] is False, f"{email} has not set up MFA"
    return str(response.json()["access_token"])


@pytest.fixture(scope="session")
def api_client() -> Iterator[TestClient]:
    """TestClient over the REST API; a server error comes back as a 500 response instead of raising."""
    with TestClient(api, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def no_rate_limit() -> Iterator[None]:
    """Make sure rate limiting (if the settings have it) cannot turn a probe into a 429."""
    from backend.settings import get_settings

    settings = get_settings()
    with pytest.MonkeyPatch.context() as mp:
        if hasattr(settings, "rate_limit_enabled"):
            mp.setattr(settings, "rate_limit_enabled", False)
        yield


@pytest.fixture(scope="module")
def security_world(engine: sa.Engine, api_client: TestClient, no_rate_limit: None) -> Iterator[World]:
    """Practices "A" (Harbor) and "B" (Summit), each with one object of every kind and a token per role.

    Module-scoped: built once per test module, truncated when the module ends."""
    from backend.models import metadata
    from tests.factories import TEST_PASSWORD

    practices: dict[str, PracticeWorld] = {}
    try:
        for label, name in (("A", "Harbor Security"), ("B", "Summit Security")):
            p, objects = build_practice(label, name)
            practices[label] = PracticeWorld(
                name=name,
                tenant_id=p.tenant_id,
                objects=objects,
                tokens={role: login(api_client, p.emails[role], TEST_PASSWORD) for role in ROLES},
                emails=dict(p.emails),
                user_ids={"admin": p.admin_user.id, "doctor": p.doctor_user.id, "patient": p.patient_user.id},
            )
        yield World(practices, engine)
    finally:
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        with engine.begin() as conn:
            # The audit tables refuse TRUNCATE (append-only triggers); replica mode skips triggers (superuser).
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")

"""Rate limits on the public and high-volume REST routes: 429 with Retry-After and RateLimit-*, keyed per client
address and per practice, breach counters, the in-memory fallback, and failing open when Redis is down."""

from __future__ import annotations

import logging
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from limits import parse

from backend import ratelimit
from backend.api.app import api
from backend.identity.security import issue_access_token
from backend.ratelimit import LIMIT_CLASSES, PRACTICE_CLASSES, Policy, RateLimiter
from backend.settings import get_settings
from tests.conftest import free_port

DETAIL = re.compile(r"^Too many requests\. Try again in (\d+) seconds\.$")
START = datetime(2030, 1, 7, 9, tzinfo=UTC)
SLOTS_QUERY = {"start": START.isoformat(), "end": (START + timedelta(days=1)).isoformat()}
ANY_ID = uuid.UUID(int=1)
# The browser's own origin: the edge middleware refuses cross-site posts to /auth/* before any limit applies.
SAME_SITE = {"Origin": "http://testserver"}

# (limit class, method, path, request keyword arguments): every limited route.
ROUTES: list[tuple[str, str, str, dict[str, object]]] = [
    ("search", "GET", "/api/v1/providers", {}),
    ("search", "GET", "/api/v1/providers/facets", {}),
    ("slots", "GET", f"/api/v1/providers/{ANY_ID}/slots", {"params": SLOTS_QUERY}),
    ("booking", "POST", "/api/v1/appointments", {"json": {}}),
    ("booking", "POST", "/api/v1/holds", {"json": {}}),
    ("booking", "POST", f"/api/v1/holds/{ANY_ID}/confirm", {"json": {"version": 1}}),
    ("waitlist_join", "POST", "/api/v1/waitlists", {"json": {}}),
    ("auth", "POST", "/api/v1/auth/token", {"json": {}}),
    ("auth", "POST", "/api/v1/auth/refresh", {"json": {}}),
    ("auth", "POST", "/auth/login", {"data": {"email": "x" * 400}, "headers": SAME_SITE, "follow_redirects": False}),
    ("auth", "POST", "/auth/logout", {"headers": SAME_SITE, "follow_redirects": False}),
    ("auth", "POST", "/api/v1/auth/logout", {}),
    ("unsubscribe", "POST", "/api/v1/unsubscribe/not-a-token", {"json": {"everything": False}}),
    ("webhooks", "POST", "/api/v1/webhooks/twilio/inbound", {"data": {"Body": "hi"}}),
    ("webhooks", "POST", "/api/v1/webhooks/twilio/status", {"data": {}}),
    ("webhooks", "POST", "/api/v1/webhooks/sendgrid/events", {"content": b"[]"}),
]


def _policies(address: str, practice: str | None = None) -> dict[str, Policy]:
    return {
        name: Policy(
            address=parse(address), practice=parse(practice) if practice and name in PRACTICE_CLASSES else None
        )
        for name in LIMIT_CLASSES
    }


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test only (inside the run's prefix); its keys are deleted afterwards."""
    value = f"{get_settings().redis_key_prefix}:ratelimit:{uuid.uuid4().hex}"
    yield value
    url = get_settings().redis_url
    assert url
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{value}:*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def use_limiter() -> Iterator[None]:
    yield
    ratelimit.set_limiter(None)


def install(limiter: RateLimiter) -> RateLimiter:
    ratelimit.set_limiter(limiter)
    return limiter


def redis_limiter(prefix: str, address: str = "2/minute", practice: str | None = None) -> RateLimiter:
    return RateLimiter(_policies(address, practice), redis_url=get_settings().redis_url, key_prefix=prefix)


def client_at(host: str) -> TestClient:
    # Server errors of the routes behind the limiter are not this module's concern: only 429 or not.
    return TestClient(api, client=(host, 40000), raise_server_exceptions=False)


def token_for(tenant: uuid.UUID) -> dict[str, str]:
    # A validly signed token of that practice; the route then refuses the unknown user (401), the limiter counts it.
    token, _ = issue_access_token(user_id=uuid.uuid4(), tenant_id=tenant, role="patient", session_id=uuid.uuid4())
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response: object, limit: int) -> int:
    """A 429 with the calm detail, Retry-After and the RateLimit-* headers; returns the retry seconds."""
    assert response.status_code == 429  # type: ignore[attr-defined]
    match = DETAIL.match(response.json()["detail"])  # type: ignore[attr-defined]
    assert match, response.json()  # type: ignore[attr-defined]
    assert response.json()["code"] == "rate_limited"  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    retry = int(headers["Retry-After"])
    assert 1 <= retry <= 60
    assert int(match.group(1)) == retry
    assert headers["RateLimit-Limit"] == str(limit)
    assert headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(headers["RateLimit-Reset"]) <= 60
    return retry


@pytest.mark.parametrize(("limit_class", "method", "path", "kwargs"), ROUTES, ids=[f"{r[1]} {r[2]}" for r in ROUTES])
def test_each_limited_route_answers_429_after_the_limit(
    db: object, use_limiter: None, prefix: str, limit_class: str, method: str, path: str, kwargs: dict[str, object]
) -> None:
    limiter = install(redis_limiter(prefix, "2/minute"))
    with client_at("10.0.0.1") as client:
        allowed = [client.request(method, path, **kwargs) for _ in range(2)]  # type: ignore[arg-type]
        refused = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    for response, remaining in zip(allowed, ("1", "0"), strict=True):
        assert response.status_code != 429
        # Allowed responses of a limited route carry the RateLimit-* headers too (and no Retry-After).
        assert response.headers["RateLimit-Limit"] == "2"
        assert response.headers["RateLimit-Remaining"] == remaining
        assert 0 <= int(response.headers["RateLimit-Reset"]) <= 60
        assert "Retry-After" not in response.headers
    assert_refused(refused, 2)
    assert limiter.breach_counts()[limit_class] == 1


def test_two_client_addresses_are_counted_apart(db: object, use_limiter: None, prefix: str) -> None:
    install(redis_limiter(prefix, "2/minute"))
    with client_at("1.2.3.4") as first, client_at("5.6.7.8") as second:
        assert [first.get("/api/v1/providers/facets").status_code != 429 for _ in range(2)] == [True, True]
        assert_refused(first.get("/api/v1/providers/facets"), 2)
        # The other address still has its whole allowance, and the first stays refused.
        assert second.get("/api/v1/providers/facets").headers["RateLimit-Remaining"] == "1"
        assert second.get("/api/v1/providers/facets").status_code != 429
        assert second.get("/api/v1/providers/facets").status_code == 429
        assert first.get("/api/v1/providers/facets").status_code == 429


def test_each_practice_has_its_own_limit_across_addresses(db: object, use_limiter: None, prefix: str) -> None:
    """Per practice: three requests of one practice from three addresses exhaust it; another practice is free."""
    limiter = install(redis_limiter(prefix, "100/minute", practice="3/minute"))
    harbor, summit = token_for(uuid.uuid4()), token_for(uuid.uuid4())
    for host in ("10.1.0.1", "10.1.0.2", "10.1.0.3"):
        with client_at(host) as client:
            assert client.post("/api/v1/appointments", json={}, headers=harbor).status_code != 429
    with client_at("10.1.0.4") as client:
        assert_refused(client.post("/api/v1/appointments", json={}, headers=harbor), 3)
        other = client.post("/api/v1/appointments", json={}, headers=summit)
        assert other.status_code != 429
        assert other.headers["RateLimit-Limit"] == "3"  # the tighter of the two limits is the one reported
        assert other.headers["RateLimit-Remaining"] == "2"
    assert limiter.breach_counts()["booking"] == 1


def test_an_invalid_token_is_limited_by_address_only(db: object, use_limiter: None, prefix: str) -> None:
    install(redis_limiter(prefix, "2/minute", practice="1/minute"))
    forged = {"Authorization": "Bearer not.a.token"}
    with client_at("10.2.0.1") as client:
        assert [client.get("/api/v1/providers", headers=forged).status_code for _ in range(2)] == [401, 401]
        assert client.get("/api/v1/providers", headers=forged).status_code == 429


def test_breaches_are_counted_per_class_in_redis(db: object, use_limiter: None, prefix: str) -> None:
    limiter = install(redis_limiter(prefix, "1/minute"))
    with client_at("10.3.0.1") as client:
        for _ in range(3):
            client.post("/api/v1/waitlists", json={})
        for _ in range(2):
            client.post("/api/v1/webhooks/twilio/status", data={})
    counts = ratelimit.breach_counts()
    assert counts.pop("login") >= 0  # refused logins are counted by the login throttle (test_login_throttle)
    assert counts == {**dict.fromkeys(LIMIT_CLASSES, 0), "waitlist_join": 2, "webhooks": 1}
    assert counts == limiter.breach_counts()
    stored = redis.Redis.from_url(get_settings().redis_url or "").get(f"{prefix}:metrics:rate_limited:waitlist_join")
    assert stored == b"2"


def test_the_in_memory_fallback_limits_and_counts_without_redis(db: object, use_limiter: None) -> None:
    limiter = install(RateLimiter(_policies("2/minute"), redis_url=None, key_prefix="unused"))
    with client_at("10.4.0.1") as client:
        assert [client.get("/api/v1/providers/facets").status_code != 429 for _ in range(2)] == [True, True]
        assert_refused(client.get("/api/v1/providers/facets"), 2)
    with client_at("10.4.0.2") as client:
        assert client.get("/api/v1/providers/facets").status_code != 429
    assert limiter.breach_counts()["search"] == 1


def test_redis_down_fails_open_with_a_warning_and_no_phi(
    db: object, use_limiter: None, caplog: pytest.LogCaptureFixture
) -> None:
    down = RateLimiter(_policies("1/minute"), redis_url=f"redis://127.0.0.1:{free_port()}/0", key_prefix="down")
    install(down)
    caplog.set_level(logging.WARNING, logger="backend.ratelimit")
    with client_at("10.5.0.99") as client:
        responses = [client.get("/api/v1/providers/facets") for _ in range(3)]
    assert [r.status_code for r in responses] == [401, 401, 401]  # allowed (no token), never 429 nor 500
    assert all("RateLimit-Limit" not in r.headers for r in responses)
    warnings = [r for r in caplog.records if r.name == "backend.ratelimit"]
    assert len(warnings) == 1  # once, not per request
    assert "allowing requests" in warnings[0].getMessage()
    assert "10.5.0.99" not in caplog.text
    assert down.breach_counts() == dict.fromkeys(LIMIT_CLASSES, 0)


def test_disabled_limits_never_refuse_nor_add_headers(db: object, use_limiter: None, prefix: str) -> None:
    install(RateLimiter(_policies("1/minute"), redis_url=get_settings().redis_url, key_prefix=prefix, enabled=False))
    with client_at("10.6.0.1") as client:
        responses = [client.post("/api/v1/auth/token", json={}) for _ in range(3)]
    assert [r.status_code for r in responses] == [422, 422, 422]
    assert all("RateLimit-Limit" not in r.headers for r in responses)


def test_the_suite_runs_with_limits_off_and_the_defaults_parse() -> None:
    settings = get_settings()
    assert settings.rate_limit_enabled is False  # tests/conftest.py: the rest of the suite never sees a 429
    defaults = type(settings).model_fields
    assert defaults["rate_limit_enabled"].default is True
    policies = ratelimit.policies_from_settings(settings)
    assert set(policies) == set(LIMIT_CLASSES)
    assert policies["search"].address.amount == 120
    assert all(policies[name].practice is not None for name in PRACTICE_CLASSES)
    assert policies["webhooks"].practice is None


def test_routes_outside_the_limited_classes_carry_no_ratelimit_headers(
    db: object, use_limiter: None, prefix: str
) -> None:
    install(redis_limiter(prefix, "1/minute"))
    with client_at("10.7.0.1") as client:
        responses = [client.get("/api/health") for _ in range(3)]
    assert all(r.status_code != 429 and "RateLimit-Limit" not in r.headers for r in responses)


def test_the_login_form_is_sent_back_to_the_login_page_when_limited(db: object, use_limiter: None, prefix: str) -> None:
    install(redis_limiter(prefix, "1/minute"))
    html = {"Accept": "text/html,application/xhtml+xml", **SAME_SITE}
    with client_at("10.8.0.1") as client:
        client.post("/auth/login", data={"email": "x" * 400}, headers=html, follow_redirects=False)
        refused = client.post("/auth/login", data={"email": "x" * 400}, headers=html, follow_redirects=False)
    assert refused.status_code == 303
    assert re.fullmatch(r"/login\?error=throttled&retry=\d+", refused.headers["location"])
    assert refused.headers["Retry-After"] == refused.headers["location"].rsplit("=", 1)[1]


def test_one_script_call_decides_as_the_limits_library_does(prefix: str) -> None:
    """The Redis path hits both windows in one script call; the in-memory path is the `limits` library's own moving
    window. The same random mix of addresses and practices gets the same decisions from both, request by request,
    and a window is only hit when the one before it allowed the request (a refused address spends nothing of its
    practice's allowance)."""
    policies = {
        name: Policy(address=parse("4/minute"), practice=parse("6/minute") if name in PRACTICE_CLASSES else None)
        for name in LIMIT_CLASSES
    }
    in_redis = RateLimiter(policies, redis_url=get_settings().redis_url, key_prefix=prefix)
    in_memory = RateLimiter(policies, redis_url=None, key_prefix="unused")
    rng = random.Random(13)
    seen: list[tuple[bool, int, int]] = []
    for _ in range(120):
        limit_class = rng.choice(["booking", "webhooks"])
        address = rng.choice([f"10.9.0.{n}" for n in range(1, 7)])
        practice = rng.choice(["harbor", "summit", None])
        decisions = [
            limiter.check(limit_class, address=address, practice=practice) for limiter in (in_redis, in_memory)
        ]
        assert decisions[0] is not None and decisions[1] is not None
        got, want = decisions
        assert (got.allowed, got.limit, got.remaining) == (want.allowed, want.limit, want.remaining)
        assert abs(got.reset_seconds - want.reset_seconds) <= 1
        assert 0 <= got.reset_seconds <= 60
        seen.append((got.allowed, got.limit, got.remaining))
    # The mix reached every case: allowed and refused, by the address limit (4) and by the practice limit (6).
    assert {(allowed, limit) for allowed, limit, _ in seen} == {(True, 4), (False, 4), (True, 6), (False, 6)}
    assert in_redis.breach_counts() == in_memory.breach_counts()


def test_clearing_an_address_gives_its_allowance_back_and_a_refusal_spends_nothing(prefix: str) -> None:
    limiter = redis_limiter(prefix, "2/minute", practice="5/minute")
    for _ in range(2):
        allowed = limiter.check("search", address="10.9.1.1", practice="harbor")
        assert allowed is not None and allowed.allowed
    refused = limiter.check("search", address="10.9.1.1", practice="harbor")
    assert refused is not None and not refused.allowed and (refused.limit, refused.remaining) == (2, 0)
    limiter.clear("search", address="10.9.1.1")
    again = limiter.check("search", address="10.9.1.1", practice="harbor")
    assert again is not None and again.allowed and (again.limit, again.remaining) == (2, 1)
    # The practice counted the two allowed requests and this one, not the refusal: two more fit in its 5.
    outcomes = []
    for _ in range(3):
        limiter.clear("search", address="10.9.1.1")
        decision = limiter.check("search", address="10.9.1.1", practice="harbor")
        assert decision is not None
        outcomes.append((decision.allowed, decision.limit, decision.remaining))
    assert outcomes == [(True, 2, 1), (True, 5, 0), (False, 5, 0)]

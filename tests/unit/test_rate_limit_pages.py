"""The page handlers' rate limiting (portal/state/ratelimit.py): the same limits as the REST API, keyed by the
browser's address and the practice; over the limit the action does nothing and the page says how long to wait."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from limits import parse

from backend import ratelimit
from backend.ratelimit import LIMIT_CLASSES, PRACTICE_CLASSES, Policy, RateLimiter
from backend.tenancy.context import Actor, Role
from portal.state import ratelimit as page_limits

MESSAGE = re.compile(r"^Too many requests — try again in (\d+) s\.$")


@pytest.fixture
def limiter() -> Iterator[RateLimiter]:
    """A fresh in-memory limiter: 2 per minute per address, 3 per minute per practice."""
    policies = {
        name: Policy(address=parse("2/minute"), practice=parse("3/minute") if name in PRACTICE_CLASSES else None)
        for name in LIMIT_CLASSES
    }
    limiter = RateLimiter(policies, redis_url=None, key_prefix="pages")
    ratelimit.set_limiter(limiter)
    yield limiter
    ratelimit.set_limiter(None)


def fake_state(ip: str, **fields: Any) -> Any:
    return SimpleNamespace(router=SimpleNamespace(session=SimpleNamespace(client_ip=ip)), rate_limited="", **fields)


def patient(tenant: uuid.UUID | None = None) -> Actor:
    return Actor(tenant_id=tenant or uuid.uuid4(), role=Role.PATIENT, user_id=uuid.uuid4(), patient_id=uuid.uuid4())


def test_over_the_limit_the_state_carries_the_calm_message(limiter: RateLimiter) -> None:
    state, actor = fake_state("10.9.0.1"), patient()
    assert [page_limits.limited(state, "search", actor) for _ in range(2)] == [False, False]
    assert state.rate_limited == ""
    assert page_limits.limited(state, "search", actor) is True
    match = MESSAGE.match(state.rate_limited)
    assert match and 1 <= int(match.group(1)) <= 60
    assert limiter.breach_counts()["search"] == 1


def test_addresses_and_practices_are_counted_apart(limiter: RateLimiter) -> None:
    harbor, summit = uuid.uuid4(), uuid.uuid4()
    first, second = fake_state("10.9.1.1"), fake_state("10.9.1.2")
    assert not page_limits.limited(first, "booking", patient(harbor))
    assert not page_limits.limited(first, "booking", patient(harbor))
    assert page_limits.limited(first, "booking", patient(harbor))  # the address is spent
    assert not page_limits.limited(second, "booking", patient(harbor))  # another address: its own allowance
    # Harbor has now used its 3 per practice (the refused request was not counted there); Summit has not.
    assert page_limits.limited(fake_state("10.9.1.3"), "booking", patient(harbor))
    assert not page_limits.limited(fake_state("10.9.1.3"), "booking", patient(summit))


def test_an_allowed_action_clears_an_earlier_message(limiter: RateLimiter) -> None:
    state, actor = fake_state("10.9.2.1"), patient()
    for _ in range(3):
        page_limits.limited(state, "slots", actor)
    assert state.rate_limited
    limiter.clear("slots", address="10.9.2.1")
    assert page_limits.limited(state, "slots", actor) is False
    assert state.rate_limited == ""


def test_limits_off_never_refuse() -> None:
    ratelimit.set_limiter(RateLimiter({}, redis_url=None, key_prefix="off", enabled=False))
    try:
        state = fake_state("10.9.3.1")
        assert not any(page_limits.limited(state, "waitlist_join", patient()) for _ in range(20))
    finally:
        ratelimit.set_limiter(None)


def test_the_callout_is_a_status_not_an_alert() -> None:
    import reflex as rx

    class _Demo(rx.State):
        rate_limited: str = ""

    rendered = str(page_limits.rate_limit_callout(_Demo.rate_limited))
    assert '"status"' in rendered
    assert '"alert"' not in rendered
    assert "amber" in rendered


# --- the handlers: over the limit they do nothing but say so --------------------------------------------------


class FakePage(SimpleNamespace):
    """Stands in for a page state: the session's actor, the browser's address, and any fields the handler sets."""

    def __init__(self, ip: str, actor: Actor, **fields: Any) -> None:
        super().__init__(
            router=SimpleNamespace(session=SimpleNamespace(client_ip=ip)), rate_limited="", busy=False, **fields
        )
        self._the_actor = actor
        self.service_calls: list[str] = []

    def _actor(self, *_roles: Role) -> Actor:
        return self._the_actor


def _spend(ip: str, limit_class: str, actor: Actor) -> None:
    """Use up the address's allowance (2 per minute in the `limiter` fixture)."""
    for _ in range(2):
        assert not page_limits.limited(fake_state(ip), limit_class, actor)


def _run(result: Any) -> list[Any]:
    """Drive a handler to its end (generator handlers yield UI updates)."""
    return list(result) if result is not None and hasattr(result, "__next__") else [result]


def test_find_care_search_does_nothing_when_limited(limiter: RateLimiter) -> None:
    from portal.state.booking import FindCareState

    actor = patient()
    page = FakePage("10.9.4.1", actor, f_q="before", f_free_before="", searching=False)
    page._search = lambda a: page.service_calls.append("search")
    assert _run(FindCareState.submit.fn(page, {"q": "anxiety"})) == [None]  # allowed: searched
    assert page.service_calls == ["search"] and page.f_q == "anxiety"
    _run(FindCareState.submit.fn(page, {"q": "second"}))
    assert _run(FindCareState.submit.fn(page, {"q": "third"})) == []  # refused: no yield, nothing changed
    assert page.service_calls == ["search", "search"] and page.f_q == "second" and page.searching is False
    assert MESSAGE.match(page.rate_limited)


def test_provider_week_hold_and_booking_do_nothing_when_limited(limiter: RateLimiter) -> None:
    from portal.state.booking import ProviderWeekState

    actor = patient()
    _spend("10.9.5.1", "booking", actor)
    page = FakePage("10.9.5.1", actor, _provider_id=str(uuid.uuid4()), _sel_start="2030-01-07T09:00:00+00:00")
    page._reset_selection = lambda: page.service_calls.append("reset")
    assert _run(ProviderWeekState.pick_slot.fn(page, "2030-01-07T09:00:00+00:00")) == []
    assert _run(ProviderWeekState.confirm.fn(page)) == []
    assert page.service_calls == [] and page.busy is False
    assert MESSAGE.match(page.rate_limited)


def test_provider_week_opened_over_the_slots_limit_says_so_instead_of_loading(limiter: RateLimiter) -> None:
    from portal.state.booking import ProviderWeekState

    actor = patient()
    _spend("10.9.6.1", "slots", actor)
    page = FakePage("10.9.6.1", actor, loaded=True)
    page._reset_selection = lambda: None
    assert ProviderWeekState.load.fn(page) is None
    assert page.loaded is False and MESSAGE.match(page.rate_limited)  # the page shows the callout, no spinner
    assert ProviderWeekState.next_week.fn(page) is None
    assert not hasattr(page, "week_offset") or page.week_offset == 0


def test_waitlist_join_does_nothing_when_limited(limiter: RateLimiter) -> None:
    from portal.state.waitlist_patient import PatientWaitlistJoinState

    actor = patient()
    _spend("10.9.7.1", "waitlist_join", actor)
    page = FakePage("10.9.7.1", actor, form_error="", duplicate=False, field_errors={})
    page._local_checks = lambda *_a: {}
    assert _run(PatientWaitlistJoinState.submit.fn(page, {})) == []
    assert page.busy is False and page.form_error == ""
    assert MESSAGE.match(page.rate_limited)

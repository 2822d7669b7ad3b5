"""Automatic logoff: the idle rule, the timeouts by role, the warning lead, and the in-process clock."""

from __future__ import annotations

import pytest

from backend.identity import idle
from backend.settings import Settings
from backend.tenancy.context import Role
from portal.state.session import idle_notice, idle_sign_out_script


def _settings(**values: object) -> Settings:
    return Settings(secret_key="x" * 48, **values)  # type: ignore[arg-type]


def test_staff_and_patients_have_their_own_timeouts() -> None:
    settings = _settings()
    assert idle.timeout_for(Role.DOCTOR, settings) == idle.timeout_for(Role.ADMIN, settings) == 15 * 60
    assert idle.timeout_for(Role.PATIENT, settings) == 30 * 60
    short = _settings(idle_timeout_staff_seconds=20, idle_timeout_patient_seconds=45)
    assert idle.timeout_for("doctor", short) == 20 and idle.timeout_for("patient", short) == 45


def test_the_warning_comes_a_minute_before_or_at_half_a_short_timeout() -> None:
    settings = _settings()
    assert idle.warning_lead(900, settings) == 60
    assert idle.warning_lead(20, settings) == 10
    assert idle.report_interval(900) == 30 and idle.report_interval(20) == 3


@pytest.mark.parametrize(
    ("last", "floor", "now", "alive"),
    [
        (1000.0, 0.0, 1899.0, True),
        (1000.0, 0.0, 1900.0, False),  # exactly the timeout: over
        (0.0, 1000.0, 1899.0, True),  # no clock (Redis lost it): the persisted floor
        (500.0, 1000.0, 1950.0, False),  # the later of the two counts, never an older one
    ],
)
def test_idle_rule(last: float, floor: float, now: float, alive: bool) -> None:
    assert idle.evaluate(last, floor, 900, now)[0] is alive


def test_memory_clock_moves_only_with_activity_and_never_revives() -> None:
    store = idle.MemoryStore()
    common = {"floor": 1000.0, "timeout": 900, "persist_every": 120.0}
    look = store.look("k", "p", now=1500.0, touch=False, **common)  # type: ignore[arg-type]
    assert look.alive and look.last == 1000.0 and not look.persist_due
    touched = store.look("k", "p", now=1800.0, touch=True, **common)  # type: ignore[arg-type]
    assert touched.alive and touched.last == 1800.0 and touched.persist_due
    again = store.look("k", "p", now=1850.0, touch=True, **common)  # type: ignore[arg-type]
    assert again.alive and not again.persist_due  # the coarse copy is due once per 120 s
    assert store.look("k", "p", now=1980.0, touch=True, **common).persist_due  # type: ignore[arg-type]
    dead = store.look("k", "p", now=1980.0 + 900, touch=True, **common)  # type: ignore[arg-type]
    assert not dead.alive and dead.last == 1980.0  # activity after the timeout does not bring it back
    assert not store.look("k", "p", now=1980.0 + 901, touch=False, **common).alive  # type: ignore[arg-type]


def test_the_sign_in_page_says_why() -> None:
    assert idle_notice("900") == "You were signed out after 15 minutes without activity."
    assert idle_notice("60") == "You were signed out after 1 minute without activity."
    assert idle_notice("20") == "You were signed out after 20 seconds without activity."
    assert idle_notice("x<script>") == "You were signed out after a time without activity."
    script = idle_sign_out_script(900, "/doctor/schedule")
    assert '"/login?idle=900&next=%2Fdoctor%2Fschedule"' in script and '"/auth/logout"' in script
    assert "//evil" not in idle_sign_out_script(900, "//evil.example")
    assert "signed_out=1" in idle_sign_out_script(None, "/patient")


def test_activity_again_within_seconds_needs_no_look_at_the_shared_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid
    from datetime import UTC, datetime

    looks: list[float] = []

    class Store:
        def look(self, key: str, persist_key: str, *, now: float, **_: object) -> idle.Clock:
            looks.append(now)
            return idle.Clock(alive=True, last=now, persist_due=False)

    monkeypatch.setattr(idle, "_store", Store)
    monkeypatch.setattr(idle, "_recent", idle._RecentTouches())
    session, created = uuid.uuid4(), datetime.now(UTC)
    base = created.timestamp()

    def touch(at: float, *, touch: bool = True) -> idle.Clock:
        return idle.look(session, timeout_seconds=900, created_at=created, last_seen_at=None, touch=touch, at=at)

    assert touch(base + 1).alive
    # Within the window (10 s at a 15-minute timeout): alive, and the clock is reported where the store has it.
    assert touch(base + 5) == idle.Clock(alive=True, last=base + 1, persist_due=False)
    assert looks == [base + 1]
    touch(base + 12)  # past the window: the shared clock is looked at (and moved) again
    touch(base + 13, touch=False)  # a look that is not activity always asks the store
    assert looks == [base + 1, base + 12, base + 13]

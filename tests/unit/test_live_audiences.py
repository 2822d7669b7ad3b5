"""Live updates are targeted and kept off the event loop (issue 10, item 9).

* The relay bumps only the audiences an event concerns: the practice's staff, the provider and the patient it
  names (and for a waitlist event at a clinic, the providers working there), never another provider's pages.
* A page's live re-read (session lookup and queries) runs in a worker thread, never on the event loop, and as a
  read (SQLite: without the write lock, so it never queues behind a writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import MethodType, SimpleNamespace
from typing import Any

import pytest

from backend import db
from backend.events import DomainEvent
from portal import live_bridge
from portal.live_bridge import RESYNC, audience_tokens
from portal.state import live
from portal.state.live import (
    LiveProvider,
    LiveRefreshMixin,
    patient_token,
    provider_token,
    tenant_token,
)

TENANT = str(uuid.uuid4())
PROVIDER_A, PROVIDER_B, PROVIDER_C = (str(uuid.uuid4()) for _ in range(3))
PATIENT = str(uuid.uuid4())
CLINIC = str(uuid.uuid4())


class Clinics:
    """Stands in for the relay's clinic lookup: provider C works at CLINIC."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, tenant_id: str, clinic_id: str) -> Iterable[str]:
        self.asked.append((tenant_id, clinic_id))
        return [PROVIDER_C] if clinic_id == CLINIC else []


def _tokens(event: DomainEvent, clinics: Clinics | None = None) -> set[str]:
    return asyncio.run(audience_tokens(event, clinics or Clinics()))


def test_an_event_about_provider_a_reaches_a_its_patient_and_staff_not_provider_b() -> None:
    event = DomainEvent(
        TENANT, "appointment.cancelled", str(uuid.uuid4()), {"provider_id": PROVIDER_A, "patient_id": PATIENT}
    )
    tokens = _tokens(event)
    assert tokens == {tenant_token(TENANT), provider_token(PROVIDER_A), patient_token(PATIENT)}
    assert provider_token(PROVIDER_B) not in tokens


def test_a_waitlist_event_at_a_clinic_reaches_the_providers_working_there() -> None:
    clinics = Clinics()
    event = DomainEvent(
        TENANT, "waitlist.changed", None, {"clinic_id": CLINIC, "provider_id": None, "patient_id": PATIENT}
    )
    assert _tokens(event, clinics) == {tenant_token(TENANT), provider_token(PROVIDER_C), patient_token(PATIENT)}
    assert clinics.asked == [(TENANT, CLINIC)]
    # Other events name their provider themselves: no lookup.
    booked = DomainEvent(TENANT, "appointment.booked", None, {"clinic_id": CLINIC, "provider_id": PROVIDER_A})
    other = Clinics()
    assert _tokens(booked, other) == {tenant_token(TENANT), provider_token(PROVIDER_A)}
    assert other.asked == []


def test_an_entry_or_offer_for_one_provider_does_not_reach_the_clinics_other_providers() -> None:
    clinics = Clinics()
    joined = DomainEvent(TENANT, "waitlist.changed", None, {"clinic_id": CLINIC, "provider_id": PROVIDER_A})
    assert _tokens(joined, clinics) == {tenant_token(TENANT), provider_token(PROVIDER_A)}
    offered = {"clinic_id": CLINIC, "provider_id": PROVIDER_A, "patient_id": PATIENT, "any_provider": False}
    assert _tokens(DomainEvent(TENANT, "waitlist.offer_created", None, offered), clinics) == {
        tenant_token(TENANT), provider_token(PROVIDER_A), patient_token(PATIENT)}  # fmt: skip
    assert clinics.asked == []
    # An offer made on an "any provider" entry is on every console at the clinic.
    anyone = {**offered, "any_provider": True}
    assert provider_token(PROVIDER_C) in _tokens(DomainEvent(TENANT, "waitlist.offer_expired", None, anyone), clinics)


def test_staff_only_events_and_malformed_ids() -> None:
    assert _tokens(DomainEvent(TENANT, "clinic.changed", CLINIC)) == {tenant_token(TENANT)}
    odd = DomainEvent(TENANT, "slot.freed", None, {"provider_id": "not-a-uuid", "patient_id": 7})
    assert _tokens(odd) == {tenant_token(TENANT)}
    assert _tokens(DomainEvent("nope", "slot.freed", None, {"provider_id": PROVIDER_A})) == set()


def _registry(monkeypatch: pytest.MonkeyPatch) -> live._LocalWatchers:
    registry = live._LocalWatchers()
    monkeypatch.setattr(live, "_local", registry)
    monkeypatch.setattr(live, "get_settings", lambda: SimpleNamespace(redis_url=None, redis_key_prefix="t"))
    return registry


def test_a_resync_bumps_every_audience_some_tab_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = _registry(monkeypatch)
    registry.watch("tenant", "tab-1", tenant_token(TENANT))
    registry.watch("provider", "tab-1", provider_token(PROVIDER_A))
    registry.watch("patient", "tab-2", patient_token(PATIENT))
    registry.watch("provider", "tab-3", provider_token(PROVIDER_C))
    registry.watch("provider", "tab-3", None)  # tab 3 left: provider C has no watcher any more
    assert _tokens(RESYNC) == {tenant_token(TENANT), provider_token(PROVIDER_A), patient_token(PATIENT)}


def test_a_tab_watches_one_audience_per_class_and_takes_its_revision() -> None:
    registry = live._LocalWatchers()
    assert registry.watch("provider", "tab-1", provider_token(PROVIDER_A)) == 0
    assert registry.advance(provider_token(PROVIDER_A)) == (1, {"tab-1"})
    # The tab moves to provider B's page: it no longer hears provider A, and joins B at B's revision.
    assert registry.watch("provider", "tab-1", provider_token(PROVIDER_B)) == 0
    assert registry.advance(provider_token(PROVIDER_A)) == (2, set())
    assert registry.advance(provider_token(PROVIDER_B)) == (1, {"tab-1"})
    assert registry.watch("provider", "tab-2", provider_token(PROVIDER_A)) == 2


class _Live(SimpleNamespace):
    revision: int
    last_event: str
    _audience: str
    _unread: list[str]


class FakeApp:
    """Records each tab a bump reached, as which live class, and keeps each tab's copy."""

    def __init__(self, expected: int) -> None:
        self.bumped: list[tuple[str, str]] = []
        self.expected = expected
        self.done = asyncio.Event()
        self.tabs: dict[tuple[str, str], _Live] = {}
        self.event_namespace = None

    def tab(self, client: str, cls: type, audience: str) -> None:
        self.tabs[(client, cls.__name__)] = _Live(revision=0, last_event="", _audience=audience, _unread=[])

    @contextlib.asynccontextmanager
    async def modify_state(self, token: Any) -> AsyncIterator[Any]:
        live_copy = self.tabs[(token.ident, token.cls.__name__)]
        self.bumped.append((token.ident, token.cls.__name__))

        async def get_state(_cls: type) -> _Live:
            return live_copy

        yield SimpleNamespace(get_state=get_state)
        if len(self.bumped) >= self.expected:
            self.done.set()


def test_the_relay_bumps_each_watching_tab_once_per_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = _registry(monkeypatch)
    watching = {
        "admin-tab": (live.LiveTenant, tenant_token(TENANT)),
        "doctor-a-tab": (live.LiveProvider, provider_token(PROVIDER_A)),
        "patient-tab": (live.LivePatient, patient_token(PATIENT)),
        "doctor-b-tab": (live.LiveProvider, provider_token(PROVIDER_B)),
        "doctor-c-tab": (live.LiveProvider, provider_token(PROVIDER_C)),
        # Watched provider A, then its copy was reset (another person signed in on the tab): not reached.
        "reset-tab": (live.LiveProvider, provider_token(PROVIDER_A)),
    }
    app = FakeApp(expected=len(watching))
    for client, (cls, audience) in watching.items():
        registry.watch(cls.get_full_name(), client, audience)
        app.tab(client, cls, "" if client == "reset-tab" else audience)

    async def go() -> None:
        queue: asyncio.Queue[DomainEvent] = asyncio.Queue()
        # One cancellation burst: the appointment, the freed slot, and the offer it set off (provider A).
        for name in ("appointment.cancelled", "slot.freed", "waitlist.offer_created"):
            queue.put_nowait(DomainEvent(TENANT, name, None, {"provider_id": PROVIDER_A, "patient_id": PATIENT}))
        queue.put_nowait(RESYNC)  # and the relay's subscription came back: every watched audience
        task = asyncio.create_task(live_bridge._relay(app, queue, None, Clinics()))
        try:
            await asyncio.wait_for(app.done.wait(), timeout=10)
            await asyncio.sleep(0.2)  # and nothing more arrives (another bump would be recorded)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(go())
    # Each audience once for the whole burst, at each of its tabs (the resync adds providers B and C).
    assert sorted(app.bumped) == sorted((client, cls.__name__) for client, (cls, _audience) in watching.items())
    assert {
        client: copy.revision for (client, _cls), copy in app.tabs.items() if client != "reset-tab"
    } == dict.fromkeys(("admin-tab", "doctor-a-tab", "patient-tab", "doctor-b-tab", "doctor-c-tab"), 1)
    assert app.tabs[("reset-tab", "LiveProvider")].revision == 0  # its copy names no audience: left alone
    assert "reset-tab" not in registry.watchers.get(provider_token(PROVIDER_A), set())  # and it is forgotten
    # Each tab notes every event of the burst that concerned it (a page showing none of them reads nothing).
    assert app.tabs[("doctor-a-tab", "LiveProvider")]._unread == [
        "appointment.cancelled",
        "live.resync",
        "slot.freed",
        "waitlist.offer_created",
    ]
    assert app.tabs[("doctor-b-tab", "LiveProvider")]._unread == ["live.resync"]


class _Session:
    def _bind_to_session(self) -> bool:
        return False


def _page(
    reload: Any, actor: Any = "the doctor", *, topics: tuple[str, ...] = (), audience: _Live | None = None
) -> SimpleNamespace:
    """Stands in for a page state using LiveRefreshMixin (one audience, LiveProvider): the mixin's own methods, a
    recorded reload, the tab's own copy of its audience. Asking it for any other state fails."""
    page = SimpleNamespace(router=SimpleNamespace(url=SimpleNamespace(path="/doctor")), _live_seen="4")
    mine = audience or _Live(revision=4, last_event="", _audience="", _unread=["waitlist.changed"])

    async def get_state(cls: type) -> Any:
        if cls is LiveProvider:
            return mine
        assert cls.__name__ == "SessionState", f"a page handler loaded {cls.__name__}"
        return _Session()

    page.get_state = get_state
    page.audience = mine
    for name in ("_live_changed", "_live_read", "_live_watched", "_live_read_covering"):
        setattr(page, name, MethodType(getattr(LiveRefreshMixin, name), page))
    page._live_audiences = lambda: (LiveProvider,)
    page._live_topics = lambda: topics
    page._live_actor = lambda: actor
    page._live_reload = reload
    return page


def test_a_live_reload_runs_off_the_event_loop_and_only_reads() -> None:
    seen: dict[str, Any] = {}

    def reload(actor: Any) -> None:
        seen["thread"] = threading.get_ident()
        seen["reads_only"] = db._READS_ONLY.get()
        seen["actor"] = actor

    async def go() -> int:
        page = _page(reload)
        handler = LiveRefreshMixin.live_update  # on a page state: an EventHandler around this function
        await getattr(handler, "fn", handler)(page, "5")
        return threading.get_ident()

    loop_thread = asyncio.run(go())
    assert seen["actor"] == "the doctor"
    assert seen["thread"] != loop_thread
    assert seen["reads_only"] is True
    assert db._READS_ONLY.get() is False


def test_a_revision_the_page_already_shows_reads_nothing() -> None:
    reads: list[Any] = []

    async def go() -> list[str]:
        page = _page(reads.append)
        handler = getattr(LiveRefreshMixin.live_update, "fn", LiveRefreshMixin.live_update)
        await handler(page, "4")  # what its load covered: nothing to do
        seen = [page._live_seen]
        await handler(page, "5")  # moved on: one read
        await handler(page, "5")  # the same again: nothing
        return [*seen, page._live_seen]

    assert asyncio.run(go()) == ["4", "5"]
    assert reads == ["the doctor"]


def test_a_read_covers_the_revision_the_relay_had_reached_when_it_began(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancellation and the offer it sets off reach a tab as two bumps; when the second was advanced before the
    tab's read of the first began, that read already shows it: the second frame costs no query."""
    registry = _registry(monkeypatch)
    token = provider_token(PROVIDER_A)
    registry.watch(LiveProvider.get_full_name(), "tab", token)
    for _ in range(6):
        registry.advance(token)  # the relay is at 6; this tab has been sent 5 so far
    reads: list[Any] = []
    page = _page(reads.append, audience=_Live(revision=5, last_event="", _audience=token, _unread=["slot.held"]))

    async def go() -> None:
        handler = getattr(LiveRefreshMixin.live_update, "fn", LiveRefreshMixin.live_update)
        await handler(page, "5")  # reads, and covers 6
        page.audience.revision = 6  # the relay's second bump lands
        await handler(page, "6")  # nothing to read
        registry.advance(token)
        page.audience.revision = 7
        page.audience._unread = ["waitlist.changed"]
        await handler(page, "7")  # a change after the read began: read again

    asyncio.run(go())
    assert reads == ["the doctor", "the doctor"]
    assert page._live_seen == "7"


def test_a_page_reads_again_only_for_the_events_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    _registry(monkeypatch)
    reads: list[Any] = []
    tab = _Live(revision=4, last_event="", _audience="", _unread=[])
    page = _page(reads.append, topics=("waitlist.",), audience=tab)

    async def go() -> list[str]:
        handler = getattr(LiveRefreshMixin.live_update, "fn", LiveRefreshMixin.live_update)
        tab._unread = ["appointment.cancelled", "notification.changed"]
        await handler(page, "5")  # the provider's appointments changed: not this page's business
        skipped = page._live_seen
        tab._unread = ["slot.held", "waitlist.offer_created"]
        await handler(page, "6")  # an offer: read
        tab._unread = ["appointment.cancelled", "waitlist.changed"]  # two bumps landed before the page looked
        await handler(page, "7")
        tab._unread = ["appointment.booked", "live.resync"]  # the relay's subscription came back: read
        await handler(page, "8")
        tab._unread = []  # nothing noted (a copy reset): read, to be safe
        await handler(page, "9")
        return [skipped, page._live_seen]

    assert asyncio.run(go()) == ["5", "9"]
    assert reads == ["the doctor"] * 4
    assert tab._unread == []


def test_pages_name_their_audiences() -> None:
    from portal.state.doctor import DoctorHomeState
    from portal.state.my_appointments import MyAppointmentsState
    from portal.state.schedule import ScheduleState

    for state in (DoctorHomeState, ScheduleState):
        assert state._live_audiences(None) == (LiveProvider,)  # type: ignore[arg-type]
    assert MyAppointmentsState._live_audiences(None)[0].__name__ == "LivePatient"  # type: ignore[arg-type]


def test_sqlite_reads_do_not_wait_for_the_writer(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'live.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    writer = engine.connect()
    writer.begin()  # BEGIN IMMEDIATE: holds the write lock until it ends
    writer.exec_driver_sql("INSERT INTO t VALUES (2)")
    result: dict[str, Any] = {}

    def read() -> None:
        try:
            with db.reads_only(), engine.connect() as conn, conn.begin():
                result["rows"] = conn.exec_driver_sql("SELECT count(*) FROM t").scalar()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    reader = threading.Thread(target=read, daemon=True)
    try:
        reader.start()
        reader.join(timeout=10)  # without the fix it waits out the 30 s busy timeout behind the writer
        assert not reader.is_alive(), "the read waited for the write lock"
        assert result == {"rows": 1}  # the committed snapshot, beside the open write
    finally:
        writer.rollback()
        writer.close()
        reader.join(timeout=40)
        engine.dispose()
    # Everything else still takes the write lock at the start (BEGIN IMMEDIATE), as before.
    raw = sqlite3.connect(tmp_path / "live.db", timeout=0, isolation_level=None)
    try:
        with engine.connect() as conn, conn.begin():
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                raw.execute("BEGIN IMMEDIATE")
    finally:
        raw.close()
        engine.dispose()

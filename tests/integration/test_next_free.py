"""Each provider's next free slot kept in PostgreSQL (provider_next_free, migration 0022): a search with an empty
cache reads it instead of computing, and every change that moves a provider's slot marks it stale inside its
own transaction.

Searches run with Redis ("warm") and without it ("cold": REDIS_URL unset, so only the table helps); each answer is
compared with what the slot rules say, never with the table itself.
"""

from __future__ import annotations

import json
import threading
import time as clock
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from backend.db import UnitOfWork
from backend.dbroles import libpq_url
from backend.identity.models import Provider, ProviderClinic
from backend.jobs import task_named
from backend.redis_client import get_redis
from backend.scheduling import next_free, search
from backend.scheduling.availability import RuleInput, add_time_off, remove_time_off, replace_availability
from backend.scheduling.booking import book_appointment, cancel_appointment, hold_slot, release_hold
from backend.scheduling.models import BookingPolicy, ProviderNextFree
from backend.scheduling.search import ProviderCard, search_providers
from backend.settings import get_settings
from backend.types import utcnow
from tests.factories import Practice, drop_redis_keys, make_practice

NEW_YORK = ZoneInfo("America/New_York")


# -- fixtures and helpers ------------------------------------------------------------------------------


@pytest.fixture
def harbor(db: sa.Engine) -> Iterator[Practice]:
    p = make_practice("Harbor Mental Health", "harbor")
    yield p
    drop_redis_keys(p)


@pytest.fixture
def summit(db: sa.Engine) -> Iterator[Practice]:
    p = make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))
    yield p
    drop_redis_keys(p)


def add(p: Practice, full_name: str, *, specialties: tuple[str, ...] = ("Anxiety",)) -> Provider:
    with UnitOfWork(p.system) as uow:
        provider = Provider(tenant_id=p.tenant_id, full_name=full_name, title="PsyD", specialties=list(specialties))
        uow.session.add(provider)
        uow.flush()
        uow.session.add(ProviderClinic(tenant_id=p.tenant_id, provider_id=provider.id, clinic_id=p.clinic.id))
        uow.commit()
    return provider


def today() -> date:
    return utcnow().date()


def open_from(p: Practice, provider: Provider, days: int) -> None:
    """Every day 09:00-17:00 New York, 50-minute sessions and 10-minute buffers, from `days` days after today."""
    rules = [
        RuleInput(
            clinic_id=p.clinic.id, weekday=d, start=time(9), end=time(17), valid_from=today() + timedelta(days=days)
        )
        for d in range(7)
    ]
    with UnitOfWork(p.admin) as uow:
        replace_availability(p.admin, uow, provider.id, rules)
        uow.commit()


def slot(days: int, hour: int = 9) -> datetime:
    """The session at `hour`:00 New York, `days` days after today (UTC), in UTC."""
    return datetime.combine(today() + timedelta(days=days), time(hour), tzinfo=NEW_YORK).astimezone(UTC)


@pytest.fixture
def ana(harbor: Practice) -> Provider:
    provider = add(harbor, "Ana Alvarez")
    open_from(harbor, provider, 3)
    return provider


@pytest.fixture(params=["warm", "cold"])
def redis_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Search with the Redis cache, or without it (REDIS_URL unset: only the table stands between a search and
    computing)."""
    if request.param == "cold":
        monkeypatch.setattr(get_settings(), "redis_url", None)
    return str(request.param)


def run(p: Practice, **filters: Any) -> list[ProviderCard]:
    with UnitOfWork(p.patient_actor) as uow:
        return search_providers(p.patient_actor, uow, **filters)


def next_start(p: Practice, provider: Provider) -> datetime | None:
    (card,) = [c for c in run(p) if c.id == provider.id]
    return card.next_free_start


TABLE: sa.Table = ProviderNextFree.__table__  # type: ignore[attr-defined]


def row(engine: sa.Engine, provider: Provider) -> dict[str, Any] | None:
    """The provider's row, read as the owner (no row-level security)."""
    with engine.connect() as conn:
        found = conn.execute(sa.select(TABLE).where(TABLE.c.provider_id == provider.id)).first()
    return dict(found._mapping) if found is not None else None


def current(engine: sa.Engine, provider: Provider) -> bool:
    r = row(engine, provider)
    return r is not None and r["computed_version"] == r["version"]


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID]:
    """The providers whose next free slot a search computed (rather than read)."""
    seen: list[uuid.UUID] = []
    real = search.next_free_slot

    def spy(uow: UnitOfWork, provider_id: uuid.UUID, **kwargs: Any) -> search.NextFree:
        seen.append(provider_id)
        return real(uow, provider_id, **kwargs)

    monkeypatch.setattr(search, "next_free_slot", spy)
    return seen


@pytest.fixture
def statements(app_engine: sa.Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "ROLLBACK", "COMMIT", "SELECT SET_CONFIG")):
            seen.append(statement)

    event.listen(app_engine, "before_cursor_execute", listen)
    yield seen
    event.remove(app_engine, "before_cursor_execute", listen)


# -- an empty cache reads the table ------------------------------------------------------------------------


def test_an_empty_cache_reads_each_providers_slot_in_the_directorys_one_statement(
    harbor: Practice, ana: Provider, engine: sa.Engine, computed: list[uuid.UUID], statements: list[str]
) -> None:
    first = run(harbor)
    assert {c.full_name: c.next_free_start for c in first} == {"Ana Alvarez": slot(3), "Dana Doctor (harbor)": None}
    assert set(computed) == {ana.id, harbor.provider.id}  # nobody had a row yet: both computed, then stored
    assert current(engine, ana) and current(engine, harbor.provider)

    drop_redis_keys(harbor)  # Redis restarted, evicted or flushed
    computed.clear()
    statements.clear()
    assert run(harbor) == first
    assert computed == []  # read, not computed
    (only,) = statements  # the directory and every provider's stored slot: one statement
    assert "provider_next_free" in only and "providers" in only

    # With the directory still in Redis but the slots gone, the slots are one statement by primary key.
    for key in [k for k in get_redis().scan_iter(f"clinic:{harbor.tenant_id}:cache:nextfree:*")]:
        get_redis().delete(key)
    statements.clear()
    assert run(harbor) == first
    assert computed == []
    (only,) = statements
    assert "provider_next_free" in only and "providers" not in only


def test_without_redis_a_search_computes_nothing_twice(
    harbor: Practice, ana: Provider, computed: list[uuid.UUID], redis_mode: str
) -> None:
    run(harbor)
    computed.clear()
    for _ in range(3):
        assert next_start(harbor, ana) == slot(3)
    assert computed == []


# -- changes that move the slot ------------------------------------------------------------------------


def test_booking_the_next_free_slot_shows_the_one_after(
    harbor: Practice, ana: Provider, engine: sa.Engine, redis_mode: str
) -> None:
    assert next_start(harbor, ana) == slot(3)
    before = row(engine, ana)
    assert before is not None and before["computed_version"] == before["version"]
    with UnitOfWork(harbor.patient_actor) as uow:
        book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=slot(3))
        assert current(engine, ana)  # nothing is marked before the commit
        uow.commit()
    after = row(engine, ana)
    assert after is not None and after["version"] == before["version"] + 1
    assert after["computed_version"] == before["version"]
    assert next_start(harbor, ana) == slot(3, 10)
    assert current(engine, ana)


def test_a_rolled_back_booking_marks_nothing(harbor: Practice, ana: Provider, engine: sa.Engine) -> None:
    run(harbor)
    before = row(engine, ana)
    with UnitOfWork(harbor.patient_actor) as uow:
        book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=slot(3))
    assert row(engine, ana) == before


def test_cancelling_gives_the_slot_back(harbor: Practice, ana: Provider, redis_mode: str) -> None:
    with UnitOfWork(harbor.patient_actor) as uow:
        booked = book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=slot(3)).appointment
        uow.commit()
    assert next_start(harbor, ana) == slot(3, 10)
    with UnitOfWork(harbor.admin) as uow:
        cancel_appointment(harbor.admin, uow, booked.id)
        uow.commit()
    assert next_start(harbor, ana) == slot(3)


def test_a_hold_and_its_release(harbor: Practice, ana: Provider, redis_mode: str) -> None:
    with UnitOfWork(harbor.patient_actor) as uow:
        hold = hold_slot(harbor.patient_actor, uow, provider_id=ana.id, start=slot(3))
        uow.commit()
    assert next_start(harbor, ana) == slot(3, 10)
    with UnitOfWork(harbor.patient_actor) as uow:
        release_hold(harbor.patient_actor, uow, hold.id)
        uow.commit()
    assert next_start(harbor, ana) == slot(3)


def test_a_hold_that_expires_frees_its_slot_without_any_change(
    harbor: Practice, ana: Provider, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, redis_mode: str
) -> None:
    with UnitOfWork(harbor.patient_actor) as uow:
        hold = hold_slot(harbor.patient_actor, uow, provider_id=ana.id, start=slot(3))
        uow.commit()
    assert next_start(harbor, ana) == slot(3, 10)
    stored = row(engine, ana)
    assert stored is not None and stored["fresh_until"] == hold.hold_expires_at  # it holds until the hold lapses
    assert hold.hold_expires_at is not None
    later = hold.hold_expires_at + timedelta(seconds=1)
    monkeypatch.setattr(search, "utcnow", lambda: later)
    assert next_start(harbor, ana) == slot(3)


def test_a_slot_sliding_into_the_minimum_notice(
    harbor: Practice, ana: Provider, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, redis_mode: str
) -> None:
    assert next_start(harbor, ana) == slot(3)
    stored = row(engine, ana)
    assert stored is not None and stored["fresh_until"] == slot(3) - timedelta(minutes=60)  # the default notice
    # Just before the 09:00 session enters the notice it is still the next free one; just after, 10:00 is.
    monkeypatch.setattr(search, "utcnow", lambda: slot(3) - timedelta(minutes=61))
    assert next_start(harbor, ana) == slot(3)
    monkeypatch.setattr(search, "utcnow", lambda: slot(3) - timedelta(minutes=59))
    assert next_start(harbor, ana) == slot(3, 10)


@pytest.mark.parametrize("change", ["replace", "add_time_off", "remove_time_off", "close_all"])
def test_availability_and_time_off_edits(
    harbor: Practice, ana: Provider, engine: sa.Engine, change: str, redis_mode: str
) -> None:
    with UnitOfWork(harbor.admin) as uow:
        time_off = add_time_off(harbor.admin, uow, ana.id, start=slot(3), end=slot(3, 10))
        uow.commit()
    assert next_start(harbor, ana) == slot(3, 10)
    with UnitOfWork(harbor.admin) as uow:
        if change == "replace":
            replace_availability(harbor.admin, uow, ana.id, [
                RuleInput(clinic_id=harbor.clinic.id, weekday=d, start=time(9), end=time(17),
                          valid_from=today() + timedelta(days=5)) for d in range(7)
            ])  # fmt: skip
        elif change == "add_time_off":
            add_time_off(harbor.admin, uow, ana.id, start=slot(3, 10), end=slot(4))
        elif change == "remove_time_off":
            remove_time_off(harbor.admin, uow, time_off.id)
        else:
            replace_availability(harbor.admin, uow, ana.id, [])
        uow.commit()
    expected = {"replace": slot(5), "add_time_off": slot(4), "remove_time_off": slot(3), "close_all": None}[change]
    assert next_start(harbor, ana) == expected
    assert current(engine, ana)


def test_a_change_to_many_providers_marks_them_at_once(
    harbor: Practice, ana: Provider, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.tenancy import service as tenancy
    from backend.tenancy.models import ClinicUpdate

    ben = add(harbor, "Ben Brooks")
    open_from(harbor, ben, 4)
    run(harbor)
    versions = {p.id: row(engine, p)["version"] for p in (ana, ben, harbor.provider)}  # type: ignore[index]
    marks: list[list[uuid.UUID]] = []
    real = next_free.mark_in

    def spy(uow: UnitOfWork, provider_ids: Any) -> None:
        marks.append(list(provider_ids))
        real(uow, provider_ids)

    monkeypatch.setattr(next_free, "mark_in", spy)
    with UnitOfWork(harbor.admin) as uow:  # renaming the clinic touches every provider working there
        tenancy.update_clinic(harbor.admin, uow, harbor.clinic.id, ClinicUpdate(name="Harbor Waterfront"))
        assert marks == []  # nothing before the commit
        uow.commit()
    assert marks == [sorted([ana.id, ben.id, harbor.provider.id])]  # one mark (one statement), in one lock order
    for p in (ana, ben, harbor.provider):
        r = row(engine, p)
        assert r is not None and r["version"] == versions[p.id] + 1 and r["computed_version"] == versions[p.id]
    assert {c.full_name: c.next_free_start for c in run(harbor)} == {
        "Ana Alvarez": slot(3), "Ben Brooks": slot(4), "Dana Doctor (harbor)": None
    }  # fmt: skip


def test_a_stored_answer_is_trusted_for_max_age_at_most(
    harbor: Practice, ana: Provider, computed: list[uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change that bypasses the services (a policy written directly) is seen within MAX_AGE."""
    monkeypatch.setattr(get_settings(), "redis_url", None)
    assert next_start(harbor, ana) == slot(3)
    with UnitOfWork(harbor.system) as uow:
        uow.session.add(BookingPolicy(tenant_id=harbor.tenant_id, clinic_id=harbor.clinic.id, horizon_days=2))
        uow.commit()
    computed.clear()
    assert next_start(harbor, ana) == slot(3)  # not marked: the stored answer stands for now
    assert computed == []
    monkeypatch.setattr(search, "utcnow", lambda: datetime.now(UTC) + next_free.MAX_AGE)
    assert next_start(harbor, ana) is None  # day 3 is beyond the new two-day horizon
    assert ana.id in computed


def test_a_search_whose_answers_cannot_be_stored_still_answers(
    harbor: Practice, ana: Provider, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, redis_mode: str
) -> None:
    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("the write failed"))

    monkeypatch.setattr(next_free, "store", fail)
    assert next_start(harbor, ana) == slot(3)
    assert not current(engine, ana)  # nothing stored: the next search computes again


# -- races: an answer computed before a change is never stored as current ------------------------------


def test_an_answer_computed_before_a_change_is_not_stored_as_current(
    harbor: Practice, ana: Provider, engine: sa.Engine
) -> None:
    run(harbor)
    now = utcnow()
    with UnitOfWork(harbor.patient_actor) as uow:
        (stored,) = next_free.read(uow, [ana.id], now=now).values()
        answer = search.next_free_slot(uow, ana.id, now=now)
    # A booking commits and marks the row while that answer is on its way to be stored.
    with UnitOfWork(harbor.patient_actor) as uow:
        book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=slot(3))
        uow.commit()
    next_free.store(harbor.patient_actor, [answer.computed(ana.id, stored.version)], now=now)
    r = row(engine, ana)
    assert r is not None and r["computed_version"] != r["version"] and r["slot_start"] == slot(3)  # stale
    with UnitOfWork(harbor.patient_actor) as uow:
        assert next_free.read(uow, [ana.id], now=now)[ana.id].answer is None


def test_an_answer_stored_while_a_change_is_open_waits_for_it_and_stays_stale(
    harbor: Practice, ana: Provider, engine: sa.Engine
) -> None:
    """The mark is in the change's transaction: a store racing it waits for the change's row lock and, once the
    change commits, finds the version moved and stores nothing."""
    run(harbor)
    now = utcnow()
    with UnitOfWork(harbor.patient_actor) as uow:
        (stored,) = next_free.read(uow, [ana.id], now=now).values()
        answer = search.next_free_slot(uow, ana.id, now=now)
    done = threading.Event()
    with UnitOfWork(harbor.patient_actor) as uow:
        book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=slot(3))
        next_free.mark_in(uow, [ana.id])  # what the commit does first, here before it, to hold the row lock

        def store() -> None:
            next_free.store(harbor.patient_actor, [answer.computed(ana.id, stored.version)], now=now)
            done.set()

        racer = threading.Thread(target=store)
        racer.start()
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type='Lock'"
        deadline = clock.monotonic() + 10
        with engine.connect() as conn:
            while conn.execute(sa.text(waiting)).scalar() == 0 and clock.monotonic() < deadline:
                clock.sleep(0.01)
            assert conn.execute(sa.text(waiting)).scalar() == 1  # the store waits for the open change's row lock
        assert not done.is_set()
        uow.commit()
    racer.join(10)
    assert done.is_set()
    r = row(engine, ana)
    assert r is not None and r["version"] > stored.version and r["computed_version"] == stored.version  # stale
    assert next_start(harbor, ana) == slot(3, 10)


def test_a_first_answer_never_overwrites_a_mark_made_meanwhile(harbor: Practice, engine: sa.Engine) -> None:
    ben = add(harbor, "Ben Brooks")  # no rules, no row
    now = utcnow()
    with UnitOfWork(harbor.patient_actor) as uow:
        assert next_free.read(uow, [ben.id], now=now) == {}
        answer = search.next_free_slot(uow, ben.id, now=now)
    open_from(harbor, ben, 2)  # marks: the row is created, stale
    next_free.store(harbor.patient_actor, [answer.computed(ben.id, None)], now=now)
    r = row(engine, ben)
    assert r is not None and r["version"] == 1 and r["computed_version"] is None
    assert next_start(harbor, ben) == slot(2)


# -- the worker's refresh ------------------------------------------------------------------------------


def test_the_sweep_computes_what_changes_marked_in_every_practice(
    harbor: Practice, summit: Practice, ana: Provider, engine: sa.Engine, computed: list[uuid.UUID], redis_mode: str
) -> None:
    sam = add(summit, "Sam Summit")
    open_from(summit, sam, 1)  # marked by the edit, never computed
    run(harbor)
    with UnitOfWork(harbor.patient_actor) as uow:
        book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=slot(3))
        uow.commit()
    assert not current(engine, ana) and not current(engine, sam) and current(engine, harbor.provider)
    computed.clear()
    assert task_named(next_free.SWEEP_TASK).apply().get() == 2
    assert sorted(computed) == sorted([ana.id, sam.id])  # the marked rows only: Dana's was current
    assert current(engine, ana) and current(engine, sam)
    assert task_named(next_free.SWEEP_TASK).apply().get() == 0
    # A row whose time ran out (its slot slid into the notice, a hold lapsed) is swept too.
    with engine.begin() as conn:
        conn.execute(
            sa.update(TABLE).where(TABLE.c.provider_id == sam.id).values(fresh_until=utcnow() - timedelta(seconds=1))
        )
    computed.clear()
    assert task_named(next_free.SWEEP_TASK).apply().get() == 1
    assert computed == [sam.id]
    computed.clear()
    assert next_start(harbor, ana) == slot(3, 10)
    denver_nine = datetime.combine(today() + timedelta(days=1), time(9), tzinfo=ZoneInfo("America/Denver"))
    assert {c.id: c.next_free_start for c in run(summit)}[sam.id] == denver_nine
    assert computed == [summit.provider.id]  # summit's Dana had no row at all (never changed, never searched)


def test_the_refresh_task_computes_only_what_is_not_current(
    harbor: Practice, ana: Provider, engine: sa.Engine, computed: list[uuid.UUID]
) -> None:
    run(harbor)
    with UnitOfWork(harbor.patient_actor) as uow:
        book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=slot(3))
        uow.commit()
    computed.clear()
    task = task_named(next_free.REFRESH_TASK)
    assert task.apply(args=(str(harbor.tenant_id), [str(ana.id), str(harbor.provider.id)])).get() == 1
    assert computed == [ana.id]
    assert current(engine, ana)


def test_a_change_enqueues_nothing_even_with_a_broker(
    harbor: Practice, ana: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A booking pays for the mark alone: no task is sent for the next free slot (the sweep task finds it)."""
    from backend import jobs
    from backend.celery_app import celery_app

    sent: list[str] = []
    monkeypatch.setattr(jobs, "enqueue", lambda name, *args, **kw: sent.append(name))
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    with UnitOfWork(harbor.patient_actor) as uow:
        book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=slot(3))
        uow.commit()
    assert not [name for name in sent if name.startswith("scheduling.")]


# -- tenant isolation ----------------------------------------------------------------------------------


def test_another_practice_never_sees_or_moves_the_rows(
    harbor: Practice, summit: Practice, ana: Provider, engine: sa.Engine
) -> None:
    sam = add(summit, "Sam Summit")
    open_from(summit, sam, 1)
    run(harbor)
    run(summit)
    drop_redis_keys(harbor)
    drop_redis_keys(summit)
    # The other practice's searches, cold and warm, list only its own providers, from its own rows.
    for _ in range(2):
        assert {c.id for c in run(summit)} == {sam.id, summit.provider.id}
        assert {c.id for c in run(harbor)} == {ana.id, harbor.provider.id}
    # Reading harbor's providers' rows as summit: nothing.
    with UnitOfWork(summit.patient_actor) as uow:
        assert next_free.read(uow, [ana.id, harbor.provider.id], now=utcnow()) == {}
    # Raw SQL as the app's role in summit: none of harbor's rows, and no way to mark or overwrite them.
    before = row(engine, ana)
    with psycopg.connect(libpq_url(get_settings().database_url)) as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(summit.tenant_id),))
        seen = {r[0] for r in conn.execute("SELECT tenant_id FROM provider_next_free")}
        assert seen == {summit.tenant_id}
        updated = conn.execute("UPDATE provider_next_free SET version = version + 1 WHERE provider_id = %s", (ana.id,))
        assert updated.rowcount == 0
        conn.rollback()
    with UnitOfWork(summit.patient_actor) as uow, pytest.raises(sa.exc.DBAPIError):
        next_free.mark_in(uow, [ana.id])  # a mark in summit's name cannot reach harbor's row either
    assert row(engine, ana) == before
    # Redis keys of each practice name its own tenant only.
    for p in (harbor, summit):
        keys = [k.decode() for k in get_redis().scan_iter(f"clinic:{p.tenant_id}:cache:nextfree:*")]
        assert keys and all(json.loads(get_redis().get(k) or "null") is not None for k in keys)


# -- plans without statistics ----------------------------------------------------------------------------

SMALL = ("providers", "provider_clinics", "clinics", "provider_next_free")


@pytest.fixture
def recorded(app_engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements the app's engine sends meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, parameters))

    event.listen(app_engine, "before_cursor_execute", note)
    yield seen
    event.remove(app_engine, "before_cursor_execute", note)


def _scans(tenant_id: uuid.UUID, statement: str, parameters: Any) -> list[tuple[str, str | None, str | None]]:
    """(node type, relation, index) of each scan in `statement`'s plan, EXPLAINed as the app in its practice."""
    from backend.db import get_engine

    with get_engine().connect() as conn:
        conn.exec_driver_sql("SELECT set_config('app.tenant_id', %s, false)", (str(tenant_id),))
        raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
        conn.rollback()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]

    def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    return [
        (n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes(plan) if "Scan" in n["Node Type"]
    ]


def test_the_reads_use_indexes_without_statistics(
    harbor: Practice, summit: Practice, ana: Provider, engine: sa.Engine, recorded: list[tuple[str, Any]]
) -> None:
    """A big other practice, tables never analysed: a cold search reads harbor's providers by practice and their
    rows by primary key, never a whole table (as the app's role under row-level security)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO providers (id, tenant_id, full_name, title, kind, specialties, languages, modalities, bio,"
                " active, created_at) SELECT gen_random_uuid(), :t, 'Filler ' || g, '', 'doctor', '[]', '[]', '[]',"
                " '', true, now() FROM generate_series(1, 5000) g"
            ),
            {"t": summit.tenant_id},
        )
        for statement in (
            "INSERT INTO provider_clinics (tenant_id, provider_id, clinic_id) SELECT tenant_id, id, :c FROM providers"
            " WHERE full_name LIKE 'Filler %'",
            "INSERT INTO provider_next_free (tenant_id, provider_id, version, computed_version, computed_at)"
            " SELECT tenant_id, id, 1, 1, now() FROM providers WHERE full_name LIKE 'Filler %'",
        ):
            conn.execute(sa.text(statement), {"c": summit.clinic.id})
        conn.execute(
            sa.text("DELETE FROM pg_statistic WHERE starelid = ANY(CAST(:ids AS oid[]))"),
            {"ids": [conn.execute(sa.text("SELECT CAST(:n AS regclass)::oid"), {"n": n}).scalar() for n in SMALL]},
        )
    recorded.clear()
    run(harbor)  # empty cache: the directory with the stored slots
    for key in get_redis().scan_iter(f"clinic:{harbor.tenant_id}:cache:nextfree:*"):
        get_redis().delete(key)
    run(harbor)  # the directory cached: the stored slots alone
    reads = [(s, p) for s, p in recorded if s.lstrip().upper().startswith("SELECT") and "provider_next_free" in s]
    assert len(reads) == 2, [s for s, _ in recorded]
    for statement, parameters in reads:
        scans = _scans(harbor.tenant_id, statement, parameters)
        assert all(node != "Seq Scan" for node, _, _ in scans), scans
        assert "pk_provider_next_free" in {index for _, _, index in scans}, scans

"""Provider search on real PostgreSQL and Redis: filters, next free slot, order, the cache and its invalidation."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy import event

from backend.db import UnitOfWork
from backend.errors import ValidationFailed
from backend.identity.models import Provider, ProviderClinic
from backend.redis_client import get_redis
from backend.scheduling import cache, search
from backend.scheduling.availability import RuleInput, add_time_off, remove_time_off, replace_availability
from backend.scheduling.booking import book_appointment, hold_slot
from backend.scheduling.models import BookingPolicy
from backend.scheduling.search import ProviderCard, cache_hit_rate, search_facets, search_providers
from backend.settings import get_settings
from backend.tenancy import service as tenancy
from backend.tenancy.models import Clinic, ClinicUpdate
from backend.types import utcnow
from tests.conftest import free_port
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


def _keys(p: Practice) -> set[str]:
    return {k.decode() for k in get_redis().scan_iter(f"clinic:{p.tenant_id}:cache:*")} - {
        f"clinic:{p.tenant_id}:cache:stats"
    }


def add(
    p: Practice,
    full_name: str,
    *,
    title: str = "PsyD",
    kind: str = "therapist",
    specialties: tuple[str, ...] = (),
    languages: tuple[str, ...] = (),
    modalities: tuple[str, ...] = ("in_person",),
    clinics: tuple[Clinic, ...] | None = None,
    active: bool = True,
) -> Provider:
    """A provider with attributes and clinic links (written directly, as an import would)."""
    with UnitOfWork(p.system) as uow:
        provider = Provider(
            tenant_id=p.tenant_id,
            full_name=full_name,
            title=title,
            kind=kind,
            specialties=list(specialties),
            languages=list(languages),
            modalities=list(modalities),
            active=active,
        )
        uow.session.add(provider)
        uow.flush()
        for clinic in clinics if clinics is not None else (p.clinic,):
            uow.session.add(ProviderClinic(tenant_id=p.tenant_id, provider_id=provider.id, clinic_id=clinic.id))
        uow.commit()
    return provider


def today() -> date:
    return utcnow().date()


def open_from(p: Practice, provider: Provider, days: int, *, clinic: Clinic | None = None) -> None:
    """Every day 09:00-17:00 (clinic time), 50-minute sessions, from `days` days after today (UTC)."""
    rules = [
        RuleInput(clinic_id=(clinic or p.clinic).id, weekday=d, start=time(9), end=time(17),
                  valid_from=today() + timedelta(days=days))
        for d in range(7)
    ]  # fmt: skip
    with UnitOfWork(p.admin) as uow:
        replace_availability(p.admin, uow, provider.id, rules)
        uow.commit()


def first_slot(days: int, zone: ZoneInfo = NEW_YORK) -> datetime:
    """The 09:00 local session `days` days after today (UTC), in UTC."""
    return datetime.combine(today() + timedelta(days=days), time(9), tzinfo=zone).astimezone(UTC)


def run(p: Practice, **filters: Any) -> list[ProviderCard]:
    with UnitOfWork(p.patient_actor) as uow:
        return search_providers(p.patient_actor, uow, **filters)


def names(cards: list[ProviderCard]) -> list[str]:
    return [c.full_name for c in cards]


@pytest.fixture
def roster(harbor: Practice) -> dict[str, Provider]:
    """Harbor's providers: the factory's doctor (psychiatry, both modalities, no hours) and four more."""
    p = harbor
    r = {
        "dana": p.provider,
        "ana": add(p, "Ana Alvarez", title="LCSW", specialties=("Anxiety", "Trauma"), languages=("English", "Spanish"),
                   modalities=("in_person", "telehealth")),
        "ben": add(p, "Ben Brooks", title="PhD", specialties=("Depression",), languages=("English",),
                   modalities=("telehealth",), clinics=(p.clinic2,)),
        "cleo": add(p, "Cleo Chen", title="MD", kind="doctor", specialties=("psychiatry", "ADHD"),
                    languages=("English", "Mandarin"), clinics=(p.clinic, p.clinic2)),
        "gone": add(p, "Gus Gone", specialties=("Anxiety",), languages=("Spanish",), active=False),
    }  # fmt: skip
    open_from(p, r["ana"], 3)
    open_from(p, r["cleo"], 6)
    return r


@pytest.fixture
def count_sql(app_engine: sa.Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(app_engine, "before_cursor_execute", listen)
    yield statements
    event.remove(app_engine, "before_cursor_execute", listen)


@pytest.fixture
def count_mget(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The cache reads' round trips, each as the number of cache keys it read (a plain MGET, or the script that
    reads them and counts the hits in one call: its first key is the stats hash, not a cached value)."""
    client = get_redis()
    calls: list[int] = []
    real_mget, real_evalsha = client.mget, client.evalsha

    def mget(keys: Any, *args: Any) -> Any:
        calls.append(len(keys))
        return real_mget(keys, *args)

    def evalsha(sha: Any, numkeys: int, *keys_and_args: Any) -> Any:
        calls.append(numkeys - 1)
        return real_evalsha(sha, numkeys, *keys_and_args)

    monkeypatch.setattr(client, "mget", mget)
    monkeypatch.setattr(client, "evalsha", evalsha)
    return calls


# -- filters -------------------------------------------------------------------------------------------


def test_all_active_providers_free_soonest_first_then_by_name(harbor: Practice, roster: dict) -> None:
    cards = run(harbor)
    assert names(cards) == ["Ana Alvarez", "Cleo Chen", "Ben Brooks", "Dana Doctor (harbor)"]
    ana, cleo, ben, dana = cards
    assert (ana.next_free_start, ana.next_free_end) == (first_slot(3), first_slot(3) + timedelta(minutes=50))
    assert (ana.next_free_clinic_id, ana.next_free_timezone) == (harbor.clinic.id, "America/New_York")
    assert cleo.next_free_start == first_slot(6)
    assert ben.next_free_start is None and dana.next_free_start is None
    assert ana.clinics == [{"id": str(harbor.clinic.id), "name": harbor.clinic.name, "timezone": "America/New_York"}]
    assert [c["name"] for c in cleo.clinics] == sorted([harbor.clinic.name, harbor.clinic2.name])
    assert (cleo.title, cleo.kind, cleo.languages) == ("MD", "doctor", ["English", "Mandarin"])


def test_equal_next_free_is_ordered_by_name(harbor: Practice, roster: dict) -> None:
    zoe = add(harbor, "Aaron Zoe")
    open_from(harbor, zoe, 3)
    assert names(run(harbor))[:2] == ["Aaron Zoe", "Ana Alvarez"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"specialty": "anxiety"}, ["Ana Alvarez"]),
        ({"specialty": " PSYCHIATRY "}, ["Cleo Chen", "Dana Doctor (harbor)"]),
        ({"specialty": "psych"}, []),  # exact member, not a substring
        ({"modality": "telehealth"}, ["Ana Alvarez", "Ben Brooks", "Dana Doctor (harbor)"]),
        ({"language": "spanish"}, ["Ana Alvarez"]),
        ({"language": "Mandarin"}, ["Cleo Chen"]),
        ({"q": "chen"}, ["Cleo Chen"]),
        ({"q": "lcsw"}, ["Ana Alvarez"]),
        ({"q": "PRESS"}, ["Ben Brooks"]),  # inside the specialty "Depression"
        ({"q": "gus"}, []),  # inactive providers never appear
        ({"q": ""}, ["Ana Alvarez", "Cleo Chen", "Ben Brooks", "Dana Doctor (harbor)"]),
        ({"language": "English", "modality": "in_person"}, ["Ana Alvarez", "Cleo Chen"]),
    ],
)
def test_attribute_filters(harbor: Practice, roster: dict, filters: dict, expected: list[str]) -> None:
    assert names(run(harbor, **filters)) == expected


def test_clinic_filter(harbor: Practice, roster: dict) -> None:
    assert names(run(harbor, clinic_id=harbor.clinic.id)) == ["Ana Alvarez", "Cleo Chen", "Dana Doctor (harbor)"]
    assert names(run(harbor, clinic_id=harbor.clinic2.id)) == ["Cleo Chen", "Ben Brooks"]
    assert run(harbor, clinic_id=uuid.uuid4()) == []
    with UnitOfWork(harbor.admin) as uow:
        tenancy.update_clinic(harbor.admin, uow, harbor.clinic2.id, ClinicUpdate(archived=True))
        uow.commit()
    assert run(harbor, clinic_id=harbor.clinic2.id) == []  # an archived clinic has nobody working there
    (cleo,) = run(harbor, q="cleo")
    assert [c["id"] for c in cleo.clinics] == [str(harbor.clinic.id)]


def test_free_before(harbor: Practice, roster: dict) -> None:
    # Ana is free from day 3 (09:00 New York, 13:00 or 14:00 UTC), Cleo from day 6.
    assert names(run(harbor, free_before=today() + timedelta(days=3))) == []  # midnight UTC before Ana's day
    assert names(run(harbor, free_before=today() + timedelta(days=4))) == ["Ana Alvarez"]
    assert names(run(harbor, free_before=today() + timedelta(days=7))) == ["Ana Alvarez", "Cleo Chen"]
    assert names(run(harbor, free_before=today() + timedelta(days=7), specialty="psychiatry")) == ["Cleo Chen"]


def test_overlong_filter_is_refused(harbor: Practice) -> None:
    with pytest.raises(ValidationFailed, match="at most 100"):
        run(harbor, q="x" * 101)


# -- the next free slot --------------------------------------------------------------------------------


def test_next_free_skips_booked_and_time_off(harbor: Practice, roster: dict) -> None:
    ana = roster["ana"]
    with UnitOfWork(harbor.patient_actor) as uow:
        book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=first_slot(3))
        uow.commit()
    second = first_slot(3) + timedelta(hours=1)
    assert run(harbor, q="ana")[0].next_free_start == second
    with UnitOfWork(harbor.admin) as uow:
        add_time_off(harbor.admin, uow, ana.id, start=second, end=second + timedelta(hours=2))
        uow.commit()
    assert run(harbor, q="ana")[0].next_free_start == second + timedelta(hours=2)


def test_next_free_respects_the_clinics_horizon(harbor: Practice, roster: dict) -> None:
    with UnitOfWork(harbor.system) as uow:
        uow.session.add(BookingPolicy(tenant_id=harbor.tenant_id, clinic_id=harbor.clinic.id, horizon_days=4))
        uow.commit()
    # Cleo's day-6 slots lie beyond the Downtown horizon; Ana's day-3 slots do not.
    cards = {c.full_name: c for c in run(harbor)}
    assert cards["Ana Alvarez"].next_free_start == first_slot(3)
    assert cards["Cleo Chen"].next_free_start is None


def test_next_free_in_the_second_window(harbor: Practice) -> None:
    later = add(harbor, "Lena Later")
    open_from(harbor, later, 30)  # beyond the first two-week window, inside the 90-day horizon
    assert run(harbor, q="lena")[0].next_free_start == first_slot(30)


# -- the cache -----------------------------------------------------------------------------------------


def test_second_identical_search_is_served_from_the_cache(
    harbor: Practice, roster: dict, count_sql: list[str], count_mget: list[int]
) -> None:
    search._hints._data.clear()  # a cold process
    first = run(harbor, modality="in_person")
    after_first = cache.stats(harbor.tenant_id)
    assert after_first == {"hits": 0, "misses": 4}  # the directory, then Ana, Cleo and Dana
    count_sql.clear()
    count_mget.clear()

    second = run(harbor, modality="in_person")
    assert second == first
    assert cache.stats(harbor.tenant_id) == {"hits": 4, "misses": 4}
    assert count_mget == [4]  # one read: the directory and the three next-free entries
    assert [s for s in count_sql if not s.lstrip().upper().startswith(("BEGIN", "ROLLBACK", "COMMIT"))] == []
    assert cache_hit_rate(harbor.tenant_id) == {"hits": 4, "misses": 4, "rate": 0.5}


def test_a_process_that_has_not_seen_the_directory_needs_a_second_mget(
    harbor: Practice, roster: dict, count_mget: list[int]
) -> None:
    run(harbor)
    search._hints._data.clear()
    count_mget.clear()
    run(harbor)
    assert count_mget == [1, 4]
    assert cache_hit_rate(harbor.tenant_id)["hits"] == 5


def test_with_the_cache_unreachable_search_answers_the_same_from_the_database(
    harbor: Practice, roster: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = run(harbor)
    search._hints._data.clear()
    down = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2, socket_timeout=0.2)
    monkeypatch.setattr(cache, "_client", lambda: down)
    assert run(harbor) == expected
    assert run(harbor, modality="in_person") == [c for c in expected if "in_person" in c.modalities]


def test_booking_forgets_exactly_that_providers_next_free(harbor: Practice, roster: dict) -> None:
    ana, cleo, t = roster["ana"], roster["cleo"], harbor.tenant_id
    run(harbor)
    providers = (ana, cleo, roster["ben"], harbor.provider)
    every = {cache.directory_key(t), *(cache.next_free_key(t, x.id) for x in providers)}
    assert _keys(harbor) == every

    with UnitOfWork(harbor.patient_actor) as uow:
        book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=first_slot(3))
        assert _keys(harbor) == every  # nothing is forgotten before the commit
        uow.commit()
    assert _keys(harbor) == every - {cache.next_free_key(t, ana.id)}

    cards = {c.full_name: c for c in run(harbor)}
    assert cards["Ana Alvarez"].next_free_start == first_slot(3) + timedelta(hours=1)
    assert cards["Cleo Chen"].next_free_start == first_slot(6)
    assert _keys(harbor) == every


def test_a_rolled_back_booking_forgets_nothing(harbor: Practice, roster: dict) -> None:
    run(harbor)
    before = _keys(harbor)
    with UnitOfWork(harbor.patient_actor) as uow:
        book_appointment(harbor.patient_actor, uow, provider_id=roster["ana"].id, start=first_slot(3))
    assert _keys(harbor) == before


@pytest.mark.parametrize("change", ["replace", "add_time_off", "remove_time_off"])
def test_availability_edits_forget_that_providers_next_free(harbor: Practice, roster: dict, change: str) -> None:
    ana, t = roster["ana"], harbor.tenant_id
    start = first_slot(3)
    with UnitOfWork(harbor.admin) as uow:
        time_off = add_time_off(harbor.admin, uow, ana.id, start=start, end=start + timedelta(hours=1))
        uow.commit()
    run(harbor)
    before = _keys(harbor)
    assert cache.next_free_key(t, ana.id) in before
    with UnitOfWork(harbor.admin) as uow:
        if change == "replace":
            replace_availability(harbor.admin, uow, ana.id, [])
        elif change == "add_time_off":
            add_time_off(harbor.admin, uow, ana.id, start=start, end=start + timedelta(hours=20))
        else:
            remove_time_off(harbor.admin, uow, time_off.id)
        uow.commit()
    assert _keys(harbor) == before - {cache.next_free_key(t, ana.id)}
    expected = {"replace": None, "add_time_off": first_slot(4), "remove_time_off": start}[change]
    assert run(harbor, q="ana")[0].next_free_start == expected


def test_clinic_changes_forget_the_directory_and_its_providers(harbor: Practice, roster: dict) -> None:
    t = harbor.tenant_id
    run(harbor)
    before = _keys(harbor)
    with UnitOfWork(harbor.admin) as uow:
        tenancy.update_clinic(harbor.admin, uow, harbor.clinic2.id, ClinicUpdate(name="Harbor Hillside"))
        uow.commit()
    # Ben and Cleo work at clinic2; Ana and Dana do not.
    gone = {cache.directory_key(t), *(cache.next_free_key(t, roster[k].id) for k in ("ben", "cleo"))}
    assert _keys(harbor) == before - gone
    (ben,) = run(harbor, q="ben")
    assert [c["name"] for c in ben.clinics] == ["Harbor Hillside"]


def test_a_new_clinic_forgets_the_directory(harbor: Practice, roster: dict) -> None:
    from backend.tenancy.models import ClinicCreate

    run(harbor)
    with UnitOfWork(harbor.admin) as uow:
        tenancy.create_clinic(harbor.admin, uow, ClinicCreate(name="Harbor Annex", timezone="UTC"))
        uow.commit()
    assert cache.directory_key(harbor.tenant_id) not in _keys(harbor)


def test_a_stale_entry_is_recomputed(harbor: Practice, roster: dict) -> None:
    ana, t = roster["ana"], harbor.tenant_id
    run(harbor)
    yesterday = utcnow() - timedelta(days=1)
    stale = search.NextFree(None, None).to_json() | {
        "start": yesterday.isoformat(),
        "end": (yesterday + timedelta(minutes=50)).isoformat(),
        "clinic_id": str(harbor.clinic.id),
        "modality": "in_person",
        "timezone": "America/New_York",
    }
    cache.set_many({cache.next_free_key(t, ana.id): stale})
    assert run(harbor, q="ana")[0].next_free_start == first_slot(3)


def test_an_entry_ends_when_a_hold_on_an_earlier_slot_expires(
    harbor: Practice, roster: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = roster["ana"]
    with UnitOfWork(harbor.patient_actor) as uow:
        hold = hold_slot(harbor.patient_actor, uow, provider_id=ana.id, start=first_slot(3))
        uow.commit()
    assert run(harbor, q="ana")[0].next_free_start == first_slot(3) + timedelta(hours=1)
    # The hold lapses (nothing invalidates on expiry): the cached entry must not outlive it.
    assert hold.hold_expires_at is not None
    later = hold.hold_expires_at + timedelta(seconds=1)
    monkeypatch.setattr(search, "utcnow", lambda: later)
    assert run(harbor, q="ana")[0].next_free_start == first_slot(3)


def test_keys_carry_the_tenant_and_the_other_practice_never_appears(
    harbor: Practice, summit: Practice, roster: dict
) -> None:
    sam = add(summit, "Ana Sam", specialties=("Anxiety",), languages=("Spanish",))
    open_from(summit, sam, 1)
    for _ in range(2):  # cold, then warm
        harbor_ids = {c.id for c in run(harbor)}
        summit_ids = {c.id for c in run(summit)}
        assert summit_ids == {sam.id, summit.provider.id}
        assert harbor_ids == {roster[k].id for k in ("ana", "ben", "cleo", "dana")}
        assert names(run(summit, specialty="anxiety")) == ["Ana Sam"]
        assert names(run(harbor, specialty="anxiety")) == ["Ana Alvarez"]
        assert run(summit, clinic_id=harbor.clinic.id) == []
    for p, mine in ((harbor, harbor_ids), (summit, summit_ids)):
        keys = _keys(p)
        assert cache.directory_key(p.tenant_id) in keys
        assert all(k.startswith(f"clinic:{p.tenant_id}:cache:") for k in keys)
        assert {uuid.UUID(k.rsplit(":", 1)[1]) for k in keys if ":nextfree:" in k} == mine


def test_without_redis_search_computes_everything(
    harbor: Practice, roster: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_cache = run(harbor)
    drop_redis_keys(harbor)
    monkeypatch.setattr(get_settings(), "redis_url", None)
    assert run(harbor) == with_cache
    assert run(harbor, free_before=today() + timedelta(days=4)) == with_cache[:1]
    monkeypatch.undo()
    assert _keys(harbor) == set()
    assert cache.stats(harbor.tenant_id) == {"hits": 0, "misses": 0}


# -- facets --------------------------------------------------------------------------------------------


def test_facets_of_active_providers(harbor: Practice, roster: dict) -> None:
    add(harbor, "Eve Echo", specialties=("anxiety", "Grief"), languages=("english",))

    def facets() -> dict[str, list[str]]:
        with UnitOfWork(harbor.doctor) as uow:
            return search_facets(harbor.doctor, uow)

    expected = {
        "specialties": ["ADHD", "Anxiety", "Depression", "Grief", "psychiatry", "Trauma"],
        "languages": ["English", "Mandarin", "Spanish"],  # Spanish also from Ana; Gus is inactive
    }
    assert facets() == expected
    hits = cache.stats(harbor.tenant_id)["hits"]
    assert facets() == expected
    assert cache.stats(harbor.tenant_id)["hits"] == hits + 1


def test_facets_without_providers(db: sa.Engine) -> None:
    p = make_practice("Empty Practice", "empty")
    with UnitOfWork(p.system) as uow:
        provider = uow.session.get(Provider, p.provider.id)
        assert provider is not None
        provider.active = False
        uow.commit()
    with UnitOfWork(p.admin) as uow:
        assert search_facets(p.admin, uow) == {"specialties": [], "languages": []}
    drop_redis_keys(p)


# -- a simple run --------------------------------------------------------------------------------------


def test_hit_rate_over_twenty_searches_with_two_bookings(harbor: Practice, roster: dict) -> None:
    searches: list[Callable[[], list[ProviderCard]]] = [
        lambda: run(harbor),
        lambda: run(harbor, specialty="psychiatry"),
        lambda: run(harbor, clinic_id=harbor.clinic.id),
        lambda: run(harbor, q="ana"),
    ]
    ana = roster["ana"]
    for i in range(20):
        if i in (7, 14):
            start = run(harbor, q="ana")[0].next_free_start
            assert start is not None
            with UnitOfWork(harbor.patient_actor) as uow:
                book_appointment(harbor.patient_actor, uow, provider_id=ana.id, start=start)
                uow.commit()
        searches[i % len(searches)]()
    rate = cache_hit_rate(harbor.tenant_id)
    print(f"search cache over 22 searches with 2 bookings: {rate}")
    assert 0.8 < rate["rate"] < 1

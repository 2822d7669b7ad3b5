"""The arithmetic of login throttling, in process (no Redis, no database, a hand-driven clock).

The same arithmetic runs as a Lua script in Redis; tests/integration/test_login_throttle.py checks that the two
agree and that the API applies it.
"""

from __future__ import annotations

import pytest

from backend.identity import throttle
from backend.identity.throttle import Keys, Limits, MemoryStore

LIMITS = Limits(
    free_failures=5,
    backoff_base=2.0,
    backoff_max=300.0,
    pair_reset=86400.0,
    address_max=8,
    address_window=900.0,
    account_max=6,
    account_window=900.0,
    known_for=90 * 86400.0,
)
# Only the per-(network, account) backoff: the wide caps out of reach.
PAIR_ONLY = Limits(**{**LIMITS.__dict__, "address_max": 100, "account_max": 100})
T0 = 1_000_000.0


def _keys(network: str, account: str = "owner") -> Keys:
    return Keys(
        pair=f"pair:{account}:{network}",
        address=f"addr:{network}",
        account=f"acct:{account}",
        known=f"known:{account}",
        network=network,
    )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def _fail(store: MemoryStore, keys: Keys, times: int, now: float = T0) -> None:
    for _ in range(times):
        assert store.attempt(keys, LIMITS, now) == 0


def test_free_failures_never_wait(store: MemoryStore) -> None:
    _fail(store, _keys("a"), 5)


@pytest.mark.parametrize(("failures", "expected"), [(5, 2), (6, 4), (7, 8), (8, 16), (12, 256), (13, 300), (40, 300)])
def test_backoff_doubles_from_the_free_limit_and_is_capped(store: MemoryStore, failures: int, expected: int) -> None:
    limits = PAIR_ONLY
    keys = _keys("a")
    now = T0
    for _ in range(failures):
        wait = store.attempt(keys, limits, now)
        now += wait  # wait out each backoff, then fail again
        if wait:
            assert store.attempt(keys, limits, now) == 0
    assert store.attempt(keys, limits, now) == pytest.approx(expected)


def test_wait_counts_down_from_the_last_attempt(store: MemoryStore) -> None:
    keys = _keys("a")
    _fail(store, keys, 5)
    assert store.attempt(keys, LIMITS, T0 + 0.5) == pytest.approx(1.5)
    assert store.attempt(keys, LIMITS, T0 + 1.99) == pytest.approx(0.01)
    assert store.attempt(keys, LIMITS, T0 + 2) == 0


def test_a_refused_attempt_is_not_counted(store: MemoryStore) -> None:
    keys = _keys("a")
    _fail(store, keys, 5)
    for _ in range(10):
        assert store.attempt(keys, PAIR_ONLY, T0 + 1) == pytest.approx(1.0)
    assert store.attempt(keys, PAIR_ONLY, T0 + 2) == 0  # still the first backoff (2 s), not a longer one
    assert store.attempt(keys, PAIR_ONLY, T0 + 3) == pytest.approx(3.0)  # 6 counted: 4 s from T0 + 2


def test_success_clears_the_pair_backoff(store: MemoryStore) -> None:
    keys = _keys("a")
    _fail(store, keys, 5)
    store.succeeded(keys, LIMITS, T0)
    _fail(store, keys, 4)  # 5 - 1 (the success uncounted) on the address cap: still under 8


def test_idle_pair_is_forgotten(store: MemoryStore) -> None:
    keys = _keys("a")
    _fail(store, keys, 5)
    assert store.attempt(keys, LIMITS, T0) > 0
    later = T0 + LIMITS.pair_reset
    assert store.attempt(keys, LIMITS, later) == 0


def test_a_strangers_failures_never_hold_back_the_owners_network(store: MemoryStore) -> None:
    owner, stranger = _keys("home"), _keys("stranger")
    _fail(store, stranger, 5)
    assert store.attempt(stranger, LIMITS, T0) > 0
    assert store.attempt(owner, LIMITS, T0) == 0


def test_address_cap_spans_accounts_and_ends_with_its_window(store: MemoryStore) -> None:
    for i in range(LIMITS.address_max):
        assert store.attempt(_keys("net", account=f"acct{i}"), LIMITS, T0 + i) == 0
    assert store.attempt(_keys("net", account="fresh"), LIMITS, T0 + 10) == pytest.approx(890.0)
    assert store.attempt(_keys("other", account="fresh"), LIMITS, T0 + 10) == 0
    assert store.attempt(_keys("net", account="fresh"), LIMITS, T0 + 900) == 0


def test_account_cap_holds_back_new_networks_only(store: MemoryStore) -> None:
    store.succeeded(_keys("home"), LIMITS, T0)  # the owner signed in from home before
    for i in range(LIMITS.account_max):
        assert store.attempt(_keys(f"bot{i}"), LIMITS, T0 + 1) == 0
    assert store.attempt(_keys("new-place"), LIMITS, T0 + 100) == pytest.approx(801.0)
    assert store.attempt(_keys("home"), LIMITS, T0 + 100) == 0
    # Another account is not affected.
    assert store.attempt(_keys("new-place", account="someone-else"), LIMITS, T0 + 100) == 0


def test_known_networks_are_forgotten_after_the_retention(store: MemoryStore) -> None:
    store.succeeded(_keys("home"), LIMITS, T0)
    later = T0 + LIMITS.known_for + 1
    for i in range(LIMITS.account_max):
        assert store.attempt(_keys(f"bot{i}"), LIMITS, later) == 0
    assert store.attempt(_keys("home"), LIMITS, later) > 0


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.2", "198.51.100.2"),
        ("testclient", "testclient"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_network_of(address: str | None, network: str) -> None:
    assert throttle.network_of(address) == network

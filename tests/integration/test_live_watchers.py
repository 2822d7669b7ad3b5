"""The live watchers registry in Redis: what several workers sharing Reflex's state through Redis use to know
which tabs watch which audience (portal/state/live.py `_RedisWatchers`). The same rules as in process: a tab
watches one audience per class, joins it at its current revision, and leaves it when it watches another."""

from __future__ import annotations

import uuid

from backend.redis_client import get_redis
from portal.state.live import _LocalWatchers, _RedisWatchers, patient_token, provider_token


def _both(prefix: str) -> list[_LocalWatchers | _RedisWatchers]:
    return [_LocalWatchers(), _RedisWatchers(get_redis(), prefix)]


def test_a_tab_watches_one_audience_per_class_at_its_revision(own_redis_keys: str) -> None:
    a, b = provider_token(uuid.uuid4()), provider_token(uuid.uuid4())
    patient = patient_token(uuid.uuid4())
    for registry in _both(own_redis_keys):
        assert registry.watch("provider", "tab-1", a) == 0
        assert registry.watch("patient", "tab-1", patient) == 0
        assert registry.advance(a) == (1, {"tab-1"})
        assert registry.watch("provider", "tab-2", a) == 1  # joins at the audience's current revision
        # Tab 1 opens provider B's page: it leaves A (its patient audience stays).
        assert registry.watch("provider", "tab-1", b) == 0
        assert registry.advance(a) == (2, {"tab-2"})
        assert registry.advance(patient) == (1, {"tab-1"})
        registry.forget("provider", "tab-2", a)  # its socket is gone
        assert registry.advance(a) == (3, set())
        registry.watch("patient", "tab-1", None)  # a page that shows no patient audience
        assert registry.advance(patient) == (2, set())
        assert {a, b, patient} & registry.audiences() >= {b}


def test_registries_of_two_runs_sharing_a_redis_are_apart(own_redis_keys: str) -> None:
    audience = provider_token(uuid.uuid4())
    mine = _RedisWatchers(get_redis(), own_redis_keys)
    other = _RedisWatchers(get_redis(), f"{own_redis_keys}-other")
    try:
        mine.watch("provider", "tab-1", audience)
        assert other.advance(audience) == (1, set())
        assert mine.advance(audience) == (1, {"tab-1"})
    finally:
        keys = list(get_redis().scan_iter(f"{own_redis_keys}-other:*"))
        if keys:
            get_redis().delete(*keys)

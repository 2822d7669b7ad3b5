"""The Redis mark a booking takes on its slot (backend/scheduling/slot_marks.py), seen from Redis."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from backend.db import UnitOfWork
from backend.errors import Conflict
from backend.redis_client import get_redis
from backend.scheduling import slot_marks
from tests.factories import Practice, drop_redis_keys, local_start, make_practice


@pytest.fixture
def harbor(db: sa.Engine) -> Iterator[Practice]:
    p = make_practice("Harbor Mental Health", "harbor")
    yield p
    drop_redis_keys(p)


def test_a_mark_refuses_a_second_booker_until_its_unit_of_work_ends(harbor: Practice) -> None:
    start = local_start(3, 10)
    key = slot_marks.mark_key(harbor.tenant_id, harbor.provider.id, start)
    with UnitOfWork(harbor.patient_actor) as first:
        slot_marks.take_mark(first, harbor.provider.id, start)
        token = get_redis().get(key)
        # A random token (version 4), nothing of the host in it.
        assert token is not None and re.fullmatch(rb"[0-9a-f]{32}", token)
        assert uuid.UUID(token.decode()).version == 4
        assert 0 < get_redis().ttl(key) <= slot_marks.MARK_SECONDS
        slot_marks.take_mark(first, harbor.provider.id, start)  # the holder itself: no refusal
        with UnitOfWork(harbor.patient_actor) as second, pytest.raises(Conflict, match="right now"):
            slot_marks.take_mark(second, harbor.provider.id, start)
        assert slot_marks.marked_starts(harbor.tenant_id, harbor.provider.id, [start]) == {start}
    assert get_redis().get(key) is None
    with UnitOfWork(harbor.patient_actor) as third:
        slot_marks.take_mark(third, harbor.provider.id, start)
        assert get_redis().get(key) not in (None, token)
    assert slot_marks.marked_starts(harbor.tenant_id, harbor.provider.id, [start]) == set()

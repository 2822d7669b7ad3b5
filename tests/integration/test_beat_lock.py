"""Beat exactly once (issue 14, item 6): a beat sends the schedule's ticks only while it holds a Redis lock
(backend/beat_lock.py), so a second beat, started by mistake or on purpose as a standby, sends nothing until the
first one is gone. On the real Redis: the lock itself, and two real `celery beat` processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from backend.beat_lock import BeatLock, beat_lock_key
from backend.settings import PROJECT_ROOT, get_settings
from tests.conftest import REDIS_URL
from tests.worker_process import own_queue, wait_for

BROKER_URL = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/2")


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    connection.close()


@pytest.fixture
def key(client: redis.Redis) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex}:beat:leader"
    yield name
    client.delete(name)


def test_one_holder_at_a_time_and_the_next_takes_over_when_it_leaves(client: redis.Redis, key: str) -> None:
    first, second = BeatLock(client, key=key), BeatLock(client, key=key)
    assert first.hold()
    assert not second.hold()
    assert first.hold()  # renewed: still its own
    assert 0 < client.pttl(key) <= first.ttl_ms
    second.release()  # not the holder: changes nothing
    assert not second.hold()
    first.release()
    assert second.hold()
    assert not first.hold()


def test_a_lock_that_expired_goes_to_whoever_asks_first(client: redis.Redis, key: str) -> None:
    first, second = BeatLock(client, key=key), BeatLock(client, key=key)
    assert first.hold()
    client.delete(key)  # what Redis does when the TTL runs out (the holder stalled or its machine died)
    assert second.hold()
    assert not first.hold()  # the old holder does not renew someone else's lock: it stands by


def test_a_holder_whose_process_died_on_this_machine_is_replaced_at_once(client: redis.Redis, key: str) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # reaped: its process id names no process now
    client.set(key, f"{socket.gethostname()}|{ended.pid}|{uuid.uuid4().hex}", px=30_000)
    assert BeatLock(client, key=key).hold()

    # The same on another machine cannot be checked from here: wait for the TTL.
    client.set(key, f"elsewhere.example.org|{ended.pid}|{uuid.uuid4().hex}", px=30_000)
    assert not BeatLock(client, key=key).hold()
    # A live process on this machine (this one, here) keeps it.
    client.set(key, f"{socket.gethostname()}|{os.getppid()}|{uuid.uuid4().hex}", px=30_000)
    assert not BeatLock(client, key=key).hold()


def test_deployments_sharing_one_redis_each_have_their_beat(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = []
    for _ in range(2):
        monkeypatch.setattr(get_settings(), "redis_key_prefix", f"test-{uuid.uuid4().hex}")
        keys.append(beat_lock_key())
    try:
        assert keys[0] != keys[1] and all(k.endswith(":beat:leader") for k in keys)
        assert all(BeatLock(client, key=k).hold() for k in keys)
    finally:
        client.delete(*keys)


class Beat:
    """`celery -A backend.worker beat` in a process group of its own, sending to `queue` on the test broker."""

    def __init__(self, tmp_path: Path, name: str, env: dict[str, str]) -> None:
        self.log = tmp_path / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "backend.worker", "beat", "-l", "info",
                 "-s", str(tmp_path / f"{name}-schedule")],
                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.origin = f"gen{self.proc.pid}@"  # Celery's `origin` header of the messages this process sends

    def said(self, words: str) -> bool:
        return words in self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, as systemd stops it; SIGKILL whatever is left."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _sent(broker: redis.Redis, queue: str) -> list[tuple[str, str]]:
    """(origin, task) of every message waiting in the queue (nobody consumes it here)."""
    messages = [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]
    return [(m["headers"]["origin"], m["headers"]["task"]) for m in messages]


def _from(beat: Beat, sent: list[tuple[str, str]], task: str | None = None) -> int:
    return sum(1 for origin, name in sent if origin.startswith(beat.origin) and task in (None, name))


def test_a_second_beat_process_stands_by_and_takes_over_when_the_first_stops(tmp_path: Path) -> None:
    broker = redis.Redis.from_url(BROKER_URL)
    prefix = f"test-{uuid.uuid4().hex}"
    beats: list[Beat] = []
    with own_queue(BROKER_URL, "beat") as queue:
        env = {**os.environ, "CELERY_EAGER": "0", "CELERY_BROKER_URL": BROKER_URL, "CELERY_QUEUE": queue,
               "REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": prefix}  # fmt: skip
        try:
            first = Beat(tmp_path, "first", env)
            beats.append(first)
            wait_for("the first beat's ticks", lambda: _from(first, _sent(broker, queue)), seconds=60, log=first.log)
            second = Beat(tmp_path, "second", env)
            beats.append(second)
            wait_for("the second beat to stand by", lambda: second.said("standing by"), seconds=60, log=second.log)
            # Offers are expired every 5 s: two more of the first beat's ticks of it, while the second one (which
            # would send that tick on its own first pass) checks the lock at least once more.
            tick = "waitlist.expire_offers_tick"
            before = _from(first, _sent(broker, queue), tick)
            wait_for("two more ticks", lambda: _from(first, _sent(broker, queue), tick) >= before + 2, seconds=30,
                     log=first.log)  # fmt: skip
            assert _from(second, _sent(broker, queue)) == 0
            assert first.proc.poll() is None and second.proc.poll() is None

            first.stop()  # releases the lock on its way out
            wait_for("the second beat's ticks", lambda: _from(second, _sent(broker, queue)), seconds=30,
                     log=second.log)  # fmt: skip
            assert second.said("sending the schedule's ticks")
        finally:
            for beat in beats:
                beat.stop()
            redis.Redis.from_url(REDIS_URL).delete(f"{prefix}:beat:leader")
            broker.close()

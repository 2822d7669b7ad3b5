"""Real Celery worker subprocesses for integration tests, and pointing this process's Celery app at a broker.

A worker runs in its own session (process group), so the whole of it (the main process, its prefork children,
an embedded beat) can be killed at once, as a crash would, and is always cleaned up afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from kombu import pools as kombu_pools

from backend.settings import PROJECT_ROOT
from backend.worker import celery_app

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], *, seconds: float, log: Path | None = None) -> T:
    """Poll `probe` until it returns something truthy, or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
            pytest.fail(f"timed out after {seconds} s waiting for {what}\n--- worker log ---\n{tail}")
        time.sleep(0.02)


def reset_producer_pools() -> None:
    """Drop the app's connection and producer pools so the next publish uses the current broker_url. kombu keeps
    pools in a process-wide registry too: reset it, or a later publish could acquire from a closed pool."""
    pool = celery_app._pool
    if pool is not None:
        pool.force_close_all()
    celery_app._pool = None
    kombu_pools.reset()
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@contextmanager
def own_queue(broker_url: str, prefix: str) -> Iterator[str]:
    """A queue name of this test's own (runs may share the broker); only its own keys are deleted afterwards."""
    import redis

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(broker_url)
    keys = list(client.scan_iter(f"{name}*"))
    if keys:
        client.delete(*keys)
    client.close()


@contextmanager
def app_publishing_to(broker_url: str, queue: str | None = None, **conf: object) -> Iterator[None]:
    """Within the block, this process's Celery app publishes to `broker_url` (not eager), on `queue`."""
    settings = {"broker_url": broker_url, "task_always_eager": False, **conf}
    if queue is not None:
        settings["task_default_queue"] = queue
    saved = {key: celery_app.conf[key] for key in settings}
    celery_app.conf.update(settings)
    reset_producer_pools()
    try:
        yield
    finally:
        celery_app.conf.update(saved)
        reset_producer_pools()


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies waiting to be reaped by init do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class WorkerProcess:
    """`celery -A backend.worker worker` in a process group of its own, logging to `log`."""

    def __init__(
        self,
        log: Path,
        env: Mapping[str, str],
        *,
        beat_schedule: Path | None = None,
        pool: str = "prefork",
        concurrency: int = 2,
        name_prefix: str = "test",
    ) -> None:
        self.log = log
        self.env = {**os.environ, "CELERY_EAGER": "0", **env}
        self.beat_schedule = beat_schedule
        self.pool = pool
        self.concurrency = concurrency
        self.name = f"{name_prefix}-{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        args = [sys.executable, "-m", "celery", "-A", "backend.worker", "worker", "-P", self.pool,
                "-c", str(self.concurrency), "-l", "info", "-n", self.name,
                "--without-gossip", "--without-mingle"]  # fmt: skip
        if self.beat_schedule is not None:
            args += ["-B", "-s", str(self.beat_schedule)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, cwd=PROJECT_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, *, seconds: float = 45) -> None:
        """Until this worker (by name) answers a ping through the broker this process publishes to."""
        wait_for(f"worker {self.name} to answer a ping",
                 lambda: self.alive and celery_app.control.ping(destination=[self.name], timeout=0.3),
                 seconds=seconds, log=self.log)  # fmt: skip

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def count_in_log(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log_text()))

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash: no shutdown code runs, nothing is acked) and reap it."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        if _group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        wait_for(f"process group {pgid} to be gone", lambda: not _group_alive(pgid), seconds=10)

    def stop(self, *, grace: float = 5) -> None:
        """SIGTERM (warm shutdown), then SIGKILL whatever of the group is left after `grace` seconds."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            os.killpg(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

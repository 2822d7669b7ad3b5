"""backend.jobs, the port through which domain code asks for a Celery task by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from backend import jobs
from backend.db import UnitOfWork


class FakeTask:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[tuple[Any, ...], dict[str, Any], float | None]] = []
        self.fail = fail

    def delay(self, *args: Any, **kwargs: Any) -> None:
        self.apply_async(args, kwargs)

    def apply_async(self, args: tuple[Any, ...], kwargs: dict[str, Any], countdown: float | None = None) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((tuple(args), dict(kwargs), countdown))


class FakeUow:
    def __init__(self) -> None:
        self.hooks: list[Callable[[], None]] = []

    def after_commit(self, hook: Callable[[], None]) -> None:
        self.hooks.append(hook)

    def commit(self) -> None:
        for hook in self.hooks:
            hook()


def test_every_task_the_code_names_is_registered() -> None:
    for name in ("waitlist.offer_freed_slot", "notifications.deliver", "notifications.sweep_outbox_tick"):
        assert jobs.task_named(name).name == name


def test_an_unknown_task_name_is_a_clear_error() -> None:
    with pytest.raises(LookupError, match=r"no Celery task is named 'waitlist\.no_such_task'"):
        jobs.enqueue("waitlist.no_such_task", "x")


def test_enqueue_sends_like_delay_and_apply_async(monkeypatch: pytest.MonkeyPatch) -> None:
    task = FakeTask()
    monkeypatch.setattr(jobs, "task_named", lambda name: task)
    jobs.enqueue("some.task", "a", "b", key="v")
    jobs.enqueue("some.task", "c", countdown=2.5)
    assert task.sent == [(("a", "b"), {"key": "v"}, None), (("c",), {}, 2.5)]


def test_enqueue_after_commit_sends_only_once_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    task = FakeTask()
    monkeypatch.setattr(jobs, "task_named", lambda name: task)
    uow = FakeUow()
    jobs.enqueue_after_commit(cast(UnitOfWork, uow), "some.task", "id-1")
    assert task.sent == []  # nothing leaves before the commit (a rollback sends nothing)
    uow.commit()
    assert task.sent == [(("id-1",), {}, None)]


def test_a_lost_enqueue_after_commit_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(jobs, "task_named", lambda name: FakeTask(fail=True))
    uow = FakeUow()
    jobs.enqueue_after_commit(cast(UnitOfWork, uow), "waitlist.offer_freed_slot", "id-1")
    uow.commit()  # the commit stands; the beat sweep finds the work
    assert "could not enqueue waitlist.offer_freed_slot" in caplog.text

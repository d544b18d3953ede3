"""Retention: the scheduler purges finished tasks past TASKBOX_RETENTION_DAYS, with their
attempts, and nothing else."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from taskbox.errors import NotFound
from taskbox.models import Attempt, AttemptStatus, utcnow
from taskbox.queue import Queue
from taskbox.scheduler import Scheduler
from taskbox.settings import Settings
from taskbox.store import Store
from taskbox.store.tasks import NewTask, Outcome

attempts = Attempt.__table__  # type: ignore[attr-defined]


def submit(store: Store, at: datetime) -> str:
    [submitted] = store.tasks.submit([NewTask("echo", {}, run_at=at)], at)
    return submitted.task.id


def run(store: Store, at: datetime, status: AttemptStatus) -> str:
    """A task that ran once at `at` and ended with `status` (no retries)."""
    task_id = submit(store, at)
    store.tasks.start_attempts([task_id], "w", at, 30)
    store.tasks.finish_attempt(
        task_id,
        1,
        Outcome(status, error="x" if status != "SUCCESS" else None),
        at,
        None,
    )
    return task_id


def attempt_count(store: Store, task_ids: list[str]) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(attempts.c.task_id.in_(task_ids))
            ).scalar_one()
        )


def exists(store: Store, task_id: str) -> bool:
    try:
        store.tasks.get(task_id)
    except NotFound:
        return False
    return True


@pytest.fixture
def history(store: Store) -> dict[str, list[str]]:
    """Tasks finished 8 days ago, finished yesterday, and unfinished for 8 days."""
    now = utcnow()
    old = now - timedelta(days=8)
    cancelled = submit(store, old)
    store.tasks.cancel(cancelled, old)
    running = submit(store, old)
    store.tasks.start_attempts([running], "w", old, 30)
    return {
        "old_finished": [
            run(store, old, AttemptStatus.SUCCESS),
            run(store, old, AttemptStatus.FAILED),
            cancelled,
        ],
        "recent": [run(store, now - timedelta(days=1), AttemptStatus.SUCCESS)],
        "unfinished": [submit(store, old), running],
    }


def test_purge_removes_finished_tasks_past_retention_with_their_attempts(
    store: Store, queue: Queue, history: dict[str, list[str]]
) -> None:
    scheduler = Scheduler(Settings(retention_days=7), store, queue)

    scheduler.purge(utcnow())

    assert not any(exists(store, i) for i in history["old_finished"])
    assert attempt_count(store, history["old_finished"]) == 0
    assert all(exists(store, i) for i in history["recent"] + history["unfinished"])
    assert attempt_count(store, history["recent"]) == 1
    assert store.tasks.get(history["unfinished"][1]).status == "RUNNING"


def test_zero_retention_days_keeps_everything(
    store: Store, queue: Queue, history: dict[str, list[str]]
) -> None:
    scheduler = Scheduler(Settings(retention_days=0), store, queue)

    scheduler.purge(utcnow())

    assert all(exists(store, i) for ids in history.values() for i in ids)


def test_purge_works_through_small_batches(
    store: Store, history: dict[str, list[str]]
) -> None:
    before = utcnow() - timedelta(days=7)

    counts = [store.tasks.purge_finished(before, batch=2) for _ in range(3)]

    assert counts == [2, 1, 0]

"""Compare-and-set with the attempt number as fencing value, on SQLite and PostgreSQL.

A worker that lost its lease must never overwrite a newer attempt or move a finished
task backwards; every test here plays out such a race step by step with `now`.
"""

import threading
from datetime import UTC, datetime, timedelta

import pytest

from taskbox.errors import IdempotencyConflict, InvalidTransition, LeaseLost
from taskbox.models import AttemptStatus, Status, Task
from taskbox.store import Store
from taskbox.store.tasks import NewTask, Outcome

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LEASE_S = 30.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def submit(store: Store, max_retries: int = 3, key: str | None = None) -> Task:
    new = NewTask(
        name="echo",
        payload={"n": 1},
        run_at=T0,
        max_retries=max_retries,
        idempotency_key=key,
    )
    [submitted] = store.tasks.submit([new], T0)
    return submitted.task


def start(store: Store, task_id: str, worker: str, now: datetime) -> Task:
    [task] = store.tasks.start_attempts([task_id], worker, now, LEASE_S)
    return task


def expire(store: Store, task_id: str, now: datetime) -> None:
    [running] = [t for t in store.tasks.find_expired(now) if t.id == task_id]
    assert store.tasks.expire_lease(running, now) is not None


def requeue(store: Store, task_id: str, now: datetime) -> None:
    assert store.tasks.mark_queued([task_id], now) != []


SUCCESS = Outcome(AttemptStatus.SUCCESS, result={"ok": True})


def test_worker_that_lost_its_lease_cannot_record_over_the_next_attempt(
    store: Store,
) -> None:
    task = submit(store)
    start(store, task.id, "old", at(0))
    expire(store, task.id, at(LEASE_S + 1))
    requeue(store, task.id, at(LEASE_S + 1))
    start(store, task.id, "new", at(LEASE_S + 2))

    with pytest.raises(LeaseLost):
        store.tasks.finish_attempt(task.id, 1, SUCCESS, at(LEASE_S + 3), None)
    assert (
        store.tasks.renew_leases([(task.id, 1)], "old", at(LEASE_S + 3), LEASE_S)
        == set()
    )
    assert store.tasks.hand_back(task.id, 1, at(LEASE_S + 3)) is False

    running = store.tasks.get(task.id)
    assert (running.status, running.attempts, running.worker) == (
        Status.RUNNING,
        2,
        "new",
    )
    store.tasks.finish_attempt(task.id, 2, SUCCESS, at(LEASE_S + 4), None)
    done = store.tasks.get(task.id)
    assert done.status == Status.SUCCESS
    assert [a.status for a in store.tasks.list_attempts(task.id)] == [
        AttemptStatus.LOST,
        AttemptStatus.SUCCESS,
    ]


def test_finished_task_never_moves_backwards(store: Store) -> None:
    task = submit(store)
    start(store, task.id, "w", at(0))
    store.tasks.finish_attempt(task.id, 1, SUCCESS, at(1), None)

    late = at(LEASE_S * 10)
    assert store.tasks.start_attempts([task.id], "w2", late, LEASE_S) == []
    assert store.tasks.expire_lease(store.tasks.get(task.id), late) is None
    assert store.tasks.hand_back(task.id, 1, late) is False
    assert store.tasks.mark_queued([task.id], late) == []
    with pytest.raises(LeaseLost):
        store.tasks.finish_attempt(
            task.id, 1, Outcome(AttemptStatus.FAILED, error="late"), late, None
        )
    with pytest.raises(InvalidTransition):
        store.tasks.cancel(task.id, late)

    done = store.tasks.get(task.id)
    assert (done.status, done.result, done.attempts) == (
        Status.SUCCESS,
        {"ok": True},
        1,
    )


def test_duplicate_delivery_of_a_queued_id_starts_one_attempt(store: Store) -> None:
    task = submit(store)

    first = store.tasks.start_attempts([task.id], "a", at(0), LEASE_S)
    second = store.tasks.start_attempts([task.id], "b", at(0), LEASE_S)

    assert [t.worker for t in first] == ["a"]
    assert second == []
    assert len(store.tasks.list_attempts(task.id)) == 1


def test_lease_renewed_in_time_is_not_expired(store: Store) -> None:
    task = submit(store)
    start(store, task.id, "w", at(0))

    held = store.tasks.renew_leases([(task.id, 1)], "w", at(LEASE_S - 1), LEASE_S)

    assert held == {task.id}
    assert [t.id for t in store.tasks.find_expired(at(LEASE_S + 1))] == []
    stale = store.tasks.get(task.id)
    stale.lease_expires_at = at(0)
    assert store.tasks.expire_lease(stale, at(LEASE_S + 1)) is None


def test_lost_attempt_counts_toward_max_retries(store: Store) -> None:
    task = submit(store, max_retries=1)
    start(store, task.id, "w1", at(0))
    expire(store, task.id, at(LEASE_S + 1))
    assert store.tasks.get(task.id).status == Status.SCHEDULED

    requeue(store, task.id, at(LEASE_S + 1))
    start(store, task.id, "w2", at(LEASE_S + 2))
    expire(store, task.id, at(2 * LEASE_S + 3))

    failed = store.tasks.get(task.id)
    assert failed.status == Status.FAILED
    assert failed.error is not None and "lost" in failed.error
    attempts = store.tasks.list_attempts(task.id)
    assert [a.status for a in attempts] == [AttemptStatus.LOST, AttemptStatus.LOST]


def test_failed_attempt_is_scheduled_for_retry_with_its_error_and_traceback(
    store: Store,
) -> None:
    task = submit(store, max_retries=1)
    start(store, task.id, "w", at(0))
    failure = Outcome(
        AttemptStatus.FAILED,
        error="ValueError: no",
        traceback="Traceback...\nValueError",
    )

    retry = store.tasks.finish_attempt(task.id, 1, failure, at(1), at(5))
    assert (retry.status, retry.run_at) == (Status.SCHEDULED, at(5))

    requeue(store, task.id, at(5))
    start(store, task.id, "w", at(5))
    last = store.tasks.finish_attempt(task.id, 2, failure, at(6), at(10))
    assert last.status == Status.FAILED

    failed = store.tasks.get(task.id)
    assert failed.error == "ValueError: no"
    assert failed.finished_at == at(6)
    attempts = store.tasks.list_attempts(task.id)
    assert [(a.number, a.status) for a in attempts] == [
        (1, AttemptStatus.FAILED),
        (2, AttemptStatus.FAILED),
    ]
    assert all(a.traceback and "ValueError" in a.traceback for a in attempts)


def test_retry_queues_a_failed_task_again_and_keeps_its_history(store: Store) -> None:
    task = submit(store, max_retries=0)
    start(store, task.id, "w", at(0))
    store.tasks.finish_attempt(
        task.id, 1, Outcome(AttemptStatus.FAILED, error="x"), at(1), at(2)
    )

    queued = store.tasks.retry(task.id, at(3))
    assert queued.status == Status.QUEUED
    start(store, task.id, "w", at(4))
    store.tasks.finish_attempt(task.id, 2, SUCCESS, at(5), at(6))

    assert store.tasks.get(task.id).status == Status.SUCCESS
    assert len(store.tasks.list_attempts(task.id)) == 2
    with pytest.raises(InvalidTransition):
        store.tasks.retry(task.id, at(7))


def test_cancelled_task_is_dropped_by_a_worker_that_claims_it_later(
    store: Store,
) -> None:
    task = submit(store)

    assert store.tasks.cancel(task.id, at(1)).status == Status.CANCELLED
    assert store.tasks.start_attempts([task.id], "w", at(2), LEASE_S) == []
    assert store.tasks.list_attempts(task.id) == []


def test_concurrent_submissions_with_one_key_make_one_task(store: Store) -> None:
    barrier = threading.Barrier(20)
    ids: list[str] = []
    errors: list[BaseException] = []

    def submit_once() -> None:
        barrier.wait()
        try:
            ids.append(submit(store, key="order-42").id)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=submit_once) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(set(ids)) == 1
    tasks, _ = store.tasks.page(limit=100)
    assert len(tasks) == 1


def test_batch_with_a_conflicting_key_writes_nothing(store: Store) -> None:
    submit(store, key="used")
    batch = [
        NewTask(name="echo", payload={"i": i}, run_at=T0, idempotency_key=f"k{i}")
        for i in range(5)
    ] + [
        NewTask(name="echo", payload={"other": True}, run_at=T0, idempotency_key="used")
    ]

    with pytest.raises(IdempotencyConflict):
        store.tasks.submit(batch, T0)

    tasks, _ = store.tasks.page(limit=100)
    assert len(tasks) == 1

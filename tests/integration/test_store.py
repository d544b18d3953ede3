"""The store layer on SQLite and PostgreSQL alike (the `store` fixture runs each test
on both): submitting, paging, and every compare-and-set state change."""

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskbox.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidTransition,
    LeaseLost,
    NotFound,
)
from taskbox.models import AttemptStatus, Status, Task
from taskbox.store import Store, open_store
from taskbox.store.tasks import NewTask, Outcome

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LEASE_S = 30.0


def new(name: str = "echo", **fields: Any) -> NewTask:
    fields.setdefault("payload", {})
    fields.setdefault("run_at", NOW)
    return NewTask(name=name, **fields)


def submit_one(store: Store, **fields: Any) -> Task:
    [submitted] = store.tasks.submit([new(**fields)], NOW)
    return submitted.task


def start(store: Store, task: Task, worker: str = "w1", now: datetime = NOW) -> Task:
    [started] = store.tasks.start_attempts([task.id], worker, now, LEASE_S)
    return started


def race(threads: int, work: Callable[[], Any]) -> list[Any]:
    """Run `work` in several threads released at the same moment; return answers."""
    barrier = threading.Barrier(threads)
    answers: list[Any] = [None] * threads

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = work()

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(30)
    return answers


def race_stores(stores: list[Store], work: Callable[[Store, int], Any]) -> list[Any]:
    """Run work(store, i) in one thread per store (each its own engine), at once."""
    turn = iter(range(len(stores)))
    lock = threading.Lock()

    def run() -> Any:
        with lock:
            i = next(turn)
        return work(stores[i], i)

    return race(len(stores), run)


# -- submitting -------------------------------------------------------------------


def test_due_task_is_queued_and_later_task_scheduled(store: Store) -> None:
    now_task = submit_one(store)
    later = submit_one(store, run_at=NOW + timedelta(minutes=5))

    assert now_task.status == Status.QUEUED
    assert later.status == Status.SCHEDULED
    assert store.tasks.get(later.id).run_at == NOW + timedelta(minutes=5)


def test_same_idempotency_key_returns_the_first_task(store: Store) -> None:
    first = store.tasks.submit([new(idempotency_key="k1")], NOW)[0]
    again = store.tasks.submit([new(idempotency_key="k1")], NOW)[0]

    assert first.created and not again.created
    assert again.task.id == first.task.id
    assert store.tasks.page(limit=10)[0] == [store.tasks.get(first.task.id)]


def test_idempotency_key_with_another_payload_is_a_conflict(store: Store) -> None:
    store.tasks.submit([new(idempotency_key="k1", payload={"a": 1})], NOW)

    with pytest.raises(IdempotencyConflict, match="k1"):
        store.tasks.submit([new(idempotency_key="k1", payload={"a": 2})], NOW)


def test_two_threads_racing_on_one_key_make_one_task(store_url: str) -> None:
    stores = [open_store(store_url, "api") for _ in range(4)]

    def submit(mine: Store, _: int) -> str:
        [submitted] = mine.tasks.submit([new(idempotency_key="race")], NOW)
        return submitted.task.id

    try:
        ids = race_stores(stores, submit)
        tasks, _ = stores[0].tasks.page(limit=10)
    finally:
        for opened in stores:
            opened.close()

    assert len(set(ids)) == 1
    assert [t.id for t in tasks] == ids[:1]


def test_batch_with_a_conflicting_key_writes_nothing(store: Store) -> None:
    store.tasks.submit([new(idempotency_key="k1", payload={"a": 1})], NOW)

    with pytest.raises(IdempotencyConflict):
        store.tasks.submit(
            [new(payload={"b": 1}), new(idempotency_key="k1", payload={"a": 2})], NOW
        )
    assert len(store.tasks.page(limit=10)[0]) == 1


# -- reading --------------------------------------------------------------------


def test_pages_newest_first_with_a_cursor(store: Store) -> None:
    ids = [t.task.id for t in store.tasks.submit([new() for _ in range(5)], NOW)]

    first, cursor = store.tasks.page(limit=2)
    second, cursor2 = store.tasks.page(limit=2, cursor=cursor)
    third, cursor3 = store.tasks.page(limit=2, cursor=cursor2)

    listed = [t.id for t in first + second + third]
    assert listed == sorted(ids, reverse=True)
    assert cursor3 is None


def test_page_filters_by_status_and_name(store: Store) -> None:
    echo = submit_one(store)
    later = submit_one(store, name="sleep", run_at=NOW + timedelta(hours=1))

    scheduled, _ = store.tasks.page(status=Status.SCHEDULED)
    echoes, _ = store.tasks.page(name="echo")

    assert [t.id for t in scheduled] == [later.id]
    assert [t.id for t in echoes] == [echo.id]


def test_missing_task_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="nope"):
        store.tasks.get("nope")


# -- starting attempts ------------------------------------------------------------


def test_start_moves_queued_to_running_under_a_lease(store: Store) -> None:
    task = submit_one(store)

    started = start(store, task)

    assert started.status == Status.RUNNING
    assert started.attempts == 1
    assert started.worker == "w1"
    assert started.lease_expires_at == NOW + timedelta(seconds=LEASE_S)
    [attempt] = store.tasks.list_attempts(task.id)
    assert (attempt.number, attempt.status) == (1, AttemptStatus.RUNNING)


def test_second_start_of_the_same_id_does_nothing(store: Store) -> None:
    task = submit_one(store)
    start(store, task, "w1")

    again = store.tasks.start_attempts([task.id], "w2", NOW, LEASE_S)

    assert again == []
    assert store.tasks.get(task.id).worker == "w1"
    assert len(store.tasks.list_attempts(task.id)) == 1


def test_two_workers_starting_one_id_at_once_start_it_once(store_url: str) -> None:
    workers = [open_store(store_url, "worker") for _ in range(2)]
    task = submit_one(workers[0])

    try:
        answers = race_stores(
            workers,
            lambda mine, i: mine.tasks.start_attempts([task.id], f"w{i}", NOW, LEASE_S),
        )
        attempts = workers[0].tasks.list_attempts(task.id)
    finally:
        for opened in workers:
            opened.close()

    assert sorted(len(started) for started in answers) == [0, 1]
    assert len(attempts) == 1


def test_start_skips_ids_that_are_not_queued(store: Store) -> None:
    queued = submit_one(store)
    later = submit_one(store, run_at=NOW + timedelta(hours=1))
    cancelled = submit_one(store)
    store.tasks.cancel(cancelled.id, NOW)

    started = store.tasks.start_attempts(
        [queued.id, later.id, cancelled.id, "missing"], "w1", NOW, LEASE_S
    )

    assert [t.id for t in started] == [queued.id]


# -- finishing attempts -------------------------------------------------------------


def test_success_is_recorded_with_its_result(store: Store) -> None:
    task = start(store, submit_one(store))

    finished = store.tasks.finish_attempt(
        task.id, 1, Outcome(AttemptStatus.SUCCESS, result={"ok": 1}), NOW, None
    )

    done = store.tasks.get(task.id)
    assert finished.status == Status.SUCCESS
    assert (done.status, done.result, done.finished_at) == (
        Status.SUCCESS,
        {"ok": 1},
        NOW,
    )
    assert store.tasks.list_attempts(task.id)[0].status == AttemptStatus.SUCCESS


def test_failure_with_retries_left_is_scheduled_at_retry_time(store: Store) -> None:
    task = start(store, submit_one(store, max_retries=1))
    retry_at = NOW + timedelta(seconds=5)

    finished = store.tasks.finish_attempt(
        task.id, 1, Outcome(AttemptStatus.FAILED, error="E: no"), NOW, retry_at
    )

    assert (finished.status, finished.run_at) == (Status.SCHEDULED, retry_at)
    assert store.tasks.get(task.id).error == "E: no"


def test_failure_without_retries_left_ends_failed(store: Store) -> None:
    task = start(store, submit_one(store, max_retries=0))

    finished = store.tasks.finish_attempt(
        task.id,
        1,
        Outcome(AttemptStatus.FAILED, error="E: no"),
        NOW,
        NOW + timedelta(seconds=5),
    )

    assert finished.status == Status.FAILED
    assert store.tasks.get(task.id).finished_at == NOW


def test_outcome_of_a_stale_attempt_raises_lease_lost(store: Store) -> None:
    task = start(store, submit_one(store))
    later = NOW + timedelta(seconds=LEASE_S + 1)
    store.tasks.expire_lease(task, later)
    store.tasks.mark_queued([task.id], later)
    start(store, task, "w2", later)

    with pytest.raises(LeaseLost, match=task.id):
        store.tasks.finish_attempt(
            task.id, 1, Outcome(AttemptStatus.SUCCESS), later, None
        )
    assert store.tasks.get(task.id).status == Status.RUNNING
    assert store.tasks.get(task.id).worker == "w2"


def test_finished_task_never_moves_backwards(store: Store) -> None:
    task = start(store, submit_one(store))
    store.tasks.finish_attempt(task.id, 1, Outcome(AttemptStatus.SUCCESS), NOW, None)

    with pytest.raises(LeaseLost):
        store.tasks.finish_attempt(
            task.id, 1, Outcome(AttemptStatus.FAILED), NOW, NOW + timedelta(seconds=1)
        )
    assert store.tasks.start_attempts([task.id], "w2", NOW, LEASE_S) == []
    assert store.tasks.hand_back(task.id, 1, NOW) is False
    assert store.tasks.expire_lease(task, NOW + timedelta(hours=1)) is None
    with pytest.raises(InvalidTransition):
        store.tasks.cancel(task.id, NOW)
    assert store.tasks.get(task.id).status == Status.SUCCESS


# -- leases -------------------------------------------------------------------------


def test_expired_lease_is_taken_back_and_scheduled_again(store: Store) -> None:
    task = start(store, submit_one(store, max_retries=1))
    later = NOW + timedelta(seconds=LEASE_S + 1)

    [found] = store.tasks.find_expired(later)
    expired = store.tasks.expire_lease(found, later)

    assert expired is not None
    assert (expired.status, expired.attempt, expired.worker) == (
        Status.SCHEDULED,
        1,
        "w1",
    )
    assert store.tasks.list_attempts(task.id)[0].status == AttemptStatus.LOST


def test_expired_lease_without_retries_left_ends_failed(store: Store) -> None:
    task = start(store, submit_one(store, max_retries=0))
    later = NOW + timedelta(seconds=LEASE_S + 1)

    expired = store.tasks.expire_lease(task, later)

    assert expired is not None and expired.status == Status.FAILED
    assert store.tasks.get(task.id).status == Status.FAILED


def test_lease_that_has_not_run_out_is_not_expired(store: Store) -> None:
    task = start(store, submit_one(store))

    assert store.tasks.find_expired(NOW) == []
    assert store.tasks.expire_lease(task, NOW) is None
    assert store.tasks.get(task.id).status == Status.RUNNING


def test_renewed_lease_is_not_expired(store: Store) -> None:
    task = start(store, submit_one(store))
    renewed_at = NOW + timedelta(seconds=LEASE_S - 1)

    held = store.tasks.renew_leases([(task.id, 1)], "w1", renewed_at, LEASE_S)
    expired = store.tasks.expire_lease(task, NOW + timedelta(seconds=LEASE_S + 1))

    assert held == {task.id}
    assert expired is None


def test_hand_back_requeues_without_spending_a_retry(store: Store) -> None:
    task = start(store, submit_one(store, max_retries=0))

    assert store.tasks.hand_back(task.id, 1, NOW) is True
    assert store.tasks.get(task.id).status == Status.QUEUED
    again = start(store, task, "w2")
    store.tasks.finish_attempt(
        task.id, 2, Outcome(AttemptStatus.FAILED), NOW, NOW + timedelta(seconds=1)
    )

    assert again.attempts == 2
    statuses = [a.status for a in store.tasks.list_attempts(task.id)]
    assert statuses == [AttemptStatus.LOST, AttemptStatus.FAILED]
    assert store.tasks.get(task.id).status == Status.FAILED


def test_hand_back_of_a_stale_attempt_does_nothing(store: Store) -> None:
    task = start(store, submit_one(store))

    assert store.tasks.hand_back(task.id, 2, NOW) is False
    assert store.tasks.get(task.id).status == Status.RUNNING


# -- cancel and retry ---------------------------------------------------------------


def test_cancel_waiting_task_and_retry_it(store: Store) -> None:
    task = submit_one(store, run_at=NOW + timedelta(hours=1))

    cancelled = store.tasks.cancel(task.id, NOW)
    retried = store.tasks.retry(task.id, NOW + timedelta(seconds=1))

    assert cancelled.status == Status.CANCELLED
    assert retried.status == Status.QUEUED
    assert retried.finished_at is None
    assert retried.run_at == NOW + timedelta(seconds=1)


def test_cancel_running_task_is_an_invalid_transition(store: Store) -> None:
    task = start(store, submit_one(store))

    with pytest.raises(InvalidTransition, match="RUNNING"):
        store.tasks.cancel(task.id, NOW)


def test_retry_of_a_queued_task_is_an_invalid_transition(store: Store) -> None:
    task = submit_one(store)

    with pytest.raises(InvalidTransition, match="QUEUED"):
        store.tasks.retry(task.id, NOW)


def test_retry_of_a_failed_task_renews_its_retry_budget(store: Store) -> None:
    task = start(store, submit_one(store, max_retries=0))
    store.tasks.finish_attempt(task.id, 1, Outcome(AttemptStatus.FAILED), NOW, None)

    store.tasks.retry(task.id, NOW)
    start(store, task)
    finished = store.tasks.finish_attempt(
        task.id, 2, Outcome(AttemptStatus.SUCCESS), NOW, None
    )

    assert finished.status == Status.SUCCESS


# -- retention ---------------------------------------------------------------------


def test_purge_deletes_only_finished_tasks_older_than_the_cutoff(store: Store) -> None:
    old = start(store, submit_one(store))
    store.tasks.finish_attempt(old.id, 1, Outcome(AttemptStatus.SUCCESS), NOW, None)
    recent = start(store, submit_one(store))
    store.tasks.finish_attempt(
        recent.id, 1, Outcome(AttemptStatus.SUCCESS), NOW + timedelta(days=2), None
    )
    waiting = submit_one(store)

    purged = store.tasks.purge_finished(NOW + timedelta(days=1))

    assert purged == 1
    with pytest.raises(NotFound):
        store.tasks.get(old.id)
    assert store.tasks.get(recent.id).status == Status.SUCCESS
    assert store.tasks.get(waiting.id).status == Status.QUEUED


# -- schedules ---------------------------------------------------------------------


def schedule(name: str = "every-minute", **values: Any) -> dict[str, Any]:
    return {
        "name": name,
        "task": "echo",
        "payload": {"n": 1},
        "cron": None,
        "interval_seconds": 60.0,
        "timezone": "UTC",
        "enabled": True,
        **values,
    }


def test_schedule_create_update_and_delete(store: Store) -> None:
    created = store.schedules.create(schedule(), NOW)
    disabled = store.schedules.update("every-minute", {"enabled": False}, NOW)
    cron = store.schedules.update(
        "every-minute", {"enabled": True, "cron": "0 * * * *"}, NOW
    )
    store.schedules.delete("every-minute")

    assert created.next_run_at == NOW + timedelta(minutes=1)
    assert disabled.next_run_at is None
    assert (cron.cron, cron.interval_seconds) == ("0 * * * *", None)
    assert cron.next_run_at == NOW + timedelta(hours=1)
    with pytest.raises(NotFound):
        store.schedules.get("every-minute")


def test_schedule_name_taken_is_a_conflict(store: Store) -> None:
    store.schedules.create(schedule(), NOW)

    with pytest.raises(Conflict, match="every-minute"):
        store.schedules.create(schedule(), NOW)


def test_due_schedule_fires_once_and_moves_on(store: Store) -> None:
    store.schedules.create(schedule(), NOW)
    due = NOW + timedelta(minutes=1)

    fired = store.schedules.fire_due(due)
    again = store.schedules.fire_due(due)

    assert [f.schedule for f in fired] == ["every-minute"]
    assert again == []
    task = store.tasks.get(fired[0].task_id)
    assert (task.name, task.payload, task.status) == ("echo", {"n": 1}, Status.QUEUED)
    assert store.schedules.get("every-minute").next_run_at == due + timedelta(minutes=1)


def test_two_schedulers_firing_at_once_fire_each_due_time_once(
    store_url: str,
) -> None:
    schedulers = [open_store(store_url, "scheduler") for _ in range(2)]
    for i in range(20):
        schedulers[0].schedules.create(schedule(f"s{i:02}"), NOW)

    try:
        for minute in (1, 2, 3):
            due = NOW + timedelta(minutes=minute, seconds=1)
            answers = race_stores(
                schedulers, lambda mine, _, due=due: mine.schedules.fire_due(due)
            )
            fired = [f.schedule for answer in answers for f in answer]
            assert sorted(fired) == [f"s{i:02}" for i in range(20)]
        tasks, _ = schedulers[0].tasks.page(limit=1000)
    finally:
        for opened in schedulers:
            opened.close()

    assert len(tasks) == 60

"""The scheduler rebuilds Redis from the store, with no task lost and none queued
twice, on SQLite and PostgreSQL against a real Redis."""

import time
from datetime import UTC, datetime, timedelta

from taskbox.models import Status
from taskbox.queue import Queue
from taskbox.scheduler import Scheduler
from taskbox.settings import Settings
from taskbox.store import Store
from taskbox.store.tasks import NewTask

NOW = datetime.now(UTC)


def scheduler(store: Store, queue: Queue) -> Scheduler:
    return Scheduler(Settings(retention_days=0), store, queue, clock=lambda: NOW)


def submit(store: Store, run_at: datetime = NOW) -> str:
    [submitted] = store.tasks.submit(
        [NewTask(name="echo", payload={}, run_at=run_at)], NOW
    )
    return submitted.task.id


def ready_ids(queue: Queue) -> list[str]:
    ids: list[str] = queue.client.lrange(queue.ready_key(0), 0, -1)
    return ids


def test_rebuild_puts_every_waiting_task_back_once(store: Store, queue: Queue) -> None:
    queued = [submit(store) for _ in range(3)]
    later = submit(store, NOW + timedelta(hours=1))
    running = submit(store)
    store.tasks.start_attempts([running], "w", NOW, 30)

    loop = scheduler(store, queue)
    loop.rebuild_if_lost(NOW)
    queue.client.delete(queue.epoch_key)
    loop.rebuild_if_lost(NOW)

    assert sorted(ready_ids(queue)) == sorted(queued)
    assert queue.client.zrange(queue.delayed_key, 0, -1) == [later]


def test_rebuild_after_a_flush_skips_ids_already_queued_again(
    store: Store, queue: Queue
) -> None:
    first, second = submit(store), submit(store)
    queue.enqueue(ready=[(first, 0)])

    scheduler(store, queue).rebuild_if_lost(NOW)

    assert sorted(ready_ids(queue)) == sorted([first, second])


def test_ids_claimed_by_a_silent_worker_are_queued_again_once(
    store: Store, queue: Queue
) -> None:
    claimed, requeued = submit(store), submit(store)
    queue.enqueue(ready=[(claimed, 0), (requeued, 0)])
    taken = queue.claim("dead") + queue.claim("dead")
    assert sorted(taken) == sorted([claimed, requeued])
    # The second id is already back on the ready list, as after an expired lease.
    queue.enqueue(ready=[(requeued, 0)])

    scheduler(store, queue).recover_inflight()

    assert sorted(ready_ids(queue)) == sorted([claimed, requeued])
    assert queue.inflight("dead") == []


def test_expired_lease_puts_the_task_on_the_delayed_queue(
    store: Store, queue: Queue
) -> None:
    task_id = submit(store)
    store.tasks.start_attempts([task_id], "gone", NOW - timedelta(minutes=5), 30)

    scheduler(store, queue).expire_leases(NOW)

    assert store.tasks.get(task_id).status == Status.SCHEDULED
    assert queue.client.zrange(queue.delayed_key, 0, -1) == [task_id]


def test_rebuild_left_half_done_by_a_dead_scheduler_is_done_again(
    store: Store, queue: Queue
) -> None:
    task_id = submit(store)
    # Another scheduler claimed the rebuild and died before finishing it.
    queue.client.set(queue.rebuilding_key, "1", px=300)
    loop = scheduler(store, queue)

    loop.rebuild_if_lost(NOW)
    assert ready_ids(queue) == []
    time.sleep(0.4)
    loop.rebuild_if_lost(NOW)

    assert ready_ids(queue) == [task_id]
    assert queue.has_epoch()

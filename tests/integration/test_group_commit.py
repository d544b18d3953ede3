"""Workers start and finish attempts in batches; each task keeps its own fencing."""

from datetime import timedelta

from taskbox.models import AttemptStatus, Status, utcnow
from taskbox.queue import Queue
from taskbox.store import Store
from taskbox.store.tasks import Ending, NewTask, Outcome


def _started(store: Store, count: int) -> list[str]:
    now = utcnow()
    submitted = store.tasks.submit(
        [NewTask(name="echo", payload={"n": n}, run_at=now) for n in range(count)], now
    )
    ids = [s.task.id for s in submitted]
    store.tasks.start_attempts(ids, "worker-a", now, lease_s=30)
    return ids


def test_finish_attempts_records_each_outcome_in_one_batch(store: Store) -> None:
    ok, failing = _started(store, 2)
    now = utcnow()

    finished = store.tasks.finish_attempts(
        [
            Ending(ok, 1, Outcome(AttemptStatus.SUCCESS, result={"n": 0}), None),
            Ending(
                failing,
                1,
                Outcome(AttemptStatus.FAILED, error="ValueError: no"),
                now + timedelta(seconds=5),
            ),
        ],
        now,
    )

    assert [f.status if f else None for f in finished] == [
        Status.SUCCESS,
        Status.SCHEDULED,
    ]
    assert store.tasks.get(ok).result == {"n": 0}
    assert store.tasks.get(failing).error == "ValueError: no"
    assert [a.status for a in store.tasks.list_attempts(ok)] == ["SUCCESS"]
    assert [a.status for a in store.tasks.list_attempts(failing)] == ["FAILED"]


def test_finish_attempts_skips_a_task_taken_back_and_records_the_rest(
    store: Store,
) -> None:
    kept, taken_back = _started(store, 2)
    now = utcnow()
    assert store.tasks.hand_back(taken_back, 1, now)

    finished = store.tasks.finish_attempts(
        [
            Ending(kept, 1, Outcome(AttemptStatus.SUCCESS, result=None), None),
            Ending(taken_back, 1, Outcome(AttemptStatus.SUCCESS, result=None), None),
        ],
        now,
    )

    assert finished[0] is not None and finished[0].status == Status.SUCCESS
    assert finished[1] is None
    assert store.tasks.get(kept).status == Status.SUCCESS
    assert store.tasks.get(taken_back).status == Status.QUEUED
    assert [a.status for a in store.tasks.list_attempts(taken_back)] == ["LOST"]


def test_claim_of_several_takes_at_most_half_of_a_short_queue(queue: Queue) -> None:
    queue.enqueue(ready=[(f"task-{n}", 0) for n in range(4)])

    first = queue.claim("worker-a", 32)
    second = queue.claim("worker-b", 32)
    third = queue.claim("worker-c", 32)

    assert (len(first), len(second), len(third)) == (2, 1, 1)
    assert set(first + second + third) == {f"task-{n}" for n in range(4)}
    assert set(queue.inflight("worker-a")) == set(first)

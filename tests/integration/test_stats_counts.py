"""The store's counts behind /stats and /metrics."""

from datetime import timedelta

from taskbox.models import utcnow
from taskbox.store import Store
from taskbox.store.tasks import NewTask


def test_oldest_waiting_counts_a_due_task_no_scheduler_has_moved(store: Store) -> None:
    now = utcnow()
    submitted_at = now - timedelta(minutes=5)
    due = NewTask("echo", {}, run_at=now - timedelta(seconds=30))
    later = NewTask("echo", {}, run_at=now + timedelta(hours=1))
    store.tasks.submit([due, later], submitted_at)  # both SCHEDULED when submitted

    counts = store.tasks.counts(now)

    assert counts.by_status == {"SCHEDULED": 2}
    assert counts.by_name == {"echo": {"SCHEDULED": 2}}
    assert counts.oldest_waiting_at == due.run_at


def test_nothing_waits_when_every_task_is_in_the_future_or_done(store: Store) -> None:
    now = utcnow()
    store.tasks.submit([NewTask("echo", {}, run_at=now + timedelta(minutes=1))], now)

    assert store.tasks.counts(now).oldest_waiting_at is None

"""The scheduler process: moves due tasks to the ready queues, fires schedules, takes
back expired leases, and rebuilds Redis from the store whenever Redis lost anything.

Every step is safe with several schedulers running at once: Redis hands each due id
to one of them, and each store change is compare-and-set.
"""

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import redis
from sqlalchemy.exc import SQLAlchemyError

from taskbox.metrics import Tally
from taskbox.models import Status, utcnow
from taskbox.outage import Outage
from taskbox.queue import Queue
from taskbox.settings import Settings
from taskbox.store import Store

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 1.0
ROUND_RETRY_S = 1.0
RECONCILE_INTERVAL_S = 15.0
PURGE_INTERVAL_S = 60.0
# A task waiting this long in a status that should be short-lived is checked
# against Redis: long enough that a normal hand-over is never mistaken for a loss.
STUCK_AFTER_S = 10.0
WORKER_SILENT_AFTER_S = 10.0
MOVE_BATCH = 1000
PURGE_BATCH = 500
PURGE_BUDGET_S = 0.5
# How long one scheduler's claim on a rebuild lasts if it dies before finishing.
REBUILD_CLAIM_S = 15


class Scheduler:
    """One scheduler loop; `step` does one round of every duty, given `now`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        queue: Queue,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.clock = clock
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._next_housekeeping = 0.0
        self._next_reconcile = 0.0
        self._next_purge = 0.0
        self._next_schedule_at: datetime | None = None

    # -- lifecycle ------------------------------------------------------------

    def run(self) -> None:
        """Loop until stop(), sleeping until the next due task, schedule or duty."""
        listener = threading.Thread(target=self._listen, name="nudges", daemon=True)
        listener.start()
        log.info("scheduler started", extra={"event": "scheduler_started"})
        outage = Outage(log, "scheduler", {})
        while not self.stopping.is_set():
            try:
                self.step(self.clock())
                sleep_s = self._sleep_s()
                outage.over()
            except (redis.RedisError, SQLAlchemyError) as err:
                sleep_s = outage.hit(err)
            except Exception:
                # A bug in one round must not stop every schedule, lease and delayed
                # task; the next round starts clean.
                log.exception(
                    "scheduler round failed; trying again in %.0f s",
                    ROUND_RETRY_S,
                    extra={"event": "scheduler_round_failed"},
                )
                sleep_s = ROUND_RETRY_S
            self._wake.wait(sleep_s)
            self._wake.clear()
        log.info("scheduler stopped", extra={"event": "scheduler_stopped"})

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def _listen(self) -> None:
        """Wake the loop early when a task earlier than every other is added."""
        while not self.stopping.is_set():
            try:
                if self.queue.wait_for_nudge(1.0):
                    self._next_schedule_at = None
                    self._wake.set()
            except redis.RedisError:
                self.stopping.wait(1.0)

    def _sleep_s(self) -> float:
        sleep_s = self._next_housekeeping - time.monotonic()
        now_s = time.time()
        next_delayed = self.queue.next_delayed_at()
        if next_delayed is not None:
            sleep_s = min(sleep_s, next_delayed - now_s)
        if self._next_schedule_at is not None:
            sleep_s = min(sleep_s, self._next_schedule_at.timestamp() - now_s)
        return max(0.0, sleep_s)

    # -- one round ------------------------------------------------------------

    def step(self, now: datetime) -> None:
        """Do every duty that is due at `now`."""
        self.move_due(now)
        if self._next_schedule_at is None or self._next_schedule_at <= now:
            self.fire_schedules(now)

        tick = time.monotonic()
        if tick >= self._next_housekeeping:
            self._next_housekeeping = tick + HOUSEKEEPING_INTERVAL_S
            self.rebuild_if_lost(now)
            self.expire_leases(now)
            self.recover_inflight()
            self._next_schedule_at = self.store.schedules.next_due_at()
        if tick >= self._next_reconcile:
            self._next_reconcile = tick + RECONCILE_INTERVAL_S
            self.reconcile(now)
        if tick >= self._next_purge:
            self._next_purge = tick + PURGE_INTERVAL_S
            self.purge(now)

    def move_due(self, now: datetime) -> int:
        """Move due ids from the delayed queue to the ready queues, QUEUED in the store."""
        moved = 0
        while True:
            ids = self.queue.take_due(now.timestamp(), MOVE_BATCH)
            if not ids:
                return moved
            queued = self.store.tasks.mark_queued(ids, now)
            self.queue.enqueue(ready=queued)
            moved += len(queued)
            self._put_back_early(set(ids) - {task_id for task_id, _ in queued})
            for task_id, _ in queued:
                log.debug(
                    "task %s queued",
                    task_id,
                    extra={"event": "task_queued", "task_id": task_id},
                )
            if len(ids) < MOVE_BATCH:
                return moved

    def _put_back_early(self, task_ids: set[str]) -> None:
        """Return ids taken a moment before their run_at to the delayed queue."""
        if not task_ids:
            return
        early = self.store.tasks.find_in_status(list(task_ids), Status.SCHEDULED)
        self.queue.enqueue(
            delayed=[(task_id, run_at.timestamp()) for task_id, run_at, _ in early]
        )

    def fire_schedules(self, now: datetime) -> None:
        """Make a task for every due schedule."""
        fired = self.store.schedules.fire_due(now)
        if fired:
            tally = Tally()
            for f in fired:
                tally.submitted(f.task_name)
            self.queue.enqueue(
                ready=[(f.task_id, f.priority) for f in fired], tally=tally
            )
        for f in fired:
            log.info(
                "schedule %s fired task %s",
                f.schedule,
                f.task_id,
                extra={
                    "event": "schedule_fired",
                    "schedule": f.schedule,
                    "task_id": f.task_id,
                    "task_name": f.task_name,
                },
            )
        self._next_schedule_at = self.store.schedules.next_due_at()

    def expire_leases(self, now: datetime) -> None:
        """Take back tasks whose worker stopped renewing its lease."""
        for task in self.store.tasks.find_expired(now):
            expired = self.store.tasks.expire_lease(task, now)
            if expired is None:
                continue
            tally = Tally()
            tally.lease_lost(expired.name)
            if expired.status == Status.SCHEDULED:
                tally.retried(expired.name)
                self.queue.enqueue(
                    delayed=[(expired.task_id, expired.run_at.timestamp())],
                    tally=tally,
                )
            else:
                tally.finished(expired.name, expired.status)
                self.queue.record(tally)
            log.warning(
                "lease of task %s expired: attempt %d on worker %s lost; task is %s",
                expired.task_id,
                expired.attempt,
                expired.worker,
                expired.status,
                extra={
                    "event": "lease_expired",
                    "task_id": expired.task_id,
                    "task_name": expired.name,
                    "attempt": expired.attempt,
                    "worker": expired.worker,
                },
            )

    def recover_inflight(self) -> None:
        """Put back the ids that a worker which went silent had claimed but not started."""
        self.queue.prune_workers(WORKER_SILENT_AFTER_S)
        live = set(self.queue.live_workers(WORKER_SILENT_AFTER_S))
        for worker in self.queue.inflight_workers():
            if worker in live:
                continue
            ids = self.queue.inflight(worker)
            self.queue.drop_inflight(worker)
            # An id the dead worker held may be back on a queue already (its lease
            # expired and it was queued again); pushing it twice would queue it twice.
            missing = set(self.queue.find_missing(ids))
            queued = [
                (task_id, priority)
                for task_id, _, priority in self.store.tasks.find_in_status(
                    ids, Status.QUEUED
                )
                if task_id in missing
            ]
            self.queue.enqueue(ready=queued)
            if queued:
                log.warning(
                    "worker %s went silent; put %d claimed tasks back on the ready queue",
                    worker,
                    len(queued),
                    extra={"event": "inflight_recovered", "worker": worker},
                )

    # -- keeping Redis in line with the store ------------------------------------

    def rebuild_if_lost(self, now: datetime) -> None:
        """Rebuild every queue from the store when Redis lost its data."""
        # The epoch is set only once the rebuild is done: a scheduler killed half way
        # leaves no epoch, so the next one rebuilds again instead of leaving the rest
        # to the slow reconcile.
        if self.queue.has_epoch() or not self.queue.start_rebuild(REBUILD_CLAIM_S):
            return
        started = time.monotonic()
        counts = {status: self._requeue_all(status, now) for status in _WAITING}
        self.queue.finish_rebuild()
        # A first start finds Redis empty too; only a rebuild that put tasks back
        # means Redis lost something.
        level = logging.WARNING if any(counts.values()) else logging.INFO
        log.log(
            level,
            "Redis had no taskbox data; rebuilt it from the store: %d pending, "
            "%d scheduled, %d queued",
            counts[Status.PENDING],
            counts[Status.SCHEDULED],
            counts[Status.QUEUED],
            extra={
                "event": "redis_rebuilt",
                "duration_s": round(time.monotonic() - started, 3),
            },
        )

    def _requeue_all(self, status: Status, now: datetime) -> int:
        after_id = ""
        total = 0
        while True:
            page = self.store.tasks.find_waiting(status, after_id, MOVE_BATCH)
            if not page:
                return total
            total += self._requeue(status, page, now)
            after_id = page[-1][0]

    def reconcile(self, now: datetime) -> None:
        """Hand Redis the waiting tasks it lacks: ones left behind by a crash."""
        before = now - timedelta(seconds=STUCK_AFTER_S)
        for status in _WAITING:
            page = self.store.tasks.find_stuck(status, before)
            count = self._requeue(status, page, now)
            if count:
                log.warning(
                    "put %d %s tasks that Redis lacked back on the queues",
                    count,
                    status,
                    extra={"event": "tasks_requeued", "status": str(status)},
                )

    def _requeue(
        self, status: Status, page: list[tuple[str, datetime, int]], now: datetime
    ) -> int:
        missing = set(self.queue.find_missing([task_id for task_id, _, _ in page]))
        page = [row for row in page if row[0] in missing]
        if not page:
            return 0

        due = [task_id for task_id, run_at, _ in page if run_at <= now]
        later = [
            (task_id, run_at.timestamp()) for task_id, run_at, _ in page if run_at > now
        ]
        if status == Status.QUEUED:
            self.queue.enqueue(
                ready=[(task_id, priority) for task_id, _, priority in page]
            )
            return len(page)

        # SCHEDULED and PENDING tasks go through the store's QUEUED step first.
        if status == Status.PENDING:
            self.store.tasks.mark_scheduled([task_id for task_id, _ in later], now)
        self.queue.enqueue(ready=self.store.tasks.mark_queued(due, now), delayed=later)
        return len(page)

    # -- retention ------------------------------------------------------------

    def purge(self, now: datetime) -> None:
        """Delete finished tasks past TASKBOX_RETENTION_DAYS, a small batch at a time."""
        days = self.settings.retention_days
        if days <= 0:
            return
        before = now - timedelta(days=days)
        deadline = time.monotonic() + PURGE_BUDGET_S
        purged = 0
        while time.monotonic() < deadline:
            count = self.store.tasks.purge_finished(before, PURGE_BATCH)
            purged += count
            if count < PURGE_BATCH:
                break
        if purged:
            log.info(
                "purged %d finished tasks older than %g days",
                purged,
                days,
                extra={"event": "tasks_purged", "count": purged},
            )


_WAITING = (Status.PENDING, Status.SCHEDULED, Status.QUEUED)

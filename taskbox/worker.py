"""The worker process: claim ready tasks, run each attempt in a child, record the outcome."""

import json
import logging
import multiprocessing
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from taskbox.metrics import Tally
from taskbox.models import AttemptStatus, Status, Task, utcnow
from taskbox.outage import Outage
from taskbox.queue import Queue
from taskbox.registry import Registry, TaskDef
from taskbox.runner import Reply, run_child
from taskbox.settings import Settings
from taskbox.store import Store
from taskbox.store.tasks import Ending, Finished, Outcome

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0
IDLE_WAIT_S = 1.0
CHILD_START_TIMEOUT_S = 60.0
# A worker claims as many ready tasks as it expects to run in BATCH_BUDGET_S, so a
# deep queue of short tasks costs one claim, one start and one outcome transaction
# per batch, while a slow task is claimed alone and holds no others back.
BATCH_BUDGET_S = 0.05
MAX_BATCH = 32
MIN_ATTEMPT_S = 0.0001
EWMA_WEIGHT = 0.2


def retry_delay_s(definition: TaskDef | None, attempt: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^(n-1))]."""
    base = definition.backoff_base_s if definition else 1.0
    cap = definition.backoff_cap_s if definition else 3600.0
    ceiling = min(cap, base * 2 ** min(attempt - 1, 62))
    return random.uniform(0, ceiling)


class Runner:
    """The worker's handle on its child process."""

    def __init__(self, module_names: list[str]) -> None:
        self.module_names = module_names
        self._context = multiprocessing.get_context("spawn")
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.start()

    def start(self) -> None:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=run_child,
            args=(child_end, self.module_names),
            name="taskbox-runner",
            daemon=True,
        )
        process.start()
        child_end.close()
        if not parent_end.poll(CHILD_START_TIMEOUT_S) or parent_end.recv() != "ready":
            process.kill()
            raise RuntimeError("the worker's child process did not start")
        self.process, self.conn = process, parent_end

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.process, self.conn = None, None

    def restart(self) -> None:
        self.stop()
        self.start()

    def run(
        self,
        name: str,
        payload: dict[str, Any],
        timeout_s: float,
        should_abandon: Callable[[], bool],
    ) -> Outcome | None:
        """Run one attempt; None when it was abandoned (shutdown or lease lost)."""
        if self.process is None or not self.process.is_alive():
            self.restart()
        if self.conn is None:
            raise RuntimeError("the worker's child process is not running")
        started = time.monotonic()
        deadline = started + timeout_s
        self.conn.send((name, payload))

        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.restart()
                return Outcome(
                    AttemptStatus.TIMED_OUT,
                    error=f"TimeoutError: attempt ran past its timeout of {timeout_s:g} s",
                    duration_s=time.monotonic() - started,
                )
            if should_abandon():
                # A stopping worker needs no new child; the next run() starts one.
                self.stop()
                return None
            try:
                if self.conn.poll(min(remaining, 0.5)):
                    reply: Reply = self.conn.recv()
                    break
            except (EOFError, OSError):
                code = self.process.exitcode if self.process else None
                self.restart()
                return Outcome(
                    AttemptStatus.FAILED,
                    error=f"the process running the task died (exit code {code})",
                    duration_s=time.monotonic() - started,
                )

        duration_s = time.monotonic() - started
        if reply.ok:
            return Outcome(
                AttemptStatus.SUCCESS,
                result=json.loads(reply.result_json or "null"),
                duration_s=duration_s,
            )
        return Outcome(
            AttemptStatus.FAILED,
            error=reply.error,
            traceback=reply.traceback,
            duration_s=duration_s,
        )


@dataclass
class Ended:
    """An attempt that is over; no outcome means it was abandoned and is handed back."""

    task: Task
    definition: TaskDef | None = None
    outcome: Outcome | None = None
    lease_lost: bool = False
    wait_s: float = 0.0


@dataclass
class Current:
    """The attempt a worker is running, as its lease thread sees it."""

    task_id: str
    attempt: int
    lease_lost: bool = False


class Worker:
    """Claims ready tasks one at a time and runs them under a renewed lease."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        queue: Queue,
        registry: Registry,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.registry = registry
        self.clock = clock
        self.id = f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**4):04x}"
        self.started_at = clock()
        self.tasks_done = 0
        self.current: Current | None = None
        self.stopping = threading.Event()
        self._beat_stop = threading.Event()
        self.stop_deadline: float | None = None
        self._unstarted: list[str] = []
        # Started tasks whose outcome is not yet recorded (id -> attempt), and those
        # of them whose lease the scheduler took back.
        self._held: dict[str, int] = {}
        self._lost: set[str] = set()
        self._attempt_s = BATCH_BUDGET_S  # moving average of attempt run time
        self._lock = threading.Lock()
        self.runner: Runner | None = None

    # -- lifecycle ------------------------------------------------------------

    def run(self, burst: bool = False) -> None:
        """Work until stop() is called, or, with burst, until no task is ready."""
        self.runner = Runner(self.settings.task_module_names)
        self._announce()
        beat = threading.Thread(target=self._beat_loop, name="lease", daemon=True)
        beat.start()
        outage = Outage(log, f"worker {self.id}", {"worker": self.id})
        try:
            while not self.stopping.is_set():
                try:
                    worked = self.step()
                    if not worked and not burst:
                        self.queue.wait_for_work(IDLE_WAIT_S)
                    outage.over()
                except (redis.RedisError, SQLAlchemyError) as err:
                    self.stopping.wait(outage.hit(err))
                    continue
                if not worked and burst:
                    break
        finally:
            self.stopping.set()
            self._beat_stop.set()
            beat.join()
            self.runner.stop()
            self._leave()
            log.info(
                "worker %s stopped",
                self.id,
                extra={"event": "worker_stopped", "worker": self.id},
            )

    def stop(self, grace_s: float) -> None:
        """Take no new work; let the running attempt finish within grace_s, then hand it back."""
        self.stop_deadline = time.monotonic() + grace_s
        self.stopping.set()

    # -- one step -----------------------------------------------------------------

    def step(self) -> bool:
        """Claim ready tasks, start them in one transaction and run them one by one.

        False when none was ready.
        """
        ids = self._unstarted or self.queue.claim(self.id, self._batch_size())
        if not ids:
            return False
        self._unstarted = ids
        started = self.store.tasks.start_attempts(
            ids, self.id, self.clock(), self.settings.lease_seconds
        )
        self._unstarted = []
        self._drop_stale(ids, started)

        self.run_attempts(started)
        return True

    def _batch_size(self) -> int:
        """As many tasks as recent attempts suggest run in BATCH_BUDGET_S, at least one."""
        expected = BATCH_BUDGET_S / max(self._attempt_s, MIN_ATTEMPT_S)
        return max(1, min(MAX_BATCH, int(expected)))

    def _drop_stale(self, ids: list[str], started: list[Task]) -> None:
        stale = set(ids) - {task.id for task in started}
        for task_id in stale:
            log.info(
                "task %s is no longer queued; dropped its id",
                task_id,
                extra={
                    "event": "stale_id_dropped",
                    "task_id": task_id,
                    "worker": self.id,
                },
            )
        if stale:
            self.queue.ack(self.id, stale)

    def run_attempt(self, task: Task) -> None:
        """Run one attempt of a RUNNING task and record how it ended."""
        self.run_attempts([task])

    def run_attempts(self, started: list[Task]) -> None:
        """Run RUNNING tasks one after another and record how each ended.

        Outcomes are committed together once the batch is done or has run for
        BATCH_BUDGET_S (group commit), and each before its id is acknowledged.
        """
        with self._lock:
            self._held.update({task.id: task.attempts for task in started})
        try:
            ended: list[Ended] = []
            flush_at = time.monotonic() + BATCH_BUDGET_S
            for n, task in enumerate(started):
                if n > 0 and self.stopping.is_set():
                    ended += [Ended(rest) for rest in started[n:]]
                    break
                ended.append(self._attempt(task))
                if time.monotonic() >= flush_at:
                    self._record(ended)
                    ended = []
                    flush_at = time.monotonic() + BATCH_BUDGET_S
            self._record(ended)
        finally:
            # Whatever was not recorded (the store went away) keeps its lease only
            # until it runs out; then the scheduler takes the task back.
            with self._lock:
                for task in started:
                    self._held.pop(task.id, None)
                    self._lost.discard(task.id)

    def _attempt(self, task: Task) -> Ended:
        definition = self.registry.find(task.name)
        if task.id in self._lost:
            return Ended(task, definition, lease_lost=True)

        timeout_s = task.timeout_s or (definition.timeout_s if definition else 300.0)
        context = _context(task, self.id)
        # Measured now, not from started_at: a task later in a batch starts after
        # the ones before it, though the batch was started in one transaction.
        wait_s = (self.clock() - task.run_at).total_seconds()
        log.info(
            "attempt %d of task %s (%s) started",
            task.attempts,
            task.id,
            task.name,
            extra={**context, "event": "attempt_started", "wait_s": round(wait_s, 6)},
        )

        with self._lock:
            self.current = Current(task.id, task.attempts)
        outcome = self._execute(task, timeout_s)
        with self._lock:
            current, self.current = self.current, None

        if outcome is not None:
            self._attempt_s += (outcome.duration_s - self._attempt_s) * EWMA_WEIGHT
        lease_lost = current.lease_lost if current else False
        return Ended(task, definition, outcome, lease_lost, wait_s)

    def _execute(self, task: Task, timeout_s: float) -> Outcome | None:
        if self.runner is None:
            raise RuntimeError("call run() before running attempts")

        def should_abandon() -> bool:
            if self.current is not None and self.current.lease_lost:
                return True
            return (
                self.stop_deadline is not None and time.monotonic() > self.stop_deadline
            )

        return self.runner.run(task.name, task.payload, timeout_s, should_abandon)

    def _record(self, ended: list[Ended]) -> None:
        """Commit the outcomes in one transaction, then act on them and ack the ids."""
        if not ended:
            return
        now = self.clock()
        recorded = [e for e in ended if e.outcome is not None]
        endings = [
            Ending(e.task.id, e.task.attempts, e.outcome, self._retry_at(e, now))
            for e in recorded
            if e.outcome is not None
        ]
        finished = self._finish(endings, now)
        for e in ended:
            if e.outcome is None:
                self._hand_back(e.task, e.lease_lost)

        tally = Tally()
        retries: list[tuple[str, float]] = []
        for e, f in zip(recorded, finished, strict=True):
            if f is None:
                log.warning(
                    "attempt %d of task %s ended after its lease was taken back; outcome dropped",
                    e.task.attempts,
                    e.task.id,
                    extra={**_context(e.task, self.id), "event": "lease_lost"},
                )
                continue
            self.tasks_done += 1
            _tally_outcome(tally, e, f.status)
            if f.status == Status.SCHEDULED:
                retries.append((f.task_id, f.run_at.timestamp()))
            if e.outcome is not None:
                _log_outcome(e.task, e.outcome, f.status, f.run_at, now, self.id)
        if retries:
            self.queue.enqueue(delayed=retries)
        self.queue.ack(self.id, [e.task.id for e in ended], tally)

    def _finish(self, endings: list[Ending], now: datetime) -> list[Finished | None]:
        """Commit outcomes, trying again through a passing store error.

        A deadlock or a dropped connection must not cost a finished task a second
        run: an outcome never recorded means a rerun once the lease runs out. Each
        write is compare-and-set, so trying again is safe. Gives up (and raises)
        after a third of the lease.
        """
        deadline = time.monotonic() + self.settings.lease_seconds / 3
        delay_s = 0.05
        while True:
            try:
                return self.store.tasks.finish_attempts(endings, now)
            except SQLAlchemyError as err:
                if time.monotonic() + delay_s > deadline:
                    raise
                log.warning(
                    "could not record %d outcomes (%s); trying again in %.2f s",
                    len(endings),
                    type(err).__name__,
                    delay_s,
                    extra={"event": "record_retried", "worker": self.id},
                )
                time.sleep(delay_s)
                delay_s = min(1.0, delay_s * 2)

    def _retry_at(self, ended: Ended, now: datetime) -> datetime | None:
        if ended.outcome is None or ended.outcome.status == AttemptStatus.SUCCESS:
            return None
        delay_s = retry_delay_s(ended.definition, ended.task.attempts)
        return now + timedelta(seconds=delay_s)

    def _hand_back(self, task: Task, lease_lost: bool) -> None:
        if lease_lost:
            log.warning(
                "lease of task %s was taken back; stopped attempt %d",
                task.id,
                task.attempts,
                extra={**_context(task, self.id), "event": "lease_lost"},
            )
            return
        now = self.clock()
        if self.store.tasks.hand_back(task.id, task.attempts, now):
            self.queue.enqueue(ready=[(task.id, task.priority)])
            log.warning(
                "worker stopping: handed task %s back after its grace period",
                task.id,
                extra={**_context(task, self.id), "event": "task_handed_back"},
            )

    # -- lease and heartbeat ------------------------------------------------------

    def _beat_loop(self) -> None:
        renew_every_s = self.settings.lease_seconds / 3
        # A short lease needs renewing more often than the heartbeat beats, or it
        # runs out between two beats while its task is still running.
        wake_every_s = min(HEARTBEAT_INTERVAL_S, renew_every_s)
        last_renewal = time.monotonic()
        # The main loop logs the outage too; this one only says its own part, once.
        outage = Outage(log, f"worker {self.id} lease thread", {"worker": self.id})
        while not self._beat_stop.wait(wake_every_s):
            try:
                if time.monotonic() - last_renewal >= renew_every_s:
                    self._renew()
                    last_renewal = time.monotonic()
                self._beat()
                outage.over()
            except (redis.RedisError, SQLAlchemyError) as err:
                outage.hit(err)

    def _renew(self) -> None:
        """Extend the lease of every started task whose outcome is not yet recorded."""
        with self._lock:
            held = dict(self._held)
            current = self.current
        if not held:
            return
        kept = self.store.tasks.renew_leases(
            list(held.items()), self.id, self.clock(), self.settings.lease_seconds
        )
        lost = set(held) - kept
        with self._lock:
            self._lost |= {task_id for task_id in lost if task_id in self._held}
        if current is not None and current.task_id in lost:
            current.lease_lost = True

    def _announce(self) -> None:
        """Beat once at start, so the worker is listed before its first interval ends."""
        try:
            self._beat()
        except redis.RedisError:
            pass  # the beat loop keeps trying, and logs if it cannot
        log.info(
            "worker %s started on %s, pid %d",
            self.id,
            socket.gethostname(),
            os.getpid(),
            extra={
                "event": "worker_started",
                "worker": self.id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
        )

    def _beat(self) -> None:
        current = self.current
        self.queue.beat(
            self.id,
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": self.started_at.isoformat(),
                "current_task": current.task_id if current else "",
                "tasks_done": self.tasks_done,
            },
            ttl_s=HEARTBEAT_INTERVAL_S * 5,
        )

    def _leave(self) -> None:
        try:
            self.queue.forget_worker(self.id)
            if not self.queue.inflight(self.id):
                self.queue.drop_inflight(self.id)
        except redis.RedisError:
            pass  # the scheduler drops the heartbeat and in-flight list once they go stale


def _tally_outcome(tally: Tally, ended: Ended, status: Status) -> None:
    """Count a recorded attempt for the metrics."""
    name = ended.task.name
    tally.started_late(name, ended.wait_s)
    if ended.outcome is not None:
        tally.attempt_took(name, ended.outcome.duration_s)
    if status == Status.SCHEDULED:
        tally.retried(name)
    else:
        tally.finished(name, status)


def _context(task: Task, worker: str) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "task_name": task.name,
        "attempt": task.attempts,
        "worker": worker,
    }


def _log_outcome(
    task: Task,
    outcome: Outcome,
    status: Status,
    run_at: datetime,
    now: datetime,
    worker: str,
) -> None:
    context = {**_context(task, worker), "duration_s": round(outcome.duration_s, 6)}
    if status == Status.SUCCESS:
        log.info(
            "attempt %d of task %s succeeded in %.3f s",
            task.attempts,
            task.id,
            outcome.duration_s,
            extra={**context, "event": "attempt_succeeded"},
        )
    elif status == Status.SCHEDULED:
        delay_s = (run_at - now).total_seconds()
        log.warning(
            "attempt %d of task %s failed after %.3f s: %s; retry in %.2f s",
            task.attempts,
            task.id,
            outcome.duration_s,
            outcome.error,
            delay_s,
            extra={
                **context,
                "event": "retry_scheduled",
                "error": outcome.error,
                "retry_in_s": round(delay_s, 3),
            },
        )
    else:
        log.error(
            "attempt %d of task %s failed after %.3f s: %s; no retries left, task FAILED",
            task.attempts,
            task.id,
            outcome.duration_s,
            outcome.error,
            extra={
                **context,
                "event": "task_failed",
                "error": outcome.error,
                "timed_out": outcome.status == AttemptStatus.TIMED_OUT,
            },
        )

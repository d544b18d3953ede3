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

from taskbox.errors import LeaseLost
from taskbox.models import AttemptStatus, Status, Task, utcnow
from taskbox.outage import Outage
from taskbox.queue import Queue
from taskbox.registry import Registry, TaskDef
from taskbox.runner import Reply, run_child
from taskbox.settings import Settings
from taskbox.store import Store
from taskbox.store.tasks import Outcome

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0
IDLE_WAIT_S = 1.0
CHILD_START_TIMEOUT_S = 60.0


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
        self._lock = threading.Lock()
        self.runner: Runner | None = None

    # -- lifecycle ------------------------------------------------------------

    def run(self, burst: bool = False) -> None:
        """Work until stop() is called, or, with burst, until no task is ready."""
        self.runner = Runner(self.settings.task_module_names)
        beat = threading.Thread(target=self._beat_loop, name="lease", daemon=True)
        beat.start()
        log.info(
            "worker %s started",
            self.id,
            extra={"event": "worker_started", "worker": self.id},
        )
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
        """Claim one ready task and run it; False when none was ready."""
        ids = self._unstarted or self.queue.claim(self.id)
        if not ids:
            return False
        self._unstarted = ids
        started = self.store.tasks.start_attempts(
            ids, self.id, self.clock(), self.settings.lease_seconds
        )
        self._unstarted = []
        self._drop_stale(ids, started)

        for task in started:
            self.run_attempt(task)
        return True

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
        definition = self.registry.find(task.name)
        timeout_s = task.timeout_s or (definition.timeout_s if definition else 300.0)
        context = _context(task, self.id)
        wait_s = (
            (task.started_at - task.run_at).total_seconds() if task.started_at else 0.0
        )
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

        if outcome is None:
            self._hand_back(task, lease_lost=current.lease_lost if current else False)
        else:
            self._record(task, definition, outcome)
        self.queue.ack(self.id, [task.id])

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

    def _record(self, task: Task, definition: TaskDef | None, outcome: Outcome) -> None:
        now = self.clock()
        retry_at = None
        if outcome.status != AttemptStatus.SUCCESS:
            retry_at = now + timedelta(seconds=retry_delay_s(definition, task.attempts))
        try:
            finished = self.store.tasks.finish_attempt(
                task.id, task.attempts, outcome, now, retry_at
            )
        except LeaseLost:
            log.warning(
                "attempt %d of task %s ended after its lease was taken back; outcome dropped",
                task.attempts,
                task.id,
                extra={**_context(task, self.id), "event": "lease_lost"},
            )
            return

        self.tasks_done += 1
        if finished.status == Status.SCHEDULED:
            self.queue.enqueue(delayed=[(task.id, finished.run_at.timestamp())])
        _log_outcome(task, outcome, finished.status, finished.run_at, now, self.id)

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
        while not self._beat_stop.wait(wake_every_s):
            try:
                if time.monotonic() - last_renewal >= renew_every_s:
                    self._renew()
                    last_renewal = time.monotonic()
                self._beat()
            except (redis.RedisError, SQLAlchemyError) as err:
                log.warning(
                    "worker %s could not renew its lease or heartbeat: %s",
                    self.id,
                    err,
                    extra={"event": "heartbeat_failed", "worker": self.id},
                )

    def _renew(self) -> None:
        with self._lock:
            current = self.current
        if current is None:
            return
        held = self.store.tasks.renew_leases(
            [(current.task_id, current.attempt)],
            self.id,
            self.clock(),
            self.settings.lease_seconds,
        )
        if current.task_id not in held:
            current.lease_lost = True

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
                "timed_out": outcome.status == AttemptStatus.TIMED_OUT,
            },
        )

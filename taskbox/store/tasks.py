"""Every SQL statement about tasks and their attempts.

Each state change is one compare-and-set UPDATE: it names the status it expects and,
for a running task, the attempt number, which fences off a worker whose lease has
ended. An UPDATE that matches no row means someone else already moved the task.
"""

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from taskbox.errors import IdempotencyConflict, InvalidTransition, LeaseLost, NotFound
from taskbox.models import (
    FINISHED,
    WAITING,
    Attempt,
    AttemptStatus,
    Status,
    Task,
    UTCDateTime,
)
from taskbox.store.engine import read, write

tasks = Task.__table__  # type: ignore[attr-defined]  # SQLModel sets it at class creation
attempts = Attempt.__table__  # type: ignore[attr-defined]  # as above

TRACEBACK_LIMIT_CHARS = 8_000
ERROR_LIMIT_CHARS = 2_000


def new_task_id() -> str:
    """A 28-character id that sorts by creation time, so listings page by id."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def new_task_ids(count: int) -> list[str]:
    """`count` ids like new_task_id's, from one read of the random source."""
    millis = f"{time.time_ns() // 1_000_000:012x}"
    random_hex = secrets.token_hex(8 * count)
    return [millis + random_hex[16 * i : 16 * i + 16] for i in range(count)]


@dataclass
class NewTask:
    """A checked submission, ready to be written."""

    name: str
    payload: dict[str, Any]
    run_at: datetime
    priority: int = 0
    max_retries: int = 3
    timeout_s: float | None = None
    idempotency_key: str | None = None


@dataclass(slots=True)
class TaskRow:
    """A task's columns as plain attributes: what the submit path answers with, built
    at a fraction of the cost of the ORM-mapped Task (a batch builds a thousand)."""

    id: str
    name: str
    payload: dict[str, Any]
    status: str
    priority: int
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    max_retries: int
    max_attempts: int
    timeout_s: float | None
    result: Any
    error: str | None
    idempotency_key: str | None
    worker: str | None
    lease_expires_at: datetime | None


@dataclass
class Submitted:
    task: TaskRow
    created: bool


# One submission (a task or a batch) and the time it was received.
Submission = tuple[list[NewTask], datetime]


@dataclass
class Outcome:
    """How one attempt ended, as the worker saw it."""

    status: AttemptStatus
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    duration_s: float = 0.0


@dataclass
class Ending:
    """An attempt's outcome on its way to the store; retry_at is set unless it succeeded."""

    task_id: str
    attempt: int
    outcome: Outcome
    retry_at: datetime | None


@dataclass
class Finished:
    """A recorded outcome: the task's new status and, for a retry, when it runs."""

    task_id: str
    status: Status
    run_at: datetime
    priority: int
    attempt: int


@dataclass
class Expired:
    """A task taken back from a worker whose lease ran out."""

    task_id: str
    name: str
    attempt: int
    worker: str | None
    status: Status
    run_at: datetime
    priority: int


@dataclass
class TaskCounts:
    by_status: dict[str, int] = field(default_factory=dict)
    by_name: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest_waiting_at: datetime | None = None
    finished_last_minute: int = 0


def _task(row: Any) -> Task:
    return Task(**row._mapping)


class TaskStore:
    """Tasks and attempts in the store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- submitting ---------------------------------------------------------

    def submit(self, new_tasks: list[NewTask], now: datetime) -> list[Submitted]:
        """Write new tasks in one transaction, or return the first task of a used key.

        Raises IdempotencyConflict when a key is reused with another name or payload.
        """
        [submitted] = self.submit_many([(new_tasks, now)])
        return submitted

    def submit_many(self, submissions: list[Submission]) -> list[list[Submitted]]:
        """Write several submissions in one transaction (group commit): all or none.

        A key used twice among them makes one task, which both answers name.
        Raises IdempotencyConflict when a key is reused with another name or payload.
        """
        try:
            return self._submit(submissions)
        except IntegrityError:
            # Another transaction wrote the same idempotency key first; now that it
            # has committed, the second pass finds its task instead of inserting.
            return self._submit(submissions)

    def _submit(self, submissions: list[Submission]) -> list[list[Submitted]]:
        keys = [
            n.idempotency_key for s, _ in submissions for n in s if n.idempotency_key
        ]
        with write(self.engine) as conn:
            existing: dict[str, TaskRow] = {}
            if keys:
                rows = conn.execute(
                    select(tasks).where(tasks.c.idempotency_key.in_(keys))
                )
                existing = {
                    row.idempotency_key: TaskRow(**row._mapping) for row in rows
                }

            out: list[list[Submitted]] = []
            rows_to_insert: list[dict[str, Any]] = []
            ids = iter(new_task_ids(sum(len(s) for s, _ in submissions)))
            for new_tasks, now in submissions:
                answers: list[Submitted] = []
                for new in new_tasks:
                    key = new.idempotency_key
                    if key and key in existing:
                        first = existing[key]
                        _check_same(first, new)
                        answers.append(Submitted(first, created=False))
                        continue

                    row = new_task_row(new, now, next(ids))
                    rows_to_insert.append(row)
                    task = TaskRow(**row)
                    if key:
                        existing[key] = task
                    answers.append(Submitted(task, created=True))
                out.append(answers)

            if rows_to_insert:
                conn.execute(insert(tasks), rows_to_insert)
        return out

    def set_pending(self, task_ids: list[str], now: datetime) -> None:
        """Mark waiting tasks PENDING: written, but not yet handed to Redis."""
        with write(self.engine) as conn:
            conn.execute(
                update(tasks)
                .where(
                    tasks.c.id.in_(task_ids),
                    tasks.c.status.in_([Status.QUEUED, Status.SCHEDULED]),
                )
                .values(status=Status.PENDING, updated_at=now)
            )

    # -- reading ------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        """Return one task, or raise NotFound."""
        with read(self.engine) as conn:
            row = conn.execute(select(tasks).where(tasks.c.id == task_id)).first()
        if row is None:
            raise NotFound(f"no task with id '{task_id}'")
        return _task(row)

    def page(
        self,
        status: Status | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Task], str | None]:
        """Return a page of tasks, newest first, and the cursor of the next page."""
        query = select(tasks).order_by(tasks.c.id.desc()).limit(limit + 1)
        if status is not None:
            query = query.where(tasks.c.status == status)
        if name is not None:
            query = query.where(tasks.c.name == name)
        if cursor is not None:
            query = query.where(tasks.c.id < cursor)

        with read(self.engine) as conn:
            rows = [_task(row) for row in conn.execute(query)]
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1].id
        return rows, None

    def list_attempts(self, task_id: str) -> list[Attempt]:
        """Return a task's attempts, first to last, or raise NotFound."""
        self.get(task_id)
        with read(self.engine) as conn:
            rows = conn.execute(
                select(attempts)
                .where(attempts.c.task_id == task_id)
                .order_by(attempts.c.number)
            )
            return [Attempt(**row._mapping) for row in rows]

    def find_waiting(
        self, status: Status, after_id: str = "", limit: int = 1000
    ) -> list[tuple[str, datetime, int]]:
        """Return (id, run_at, priority) of tasks in one waiting status, by id."""
        with read(self.engine) as conn:
            rows = conn.execute(
                select(tasks.c.id, tasks.c.run_at, tasks.c.priority)
                .where(tasks.c.status == status, tasks.c.id > after_id)
                .order_by(tasks.c.id)
                .limit(limit)
            )
            return [(row.id, row.run_at, row.priority) for row in rows]

    def find_stuck(
        self, status: Status, updated_before: datetime, limit: int = 1000
    ) -> list[tuple[str, datetime, int]]:
        """Return (id, run_at, priority) of tasks that have waited in a status too long.

        A SCHEDULED task counts from its run_at, the others from their last change.
        """
        since = tasks.c.run_at if status == Status.SCHEDULED else tasks.c.updated_at
        with read(self.engine) as conn:
            rows = conn.execute(
                select(tasks.c.id, tasks.c.run_at, tasks.c.priority)
                .where(tasks.c.status == status, since < updated_before)
                .order_by(since)
                .limit(limit)
            )
            return [(row.id, row.run_at, row.priority) for row in rows]

    def find_in_status(
        self, task_ids: list[str], status: Status
    ) -> list[tuple[str, datetime, int]]:
        """Return (id, run_at, priority) of the given tasks that are in `status`."""
        if not task_ids:
            return []
        with read(self.engine) as conn:
            rows = conn.execute(
                select(tasks.c.id, tasks.c.run_at, tasks.c.priority).where(
                    tasks.c.id.in_(task_ids), tasks.c.status == status
                )
            )
            return [(row.id, row.run_at, row.priority) for row in rows]

    def counts(self, now: datetime) -> TaskCounts:
        """Count tasks by status and by name, for /stats and the metrics."""
        counts = TaskCounts()
        with read(self.engine) as conn:
            rows = conn.execute(
                select(tasks.c.name, tasks.c.status, func.count()).group_by(
                    tasks.c.name, tasks.c.status
                )
            )
            for name, status, count in rows:
                counts.by_status[status] = counts.by_status.get(status, 0) + count
                counts.by_name.setdefault(name, {})[status] = count

            # Due SCHEDULED tasks count too: they pile up when no scheduler runs.
            counts.oldest_waiting_at = conn.execute(
                select(func.min(tasks.c.run_at)).where(
                    tasks.c.status.in_(WAITING), tasks.c.run_at <= now
                )
            ).scalar()
            counts.finished_last_minute = conn.execute(
                select(func.count()).where(
                    tasks.c.status.in_(FINISHED),
                    tasks.c.finished_at >= now - timedelta(minutes=1),
                )
            ).scalar_one()
        return counts

    # -- moving waiting tasks -------------------------------------------------

    def mark_queued(self, task_ids: list[str], now: datetime) -> list[tuple[str, int]]:
        """Move due SCHEDULED or PENDING tasks to QUEUED; return (id, priority) moved."""
        if not task_ids:
            return []
        with write(self.engine) as conn:
            rows = conn.execute(
                update(tasks)
                .where(
                    tasks.c.id.in_(task_ids),
                    tasks.c.status.in_([Status.SCHEDULED, Status.PENDING]),
                    tasks.c.run_at <= now,
                )
                .values(status=Status.QUEUED, updated_at=now)
                .returning(tasks.c.id, tasks.c.priority)
            )
            return [(row.id, row.priority) for row in rows]

    def mark_scheduled(self, task_ids: list[str], now: datetime) -> None:
        """Move PENDING tasks whose run_at is ahead back to SCHEDULED."""
        with write(self.engine) as conn:
            conn.execute(
                update(tasks)
                .where(tasks.c.id.in_(task_ids), tasks.c.status == Status.PENDING)
                .values(status=Status.SCHEDULED, updated_at=now)
            )

    def cancel(self, task_id: str, now: datetime) -> Task:
        """Move a waiting task to CANCELLED; raise InvalidTransition once it has started."""
        return self._transition(
            task_id,
            WAITING,
            {"status": Status.CANCELLED, "finished_at": now, "updated_at": now},
            ("cancel", "cancelled"),
        )

    def retry(self, task_id: str, now: datetime) -> Task:
        """Queue a FAILED or CANCELLED task again, with its retry budget renewed."""
        return self._transition(
            task_id,
            (Status.FAILED, Status.CANCELLED),
            {
                "status": Status.QUEUED,
                "run_at": now,
                "updated_at": now,
                "finished_at": None,
                "error": None,
                "result": None,
                "max_attempts": tasks.c.attempts + tasks.c.max_retries + 1,
            },
            ("retry", "retried"),
        )

    def _transition(
        self,
        task_id: str,
        allowed: tuple[Status, ...],
        values: dict[str, Any],
        action: tuple[str, str],
    ) -> Task:
        """Change a task that is in one of the allowed statuses, or raise.

        Raises NotFound, or InvalidTransition naming the status it is in.
        """
        with write(self.engine) as conn:
            row = conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.status.in_(allowed))
                .values(**values)
                .returning(*tasks.c)
            ).first()
        if row is not None:
            return _task(row)

        task = self.get(task_id)
        verb, done = action
        names = ", ".join(str(status) for status in allowed[:-1])
        raise InvalidTransition(
            f"cannot {verb} task {task_id}: it is {task.status}; only {names} or "
            f"{allowed[-1]} tasks can be {done}"
        )

    # -- attempts -------------------------------------------------------------

    def start_attempts(
        self, task_ids: list[str], worker: str, now: datetime, lease_s: float
    ) -> list[Task]:
        """Move QUEUED tasks to RUNNING under a lease and open an attempt for each.

        Ids that are no longer QUEUED (cancelled, finished, taken by another worker)
        are left out of the answer.
        """
        if not task_ids:
            return []
        with write(self.engine) as conn:
            rows = conn.execute(
                update(tasks)
                .where(tasks.c.id.in_(task_ids), tasks.c.status == Status.QUEUED)
                .values(
                    status=Status.RUNNING,
                    attempts=tasks.c.attempts + 1,
                    started_at=now,
                    updated_at=now,
                    worker=worker,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                )
                .returning(*tasks.c)
            ).all()
            if rows:
                conn.execute(
                    insert(attempts),
                    [
                        {
                            "task_id": row.id,
                            "number": row.attempts,
                            "worker": worker,
                            "status": AttemptStatus.RUNNING,
                            "started_at": now,
                        }
                        for row in rows
                    ],
                )
        started = {row.id: _task(row) for row in rows}
        return [started[i] for i in task_ids if i in started]

    def renew_leases(
        self, leases: list[tuple[str, int]], worker: str, now: datetime, lease_s: float
    ) -> set[str]:
        """Extend the leases a worker holds; return the ids it still holds."""
        if not leases:
            return set()
        held: set[str] = set()
        with write(self.engine) as conn:
            # Rows are locked in id order, as finish_attempts locks them, so the two
            # never deadlock on PostgreSQL.
            for task_id, attempt in sorted(leases):
                result: CursorResult[Any] = conn.execute(
                    update(tasks)
                    .where(
                        tasks.c.id == task_id,
                        tasks.c.status == Status.RUNNING,
                        tasks.c.attempts == attempt,
                        tasks.c.worker == worker,
                    )
                    .values(lease_expires_at=now + timedelta(seconds=lease_s))
                )
                if result.rowcount:
                    held.add(task_id)
        return held

    def finish_attempt(
        self,
        task_id: str,
        attempt: int,
        outcome: Outcome,
        now: datetime,
        retry_at: datetime | None,
    ) -> Finished:
        """Record how an attempt ended: SUCCESS, a retry (SCHEDULED) or FAILED.

        Raises LeaseLost when the task is no longer RUNNING this attempt.
        """
        [finished] = self.finish_attempts(
            [Ending(task_id, attempt, outcome, retry_at)], now
        )
        if finished is None:
            raise LeaseLost(
                f"task {task_id} is no longer running attempt {attempt}; "
                "its outcome was not recorded"
            )
        return finished

    def finish_attempts(
        self, endings: list[Ending], now: datetime
    ) -> list[Finished | None]:
        """Record how several attempts ended, in one transaction (group commit).

        Only a task still RUNNING the attempt that ended is changed (compare-and-set
        on status and attempt number); an attempt whose task was taken back in the
        meantime gets None and changes nothing.
        """
        with write(self.engine) as conn:
            running = self._lock_running(conn, [e.task_id for e in endings])
            out: list[Finished | None] = []
            succeeded: list[dict[str, Any]] = []
            for ending in endings:
                row = running.get(ending.task_id)
                if row is None or row.attempts != ending.attempt:
                    out.append(None)
                elif ending.outcome.status == AttemptStatus.SUCCESS:
                    succeeded.append(_success_params(ending, now))
                    out.append(
                        Finished(
                            ending.task_id,
                            Status.SUCCESS,
                            row.run_at,
                            row.priority,
                            ending.attempt,
                        )
                    )
                else:
                    out.append(self._finish_failed(conn, ending, now))

            # Successes, the common case, are one statement built once and run
            # with many rows.
            if succeeded:
                conn.execute(FINISH_SUCCESS, succeeded)
            closed = [
                _attempt_params(ending, now)
                for ending, finished in zip(endings, out, strict=True)
                if finished is not None
            ]
            if closed:
                conn.execute(FINISH_ATTEMPT, closed)
        return out

    def _lock_running(self, conn: Connection, task_ids: list[str]) -> dict[str, Any]:
        """The RUNNING rows among task_ids, locked until the transaction ends."""
        rows = conn.execute(
            select(tasks.c.id, tasks.c.attempts, tasks.c.run_at, tasks.c.priority)
            .where(tasks.c.id.in_(task_ids), tasks.c.status == Status.RUNNING)
            .order_by(tasks.c.id)
            .with_for_update()
        )
        return {row.id: row for row in rows}

    def _finish_failed(
        self, conn: Connection, ending: Ending, now: datetime
    ) -> Finished | None:
        values = _outcome_values(ending.outcome, now, ending.retry_at)
        row = conn.execute(
            update(tasks)
            .where(
                tasks.c.id == ending.task_id,
                tasks.c.status == Status.RUNNING,
                tasks.c.attempts == ending.attempt,
            )
            .values(updated_at=now, lease_expires_at=None, **values)
            .returning(tasks.c.status, tasks.c.run_at, tasks.c.priority)
        ).first()
        if row is None:
            return None
        return Finished(
            ending.task_id, Status(row.status), row.run_at, row.priority, ending.attempt
        )

    def hand_back(self, task_id: str, attempt: int, now: datetime) -> bool:
        """Return a RUNNING task to QUEUED when its worker stops; the attempt is LOST.

        The attempt does not count toward max_retries: the task did nothing wrong.
        """
        error = "handed back: its worker stopped before the attempt finished"
        with write(self.engine) as conn:
            row = conn.execute(
                update(tasks)
                .where(
                    tasks.c.id == task_id,
                    tasks.c.status == Status.RUNNING,
                    tasks.c.attempts == attempt,
                )
                .values(
                    status=Status.QUEUED,
                    run_at=now,
                    updated_at=now,
                    worker=None,
                    lease_expires_at=None,
                    max_attempts=tasks.c.max_attempts + 1,
                )
                .returning(tasks.c.id)
            ).first()
            if row is None:
                return False
            conn.execute(
                update(attempts)
                .where(attempts.c.task_id == task_id, attempts.c.number == attempt)
                .values(status=AttemptStatus.LOST, finished_at=now, error=error)
            )
        return True

    def find_expired(self, now: datetime, limit: int = 500) -> list[Task]:
        """Return RUNNING tasks whose lease has run out."""
        with read(self.engine) as conn:
            rows = conn.execute(
                select(tasks)
                .where(tasks.c.status == Status.RUNNING, tasks.c.lease_expires_at < now)
                .limit(limit)
            )
            return [_task(row) for row in rows]

    def expire_lease(self, task: Task, now: datetime) -> Expired | None:
        """Take a task back from a silent worker: its attempt is LOST.

        The lost attempt counts toward max_retries, so a task that kills its worker
        every time ends FAILED instead of looping. Returns None if the worker
        finished or renewed in the meantime.
        """
        error = f"attempt {task.attempts} lost: worker {task.worker} stopped renewing its lease"
        has_retries = task.attempts < task.max_attempts
        new_status = Status.SCHEDULED if has_retries else Status.FAILED
        with write(self.engine) as conn:
            row = conn.execute(
                update(tasks)
                .where(
                    tasks.c.id == task.id,
                    tasks.c.status == Status.RUNNING,
                    tasks.c.attempts == task.attempts,
                    tasks.c.lease_expires_at < now,
                )
                .values(
                    status=new_status,
                    run_at=now if has_retries else tasks.c.run_at,
                    finished_at=None if has_retries else now,
                    error=error,
                    worker=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
                .returning(tasks.c.run_at, tasks.c.priority)
            ).first()
            if row is None:
                return None
            conn.execute(
                update(attempts)
                .where(
                    attempts.c.task_id == task.id, attempts.c.number == task.attempts
                )
                .values(status=AttemptStatus.LOST, finished_at=now, error=error)
            )
        return Expired(
            task.id,
            task.name,
            task.attempts,
            task.worker,
            new_status,
            row.run_at,
            row.priority,
        )

    # -- retention ------------------------------------------------------------

    def purge_finished(self, before: datetime, batch: int = 500) -> int:
        """Delete up to `batch` finished tasks (and their attempts) older than `before`."""
        with write(self.engine) as conn:
            ids = (
                conn.execute(
                    select(tasks.c.id)
                    .where(tasks.c.status.in_(FINISHED), tasks.c.finished_at < before)
                    .limit(batch)
                    # PostgreSQL: a second scheduler purges other rows instead of
                    # waiting on these; SQLite ignores it (one writer at a time).
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            if not ids:
                return 0
            conn.execute(delete(attempts).where(attempts.c.task_id.in_(ids)))
            conn.execute(delete(tasks).where(tasks.c.id.in_(ids)))
        return len(ids)


# The statements of the worker's hot path, built once.
FINISH_SUCCESS = (
    update(tasks)
    .where(
        tasks.c.id == bindparam("b_id"),
        tasks.c.status == Status.RUNNING.value,
        tasks.c.attempts == bindparam("b_attempt"),
    )
    .values(
        status=Status.SUCCESS.value,
        result=bindparam("b_result", type_=tasks.c.result.type),
        error=None,
        finished_at=bindparam("b_now", type_=UTCDateTime()),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
        lease_expires_at=None,
    )
)
FINISH_ATTEMPT = (
    update(attempts)
    .where(
        attempts.c.task_id == bindparam("b_task_id"),
        attempts.c.number == bindparam("b_number"),
    )
    .values(
        status=bindparam("b_status"),
        finished_at=bindparam("b_now", type_=UTCDateTime()),
        error=bindparam("b_error"),
        traceback=bindparam("b_traceback"),
    )
)


def _success_params(ending: Ending, now: datetime) -> dict[str, Any]:
    return {
        "b_id": ending.task_id,
        "b_attempt": ending.attempt,
        "b_result": ending.outcome.result,
        "b_now": now,
    }


def _attempt_params(ending: Ending, now: datetime) -> dict[str, Any]:
    return {
        "b_task_id": ending.task_id,
        "b_number": ending.attempt,
        "b_status": ending.outcome.status.value,
        "b_now": now,
        "b_error": _trim(ending.outcome.error, ERROR_LIMIT_CHARS),
        "b_traceback": _trim(ending.outcome.traceback, TRACEBACK_LIMIT_CHARS),
    }


def new_task_row(
    new: NewTask, now: datetime, task_id: str | None = None
) -> dict[str, Any]:
    status = Status.QUEUED if new.run_at <= now else Status.SCHEDULED
    return {
        "id": task_id or new_task_id(),
        "name": new.name,
        "payload": new.payload,
        "status": status,
        "priority": new.priority,
        "run_at": new.run_at,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
        "attempts": 0,
        "max_retries": new.max_retries,
        "max_attempts": new.max_retries + 1,
        "timeout_s": new.timeout_s,
        "result": None,
        "error": None,
        "idempotency_key": new.idempotency_key,
        "worker": None,
        "lease_expires_at": None,
    }


def _check_same(first: TaskRow, new: NewTask) -> None:
    if first.name != new.name or first.payload != new.payload:
        raise IdempotencyConflict(
            f"idempotency key '{new.idempotency_key}' was already used for task "
            f"{first.id} ({first.name}) with a different name or payload; use a new "
            "key for a different task"
        )


def _outcome_values(
    outcome: Outcome, now: datetime, retry_at: datetime | None
) -> dict[str, Any]:
    if outcome.status == AttemptStatus.SUCCESS:
        return {
            "status": Status.SUCCESS,
            "result": outcome.result,
            "error": None,
            "finished_at": now,
        }

    error = _trim(outcome.error, ERROR_LIMIT_CHARS)
    if retry_at is None:
        return {"status": Status.FAILED, "error": error, "finished_at": now}

    can_retry = tasks.c.attempts < tasks.c.max_attempts
    return {
        "status": case((can_retry, Status.SCHEDULED.value), else_=Status.FAILED.value),
        "run_at": case(
            (can_retry, literal(retry_at, UTCDateTime())), else_=tasks.c.run_at
        ),
        "finished_at": case((can_retry, null()), else_=literal(now, UTCDateTime())),
        "worker": case((can_retry, None), else_=tasks.c.worker),
        "error": error,
    }


def _trim(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit // 2] + "\n…\n" + text[-limit // 2 :]


__all__ = [
    "Ending",
    "Expired",
    "Finished",
    "NewTask",
    "Outcome",
    "Submission",
    "Submitted",
    "TaskCounts",
    "TaskRow",
    "TaskStore",
    "new_task_id",
    "new_task_ids",
]

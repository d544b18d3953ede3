"""Steps the routes share: turning input into tasks, and handing tasks to Redis."""

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import redis
from fastapi import Response

from taskbox.errors import InvalidInput
from taskbox.metrics import Tally
from taskbox.models import Status, Task, TaskCreate, TaskPublic
from taskbox.services import Services
from taskbox.store.tasks import NewTask, TaskRow

log = logging.getLogger(__name__)


def check_submission(
    body: TaskCreate, services: Services, now: datetime, header_key: str | None = None
) -> NewTask:
    """Check a submission against its task definition and fill in the defaults.

    Raises UnknownTaskName, PayloadMismatch or InvalidInput.
    """
    definition = services.registry.get(body.name)
    payload = body.payload or {}
    definition.check_payload(payload)

    key = body.idempotency_key
    if header_key is not None:
        if key is not None and key != header_key:
            raise InvalidInput(
                "the Idempotency-Key header and the idempotency_key field differ; "
                "send one of them, or the same value in both"
            )
        key = header_key

    return NewTask(
        name=body.name,
        payload=payload,
        run_at=body.run_at or now,
        priority=body.priority,
        max_retries=definition.max_retries
        if body.max_retries is None
        else body.max_retries,
        # Stored, so the task shows the timeout it runs with.
        timeout_s=definition.timeout_s if body.timeout is None else body.timeout,
        idempotency_key=key,
    )


def hand_to_redis(
    services: Services,
    tasks: Sequence[Task | TaskRow],
    now: datetime,
    tally: Tally | None = None,
) -> None:
    """Put new or re-queued tasks on the Redis queues, with a tally of metrics.

    The store already holds them; if Redis is out of reach they are marked PENDING
    and the scheduler hands them over once it is back (the tally is then lost).
    """
    ready = [(t.id, t.priority) for t in tasks if t.status == Status.QUEUED]
    delayed = [
        (t.id, t.run_at.timestamp()) for t in tasks if t.status == Status.SCHEDULED
    ]
    try:
        services.queue.enqueue(ready=ready, delayed=delayed, tally=tally)
    except redis.RedisError as err:
        log.warning(
            "Redis is out of reach (%s); %d tasks stay PENDING until the scheduler "
            "hands them over",
            err,
            len(tasks),
            extra={"event": "enqueue_deferred"},
        )
        services.store.tasks.set_pending([t.id for t in tasks], now)
        for task in tasks:
            task.status = Status.PENDING


def tally_submitted(tasks: Sequence[Task | TaskRow]) -> Tally:
    tally = Tally()
    for task in tasks:
        tally.submitted(task.name)
    return tally


def log_submitted(services: Services, task: Task | TaskRow) -> None:
    """Log a new task; its payload only when TASKBOX_LOG_PAYLOADS is set."""
    extra = {
        "event": "task_submitted",
        "task_id": task.id,
        "task_name": task.name,
        "attempt": task.attempts,
        "status": str(task.status),
    }
    if services.settings.log_payloads:
        extra["payload"] = task.payload
    log.info("task %s (%s) submitted, %s", task.id, task.name, task.status, extra=extra)


def task_fields(task: Task | TaskRow) -> dict[str, Any]:
    """A task as TaskPublic shows it, without building and checking a model."""
    return {
        "id": task.id,
        "name": task.name,
        "payload": task.payload,
        "status": task.status,
        "priority": task.priority,
        "run_at": task.run_at,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "attempts": task.attempts,
        "max_retries": task.max_retries,
        "timeout": task.timeout_s,
        "result": task.result,
        "error": task.error,
        "idempotency_key": task.idempotency_key,
    }


def json_response(content: dict[str, Any], status_code: int) -> Response:
    """Answer with JSON encoded by orjson, the same text pydantic would write.

    Times end in Z as pydantic writes them. orjson refuses integers over 64 bits,
    which a payload may hold; those answers go through pydantic instead.
    """
    try:
        body = orjson.dumps(content, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        body = _pydantic_json(content)
    return Response(body, status_code, media_type="application/json")


def _pydantic_json(content: dict[str, Any]) -> bytes:
    if "items" in content:
        items = [TaskPublic.model_validate(item) for item in content["items"]]
        return (
            b'{"items":['
            + b",".join(i.model_dump_json().encode() for i in items)
            + b"]}"
        )
    return TaskPublic.model_validate(content).model_dump_json().encode()

"""Task routes: submit, batch, read, list, attempts, cancel, retry."""

import logging
from typing import Annotated

import redis
from fastapi import APIRouter, Header, Query, Response, status

from taskbox.api.deps import ServicesDep, SubmitterDep
from taskbox.api.service import (
    check_submission,
    hand_to_redis,
    json_response,
    task_fields,
)
from taskbox.metrics import Tally
from taskbox.models import (
    AttemptPublic,
    AttemptStatus,
    Status,
    TaskBatch,
    TaskCreate,
    TaskItems,
    TaskPage,
    TaskPublic,
    utcnow,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/tasks", tags=["tasks"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskPublic,
    include_in_schema=False,
)
@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskPublic,
    responses={
        200: {"model": TaskPublic, "description": "idempotency key already used"}
    },
)
async def submit_task(
    body: TaskCreate,
    services: ServicesDep,
    submitter: SubmitterDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Submit a task to run now or at run_at."""
    now = utcnow()
    new = check_submission(body, services, now, idempotency_key)
    [submitted] = await submitter.submit(([new], now))
    code = status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK
    return json_response(task_fields(submitted.task), code)


@router.post("/batch", status_code=status.HTTP_201_CREATED, response_model=TaskItems)
async def submit_batch(
    body: TaskBatch, services: ServicesDep, submitter: SubmitterDep
) -> Response:
    """Submit up to 1000 tasks at once: all are written, or none."""
    now = utcnow()
    new_tasks = [check_submission(item, services, now) for item in body.tasks]
    submitted = await submitter.submit((new_tasks, now))

    created = sum(1 for s in submitted if s.created)
    log.info(
        "batch of %d tasks submitted",
        created,
        extra={"event": "batch_submitted", "count": created},
    )
    items = [task_fields(s.task) for s in submitted]
    return json_response({"items": items}, status.HTTP_201_CREATED)


@router.get("/")
@router.get("", include_in_schema=False)
def list_tasks(
    services: ServicesDep,
    status: Status | None = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> TaskPage:
    """List tasks, newest first; pass next_cursor back as cursor for the next page."""
    tasks, next_cursor = services.store.tasks.page(status, name, limit, cursor)
    return TaskPage(items=[TaskPublic.of(t) for t in tasks], next_cursor=next_cursor)


@router.get("/{task_id}")
def get_task(task_id: str, services: ServicesDep) -> TaskPublic:
    """Read one task."""
    return TaskPublic.of(services.store.tasks.get(task_id))


@router.get("/{task_id}/attempts")
def list_attempts(task_id: str, services: ServicesDep) -> list[AttemptPublic]:
    """List a task's attempts, first to last."""
    return [
        AttemptPublic(
            number=a.number,
            worker=a.worker,
            started_at=a.started_at,
            finished_at=a.finished_at,
            status=AttemptStatus(a.status),
            error=a.error,
            traceback=a.traceback,
        )
        for a in services.store.tasks.list_attempts(task_id)
    ]


@router.post("/{task_id}/cancel")
def cancel_task(task_id: str, services: ServicesDep) -> TaskPublic:
    """Cancel a task that has not started; 409 once it is RUNNING or finished."""
    task = services.store.tasks.cancel(task_id, utcnow())
    tally = Tally()
    tally.finished(task.name, task.status)
    try:
        services.queue.remove(task.id, task.priority, tally)
    except redis.RedisError:
        pass  # a worker that later claims the id finds it CANCELLED and drops it
    log.info(
        "task %s cancelled",
        task.id,
        extra={
            "event": "task_cancelled",
            "task_id": task.id,
            "task_name": task.name,
            "attempt": task.attempts,
        },
    )
    return TaskPublic.of(task)


@router.post("/{task_id}/retry")
def retry_task(task_id: str, services: ServicesDep) -> TaskPublic:
    """Queue a FAILED or CANCELLED task again; its attempts so far are kept."""
    now = utcnow()
    task = services.store.tasks.retry(task_id, now)
    hand_to_redis(services, [task], now)
    log.info(
        "task %s queued again by request",
        task.id,
        extra={
            "event": "task_retried",
            "task_id": task.id,
            "task_name": task.name,
            "attempt": task.attempts,
        },
    )
    return TaskPublic.of(task)

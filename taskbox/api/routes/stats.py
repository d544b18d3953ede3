"""What an operator asks first: counts, queue depths, live workers."""

from fastapi import APIRouter
from pydantic import BaseModel

from taskbox.api.deps import ServicesDep
from taskbox.models import Status, utcnow
from taskbox.services import Services

router = APIRouter(tags=["stats"])

# A worker beats every 2 s; one silent for longer than this is gone.
LIVE_WORKER_WINDOW_S = 10.0


class QueueDepths(BaseModel):
    ready: int
    delayed: int
    running: int


class Stats(BaseModel):
    counts: dict[str, int]
    by_name: dict[str, dict[str, int]]
    queues: QueueDepths
    workers: int
    oldest_waiting_s: float | None
    finished_last_minute: int


class WorkerPublic(BaseModel):
    id: str
    host: str
    pid: int
    started_at: str
    current_task: str | None
    tasks_done: int
    last_beat_s_ago: float


def read_stats(services: Services) -> Stats:
    """Counts, queue depths, live workers and throughput, as of now."""
    now = utcnow()
    counts = services.store.tasks.counts(now)
    depths = services.queue.depths()
    workers = services.queue.live_workers(LIVE_WORKER_WINDOW_S)
    oldest = counts.oldest_waiting_at
    return Stats(
        counts={s.value: counts.by_status.get(s.value, 0) for s in Status},
        by_name=counts.by_name,
        queues=QueueDepths(
            ready=depths["ready"],
            delayed=depths["delayed"],
            running=counts.by_status.get(Status.RUNNING, 0),
        ),
        workers=len(workers),
        oldest_waiting_s=max(0.0, (now - oldest).total_seconds()) if oldest else None,
        finished_last_minute=counts.finished_last_minute,
    )


@router.get("/stats")
def stats(services: ServicesDep) -> Stats:
    """Counts by status and task name, queue depths, live workers, throughput."""
    return read_stats(services)


@router.get("/workers")
def workers(services: ServicesDep) -> list[WorkerPublic]:
    """List live workers: host, pid, start, current task, tasks done."""
    ages = services.queue.beat_ages()
    live = services.queue.live_workers(LIVE_WORKER_WINDOW_S)
    return [
        WorkerPublic(
            id=worker,
            host=info.get("host", ""),
            pid=int(info.get("pid", 0)),
            started_at=info.get("started_at", ""),
            current_task=info.get("current_task") or None,
            tasks_done=int(info.get("tasks_done", 0)),
            last_beat_s_ago=round(ages.get(worker, 0.0), 3),
        )
        for worker, info in sorted(live.items())
    ]

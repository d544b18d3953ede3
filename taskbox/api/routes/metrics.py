"""Prometheus metrics: event counters kept in Redis by every process, plus gauges read
from the store and Redis at scrape time."""

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from taskbox.api.deps import ServicesDep
from taskbox.api.routes.stats import LIVE_WORKER_WINDOW_S
from taskbox.metrics import Collector, Gauges, read_counters
from taskbox.models import Status, utcnow
from taskbox.services import Services

router = APIRouter(tags=["metrics"])


def read_gauges(services: Services) -> Gauges:
    """Queue depths, tasks by status, the oldest wait and live workers, as of now."""
    now = utcnow()
    counts = services.store.tasks.counts(now)
    depths = services.queue.depths()
    workers = services.queue.live_workers(time.time() - LIVE_WORKER_WINDOW_S)
    oldest = counts.oldest_waiting_at
    return Gauges(
        queue_depths={
            "ready": depths["ready"],
            "delayed": depths["delayed"],
            "running": counts.by_status.get(Status.RUNNING, 0),
        },
        tasks_by_status={s.value: counts.by_status.get(s.value, 0) for s in Status},
        oldest_waiting_s=max(0.0, (now - oldest).total_seconds()) if oldest else None,
        workers=len(workers),
    )


@router.get("/metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    """Prometheus text format: task counters, durations, lateness, queues, workers."""
    queue = services.queue
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        Collector(
            read=lambda: read_counters(queue.client, queue.prefix),
            gauges=lambda: read_gauges(services),
        )
    )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

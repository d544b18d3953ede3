"""Prometheus metrics: event counters kept in Redis by every process, plus gauges read
from the store and Redis at scrape time."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from taskbox.api.deps import ServicesDep
from taskbox.api.routes.stats import read_stats
from taskbox.metrics import Collector, Gauges, read_counters
from taskbox.services import Services

router = APIRouter(tags=["metrics"])


def read_gauges(services: Services) -> Gauges:
    """Queue depths, tasks by status, the oldest wait and live workers, as of now."""
    stats = read_stats(services)
    return Gauges(
        queue_depths=stats.queues.model_dump(),
        tasks_by_status=stats.counts,
        oldest_waiting_s=stats.oldest_waiting_s,
        workers=stats.workers,
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

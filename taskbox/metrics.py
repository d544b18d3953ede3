"""Counters and histograms of task events, kept in Redis so that every process on every
host adds to the same numbers, and the collector that /metrics reads them with.

A process notes events in a Tally, which rides along with the Redis call the process
makes anyway (an enqueue, an ack), so counting adds no round trip. Each metric is one
hash under the key prefix (see queue.py); a field is a JSON list of label values, and a
histogram keeps one field per bucket (not cumulative) plus a sum and a count.
"""

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

SUBMITTED = "submitted"
FINISHED = "finished"
RETRIES = "retries"
LEASES_LOST = "leases_lost"
ATTEMPT_SECONDS = "attempt_seconds"
LATENESS_SECONDS = "lateness_seconds"

# Upper bounds in seconds; an attempt runs from milliseconds to its timeout (up to a day).
ATTEMPT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)  # fmt: skip
# On an idle system a task starts well under a second late; the tail shows a backlog.
LATENESS_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)  # fmt: skip
BUCKETS_S = {ATTEMPT_SECONDS: ATTEMPT_BUCKETS_S, LATENESS_SECONDS: LATENESS_BUCKETS_S}


def metric_key(prefix: str, metric: str) -> str:
    return f"{prefix}metrics:{metric}"


def _field(*labels: str) -> str:
    # Task names are free text, so no separator is safe; a JSON list always is.
    return json.dumps(labels, separators=(",", ":"))


def _bucket(bounds: tuple[float, ...], value: float) -> str:
    for bound in bounds:
        if value <= bound:
            return f"{bound:g}"
    return "+Inf"


class Tally:
    """Metric increments waiting to be sent with the next Redis call."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.sums: dict[tuple[str, str], float] = {}

    def __bool__(self) -> bool:
        return bool(self.counts or self.sums)

    def submitted(self, task_name: str) -> None:
        self._count(SUBMITTED, _field(task_name))

    def finished(self, task_name: str, status: str) -> None:
        self._count(FINISHED, _field(task_name, status))

    def retried(self, task_name: str) -> None:
        self._count(RETRIES, _field(task_name))

    def lease_lost(self, task_name: str) -> None:
        self._count(LEASES_LOST, _field(task_name))

    def attempt_took(self, task_name: str, duration_s: float) -> None:
        self._observe(ATTEMPT_SECONDS, task_name, duration_s)

    def started_late(self, task_name: str, lateness_s: float) -> None:
        self._observe(LATENESS_SECONDS, task_name, max(0.0, lateness_s))

    def _count(self, metric: str, field: str, amount: int = 1) -> None:
        self.counts[metric, field] = self.counts.get((metric, field), 0) + amount

    def _observe(self, metric: str, task_name: str, value_s: float) -> None:
        self._count(metric, _field(task_name, _bucket(BUCKETS_S[metric], value_s)))
        self._count(metric, _field(task_name, "count"))
        key = (metric, _field(task_name, "sum"))
        self.sums[key] = self.sums.get(key, 0.0) + value_s

    def add_to(self, pipe: Any, prefix: str) -> None:
        """Queue the increments on a Redis pipeline and start afresh."""
        for (metric, field), amount in self.counts.items():
            pipe.hincrby(metric_key(prefix, metric), field, amount)
        for (metric, field), total in self.sums.items():
            pipe.hincrbyfloat(metric_key(prefix, metric), field, total)
        self.counts.clear()
        self.sums.clear()


# -- reading, at scrape time --------------------------------------------------------


@dataclass
class Gauges:
    """What /metrics reads from the store and Redis as it is scraped."""

    queue_depths: dict[str, int]
    tasks_by_status: dict[str, int]
    oldest_waiting_s: float | None
    workers: int


def read_counters(client: Any, prefix: str) -> dict[str, dict[str, float]]:
    """Every metric hash, as {metric: {field: value}}."""
    metrics = (SUBMITTED, FINISHED, RETRIES, LEASES_LOST, ATTEMPT_SECONDS, LATENESS_SECONDS)  # fmt: skip
    pipe = client.pipeline(transaction=False)
    for metric in metrics:
        pipe.hgetall(metric_key(prefix, metric))
    return {
        metric: {field: float(value) for field, value in raw.items()}
        for metric, raw in zip(metrics, pipe.execute(), strict=True)
    }


class Collector:
    """A prometheus_client collector over the Redis counters and the live gauges."""

    def __init__(
        self,
        read: Callable[[], dict[str, dict[str, float]]],
        gauges: Callable[[], Gauges],
    ) -> None:
        self.read = read
        self.gauges = gauges

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; every family comes from collect

    def collect(self) -> Iterator[Metric]:
        counters = self.read()
        yield _counter(
            "taskbox_tasks_submitted",
            "Tasks submitted (through the API or by a schedule), by task name.",
            ["task"],
            counters[SUBMITTED],
        )
        yield _counter(
            "taskbox_tasks_finished",
            "Tasks that reached a final status, by task name and status.",
            ["task", "status"],
            counters[FINISHED],
        )
        yield _counter(
            "taskbox_task_retries",
            "Attempts that failed or were lost and left the task another try.",
            ["task"],
            counters[RETRIES],
        )
        yield _counter(
            "taskbox_leases_lost",
            "Running attempts taken back because their worker stopped renewing the lease.",
            ["task"],
            counters[LEASES_LOST],
        )
        yield _histogram(
            "taskbox_attempt_duration_seconds",
            "How long attempts ran, by task name.",
            counters[ATTEMPT_SECONDS],
            ATTEMPT_BUCKETS_S,
        )
        yield _histogram(
            "taskbox_task_lateness_seconds",
            "How late attempts started: start time minus run_at, by task name.",
            counters[LATENESS_SECONDS],
            LATENESS_BUCKETS_S,
        )
        yield from _gauges(self.gauges())


def _counter(
    name: str, documentation: str, labels: list[str], values: dict[str, float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for field, value in sorted(values.items()):
        family.add_metric(json.loads(field), value)
    return family


def _histogram(
    name: str,
    documentation: str,
    values: dict[str, float],
    bounds: tuple[float, ...],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["task"])
    per_task: dict[str, dict[str, float]] = {}
    for field, value in values.items():
        task_name, part = json.loads(field)
        per_task.setdefault(task_name, {})[part] = value

    for task_name, parts in sorted(per_task.items()):
        family.add_metric(
            [task_name],
            list(_cumulative(parts, bounds)),
            sum_value=parts.get("sum", 0.0),
        )
    return family


def _cumulative(
    parts: dict[str, float], bounds: Iterable[float]
) -> Iterator[tuple[str, float]]:
    running = 0.0
    for bound in bounds:
        running += parts.get(f"{bound:g}", 0.0)
        yield f"{bound:g}", running
    # A bucket's increment and the count's travel in one pipeline, so +Inf is the count.
    yield "+Inf", parts.get("count", 0.0)


def _gauges(gauges: Gauges) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "taskbox_queue_depth",
        "Tasks waiting or running now: ready (QUEUED in Redis), delayed (waiting for "
        "run_at or a retry), running (RUNNING in the store).",
        labels=["queue"],
    )
    for queue, count in sorted(gauges.queue_depths.items()):
        depth.add_metric([queue], count)
    yield depth

    by_status = GaugeMetricFamily(
        "taskbox_tasks", "Tasks in the store, by status.", labels=["status"]
    )
    for status, count in sorted(gauges.tasks_by_status.items()):
        by_status.add_metric([status], count)
    yield by_status

    yield GaugeMetricFamily(
        "taskbox_oldest_waiting_seconds",
        "Age of the oldest due task not yet started (0 when none waits).",
        value=gauges.oldest_waiting_s or 0.0,
    )
    yield GaugeMetricFamily(
        "taskbox_workers",
        "Workers whose heartbeat is recent.",
        value=gauges.workers,
    )

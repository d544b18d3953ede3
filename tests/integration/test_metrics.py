"""Metric tallies through a real Redis, read back the way /metrics reads them."""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from taskbox.metrics import Collector, Gauges, Tally, read_counters
from taskbox.queue import Queue


def exposition(queue: Queue) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        Collector(
            read=lambda: read_counters(queue.client, queue.prefix),
            gauges=lambda: Gauges({"ready": 3}, {"QUEUED": 3}, 1.5, 2),
        )
    )
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_tallies_from_several_processes_add_up(queue: Queue) -> None:
    for duration_s in (0.02, 0.3):
        tally = Tally()
        tally.attempt_took("send", duration_s)
        tally.finished("send", "SUCCESS")
        queue.ack("worker-a", [], tally)
    other = Tally()
    other.attempt_took("send", 7200)
    other.finished("send", "FAILED")
    queue.record(other)

    values = exposition(queue)

    def value(name: str, **labels: str) -> float:
        return values[name, frozenset(labels.items())]

    assert value("taskbox_tasks_finished_total", task="send", status="SUCCESS") == 2
    assert value("taskbox_tasks_finished_total", task="send", status="FAILED") == 1
    assert (
        value("taskbox_attempt_duration_seconds_bucket", task="send", le="0.025") == 1
    )
    assert value("taskbox_attempt_duration_seconds_bucket", task="send", le="0.5") == 2
    assert value("taskbox_attempt_duration_seconds_bucket", task="send", le="3600") == 2
    assert value("taskbox_attempt_duration_seconds_bucket", task="send", le="+Inf") == 3
    assert value("taskbox_attempt_duration_seconds_count", task="send") == 3
    assert (
        abs(value("taskbox_attempt_duration_seconds_sum", task="send") - 7200.32) < 1e-6
    )
    assert value("taskbox_queue_depth", queue="ready") == 3
    assert value("taskbox_workers") == 2


def test_task_names_with_quotes_and_commas_stay_whole(queue: Queue) -> None:
    name = 'report "daily", EU|west'
    tally = Tally()
    tally.submitted(name)
    tally.started_late(name, 0.2)
    queue.enqueue(tally=tally)

    values = exposition(queue)

    assert values["taskbox_tasks_submitted_total", frozenset({("task", name)})] == 1
    late = frozenset({("task", name), ("le", "0.25")})
    assert values["taskbox_task_lateness_seconds_bucket", late] == 1

"""What an operator sees: metrics after known work, JSON logs, the live worker list."""

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Appliance, RedisServer

Sample = tuple[str, dict[str, str], float]


def scrape(appliance: Appliance) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = appliance.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def wait_for_metrics(
    appliance: Appliance, expected: list[Sample], timeout_s: float = 20
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Scrape until every expected sample has its value; the last ack may lag a task."""
    deadline = time.monotonic() + timeout_s
    while True:
        values = scrape(appliance)
        wrong = [
            (name, labels, values.get((name, frozenset(labels.items()))), want)
            for name, labels, want in expected
            if values.get((name, frozenset(labels.items()))) != want
        ]
        if not wrong:
            return values
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics (name, labels, got, want): {wrong}")
        time.sleep(0.2)


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def log_entries(appliance: Appliance) -> list[dict[str, Any]]:
    entries = []
    for path in sorted(appliance.log_dir.glob("*.log")):
        for line in path.read_text().splitlines():
            if line.strip():
                entries.append(json.loads(line))
    return entries


def test_metrics_count_known_work_across_two_workers(
    make_appliance: Callable[..., Appliance], tmp_path: Path
) -> None:
    appliance = make_appliance()
    appliance.start_all(workers=2)
    runs = tmp_path / "runs.txt"

    ok = [
        appliance.submit(
            "record", {"path": str(runs), "token": f"t{i}", "seconds": 0.3}
        )
        for i in range(5)
    ]
    bad = [appliance.submit("boom", {"message": "no"}) for _ in range(2)]
    flaky = appliance.submit(
        "flaky", {"path": str(tmp_path / "flaky.txt"), "failures": 2}
    )
    for task in [*ok, *bad, flaky]:
        appliance.wait_for(task["id"])

    values = wait_for_metrics(
        appliance,
        [
            ("taskbox_tasks_submitted_total", {"task": "record"}, 5),
            ("taskbox_tasks_submitted_total", {"task": "boom"}, 2),
            (
                "taskbox_tasks_finished_total",
                {"task": "record", "status": "SUCCESS"},
                5,
            ),
            ("taskbox_tasks_finished_total", {"task": "boom", "status": "FAILED"}, 2),
            ("taskbox_tasks_finished_total", {"task": "flaky", "status": "SUCCESS"}, 1),
            ("taskbox_task_retries_total", {"task": "flaky"}, 2),
            ("taskbox_attempt_duration_seconds_count", {"task": "record"}, 5),
            ("taskbox_attempt_duration_seconds_count", {"task": "flaky"}, 3),
            (
                "taskbox_attempt_duration_seconds_bucket",
                {"task": "record", "le": "+Inf"},
                5,
            ),
            (
                "taskbox_attempt_duration_seconds_bucket",
                {"task": "record", "le": "0.25"},
                0,
            ),
            ("taskbox_task_lateness_seconds_count", {"task": "boom"}, 2),
            ("taskbox_task_lateness_seconds_count", {"task": "flaky"}, 3),
            ("taskbox_queue_depth", {"queue": "ready"}, 0),
            ("taskbox_queue_depth", {"queue": "running"}, 0),
            ("taskbox_tasks", {"status": "SUCCESS"}, 6),
            ("taskbox_tasks", {"status": "FAILED"}, 2),
            ("taskbox_workers", {}, 2),
        ],
    )
    record_sum = (
        "taskbox_attempt_duration_seconds_sum",
        frozenset({("task", "record")}),
    )
    assert values[record_sum] >= 5 * 0.3
    workers = {
        attempt["worker"]
        for task in [*ok, *bad]
        for attempt in appliance.client.get(f"/tasks/{task['id']}/attempts").json()
    }
    assert len(workers) == 2  # the counts above add up work from both processes


def test_metrics_need_the_api_key_like_other_endpoints(
    make_appliance: Callable[..., Appliance],
) -> None:
    appliance = make_appliance(TASKBOX_API_KEY="k3y")
    appliance.start("api", "api")

    assert appliance.client.get("/metrics").status_code == 401
    response = appliance.client.get("/metrics", headers={"Authorization": "Bearer k3y"})
    assert response.status_code == 200
    assert "taskbox_workers 0.0" in response.text


def test_json_logs_carry_task_fields_and_never_the_payload(
    make_appliance: Callable[..., Appliance], tmp_path: Path
) -> None:
    appliance = make_appliance(TASKBOX_LOG_FORMAT="json")
    appliance.start_all(workers=2)

    ok = appliance.submit("echo", {"password": "hunter2-secret"})
    bad = appliance.submit("boom", {"message": "disk full"})
    flaky = appliance.submit(
        "flaky", {"path": str(tmp_path / "flaky.txt"), "failures": 1}
    )
    for task in (ok, bad, flaky):
        appliance.wait_for(task["id"])

    def events() -> dict[tuple[str, str], dict[str, Any]] | None:
        found = {(e.get("event"), e.get("task_id")): e for e in log_entries(appliance)}
        wanted = [("attempt_succeeded", ok["id"]), ("task_failed", bad["id"])]
        return found if all(key in found for key in wanted) else None

    found = wait_until(events, "the outcome log lines")
    for task in (ok, bad, flaky):
        submitted = found["task_submitted", task["id"]]
        assert submitted["level"] == "INFO"
        assert submitted["task_name"] == task["name"]
        assert submitted["attempt"] == 0
        assert "payload" not in submitted
    started = found["attempt_started", ok["id"]]
    assert (started["level"], started["task_name"], started["attempt"]) == (
        "INFO",
        "echo",
        1,
    )
    assert started["worker"] and started["wait_s"] >= 0
    succeeded = found["attempt_succeeded", ok["id"]]
    assert succeeded["worker"] == started["worker"]
    assert succeeded["duration_s"] >= 0
    failed = found["task_failed", bad["id"]]
    assert failed["level"] == "ERROR"
    assert failed["attempt"] == 1
    assert "ValueError: disk full" in failed["error"]
    retried = found["retry_scheduled", flaky["id"]]
    assert retried["level"] == "WARNING"
    assert retried["retry_in_s"] >= 0
    assert "failing attempt 1" in retried["error"]
    assert all(e["time"] and e["logger"] for e in log_entries(appliance))
    assert "hunter2-secret" not in appliance.all_logs()


def test_submitted_line_carries_the_payload_only_with_log_payloads(
    make_appliance: Callable[..., Appliance],
) -> None:
    appliance = make_appliance(TASKBOX_LOG_FORMAT="json", TASKBOX_LOG_PAYLOADS="true")
    appliance.start("api", "api")

    task = appliance.submit("echo", {"note": "shown on purpose"})

    entry = wait_until(
        lambda: next(
            (
                e
                for e in log_entries(appliance)
                if e.get("event") == "task_submitted" and e["task_id"] == task["id"]
            ),
            None,
        ),
        "the task_submitted line",
    )
    assert entry["payload"] == {"note": "shown on purpose"}


def test_killed_worker_drops_off_the_list_and_its_lease_is_counted_lost(
    make_appliance: Callable[..., Appliance], tmp_path: Path
) -> None:
    appliance = make_appliance()
    appliance.start_all(workers=2)
    listed = appliance.client.get("/workers").json()
    assert len(listed) == 2
    for worker in listed:
        assert worker["host"] and worker["pid"] > 0 and worker["started_at"]
        assert worker["tasks_done"] == 0

    task = appliance.submit(
        "record", {"path": str(tmp_path / "r.txt"), "token": "x", "seconds": 5}
    )
    busy = wait_until(
        lambda: next(
            (
                w
                for w in appliance.client.get("/workers").json()
                if w["current_task"] == task["id"]
            ),
            None,
        ),
        "a worker to show the task as current",
    )
    victim = next(
        name
        for name, process in appliance.processes.items()
        if process.pid == busy["pid"]
    )
    appliance.kill(victim)

    wait_until(
        lambda: (
            [w["id"] for w in appliance.client.get("/workers").json()]
            == [w["id"] for w in listed if w["id"] != busy["id"]]
        ),
        "the killed worker to drop off /workers",
    )
    done = appliance.wait_for(task["id"], timeout_s=30)
    assert done["status"] == "SUCCESS"
    wait_for_metrics(
        appliance,
        [
            ("taskbox_leases_lost_total", {"task": "record"}, 1),
            ("taskbox_task_retries_total", {"task": "record"}, 1),
            ("taskbox_workers", {}, 1),
        ],
    )


def test_readyz_answers_503_naming_redis_when_redis_is_gone(
    make_appliance: Callable[..., Appliance], private_redis: RedisServer
) -> None:
    appliance = make_appliance(redis_url=private_redis.url)
    appliance.start("api", "api")
    assert appliance.client.get("/readyz").json() == {
        "status": "ready",
        "store": "ok",
        "redis": "ok",
    }

    private_redis.kill()

    response = appliance.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["store"] == "ok"
    assert response.json()["redis"].startswith("unreachable")

"""A task answered 201 is never lost and never half-done, whatever crashes.

Each test kills real processes (kill -9, FLUSHALL, SIGTERM) of an appliance of its
own and checks what a user would: every task ends SUCCESS, and ran once.
"""

import collections
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import Appliance, RedisServer

Make = Any


def worker_name_by_pid(appliance: Appliance, worker_id: str) -> str:
    """The appliance's name of the process behind a worker id (host:pid:suffix)."""
    pid = int(worker_id.split(":")[1])
    [name] = [n for n, p in appliance.processes.items() if p.pid == pid]
    return name


def wait_for_attempt(appliance: Appliance, task_id: str, number: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        attempts = appliance.client.get(f"/tasks/{task_id}/attempts").json()
        if len(attempts) >= number:
            return dict(attempts[number - 1])
        time.sleep(0.02)
    raise AssertionError(f"attempt {number} of {task_id} never started")


def wait_for_log(appliance: Appliance, name: str, text: str) -> None:
    deadline = time.monotonic() + 30
    while text not in appliance.logs(name):
        assert time.monotonic() < deadline, f"{name} never logged {text!r}"
        time.sleep(0.05)


def submit_batch(appliance: Appliance, tasks: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(tasks), 500):
        response = appliance.client.post(
            "/tasks/batch", json={"tasks": tasks[start : start + 500]}
        )
        assert response.status_code == 201, response.text
        ids += [t["id"] for t in response.json()["items"]]
    return ids


def runs(path: Path) -> collections.Counter[str]:
    return (
        collections.Counter(path.read_text().split())
        if path.exists()
        else collections.Counter()
    )


def test_task_of_a_killed_worker_succeeds_on_another_and_shows_the_lost_attempt(
    make_appliance: Make, tmp_path: Path
) -> None:
    appliance = make_appliance()
    appliance.start_all(workers=2)
    path = tmp_path / "runs.txt"
    task = appliance.submit("record", {"path": str(path), "token": "t", "seconds": 2})

    first = wait_for_attempt(appliance, task["id"], 1)
    appliance.kill(worker_name_by_pid(appliance, first["worker"]))

    done = appliance.wait_for(task["id"], timeout_s=30)
    assert done["status"] == "SUCCESS"
    attempts = appliance.client.get(f"/tasks/{task['id']}/attempts").json()
    assert [a["status"] for a in attempts] == ["LOST", "SUCCESS"]
    assert attempts[1]["worker"] != attempts[0]["worker"]
    assert "lost" in attempts[0]["error"]
    assert runs(path) == {"t": 1}


def test_task_that_kills_its_worker_every_time_ends_failed_not_looping(
    make_appliance: Make,
) -> None:
    appliance = make_appliance()
    appliance.start_all(workers=2)
    task = appliance.submit("kill_worker", {})

    done = appliance.wait_for(task["id"], timeout_s=40)

    assert done["status"] == "FAILED"
    assert "lost" in done["error"]
    attempts = appliance.client.get(f"/tasks/{task['id']}/attempts").json()
    assert [a["status"] for a in attempts] == ["LOST", "LOST"]


@pytest.mark.slow
def test_scheduler_killed_with_300_delayed_tasks_runs_them_all_after_restart(
    make_appliance: Make, tmp_path: Path
) -> None:
    appliance = make_appliance()
    appliance.start_all(workers=2)
    path = tmp_path / "runs.txt"
    run_at = time.time() + 3
    iso = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(run_at))
        + f".{int(run_at % 1 * 1e6):06d}Z"
    )
    tasks = [
        {
            "name": "record",
            "payload": {"path": str(path), "token": str(i)},
            "run_at": iso,
        }
        for i in range(300)
    ]
    ids = submit_batch(appliance, tasks)

    appliance.kill("scheduler")
    time.sleep(max(0.0, run_at - time.time()) + 1)
    assert appliance.client.get("/stats").json()["counts"].get("SCHEDULED") == 300
    appliance.start("scheduler", "scheduler")

    counts = appliance.wait_until_counts({"SUCCESS": 300}, timeout_s=60)
    assert counts.get("SUCCESS") == 300
    assert {appliance.get(i)["status"] for i in ids[:5]} == {"SUCCESS"}
    assert runs(path) == {str(i): 1 for i in range(300)}


@pytest.mark.slow
def test_flushall_in_the_middle_of_1000_tasks_loses_none(
    make_appliance: Make, private_redis: RedisServer, tmp_path: Path
) -> None:
    appliance = make_appliance(redis_url=private_redis.url)
    appliance.start_all(workers=2)
    path = tmp_path / "runs.txt"
    tasks = [
        {"name": "record", "payload": {"path": str(path), "token": str(i)}}
        for i in range(1000)
    ]
    submit_batch(appliance, tasks)

    appliance.wait_until_counts({"SUCCESS": 200}, timeout_s=60)
    client = redis.Redis.from_url(private_redis.url)
    client.flushall()
    client.close()

    counts = appliance.wait_until_counts({"SUCCESS": 1000}, timeout_s=90)
    assert counts.get("SUCCESS") == 1000
    assert runs(path) == {str(i): 1 for i in range(1000)}


def test_redis_restarted_empty_loses_no_task(
    make_appliance: Make, private_redis: RedisServer, tmp_path: Path
) -> None:
    appliance = make_appliance(redis_url=private_redis.url)
    appliance.start_all(workers=1)
    path = tmp_path / "runs.txt"
    soon = appliance.submit(
        "record", {"path": str(path), "token": "soon"}, run_at=_in(2)
    )
    later = appliance.submit(
        "record", {"path": str(path), "token": "later"}, run_at=_in(4)
    )

    private_redis.kill()
    private_redis.start()

    assert appliance.wait_for(soon["id"], timeout_s=30)["status"] == "SUCCESS"
    assert appliance.wait_for(later["id"], timeout_s=30)["status"] == "SUCCESS"
    assert runs(path) == {"soon": 1, "later": 1}


def test_api_killed_right_after_201_keeps_the_task_and_runs_it(
    make_appliance: Make,
) -> None:
    appliance = make_appliance()
    appliance.start("api", "api")
    task = appliance.submit("echo", {"kept": True})
    appliance.kill("api")

    appliance.start("api", "api")
    appliance.start("scheduler", "scheduler")
    appliance.start("worker")

    done = appliance.wait_for(task["id"], timeout_s=30)
    assert done["status"] == "SUCCESS"
    assert done["result"] == {"kept": True}


@pytest.mark.slow
def test_2000_tasks_over_4_workers_each_run_exactly_once(
    make_appliance: Make, tmp_path: Path
) -> None:
    appliance = make_appliance()
    appliance.start_all(workers=4)
    path = tmp_path / "runs.txt"
    tasks = [
        {"name": "record", "payload": {"path": str(path), "token": str(i)}}
        for i in range(2000)
    ]
    submit_batch(appliance, tasks)

    counts = appliance.wait_until_counts({"SUCCESS": 2000}, timeout_s=120)

    assert counts.get("SUCCESS") == 2000
    ran = runs(path)
    assert len(ran) == 2000
    assert [token for token, n in ran.items() if n != 1] == []


def test_sigterm_lets_the_running_task_finish_then_the_worker_exits(
    make_appliance: Make, tmp_path: Path
) -> None:
    appliance = make_appliance()
    appliance.start_all(workers=1)
    path = tmp_path / "runs.txt"
    task = appliance.submit("record", {"path": str(path), "token": "t", "seconds": 1.5})
    wait_for_attempt(appliance, task["id"], 1)

    assert appliance.stop("worker-0") == 0

    done = appliance.get(task["id"])
    assert done["status"] == "SUCCESS"
    assert runs(path) == {"t": 1}


def test_sigterm_hands_back_a_task_that_outlasts_the_grace_period(
    make_appliance: Make, tmp_path: Path
) -> None:
    appliance = make_appliance(TASKBOX_SHUTDOWN_GRACE_SECONDS="1")
    appliance.start_all(workers=1)
    path = tmp_path / "runs.txt"
    task = appliance.submit("record", {"path": str(path), "token": "t", "seconds": 4})
    wait_for_attempt(appliance, task["id"], 1)

    assert appliance.stop("worker-0") == 0
    assert appliance.get(task["id"])["status"] == "QUEUED"
    assert runs(path) == {}

    appliance.start("worker")
    done = appliance.wait_for(task["id"], timeout_s=30)
    assert done["status"] == "SUCCESS"
    attempts = appliance.client.get(f"/tasks/{task['id']}/attempts").json()
    assert [a["status"] for a in attempts] == ["LOST", "SUCCESS"]
    assert runs(path) == {"t": 1}


def test_scheduler_and_api_exit_cleanly_on_sigterm(make_appliance: Make) -> None:
    appliance = make_appliance()
    appliance.start("api", "api")
    appliance.start("scheduler", "scheduler")
    wait_for_log(appliance, "scheduler", "event=scheduler_started")

    assert appliance.stop("scheduler", timeout_s=15) == 0
    assert "event=scheduler_stopped" in appliance.logs("scheduler")
    # uvicorn finishes its shutdown, then re-raises the signal it caught, as
    # supervisord expects of a process it asked to stop.
    assert appliance.stop("api", timeout_s=15) in {0, -signal.SIGTERM}
    assert "Application shutdown complete" in appliance.logs("api")


def _in(seconds: float) -> str:
    when = time.time() + seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + "Z"

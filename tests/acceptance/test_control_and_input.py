"""Timeouts, retries, idempotency, cancel, retry, batch, bad input and the API key,
against the running appliance."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Appliance

Make = Any


def attempts_of(appliance: Appliance, task_id: str) -> list[dict[str, Any]]:
    response = appliance.client.get(f"/tasks/{task_id}/attempts")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


# -- timeouts and results --------------------------------------------------------


def test_hung_sync_and_async_tasks_time_out_and_the_worker_takes_the_next_task(
    make_appliance: Make, tmp_path: Path
) -> None:
    appliance = make_appliance()
    appliance.start_all(workers=1)
    sync_path, async_path = tmp_path / "sync", tmp_path / "async"
    hung = appliance.submit("hang", {"seconds": 3, "path": str(sync_path)})
    async_hung = appliance.submit("async_hang", {"seconds": 3, "path": str(async_path)})
    short = appliance.submit("hang", {"seconds": 3}, timeout=0.5)
    after = appliance.submit("echo", {"after": True})

    for task in (hung, async_hung, short):
        done = appliance.wait_for(task["id"])
        assert done["status"] == "FAILED"
        assert "timeout" in done["error"]
        [attempt] = attempts_of(appliance, task["id"])
        assert attempt["status"] == "TIMED_OUT"
    assert "0.5 s" in appliance.get(short["id"])["error"]
    assert appliance.wait_for(after["id"])["status"] == "SUCCESS"
    workers = {attempts_of(appliance, t["id"])[0]["worker"] for t in (hung, after)}
    assert len(workers) == 1

    time.sleep(3.5)
    assert not sync_path.exists()
    assert not async_path.exists()


def test_task_running_longer_than_its_lease_keeps_it_and_runs_once(
    appliance: Appliance, tmp_path: Path
) -> None:
    path = tmp_path / "runs"
    task = appliance.submit(
        "record", {"path": str(path), "token": "long", "seconds": 7}
    )

    done = appliance.wait_for(task["id"], timeout_s=40)

    assert done["status"] == "SUCCESS"
    assert [a["status"] for a in attempts_of(appliance, task["id"])] == ["SUCCESS"]
    assert path.read_text().split() == ["long"]


def test_result_that_is_not_json_fails_the_attempt_with_a_clear_error(
    appliance: Appliance,
) -> None:
    as_set = appliance.submit("not_json", {"kind": "set"})
    as_nan = appliance.submit("not_json", {"kind": "nan"})

    for task in (as_set, as_nan):
        done = appliance.wait_for(task["id"])
        assert done["status"] == "FAILED"
        assert "NotJsonSerializable" in done["error"]
        assert "return dicts" in done["error"]
    assert appliance.wait_for(appliance.submit("echo", {})["id"])["status"] == "SUCCESS"


def test_task_whose_process_dies_fails_the_attempt_and_is_retried(
    appliance: Appliance,
) -> None:
    task = appliance.submit("crash", {})

    done = appliance.wait_for(task["id"])

    assert done["status"] == "FAILED"
    assert "died" in done["error"]
    assert [a["status"] for a in attempts_of(appliance, task["id"])] == [
        "FAILED",
        "FAILED",
    ]


def test_failing_task_is_retried_until_it_succeeds(
    appliance: Appliance, tmp_path: Path
) -> None:
    task = appliance.submit("flaky", {"path": str(tmp_path / "n"), "failures": 2})

    done = appliance.wait_for(task["id"])

    assert (done["status"], done["attempts"], done["result"]) == (
        "SUCCESS",
        3,
        {"attempt": 3},
    )
    attempts = attempts_of(appliance, task["id"])
    assert [a["status"] for a in attempts] == ["FAILED", "FAILED", "SUCCESS"]
    assert "failing attempt 1 on purpose" in attempts[0]["error"]


def test_max_retries_given_at_submission_overrides_the_task_definition(
    appliance: Appliance, tmp_path: Path
) -> None:
    task = appliance.submit(
        "flaky", {"path": str(tmp_path / "n"), "failures": 2}, max_retries=1
    )

    done = appliance.wait_for(task["id"])

    assert (done["status"], done["attempts"], done["max_retries"]) == ("FAILED", 2, 1)
    assert "failing attempt 2" in done["error"]


# -- idempotency -------------------------------------------------------------------


def test_20_concurrent_posts_with_one_idempotency_key_make_one_task(
    appliance: Appliance,
) -> None:
    barrier = threading.Barrier(20)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=appliance.url, timeout=30) as client:
            barrier.wait()
            answers.append(
                client.post(
                    "/tasks",
                    json={"name": "echo", "payload": {"order": 7}},
                    headers={"Idempotency-Key": "order-7"},
                )
            )

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 19 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    listed = appliance.client.get(
        "/tasks", params={"name": "echo", "limit": 1000}
    ).json()
    assert sum(1 for t in listed["items"] if t["idempotency_key"] == "order-7") == 1


def test_idempotency_key_reused_for_another_payload_is_409(
    appliance: Appliance,
) -> None:
    first = appliance.submit("echo", {"n": 1}, idempotency_key="reuse-1")
    again = appliance.client.post(
        "/tasks",
        json={"name": "echo", "payload": {"n": 1}, "idempotency_key": "reuse-1"},
    )
    other = appliance.client.post(
        "/tasks",
        json={"name": "echo", "payload": {"n": 2}, "idempotency_key": "reuse-1"},
    )

    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert other.status_code == 409
    assert "new key" in other.json()["detail"]


# -- cancel and retry ------------------------------------------------------------


def test_cancelled_delayed_task_never_runs(appliance: Appliance) -> None:
    task = appliance.submit("echo", {}, run_at=later(1))

    cancelled = appliance.client.post(f"/tasks/{task['id']}/cancel")
    time.sleep(2)

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED"
    assert appliance.get(task["id"])["status"] == "CANCELLED"
    assert attempts_of(appliance, task["id"]) == []


def test_cancel_running_or_finished_task_returns_409(
    appliance: Appliance, tmp_path: Path
) -> None:
    running = appliance.submit(
        "record", {"path": str(tmp_path / "r"), "token": "x", "seconds": 2}
    )
    appliance.wait_for(running["id"], {"RUNNING"})

    busy = appliance.client.post(f"/tasks/{running['id']}/cancel")
    appliance.wait_for(running["id"])
    finished = appliance.client.post(f"/tasks/{running['id']}/cancel")
    missing = appliance.client.post("/tasks/nope/cancel")

    assert busy.status_code == 409 and "RUNNING" in busy.json()["detail"]
    assert finished.status_code == 409
    assert missing.status_code == 404
    assert appliance.get(running["id"])["status"] == "SUCCESS"


def test_retry_queues_a_cancelled_or_failed_task_again_and_keeps_history(
    appliance: Appliance,
) -> None:
    cancelled = appliance.submit("echo", {"c": 1}, run_at=later(3600))
    appliance.client.post(f"/tasks/{cancelled['id']}/cancel")
    failed = appliance.wait_for(appliance.submit("boom", {})["id"])

    for task in (cancelled, failed):
        response = appliance.client.post(f"/tasks/{task['id']}/retry")
        assert response.status_code == 200
        assert response.json()["status"] in {"QUEUED", "RUNNING", "SUCCESS", "FAILED"}

    assert appliance.wait_for(cancelled["id"])["status"] == "SUCCESS"
    again = appliance.wait_for(failed["id"])
    assert again["status"] == "FAILED"
    assert [a["status"] for a in attempts_of(appliance, failed["id"])] == [
        "FAILED",
        "FAILED",
    ]


def test_retry_of_a_task_that_is_not_failed_or_cancelled_returns_409(
    appliance: Appliance,
) -> None:
    done = appliance.wait_for(appliance.submit("echo", {})["id"])
    waiting = appliance.submit("echo", {}, run_at=later(3600))

    for task in (done, waiting):
        response = appliance.client.post(f"/tasks/{task['id']}/retry")
        assert response.status_code == 409
        assert "FAILED or CANCELLED" in response.json()["detail"]


# -- batch -------------------------------------------------------------------------


def test_batch_of_1000_tasks_is_written_at_once(appliance: Appliance) -> None:
    tasks = [{"name": "add", "payload": {"a": i}} for i in range(1000)]

    response = appliance.client.post("/tasks/batch", json={"tasks": tasks})

    assert response.status_code == 201
    items = response.json()["items"]
    assert len(items) == 1000
    assert len({t["id"] for t in items}) == 1000
    assert appliance.wait_for(items[-1]["id"])["result"] == {"sum": 999}


def test_batch_with_one_bad_task_writes_none(appliance: Appliance) -> None:
    marker = f"batch-{time.time_ns()}"
    tasks: list[dict[str, Any]] = [{"name": "echo", "payload": {"m": marker}}] * 3
    tasks.append({"name": "add", "payload": {"a": "not a number"}})

    response = appliance.client.post("/tasks/batch", json={"tasks": tasks})
    too_many = appliance.client.post(
        "/tasks/batch", json={"tasks": [{"name": "echo"}] * 1001}
    )
    empty = appliance.client.post("/tasks/batch", json={"tasks": []})

    assert response.status_code == 422
    assert "add" in response.json()["detail"]
    listed = appliance.client.get(
        "/tasks", params={"name": "echo", "limit": 1000}
    ).json()
    assert all(t["payload"] != {"m": marker} for t in listed["items"])
    assert too_many.status_code == 422
    assert empty.status_code == 422


# -- bad input -------------------------------------------------------------------


def detail_of(response: httpx.Response) -> str:
    assert 400 <= response.status_code < 500, response.text
    return json.dumps(response.json()["detail"])


def test_every_bad_field_is_a_422_that_names_it(appliance: Appliance) -> None:
    cases = {
        "run_at": {"name": "echo", "run_at": "next tuesday"},
        "priority": {"name": "echo", "priority": 101},
        "max_retries": {"name": "echo", "max_retries": -1},
        "timeout": {"name": "echo", "timeout": 0},
        "idempotency_key": {"name": "echo", "idempotency_key": "k" * 201},
        "payload": {"name": "echo", "payload": "text"},
        "surprise": {"name": "echo", "surprise": 1},
    }

    for field, body in cases.items():
        response = appliance.client.post("/tasks", json=body)
        assert response.status_code == 422, (field, response.text)
        assert field in detail_of(response), field


def test_nan_payload_and_non_json_body_are_422(appliance: Appliance) -> None:
    nan = appliance.client.post(
        "/tasks",
        content='{"name": "echo", "payload": {"x": NaN}}',
        headers={"content-type": "application/json"},
    )
    garbage = appliance.client.post(
        "/tasks", content="{not json", headers={"content-type": "application/json"}
    )
    array = appliance.client.post("/tasks", json=[1, 2])

    assert nan.status_code == 422 and "NaN" in detail_of(nan)
    assert garbage.status_code == 422
    assert array.status_code == 422


def test_body_over_the_limit_is_413_declared_or_streamed(appliance: Appliance) -> None:
    big = json.dumps({"name": "echo", "payload": {"blob": "x" * 1_100_000}}).encode()

    declared = appliance.client.post(
        "/tasks", content=big, headers={"content-type": "application/json"}
    )
    streamed = appliance.client.post(
        "/tasks",
        content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
        headers={"content-type": "application/json"},
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert "TASKBOX_MAX_BODY_BYTES" in response.json()["detail"]


# -- the API key -----------------------------------------------------------------


def test_api_key_guards_every_endpoint_but_the_probes_and_never_shows_in_logs(
    make_appliance: Make,
) -> None:
    key = "s3cret-key-for-the-test"
    appliance = make_appliance(TASKBOX_API_KEY=key)
    appliance.start("api", "api")
    client = appliance.client
    good = {"Authorization": f"Bearer {key}"}

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/docs").status_code == 401
    schema = client.get("/openapi.json", headers=good).json()
    routes = [
        (method, path.replace("{", "").replace("}", ""))
        for path, methods in schema["paths"].items()
        for method in methods
        if path not in {"/healthz", "/readyz"}
    ]
    assert len(routes) > 10
    assert client.get("/docs", headers=good).status_code == 200
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
    refused = client.post("/tasks", json={"name": "echo"})
    assert refused.status_code == 401
    assert "Bearer" in refused.json()["detail"]
    assert client.post("/tasks", json={"name": "echo"}, headers=good).status_code == 201
    assert client.get("/stats", headers=good).status_code == 200

    appliance.stop("api")
    assert key not in appliance.all_logs()

"""The user path of the appliance core, over HTTP against real processes."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import Appliance


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def test_echo_task_succeeds_with_its_payload_as_result(appliance: Appliance) -> None:
    task = appliance.submit("echo", {"msg": "hi"})

    assert task["status"] in {"QUEUED", "RUNNING", "SUCCESS"}
    assert task["payload"] == {"msg": "hi"}
    assert parse(task["created_at"]).tzinfo is not None
    done = appliance.wait_for(task["id"], timeout_s=5)
    assert done["status"] == "SUCCESS"
    assert done["result"] == {"msg": "hi"}
    assert done["attempts"] == 1
    assert (
        parse(done["finished_at"]) >= parse(done["started_at"]) >= parse(done["run_at"])
    )


def test_trailing_slash_submits_the_same_way(appliance: Appliance) -> None:
    response = appliance.client.post(
        "/tasks/", json={"name": "add", "payload": {"a": 2, "b": 3}}
    )

    assert response.status_code == 201
    done = appliance.wait_for(response.json()["id"])
    assert done["result"] == {"sum": 5}


def test_async_task_runs_and_stores_its_result(appliance: Appliance) -> None:
    task = appliance.submit("async_add", {"a": 40, "b": 2})

    assert appliance.wait_for(task["id"])["result"] == {"sum": 42}


def test_delayed_task_waits_for_run_at_then_starts_promptly(
    appliance: Appliance,
) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=2)
    task = appliance.submit("echo", {"n": 1}, run_at=run_at.isoformat())

    assert task["status"] == "SCHEDULED"
    time.sleep(1)
    assert appliance.get(task["id"])["status"] == "SCHEDULED"
    done = appliance.wait_for(task["id"], timeout_s=10)
    assert done["status"] == "SUCCESS"
    started = parse(done["started_at"])
    assert started >= run_at
    assert started - run_at < timedelta(seconds=1)


def test_naive_run_at_is_read_as_utc(appliance: Appliance) -> None:
    run_at = (datetime.now(UTC) + timedelta(hours=1)).replace(
        tzinfo=None, microsecond=0
    )
    task = appliance.submit("echo", {}, run_at=run_at.isoformat())

    assert parse(task["run_at"]) == run_at.replace(tzinfo=UTC)
    assert task["status"] == "SCHEDULED"


def test_failing_task_ends_failed_with_its_error_kept(appliance: Appliance) -> None:
    task = appliance.submit("boom", {"message": "disk full"})

    done = appliance.wait_for(task["id"])
    assert done["status"] == "FAILED"
    assert "ValueError: disk full" in done["error"]
    attempts = appliance.client.get(f"/tasks/{task['id']}/attempts").json()
    assert [a["status"] for a in attempts] == ["FAILED"]
    assert "disk full" in attempts[0]["error"]
    assert "Traceback" in attempts[0]["traceback"]


def test_unknown_task_name_is_422_naming_the_known_ones(appliance: Appliance) -> None:
    response = appliance.client.post(
        "/tasks", json={"name": "send_emial", "payload": {}}
    )

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "send_emial" in detail
    assert "send_email" in detail
    assert "TASKBOX_TASK_MODULES" in detail


def test_payload_that_does_not_fit_the_signature_is_422(appliance: Appliance) -> None:
    missing = appliance.client.post("/tasks", json={"name": "add", "payload": {"b": 1}})
    unknown = appliance.client.post(
        "/tasks", json={"name": "add", "payload": {"a": 1, "c": 2}}
    )
    wrong_type = appliance.client.post(
        "/tasks", json={"name": "add", "payload": {"a": "x"}}
    )
    not_object = appliance.client.post(
        "/tasks", json={"name": "add", "payload": [1, 2]}
    )

    assert missing.status_code == 422 and "'a'" in missing.json()["detail"]
    assert unknown.status_code == 422 and "'c'" in unknown.json()["detail"]
    assert wrong_type.status_code == 422 and "a:" in wrong_type.json()["detail"]
    assert not_object.status_code == 422
    before = appliance.client.get("/stats").json()["counts"]
    assert (
        appliance.client.post("/tasks", json={"name": "add", "payload": {}}).status_code
        == 422
    )
    assert appliance.client.get("/stats").json()["counts"] == before


def test_listing_pages_newest_first_with_a_cursor(appliance: Appliance) -> None:
    ids = [appliance.submit("sleep", {"seconds": 0})["id"] for i in range(5)]

    first = appliance.client.get("/tasks", params={"limit": 2, "name": "sleep"}).json()
    second = appliance.client.get(
        "/tasks", params={"limit": 2, "name": "sleep", "cursor": first["next_cursor"]}
    ).json()
    third = appliance.client.get(
        "/tasks", params={"limit": 2, "name": "sleep", "cursor": second["next_cursor"]}
    ).json()

    listed = [t["id"] for page in (first, second, third) for t in page["items"]]
    assert listed == list(reversed(ids))
    assert third["next_cursor"] is None


def test_listing_filters_by_status(appliance: Appliance) -> None:
    ok = appliance.submit("echo", {})
    bad = appliance.submit("boom", {})
    appliance.wait_for(ok["id"])
    appliance.wait_for(bad["id"])

    failed = appliance.client.get(
        "/tasks", params={"status": "FAILED", "limit": 1000}
    ).json()["items"]
    assert bad["id"] in [t["id"] for t in failed]
    assert ok["id"] not in [t["id"] for t in failed]
    assert all(t["status"] == "FAILED" for t in failed)
    assert appliance.client.get("/tasks", params={"status": "NOPE"}).status_code == 422


def test_attempts_list_worker_and_times(appliance: Appliance) -> None:
    task = appliance.submit("echo", {})
    appliance.wait_for(task["id"])

    [attempt] = appliance.client.get(f"/tasks/{task['id']}/attempts").json()
    assert attempt["number"] == 1
    assert attempt["status"] == "SUCCESS"
    assert attempt["worker"]
    assert parse(attempt["finished_at"]) >= parse(attempt["started_at"])


def test_missing_task_is_404(appliance: Appliance) -> None:
    assert appliance.client.get("/tasks/nope").status_code == 404
    assert appliance.client.get("/tasks/nope/attempts").status_code == 404


def test_task_modules_are_imported_by_every_component(
    appliance: Appliance, tmp_path: Path
) -> None:
    out = tmp_path / "ran.txt"
    task = appliance.submit("record", {"path": str(out), "token": "t1"})

    assert appliance.wait_for(task["id"])["status"] == "SUCCESS"
    assert out.read_text() == "t1\n"

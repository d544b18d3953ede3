"""Schedules over the REST API: recurring tasks by interval or cron."""

import time
import uuid
from datetime import datetime

from tests.conftest import Appliance


def tasks_with_marker(appliance: Appliance, marker: str) -> list[dict[str, object]]:
    items = appliance.client.get(
        "/tasks", params={"name": "echo", "limit": 1000}
    ).json()["items"]
    return [t for t in items if t["payload"].get("marker") == marker]


def test_interval_schedule_fires_tasks_until_disabled(appliance: Appliance) -> None:
    marker = uuid.uuid4().hex
    response = appliance.client.post(
        "/schedules",
        json={
            "name": f"tick-{marker}",
            "task": "echo",
            "payload": {"marker": marker},
            "interval_seconds": 1,
        },
    )
    assert response.status_code == 201, response.text
    schedule = response.json()
    assert schedule["enabled"] is True
    assert schedule["next_run_at"] is not None

    deadline = time.monotonic() + 15
    while len(tasks_with_marker(appliance, marker)) < 2:
        assert time.monotonic() < deadline, appliance.all_logs()
        time.sleep(0.1)

    disabled = appliance.client.patch(
        f"/schedules/tick-{marker}", json={"enabled": False}
    )
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    time.sleep(0.3)
    count = len(tasks_with_marker(appliance, marker))
    time.sleep(1.5)
    assert len(tasks_with_marker(appliance, marker)) == count
    fired = tasks_with_marker(appliance, marker)
    assert all(appliance.wait_for(str(t["id"]))["status"] == "SUCCESS" for t in fired)
    assert (
        appliance.client.get(f"/schedules/tick-{marker}").json()["last_run_at"]
        is not None
    )


def test_cron_schedule_reports_its_next_fire_in_utc(appliance: Appliance) -> None:
    response = appliance.client.post(
        "/schedules",
        json={
            "name": "nightly",
            "task": "echo",
            "cron": "30 2 * * *",
            "timezone": "Europe/Paris",
        },
    )

    assert response.status_code == 201, response.text
    next_run_at = datetime.fromisoformat(response.json()["next_run_at"])
    assert next_run_at.utcoffset() is not None
    assert next_run_at.minute == 30
    assert next_run_at.hour in (0, 1)  # 02:30 in Paris is 00:30 or 01:30 UTC


def test_schedules_are_listed_read_changed_and_removed(appliance: Appliance) -> None:
    name = f"s-{uuid.uuid4().hex[:8]}"
    appliance.client.post(
        "/schedules/", json={"name": name, "task": "echo", "interval_seconds": 3600}
    )

    assert name in [s["name"] for s in appliance.client.get("/schedules").json()]
    changed = appliance.client.patch(f"/schedules/{name}", json={"cron": "0 * * * *"})
    assert changed.status_code == 200
    assert changed.json()["cron"] == "0 * * * *"
    assert changed.json()["interval_seconds"] is None
    assert appliance.client.delete(f"/schedules/{name}").status_code == 204
    assert appliance.client.get(f"/schedules/{name}").status_code == 404
    assert appliance.client.delete(f"/schedules/{name}").status_code == 404


def test_taken_schedule_name_is_409(appliance: Appliance) -> None:
    body = {"name": "dup", "task": "echo", "interval_seconds": 60}
    assert appliance.client.post("/schedules", json=body).status_code == 201

    again = appliance.client.post("/schedules", json=body)
    assert again.status_code == 409
    assert "dup" in again.json()["detail"]


def test_bad_schedules_are_422_saying_what_to_fix(appliance: Appliance) -> None:
    cases = {
        "bad cron": {"name": "a", "task": "echo", "cron": "every day"},
        "bad timezone": {
            "name": "b",
            "task": "echo",
            "cron": "0 * * * *",
            "timezone": "Nowhere/City",
        },
        "unknown task": {"name": "c", "task": "nope", "interval_seconds": 60},
        "both rules": {
            "name": "d",
            "task": "echo",
            "cron": "0 * * * *",
            "interval_seconds": 60,
        },
        "no rule": {"name": "e", "task": "echo"},
        "bad payload": {
            "name": "f",
            "task": "add",
            "payload": {"z": 1},
            "interval_seconds": 60,
        },
    }
    for case, body in cases.items():
        response = appliance.client.post("/schedules", json=body)
        assert response.status_code == 422, case
        assert response.json()["detail"], case

    names = [s["name"] for s in appliance.client.get("/schedules").json()]
    assert not set("abcdefgh") & set(names)
    name = f"g-{uuid.uuid4().hex[:8]}"
    appliance.client.post(
        "/schedules", json={"name": name, "task": "echo", "interval_seconds": 60}
    )
    bad_patch = appliance.client.patch(
        f"/schedules/{name}", json={"timezone": "Nowhere/City"}
    )
    assert bad_patch.status_code == 422
    assert appliance.client.get(f"/schedules/{name}").json()["timezone"] == "UTC"

"""The operator's commands, `taskbox status|top|list|cancel|retry`, run as a user runs
them: as processes talking to a running API."""

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import TASKBOX, Appliance, free_port


def taskbox(
    url: str, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKBOX, *args],
        env={**os.environ, "TASKBOX_API_URL": url, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_prints_queues_counts_by_task_and_workers(
    appliance: Appliance, tmp_path: Path
) -> None:
    appliance.wait_for(appliance.submit("async_add", {"a": 1})["id"])
    workers = appliance.client.get("/workers").json()

    result = taskbox(appliance.url, tmp_path, "status")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in ("Queues", "Tasks", "Workers", "ready", "delayed", "running"):
        assert heading in out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["async_add"])
    assert row.split()[1:] == ["0", "0", "0", "0", "1", "0", "0"]
    for worker in workers:
        assert worker["id"] in out


def test_status_json_gives_stats_and_workers(
    appliance: Appliance, tmp_path: Path
) -> None:
    result = taskbox(appliance.url, tmp_path, "status", "--json")

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["stats"]["queues"]) == {"ready", "delayed", "running"}
    assert len(data["workers"]) == 2


def test_list_shows_tasks_filtered_by_status_and_name(
    appliance: Appliance, tmp_path: Path
) -> None:
    failed = appliance.wait_for(
        appliance.submit("boom", {"message": "listed failure"})["id"]
    )
    ok = appliance.wait_for(appliance.submit("add", {"a": 1})["id"])

    result = taskbox(
        appliance.url, tmp_path, "list", "--status", "failed", "--name", "boom"
    )

    assert result.returncode == 0, result.stderr
    assert failed["id"] in result.stdout
    assert "ValueError: listed failure" in result.stdout
    assert ok["id"] not in result.stdout


def test_list_pages_with_the_cursor_it_prints(
    appliance: Appliance, tmp_path: Path
) -> None:
    ids = [appliance.submit("echo", {"page": n})["id"] for n in range(3)]

    first = taskbox(appliance.url, tmp_path, "list", "--name", "echo", "--limit", "2")

    assert first.returncode == 0, first.stderr
    assert ids[2] in first.stdout and ids[1] in first.stdout
    cursor = first.stdout.split("--cursor ")[1].split()[0]
    rest = taskbox(
        appliance.url, tmp_path, "list", "--name", "echo", "--cursor", cursor, "--json"
    )
    assert ids[0] in [t["id"] for t in json.loads(rest.stdout)["items"]]


def test_cancel_then_retry_mirror_the_api(appliance: Appliance, tmp_path: Path) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    task = appliance.submit("echo", {"n": 1}, run_at=later)

    cancelled = taskbox(appliance.url, tmp_path, "cancel", task["id"])
    again = taskbox(appliance.url, tmp_path, "cancel", task["id"])
    retried = taskbox(appliance.url, tmp_path, "retry", task["id"])

    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "CANCELLED"
    assert again.returncode == 1
    assert "409" in again.stderr and "cannot cancel" in again.stderr
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["status"] in {"QUEUED", "RUNNING", "SUCCESS"}
    assert appliance.wait_for(task["id"])["status"] == "SUCCESS"


def test_retry_of_a_running_or_finished_task_says_why_not(
    appliance: Appliance, tmp_path: Path
) -> None:
    task = appliance.wait_for(appliance.submit("add", {"a": 2})["id"])

    result = taskbox(appliance.url, tmp_path, "retry", task["id"])

    assert result.returncode == 1
    assert "cannot retry" in result.stderr and "SUCCESS" in result.stderr


def test_top_once_shows_queues_workers_and_recent_failures(
    appliance: Appliance, tmp_path: Path
) -> None:
    failed = appliance.wait_for(
        appliance.submit("boom", {"message": "seen in top"})["id"]
    )

    result = taskbox(appliance.url, tmp_path, "top", "--once")

    assert result.returncode == 0, result.stderr
    for heading in ("taskbox top", "Queues", "Workers", "Recent failures"):
        assert heading in result.stdout
    assert failed["id"] in result.stdout
    assert "ValueError: seen in top" in result.stdout


def test_commands_name_the_url_when_the_api_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = taskbox(url, tmp_path, "status")

    assert result.returncode == 2
    assert f"cannot reach the taskbox API at {url}" in result.stderr

"""`taskbox submit` and `taskbox get`: thin clients of the REST API."""

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

from tests.conftest import TASKBOX, Appliance


def run_cli(
    appliance: Appliance, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKBOX, *args],
        env={**os.environ, "TASKBOX_API_URL": appliance.url, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_submit_prints_the_task_and_get_shows_its_result(appliance: Appliance) -> None:
    submitted = run_cli(appliance, "submit", "add", "--payload", '{"a": 1, "b": 2}')

    assert submitted.returncode == 0, submitted.stderr
    task = json.loads(submitted.stdout)
    assert task["name"] == "add"
    appliance.wait_for(task["id"])
    fetched = run_cli(appliance, "get", task["id"])
    assert fetched.returncode == 0
    assert json.loads(fetched.stdout)["result"] == {"sum": 3}


def test_submit_with_run_at_schedules_the_task(appliance: Appliance) -> None:
    run_at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()

    submitted = run_cli(appliance, "submit", "echo", "--run-at", run_at)

    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["status"] == "SCHEDULED"


def test_submit_reports_the_apis_error_and_exits_non_zero(appliance: Appliance) -> None:
    unknown = run_cli(appliance, "submit", "nope")
    bad_json = run_cli(appliance, "submit", "echo", "--payload", "{not json")

    assert unknown.returncode == 1
    assert "422" in unknown.stderr and "nope" in unknown.stderr
    assert bad_json.returncode == 2
    assert "--payload" in bad_json.stderr


def test_get_of_a_missing_task_says_404(appliance: Appliance) -> None:
    result = run_cli(appliance, "get", "does-not-exist")

    assert result.returncode == 1
    assert "404" in result.stderr


def test_client_without_an_api_says_how_to_start_one(appliance: Appliance) -> None:
    result = run_cli(appliance, "get", "x", TASKBOX_API_URL="http://127.0.0.1:9")

    assert result.returncode == 2
    assert "taskbox up" in result.stderr


def test_client_sends_the_api_key(make_appliance) -> None:  # type: ignore[no-untyped-def]
    secured: Appliance = make_appliance(TASKBOX_API_KEY="s3cret")
    secured.start("api", "api")
    secured.client.headers["Authorization"] = "Bearer s3cret"

    with_key = run_cli(secured, "submit", "echo", TASKBOX_API_KEY="s3cret")
    without = run_cli(secured, "submit", "echo", TASKBOX_API_KEY="")

    assert with_key.returncode == 0, with_key.stderr
    assert without.returncode == 1
    assert "401" in without.stderr

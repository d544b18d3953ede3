"""Edge cases of input that once slipped through: each is a 422 saying what to fix."""

from tests.conftest import Appliance


def test_run_at_outside_the_calendar_once_in_utc_is_422(appliance: Appliance) -> None:
    for run_at in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00"):
        response = appliance.client.post(
            "/tasks", json={"name": "echo", "run_at": run_at}
        )
        assert response.status_code == 422, run_at
        assert "run_at" in response.text


def test_run_at_as_a_number_is_422_asking_for_iso_8601(appliance: Appliance) -> None:
    response = appliance.client.post("/tasks", json={"name": "echo", "run_at": 0})

    assert response.status_code == 422
    assert "ISO 8601" in response.text


def test_numbers_sent_as_strings_or_booleans_are_422(appliance: Appliance) -> None:
    for field, value in (("priority", "5"), ("priority", True), ("max_retries", "2")):
        response = appliance.client.post("/tasks", json={"name": "echo", field: value})
        assert response.status_code == 422, (field, value)


def test_payload_values_of_the_wrong_json_type_are_422(appliance: Appliance) -> None:
    response = appliance.client.post(
        "/tasks", json={"name": "add", "payload": {"a": "12"}}
    )

    assert response.status_code == 422
    assert "a:" in response.json()["detail"]


def test_task_shows_the_timeout_it_runs_with(appliance: Appliance) -> None:
    default = appliance.submit("hang", {"seconds": 0})
    chosen = appliance.submit("echo", {}, timeout=7)

    assert default["timeout"] == 1  # from @task(timeout=1)
    assert chosen["timeout"] == 7


def test_retry_clears_the_previous_error(appliance: Appliance) -> None:
    failed = appliance.wait_for(appliance.submit("boom", {"message": "first"})["id"])
    assert failed["error"]

    retried = appliance.client.post(f"/tasks/{failed['id']}/retry").json()

    assert retried["status"] == "QUEUED"
    assert retried["error"] is None

"""The user path on each store: the same appliance on SQLite and on PostgreSQL."""

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from taskbox.migrate import migrate
from taskbox.store import open_store
from tests.conftest import Appliance, RedisServer, clone_pg


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store_appliance(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
) -> Iterator[Appliance]:
    """API, scheduler and two workers on a fresh SQLite file or PostgreSQL database."""
    tmp_path = tmp_path_factory.mktemp(f"appliance-{request.param}")
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'taskbox.db'}"
        store = open_store(url)
        migrate(store.engine)
        store.close()
    else:
        url, drop = clone_pg(request.getfixturevalue("pg_template"))

    running = Appliance(tmp_path, redis_server.url, url, f"test-{uuid.uuid4().hex}:")
    running.start_all(workers=2)
    yield running
    running.stop_all()
    if drop is not None:
        drop()


def test_immediate_delayed_and_failing_tasks_finish(
    store_appliance: Appliance, tmp_path: Path
) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=1)
    now = store_appliance.submit("add", {"a": 1, "b": 2})
    later = store_appliance.submit("echo", {"n": 1}, run_at=run_at.isoformat())
    failing = store_appliance.submit("boom", {"message": "no disk"})
    flaky = store_appliance.submit(
        "flaky", {"path": str(tmp_path / "count"), "failures": 2}
    )

    assert store_appliance.wait_for(now["id"])["result"] == {"sum": 3}
    done_later = store_appliance.wait_for(later["id"])
    assert done_later["status"] == "SUCCESS"
    assert datetime.fromisoformat(done_later["started_at"]) >= run_at
    failed = store_appliance.wait_for(failing["id"])
    assert failed["status"] == "FAILED" and "no disk" in failed["error"]
    retried = store_appliance.wait_for(flaky["id"])
    assert (retried["status"], retried["attempts"]) == ("SUCCESS", 3)


def test_idempotent_submissions_make_one_task(store_appliance: Appliance) -> None:
    key = uuid.uuid4().hex
    body = {"name": "echo", "payload": {"k": key}, "idempotency_key": key}

    first = store_appliance.client.post("/tasks", json=body)
    second = store_appliance.client.post("/tasks", json=body)
    clash = store_appliance.client.post(
        "/tasks", json={**body, "payload": {"k": "other"}}
    )

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert clash.status_code == 409


def test_concurrent_submissions_share_commits_but_keep_one_task_per_key(
    store_appliance: Appliance,
) -> None:
    key = uuid.uuid4().hex
    same = {"name": "echo", "payload": {"k": key}, "idempotency_key": key}
    clash = {**same, "payload": {"k": "other"}}
    plain = {"name": "echo", "payload": {"k": "plain"}}
    bodies = [same] * 12 + [clash] * 4 + [plain] * 8

    def post(body: dict[str, object]) -> httpx.Response:
        with httpx.Client(base_url=store_appliance.url, timeout=30) as client:
            return client.post("/tasks", json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(post, bodies))

    # Whichever keyed request came first made the task; the others with its
    # payload get it back, those with the other payload are refused.
    keyed = answers[:16]
    [made] = [a.json() for a in keyed if a.status_code == 201]
    for body, answer in zip(bodies[:16], keyed, strict=True):
        if answer.status_code == 201:
            continue
        expected = 200 if body["payload"] == made["payload"] else 409
        assert answer.status_code == expected
        if expected == 200:
            assert answer.json()["id"] == made["id"]
    plain = answers[16:]
    assert [a.status_code for a in plain] == [201] * 8
    plain_ids = {a.json()["id"] for a in plain}
    assert len(plain_ids) == 8
    for task_id in plain_ids | {made["id"]}:
        assert store_appliance.wait_for(task_id)["status"] == "SUCCESS"


def test_batch_cancel_and_retry(store_appliance: Appliance) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    batch = store_appliance.client.post(
        "/tasks/batch",
        json={"tasks": [{"name": "echo", "payload": {}, "run_at": later}] * 3},
    )
    ids = [t["id"] for t in batch.json()["items"]]

    cancelled = store_appliance.client.post(f"/tasks/{ids[0]}/cancel")
    retried = store_appliance.client.post(f"/tasks/{ids[0]}/retry")

    assert batch.status_code == 201 and len(ids) == 3
    assert cancelled.json()["status"] == "CANCELLED"
    assert retried.status_code == 200
    assert store_appliance.wait_for(ids[0])["status"] == "SUCCESS"
    assert store_appliance.get(ids[1])["status"] == "SCHEDULED"


def test_interval_schedule_fires_tasks(store_appliance: Appliance) -> None:
    name = f"tick-{uuid.uuid4().hex[:8]}"
    created = store_appliance.client.post(
        "/schedules",
        json={"name": name, "task": "echo", "payload": {}, "interval_seconds": 1},
    )

    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 15
    fired = created.json()
    while fired["last_run_at"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
        fired = store_appliance.client.get(f"/schedules/{name}").json()
    store_appliance.client.delete(f"/schedules/{name}")

    assert fired["last_run_at"] is not None, store_appliance.all_logs()
    echoes = store_appliance.client.get(
        "/tasks", params={"name": "echo", "limit": 1000}
    ).json()["items"]
    made = [t for t in echoes if t["created_at"] == fired["last_run_at"]]
    assert made, echoes

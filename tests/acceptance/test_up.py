"""`taskbox up`: the whole appliance under supervisord, with its own Redis."""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import REPO, TASKBOX, free_port


class Up:
    def __init__(self, cwd: Path, **env: str) -> None:
        self.port = free_port()
        self.data_dir = cwd / "data"
        self.log = cwd / "up.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKBOX_")}
        log = self.log.open("wb")
        self.process = subprocess.Popen(
            [TASKBOX, "up"],
            cwd=REPO,
            env={
                **clean,
                "TASKBOX_PORT": str(self.port),
                "TASKBOX_HOST": "127.0.0.1",
                "TASKBOX_DATA_DIR": str(self.data_dir),
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def wait_workers(
        self, count: int, timeout_s: float = 60
    ) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                workers: list[dict[str, object]] = self.client.get("/workers").json()
                if len(workers) >= count:
                    return workers
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError(
            f"{count} workers did not come up:\n{self.log.read_text()}"
        )

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill_leftovers(self) -> None:
        """Kill whatever a failed test left running; supervisord's programs each have
        a process group of their own, so killing its group would miss them."""
        if self.process.poll() is not None:
            return
        for child in self.descendants():
            child.kill()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        self.client.close()
        return code


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = Up(tmp_path)
    yield running
    running.client.close()
    running.kill_leftovers()


def test_up_runs_redis_api_scheduler_and_two_workers(up: Up) -> None:
    workers = up.wait_workers(2)

    assert len(workers) == 2
    response = up.client.post("/tasks", json={"name": "echo", "payload": {"msg": "hi"}})
    assert response.status_code == 201
    task_id = response.json()["id"]
    deadline = time.monotonic() + 10
    while up.client.get(f"/tasks/{task_id}").json()["status"] != "SUCCESS":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert up.client.get(f"/tasks/{task_id}").json()["result"] == {"msg": "hi"}
    assert (up.data_dir / "taskbox.db").exists()
    assert (up.data_dir / "redis.sock").exists()
    assert (up.data_dir / "redis" / "appendonlydir").exists() or any(
        (up.data_dir / "redis").glob("appendonly*")
    )


def test_sigterm_stops_every_process(up: Up) -> None:
    up.wait_workers(2)
    children = up.descendants()
    assert len(children) >= 5  # redis, api, scheduler, two workers (and their children)

    assert up.stop() == 0
    time.sleep(0.5)
    assert [
        c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE
    ] == []


def test_taskbox_workers_sets_the_worker_count(tmp_path: Path) -> None:
    running = Up(tmp_path, TASKBOX_WORKERS="3")
    try:
        assert len(running.wait_workers(3)) == 3
        assert running.stop() == 0
    finally:
        running.kill_leftovers()


def test_up_uses_an_external_redis_when_one_is_configured(
    tmp_path: Path, redis_server, redis_prefix: str
) -> None:  # type: ignore[no-untyped-def]
    running = Up(
        tmp_path, TASKBOX_REDIS_URL=redis_server.url, TASKBOX_REDIS_PREFIX=redis_prefix
    )
    try:
        running.wait_workers(2)
        assert not (running.data_dir / "redis.sock").exists()
        names = {p.name() for p in running.descendants()}
        assert not any("redis" in name for name in names)
        assert running.stop() == 0
    finally:
        running.kill_leftovers()

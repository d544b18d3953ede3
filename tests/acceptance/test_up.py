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
    def __init__(self, root: Path, cwd: Path = REPO, **env: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.data_dir = Path(env.get("TASKBOX_DATA_DIR", root / "data"))
        self.log = root / "up.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKBOX_")}
        log = self.log.open("wb")
        self.process = subprocess.Popen(
            [TASKBOX, "up"],
            cwd=cwd,
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


def test_up_refuses_a_task_module_it_cannot_import(tmp_path: Path) -> None:
    running = Up(tmp_path, TASKBOX_TASK_MODULES="no_such_module.tasks")
    try:
        code = running.process.wait(60)
    finally:
        running.client.close()
        running.kill_leftovers()

    assert code == 2
    assert "no_such_module.tasks" in running.log.read_text()


def test_up_finds_task_modules_in_the_directory_it_runs_from(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "myapp").mkdir(parents=True)
    (project / "myapp" / "__init__.py").write_text("")
    (project / "myapp" / "tasks.py").write_text(
        "from taskbox import task\n\n"
        "@task(name='shout')\n"
        "def shout(text: str) -> str:\n"
        "    return text.upper()\n"
    )
    running = Up(tmp_path, cwd=project, TASKBOX_TASK_MODULES="myapp.tasks")
    try:
        running.wait_workers(2)
        task_id = running.client.post(
            "/tasks", json={"name": "shout", "payload": {"text": "hi"}}
        ).json()["id"]
        deadline = time.monotonic() + 15
        while (task := running.client.get(f"/tasks/{task_id}").json())[
            "status"
        ] != "SUCCESS":
            assert time.monotonic() < deadline, task
            time.sleep(0.05)
        assert task["result"] == "HI"
        assert running.stop() == 0
    finally:
        running.kill_leftovers()


def test_second_up_on_a_data_dir_in_use_is_refused(up: Up, tmp_path: Path) -> None:
    up.wait_workers(2)
    second = Up(tmp_path / "again", TASKBOX_DATA_DIR=str(up.data_dir))
    try:
        code = second.process.wait(60)
    finally:
        second.client.close()
        second.kill_leftovers()

    assert code == 2
    assert "already" in second.log.read_text() or "running on" in second.log.read_text()


def test_programs_stop_when_up_is_killed_outright(up: Up) -> None:
    up.wait_workers(2)
    children = up.descendants()

    os.kill(up.process.pid, signal.SIGKILL)
    up.process.wait()

    deadline = time.monotonic() + 30
    while alive := [
        c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE
    ]:
        assert time.monotonic() < deadline, [c.cmdline() for c in alive]
        time.sleep(0.2)

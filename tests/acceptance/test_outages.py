"""Losing Redis or PostgreSQL under a running appliance: every component rides it out, /readyz says
503 while it lasts, and each component logs the outage once, not once per loop."""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Appliance, RedisServer, free_port, missing_service


def wait_for_readyz(appliance: Appliance, status: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while appliance.client.get("/readyz").status_code != status:
        assert time.monotonic() < deadline, f"/readyz never said {status}"
        time.sleep(0.1)


def outage_lines(log: str, event: str) -> list[str]:
    """The lines of one event from a component's own loop (not the lease thread)."""
    return [
        line
        for line in log.splitlines()
        if f"event={event}" in line and "lease thread" not in line
    ]


def wait_for_log(appliance: Appliance, name: str, event: str) -> str:
    """A component's log once it has an `event` line (its back-off may still run)."""
    deadline = time.monotonic() + 30
    while not outage_lines(appliance.logs(name), event):
        assert time.monotonic() < deadline, appliance.logs(name)
        time.sleep(0.2)
    return appliance.logs(name)


@pytest.mark.slow
def test_redis_outage_is_survived_logged_once_and_reported_by_readyz(
    make_appliance: Any, private_redis: RedisServer
) -> None:
    appliance = make_appliance(redis_url=private_redis.url)
    appliance.start_all(workers=2)
    before = appliance.submit("echo", {"n": "before"})
    run_at = datetime.now(UTC) + timedelta(seconds=4)
    delayed = appliance.submit("echo", {"n": "delayed"}, run_at=run_at.isoformat())
    assert appliance.wait_for(before["id"])["status"] == "SUCCESS"

    private_redis.kill()
    wait_for_readyz(appliance, 503)
    readyz = appliance.client.get("/readyz").json()
    during = appliance.submit("echo", {"n": "during"})
    time.sleep(3)  # many loops of every component
    private_redis.start()
    wait_for_readyz(appliance, 200)
    after = appliance.submit("echo", {"n": "after"})

    assert readyz["store"] == "ok" and readyz["redis"].startswith("unreachable")
    assert during["status"] == "PENDING"
    for task in (delayed, during, after):
        assert appliance.wait_for(task["id"])["status"] == "SUCCESS"
    for name in ("scheduler", "worker-0", "worker-1"):
        assert appliance.processes[name].poll() is None, name
        log = wait_for_log(appliance, name, "connection_restored")
        assert len(outage_lines(log, "connection_lost")) == 1, log
        assert len(outage_lines(log, "connection_restored")) == 1, log


class PrivatePostgres:
    """A PostgreSQL server of this test's own (pg_ctl in a temp dir), to stop and start
    without disturbing the machine's shared server."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            missing_service("no pg_ctl in /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="taskbox-pg-"))
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        # initdb and the server refuse to run as root; run them as the postgres user.
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(
            "initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres"
        )

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / program), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            "-D",
            str(self.dir / "data"),
            "-o",
            options,
            "-w",
            "-l",
            str(self.dir / "server.log"),
            "start",
        )

    def crash(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop"
        )

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.crash()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.mark.slow
def test_postgres_outage_is_survived_logged_once_and_reported_by_readyz(
    make_appliance: Any, private_postgres: PrivatePostgres
) -> None:
    appliance = make_appliance(store_url=private_postgres.url)
    appliance.start_all(workers=2)
    before = appliance.submit("echo", {"n": "before"})
    run_at = datetime.now(UTC) + timedelta(seconds=5)
    delayed = appliance.submit("echo", {"n": "delayed"}, run_at=run_at.isoformat())
    assert appliance.wait_for(before["id"])["status"] == "SUCCESS"

    private_postgres.crash()
    wait_for_readyz(appliance, 503)
    readyz = appliance.client.get("/readyz").json()
    refused = appliance.client.post("/tasks", json={"name": "echo", "payload": {}})
    late = appliance.start("worker")  # starts while the store is down: it waits
    wait_for_log(appliance, late, "connection_lost")
    time.sleep(3)  # many loops of every component
    private_postgres.start()
    wait_for_readyz(appliance, 200)
    appliance.wait_for_workers(3)
    after = appliance.submit("echo", {"n": "after"})

    assert readyz["redis"] == "ok" and readyz["store"].startswith("unreachable")
    assert refused.status_code == 503 and "try again" in refused.json()["detail"]
    for task in (delayed, after):
        assert appliance.wait_for(task["id"])["status"] == "SUCCESS"
    log = wait_for_log(appliance, "scheduler", "connection_restored")
    assert len(outage_lines(log, "connection_lost")) == 1, log
    assert len(outage_lines(log, "connection_restored")) == 1, log
    for name in ("scheduler", "worker-0", "worker-1", late):
        assert appliance.processes[name].poll() is None, name
        assert len(outage_lines(appliance.logs(name), "connection_lost")) <= 1
    assert len(outage_lines(appliance.logs(late), "connection_lost")) == 1

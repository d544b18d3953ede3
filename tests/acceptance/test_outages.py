"""Losing Redis under a running appliance: every component rides it out, /readyz says
503 while it lasts, and each component logs the outage once, not once per loop."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Appliance, RedisServer


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

"""Several "hosts" on one machine: separate processes with separate data dirs that
share one store and one Redis. Used by the multi-host test and bench/multihost.py."""

import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import Appliance

BATCH = 500


@dataclass
class Drain:
    """What a run of many tasks through several hosts came to."""

    submitted: int
    seconds: float
    counts: dict[str, int]
    runs: Counter[str]

    @property
    def rate(self) -> float:
        return self.submitted / self.seconds


def make_hosts(
    tmp_path: Path,
    redis_url: str,
    store_url: str,
    prefix: str,
    count: int = 2,
    **env: str,
) -> list[Appliance]:
    """`count` hosts, each with its own data dir, sharing the store and Redis."""
    return [
        Appliance(tmp_path / f"host-{i}", redis_url, store_url, prefix, **env)
        for i in range(count)
    ]


def start_hosts(hosts: list[Appliance], workers: int = 4) -> None:
    """A scheduler on every host, the workers spread over them; the first has the API."""
    hosts[0].start("api", "api")
    for host in hosts:
        host.start("scheduler", "scheduler")
    for i in range(workers):
        hosts[i % len(hosts)].start("worker")
    hosts[0].wait_for_workers(workers, timeout_s=90)


def stop_hosts(hosts: list[Appliance]) -> None:
    for host in hosts:
        host.stop_all()


def drain(api: Appliance, count: int, runs_file: Path, timeout_s: float = 600) -> Drain:
    """Submit `count` record tasks (about 1 in 3 delayed by up to 3 s), wait for all."""
    rng = random.Random(count)
    started = time.monotonic()
    for first in range(0, count, BATCH):
        now = datetime.now(UTC)
        tasks = [
            _record_task(i, runs_file, now, rng)
            for i in range(first, min(first + BATCH, count))
        ]
        response = api.client.post("/tasks/batch", json={"tasks": tasks})
        assert response.status_code == 201, response.text

    deadline = time.monotonic() + timeout_s
    while True:
        counts: dict[str, int] = api.client.get("/stats").json()["counts"]
        finished = sum(counts.get(s, 0) for s in ("SUCCESS", "FAILED", "CANCELLED"))
        if finished >= count:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"not drained after {timeout_s} s: {counts}")
        time.sleep(0.1)
    seconds = time.monotonic() - started

    runs = Counter(runs_file.read_text().split()) if runs_file.exists() else Counter()
    return Drain(count, seconds, counts, runs)


def _record_task(
    i: int, runs_file: Path, now: datetime, rng: random.Random
) -> dict[str, Any]:
    task: dict[str, Any] = {
        "name": "record",
        "payload": {"path": str(runs_file), "token": f"t{i}"},
    }
    if rng.random() < 1 / 3:
        task["run_at"] = (now + timedelta(seconds=rng.uniform(0.2, 3))).isoformat()
    return task

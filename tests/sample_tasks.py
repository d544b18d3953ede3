"""Tasks the test suite registers through TASKBOX_TASK_MODULES=tests.sample_tasks."""

import asyncio
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

from taskbox import task


@task(name="add", max_retries=0)
def add(a: int, b: int = 0) -> dict[str, int]:
    return {"sum": a + b}


@task(name="async_add", max_retries=0)
async def async_add(a: int, b: int = 0) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"sum": a + b}


@task(name="boom", max_retries=0)
def boom(message: str = "boom") -> None:
    raise ValueError(message)


@task(name="flaky", max_retries=3, backoff_base=0.05, backoff_cap=0.2)
def flaky(path: str, failures: int) -> dict[str, int]:
    """Fail the first `failures` attempts, counting attempts in a file."""
    counter = Path(path)
    with counter.open("a") as f:
        f.write("x\n")
    attempt = len(counter.read_text().splitlines())
    if attempt <= failures:
        raise RuntimeError(f"failing attempt {attempt} on purpose")
    return {"attempt": attempt}


@task(name="record", max_retries=3)
def record(path: str, token: str, seconds: float = 0.0) -> dict[str, str]:
    """Append a token to a file once per run, so tests can count runs."""
    if seconds:
        time.sleep(seconds)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)
    return {"token": token}


@task(name="hang", max_retries=0, timeout=1)
def hang(seconds: float = 3600, path: str | None = None) -> None:
    """Sleep past any timeout; write to path afterwards if it was not stopped."""
    time.sleep(seconds)
    if path:
        Path(path).write_text("still running")


@task(name="async_hang", max_retries=0, timeout=1)
async def async_hang(seconds: float = 3600, path: str | None = None) -> None:
    await asyncio.sleep(seconds)
    if path:
        Path(path).write_text("still running")


@task(name="crash", max_retries=1)
def crash() -> None:
    """Kill the process running the task, as a segfault or OOM kill would."""
    os._exit(137)


@task(name="not_json", max_retries=0)
def not_json(kind: str = "set") -> Any:
    if kind == "nan":
        return {"value": math.nan}
    return {1, 2, 3}


@task(name="kill_worker", max_retries=1)
def kill_worker() -> None:
    """Kill the worker running this task, as an OOM kill of the whole worker would."""
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(60)

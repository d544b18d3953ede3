"""The task bench/chaos.py runs: it records each run, so runs can be counted."""

import os

from taskbox import task


@task(name="chaos_record", max_retries=10, backoff_base=0.1, backoff_cap=2)
def chaos_record(path: str, token: str) -> dict[str, str]:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)
    return {"token": token}

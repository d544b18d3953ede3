"""What running an attempt in the worker's child process costs, per task.

    .venv/bin/python bench/runner_cost.py

Times the pipe round trip to the long-lived child (send name and payload, run, send
the result back) against calling the same function in-process, and the cost of
replacing the child after a timeout.
"""

import statistics
import time

from taskbox.registry import load_registry
from taskbox.worker import Runner

RUNS = 2000
RESTARTS = 5


def per_call_us(fn: object, runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - started) / runs * 1e6


def main() -> None:
    echo = load_registry([]).get("echo").fn
    payload = {"msg": "hi", "n": 1}
    runner = Runner([])
    try:
        in_process = [per_call_us(lambda: echo(**payload), RUNS) for _ in range(5)]
        in_child = [
            per_call_us(lambda: runner.run("echo", payload, 30.0, lambda: False), RUNS)
            for _ in range(5)
        ]
        restarts = []
        for _ in range(RESTARTS):
            started = time.perf_counter()
            runner.restart()
            restarts.append(time.perf_counter() - started)
    finally:
        runner.stop()

    print(f"in-process call:        median {statistics.median(in_process):8.1f} us")
    print(f"child round trip:       median {statistics.median(in_child):8.1f} us")
    print(
        "child cost per task:    "
        f"{statistics.median(in_child) - statistics.median(in_process):8.1f} us"
    )
    print(
        f"child replacement:      median {statistics.median(restarts) * 1000:8.1f} ms"
    )


if __name__ == "__main__":
    main()

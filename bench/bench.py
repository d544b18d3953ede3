"""taskbox's benchmark: submit, drain, pickup and delayed lateness, and memory.

It starts its own appliance in a temporary directory for every run (the bundled Redis
on a unix socket, `taskbox api`, `taskbox scheduler` and W `taskbox worker`s as
processes, SQLite unless --database-url says otherwise), drives it over HTTP as a
user does, and reads the store's own timestamps (created_at, run_at, started_at,
finished_at) for the timings that happen inside the appliance. It prints a table and
writes the figures as JSON.

    .venv/bin/python bench/bench.py            # the full run (a few minutes)
    .venv/bin/python bench/bench.py --quick    # about a minute
    .venv/bin/python bench/bench.py --memory 1000000   # RSS over a million tasks

It is a benchmark, not a test: it asserts nothing about speed.
"""

import argparse
import json
import os
import platform
import queue
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from sqlalchemy import create_engine, func, make_url, select, text

from taskbox.models import Task
from taskbox.store import Store, open_store

TASKBOX = str(Path(sys.executable).parent / "taskbox")
NOOP = {"name": "echo", "payload": {}}
BATCH_SIZE = 1000
FINAL = ("SUCCESS", "FAILED", "CANCELLED")
RSS_SAMPLE_INTERVAL_S = 0.25
tasks = Task.__table__  # type: ignore[attr-defined]


@dataclass
class Sizes:
    submit: int = 3000
    batch: int = 20_000
    clients: int = 8
    pickup: int = 500
    delayed: int = 1000
    delayed_span_s: float = 5.0


QUICK = Sizes(submit=1000, batch=5000, pickup=200, delayed=500, delayed_span_s=5.0)


# -- the appliance -------------------------------------------------------------------


class Appliance:
    """Redis, the API, the scheduler and W workers as processes in a temp dir."""

    def __init__(self, root: Path, database_url: str | None, log_level: str) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_socket = root / "data" / "redis.sock"
        self.database_url = database_url or f"sqlite:///{root / 'data' / 'taskbox.db'}"
        self.env = {
            **os.environ,
            "TASKBOX_DATA_DIR": str(root / "data"),
            "TASKBOX_DATABASE_URL": self.database_url,
            "TASKBOX_REDIS_URL": f"unix://{self.redis_socket}",
            "TASKBOX_PORT": str(self.port),
            "TASKBOX_HOST": "127.0.0.1",
            "TASKBOX_LOG_LEVEL": log_level,
            "TASKBOX_RETENTION_DAYS": "0",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.store: Store | None = None

    def start(self, workers: int = 0) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self._start("redis", "redis")
        self._wait_for_redis()
        self._start("api", "api")
        self._wait_for_api()
        self._start("scheduler", "scheduler")
        self.store = open_store(self.database_url)
        self.start_workers(workers)

    def start_workers(self, count: int) -> None:
        first = sum(1 for name in self.processes if name.startswith("worker"))
        for n in range(first, first + count):
            self._start("worker", f"worker-{n}")
        if count:
            self._wait_for_workers(first + count)

    def _start(self, component: str, name: str) -> None:
        log = open(self.root / f"{name}.log", "ab")  # the child keeps its own copy
        self.processes[name] = subprocess.Popen(
            [TASKBOX, component],
            env=self.env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def _wait_for_redis(self) -> None:
        client = redis.Redis(unix_socket_path=str(self.redis_socket))
        _wait_until(lambda: _answers(client.ping), "Redis did not start", self)
        client.close()

    def _wait_for_api(self) -> None:
        def ready() -> bool:
            return _answers(lambda: httpx.get(f"{self.url}/readyz").status_code == 200)

        _wait_until(ready, "the API did not become ready", self)

    def _wait_for_workers(self, count: int) -> None:
        def live() -> bool:
            return len(httpx.get(f"{self.url}/workers").json()) >= count

        _wait_until(live, f"{count} workers did not start", self)

    def pids(self) -> dict[str, int]:
        """Process ids by name: each component, and a worker's children (the process
        that runs tasks, and the resource tracker multiprocessing starts)."""
        out: dict[str, int] = {}
        for name, process in list(self.processes.items()):
            out[name] = process.pid
            try:
                children = psutil.Process(process.pid).children(True)
                for child in children:
                    kind = "tracker" if _is_tracker(child) else "runner"
                    out[f"{name}/{kind}"] = child.pid
            except psutil.NoSuchProcess:
                pass
        return out

    def stop(self) -> None:
        if self.store is not None:
            self.store.close()
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.root.glob("*.log"))
        )


@contextmanager
def running(
    database_url: str | None, log_level: str, workers: int = 0
) -> Iterator[Appliance]:
    root = Path(tempfile.mkdtemp(prefix="taskbox-bench-"))
    with fresh_database(database_url) as url:
        appliance = Appliance(root, url, log_level)
        try:
            appliance.start(workers)
            yield appliance
        finally:
            appliance.stop()
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(database_url: str | None) -> Iterator[str | None]:
    """For a server URL, an empty database of the run's own on that server; for
    SQLite (or none), None: a new file in the run's temp dir, never the user's."""
    if database_url is None or database_url.startswith("sqlite"):
        yield None
        return
    url = make_url(database_url)
    name = f"taskbox_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class RssSampler:
    """Samples every process's resident memory; keeps first, last and peak per process."""

    def __init__(self, appliance: Appliance) -> None:
        self.appliance = appliance
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        for label, pid in self.appliance.pids().items():
            try:
                rss = psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                continue
            self.first.setdefault(label, rss)
            self.last[label] = rss
            self.peak[label] = max(self.peak.get(label, 0), rss)

    def _loop(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_INTERVAL_S):
            self.sample()


def _is_tracker(process: psutil.Process) -> bool:
    try:
        return any("resource_tracker" in part for part in process.cmdline())
    except psutil.Error:
        return False


# -- the measurements ------------------------------------------------------------------


def submit_one_by_one(url: str, count: int, clients: int) -> float:
    """POST /tasks once per task from several clients at once; tasks per second."""
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(count):
        todo.put(i)
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while True:
                try:
                    todo.get_nowait()
                except queue.Empty:
                    return
                response = http.post("/tasks", json=NOOP)
                if response.status_code != 201:
                    errors.append(response.text)
                    return

    return _timed_threads(client, clients, count, errors)


def submit_batches(url: str, count: int, clients: int) -> float:
    """POST /tasks/batch with 1000 tasks each from a few clients; tasks per second."""
    batches: queue.SimpleQueue[int] = queue.SimpleQueue()
    for start in range(0, count, BATCH_SIZE):
        batches.put(min(BATCH_SIZE, count - start))
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while True:
                try:
                    size = batches.get_nowait()
                except queue.Empty:
                    return
                response = http.post("/tasks/batch", json={"tasks": [NOOP] * size})
                if response.status_code != 201:
                    errors.append(response.text)
                    return

    return _timed_threads(client, clients, count, errors)


def _timed_threads(
    target: Callable[[], None], threads: int, count: int, errors: list[str]
) -> float:
    started = time.perf_counter()
    pool = [threading.Thread(target=target) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"submissions failed: {errors[0]}")
    return count / elapsed


def drain(appliance: Appliance, workers: int, expected: int) -> dict[str, Any]:
    """Start the workers on a full queue; tasks per second from first start to last
    finish, and the CPU time each component spent per task (steadier than the rate
    on a busy machine)."""
    appliance.start_workers(workers)
    cpu_before, done_before = cpu_seconds(appliance), count_finished(appliance)
    wait_finished(appliance, expected, timeout_s=max(120.0, expected / 200))
    cpu_after, done_after = cpu_seconds(appliance), count_finished(appliance)
    first, last = _span(appliance, "started_at", "finished_at")
    tasks_measured = max(1, done_after - done_before)
    return {
        "drain_per_s": expected / (last - first).total_seconds(),
        "drain_cpu_ms_per_task": {
            name: (cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / tasks_measured
            for name in sorted(cpu_after)
        },
    }


def cpu_seconds(appliance: Appliance) -> dict[str, float]:
    """User plus system CPU time of each component, a worker's child included."""
    out: dict[str, float] = {}
    for name, pid in appliance.pids().items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        kind = name.split("-")[0]
        out[kind] = out.get(kind, 0.0) + times.user + times.system
    return out


def count_finished(appliance: Appliance) -> int:
    assert appliance.store is not None
    with appliance.store.engine.connect() as conn:
        done: int = conn.execute(
            select(func.count()).where(tasks.c.status.in_(FINAL))
        ).scalar_one()
    return done


def pickup(appliance: Appliance, count: int) -> tuple[list[float], list[float]]:
    """Submit tasks one at a time to idle workers.

    Returns start - created and finished - created (submit to SUCCESS), in ms.
    """
    ids = []
    with httpx.Client(base_url=appliance.url, timeout=30) as http:
        for _ in range(count):
            ids.append(http.post("/tasks", json=NOOP).json()["id"])
            wait_ids_finished(appliance, [ids[-1]])
            time.sleep(0.01)  # let the worker go back to waiting
    started = _delays_ms(appliance, ids, "created_at")
    finished = _delays_ms(appliance, ids, "created_at", end="finished_at")
    return started, finished


def delayed(appliance: Appliance, count: int, span_s: float) -> list[float]:
    """Tasks with run_at spread over span_s seconds; start - run_at, in ms."""
    begin = datetime.now(UTC) + timedelta(seconds=1)
    run_ats = [begin + timedelta(seconds=span_s * i / count) for i in range(count)]
    ids: list[str] = []
    with httpx.Client(base_url=appliance.url, timeout=60) as http:
        for start in range(0, count, BATCH_SIZE):
            body = {
                "tasks": [
                    {**NOOP, "run_at": at.isoformat()}
                    for at in run_ats[start : start + BATCH_SIZE]
                ]
            }
            response = http.post("/tasks/batch", json=body)
            response.raise_for_status()
            ids += [item["id"] for item in response.json()["items"]]
    wait_ids_finished(appliance, ids, timeout_s=span_s + 60)
    return _delays_ms(appliance, ids, "run_at")


def wait_finished(appliance: Appliance, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        done = count_finished(appliance)
        if done >= expected:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{done} of {expected} tasks finished\n{appliance.logs()}"
            )
        time.sleep(0.1)


def wait_ids_finished(
    appliance: Appliance, ids: list[str], timeout_s: float = 30
) -> None:
    assert appliance.store is not None
    deadline = time.monotonic() + timeout_s
    while True:
        with appliance.store.engine.connect() as conn:
            done = conn.execute(
                select(func.count()).where(
                    tasks.c.id.in_(ids), tasks.c.status.in_(FINAL)
                )
            ).scalar_one()
        if done >= len(ids):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{done} of {len(ids)} finished\n{appliance.logs()}")
        time.sleep(0.001 if len(ids) == 1 else 0.1)


def _span(appliance: Appliance, start: str, end: str) -> tuple[datetime, datetime]:
    assert appliance.store is not None
    with appliance.store.engine.connect() as conn:
        row = conn.execute(
            select(func.min(tasks.c[start]), func.max(tasks.c[end]))
        ).one()
    return row[0], row[1]


def _delays_ms(
    appliance: Appliance, ids: list[str], since: str, end: str = "started_at"
) -> list[float]:
    assert appliance.store is not None
    out: list[float] = []
    with appliance.store.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                select(tasks.c[end], tasks.c[since]).where(
                    tasks.c.id.in_(ids[start : start + 500])
                )
            )
            out += [(a - b).total_seconds() * 1000 for a, b in rows]
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


# -- one run, several runs -----------------------------------------------------------


def one_run(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with running(args.database_url, args.log_level) as appliance:
        with RssSampler(appliance) as rss:
            rss.sample()
            api_cpu_s = cpu_seconds(appliance)["api"]
            figures["submit_per_s"] = submit_one_by_one(
                appliance.url, sizes.submit, sizes.clients
            )
            api_cpu_s, spent_s = cpu_seconds(appliance)["api"], api_cpu_s
            figures["submit_api_cpu_ms_per_task"] = (
                (api_cpu_s - spent_s) * 1000 / sizes.submit
            )
            figures["batch_submit_per_s"] = submit_batches(
                appliance.url, sizes.batch, min(2, sizes.clients)
            )
            figures["batch_api_cpu_ms_per_task"] = (
                (cpu_seconds(appliance)["api"] - api_cpu_s) * 1000 / sizes.batch
            )
            queued = sizes.submit + sizes.batch
            figures["drain_tasks"] = queued
            figures.update(drain(appliance, args.workers, queued))

            pickups, to_success = pickup(appliance, sizes.pickup)
            figures["pickup_p50_ms"] = percentile(pickups, 50)
            figures["pickup_p99_ms"] = percentile(pickups, 99)
            figures["submit_to_success_p50_ms"] = percentile(to_success, 50)

            lateness = delayed(appliance, sizes.delayed, sizes.delayed_span_s)
            figures["delayed_p50_ms"] = percentile(lateness, 50)
            figures["delayed_p99_ms"] = percentile(lateness, 99)
            figures["delayed_max_ms"] = max(lateness)
            rss.sample()
        figures["peak_rss_mb"] = {k: v / 2**20 for k, v in sorted(rss.peak.items())}
    return figures


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of every figure across runs."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        if isinstance(first, dict):
            out[key] = {
                name: _spread([run[key].get(name, 0.0) for run in runs])
                for name in first
            }
        else:
            out[key] = _spread([run[key] for run in runs])
    return out


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


ROWS = [
    ("submit_per_s", "HTTP submit, 1 task/request", "tasks/s", 0),
    ("batch_submit_per_s", "HTTP submit, batches of 1000", "tasks/s", 0),
    ("submit_api_cpu_ms_per_task", "API CPU per task, 1 task/request", "ms", 3),
    ("batch_api_cpu_ms_per_task", "API CPU per task, batches", "ms", 3),
    ("drain_per_s", "drain queued no-op tasks", "tasks/s", 0),
    ("pickup_p50_ms", "pickup latency p50", "ms", 2),
    ("pickup_p99_ms", "pickup latency p99", "ms", 2),
    ("submit_to_success_p50_ms", "submit to SUCCESS p50, idle workers", "ms", 2),
    ("delayed_p50_ms", "delayed lateness p50", "ms", 2),
    ("delayed_p99_ms", "delayed lateness p99", "ms", 2),
    ("delayed_max_ms", "delayed lateness, worst", "ms", 2),
]


def table(summary: dict[str, Any], runs: int) -> str:
    lines = [
        f"| measure | median of {runs} | min to max | unit |",
        "|---|---:|---:|---|",
    ]
    for key, label, unit, digits in ROWS:
        s = summary[key]
        if key == "drain_per_s":
            label = f"{label} ({int(summary['drain_tasks']['median']):,})"
        lines.append(
            f"| {label} | {s['median']:,.{digits}f} | "
            f"{s['min']:,.{digits}f} to {s['max']:,.{digits}f} | {unit} |"
        )
    for name, s in summary["drain_cpu_ms_per_task"].items():
        lines.append(
            f"| drain CPU per task, {name} | {s['median']:.3f} | "
            f"{s['min']:.3f} to {s['max']:.3f} | ms |"
        )
    for name, s in summary["peak_rss_mb"].items():
        lines.append(
            f"| peak RSS {name} | {s['median']:.0f} | "
            f"{s['min']:.0f} to {s['max']:.0f} | MiB |"
        )
    return "\n".join(lines)


# -- memory over many tasks ----------------------------------------------------------


def memory_run(args: argparse.Namespace) -> dict[str, Any]:
    """Push `args.memory` tasks through with workers running; RSS at start and end."""
    total = args.memory
    with running(args.database_url, args.log_level, args.workers) as appliance:
        with RssSampler(appliance) as rss:
            started = time.perf_counter()
            with httpx.Client(base_url=appliance.url, timeout=60) as http:
                # The first batch warms every process up (imports, caches, the
                # workers' children); "start" is measured once it is done.
                http.post("/tasks/batch", json={"tasks": [NOOP] * BATCH_SIZE})
                wait_finished(appliance, BATCH_SIZE, timeout_s=120)
                rss.first.clear()
                rss.sample()
                sent = BATCH_SIZE
                while sent < total:
                    _keep_queue_below(appliance, 20_000)
                    size = min(BATCH_SIZE, total - sent)
                    body = {"tasks": [NOOP] * size}
                    http.post("/tasks/batch", json=body).raise_for_status()
                    sent += size
            wait_finished(appliance, total, timeout_s=total / 100)
            elapsed = time.perf_counter() - started
            rss.sample()
        return {
            "tasks": total,
            "elapsed_s": elapsed,
            "rss_start": f"after the first {BATCH_SIZE} tasks",
            "rss_start_mb": {k: v / 2**20 for k, v in sorted(rss.first.items())},
            "rss_end_mb": {k: v / 2**20 for k, v in sorted(rss.last.items())},
            "rss_peak_mb": {k: v / 2**20 for k, v in sorted(rss.peak.items())},
        }


def _keep_queue_below(appliance: Appliance, limit: int) -> None:
    """Wait while the queue is deeper than limit, so Redis holds a steady backlog."""
    client = redis.Redis(unix_socket_path=str(appliance.redis_socket))
    try:
        while True:
            levels = client.zrange("taskbox:ready:levels", 0, -1)
            depth = sum(
                int(client.llen(f"taskbox:ready:{level.decode()}")) for level in levels
            )
            if depth < limit:
                return
            time.sleep(0.1)
    finally:
        client.close()


# -- the machine -----------------------------------------------------------------------


def machine(database_url: str | None) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    store = "sqlite"
    if database_url:
        store = database_url.split("://", 1)[0]
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": os.getloadavg(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "redis": redis_version,
        "store": store,
        "sqlite_synchronous": os.environ.get("TASKBOX_SQLITE_SYNCHRONOUS", "NORMAL"),
    }


def _server_version(database_url: str) -> str:
    engine = open_store(database_url).engine
    with engine.connect() as conn:
        version = str(conn.execute(text("select version()")).scalar())
    engine.dispose()
    return version


# -- helpers ------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(call: Callable[[], Any]) -> bool:
    try:
        return bool(call())
    except (redis.RedisError, httpx.HTTPError, OSError):
        return False


def _wait_until(
    check: Callable[[], bool], message: str, appliance: Appliance, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{message}\n{appliance.logs()}")
        time.sleep(0.05)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians reported")
    parser.add_argument("--quick", action="store_true", help="small sizes, ~1 minute")
    parser.add_argument("--submit", type=int, help="tasks sent one per request")
    parser.add_argument("--batch", type=int, help="tasks sent in batches of 1000")
    parser.add_argument("--clients", type=int, help="concurrent HTTP clients")
    parser.add_argument("--pickup", type=int, help="tasks for the pickup latency")
    parser.add_argument("--delayed", type=int, help="delayed tasks for the lateness")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TASKBOX_DATABASE_URL"),
        help="store to use (default: a SQLite file in the temp dir); on a "
        "PostgreSQL server each run makes and drops a database of its own",
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=0,
        help="instead of the table: run this many tasks and report RSS at start and end",
    )
    parser.add_argument("--log-level", default="INFO", help="of every component")
    parser.add_argument(
        "--json", default="bench-results.json", help="where to write the figures"
    )
    return parser.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> Sizes:
    sizes = Sizes(**vars(QUICK)) if args.quick else Sizes()
    for name in ("submit", "batch", "clients", "pickup", "delayed"):
        value = getattr(args, name)
        if value is not None:
            setattr(sizes, name, value)
    return sizes


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the appliance of the run is stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    info = machine(args.database_url)
    if args.database_url and not args.database_url.startswith("sqlite"):
        info["server"] = _server_version(args.database_url)
    print(f"machine: {json.dumps(info)}", flush=True)

    if args.memory:
        result = {"machine": info, "workers": args.workers, **memory_run(args)}
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return

    sizes = sizes_of(args)
    runs = []
    for n in range(args.runs):
        figures = one_run(args, sizes)
        print(f"run {n + 1}: {json.dumps(_rounded(figures))}", flush=True)
        runs.append(figures)

    summary = summarise(runs)
    result = {
        "machine": info,
        "workers": args.workers,
        "sizes": vars(sizes),
        "summary": summary,
        "runs": runs,
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    print()
    print(table(summary, len(runs)))
    print(f"\nfigures written to {args.json}")


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _rounded(v) if isinstance(v, dict) else round(v, 2)
        for k, v in figures.items()
    }


if __name__ == "__main__":
    main()

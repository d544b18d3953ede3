"""Drain rate of two schedulers and four workers on two "hosts", per store.

    .venv/bin/python bench/multihost.py [--tasks 5000] [--runs 3] [--store sqlite|postgresql]

Each run starts a throwaway redis-server, a fresh store (a SQLite file, or a new
database on TASKBOX_TEST_POSTGRES, default the local server), two hosts (each a
scheduler and two workers, with its own data dir; the first also runs the API), submits
the tasks in batches (about a third delayed by up to 3 s), and times submit-to-drained.
It prints each run and the median, and checks that every task ran exactly once.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskbox.migrate import migrate
from tests.conftest import PG_SERVER, RedisServer
from tests.multihost import Drain, drain, make_hosts, start_hosts, stop_hosts


def new_store(kind: str, folder: Path) -> tuple[str, str | None]:
    """A migrated, empty store; returns its URL and the PostgreSQL database to drop."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'taskbox.db'}"
        name = None
    else:
        name = f"taskbox_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = f"{PG_SERVER}/{name}"
    engine = create_engine(url)
    migrate(engine)
    engine.dispose()
    return url, name


def drop_store(name: str | None) -> None:
    if name is None:
        return
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_once(kind: str, tasks: int) -> Drain:
    with tempfile.TemporaryDirectory(prefix="taskbox-bench-") as tmp:
        folder = Path(tmp)
        redis_server = RedisServer(folder / "redis")
        redis_server.start()
        url, database = new_store(kind, folder)
        # The default lease (30 s), not the suite's 3 s: on a loaded machine a 3 s
        # lease is taken back from busy workers, which measures the overload.
        hosts = make_hosts(
            folder, redis_server.url, url, "bench:", TASKBOX_LEASE_SECONDS="30"
        )
        try:
            start_hosts(hosts, workers=4)
            result = drain(hosts[0], tasks, folder / "runs.txt")
        finally:
            stop_hosts(hosts)
            redis_server.kill()
            drop_store(database)
        if len(result.runs) != tasks or set(result.runs.values()) != {1}:
            kept = Path(tempfile.mkdtemp(prefix="taskbox-bench-failed-"))
            shutil.copytree(folder, kept, dirs_exist_ok=True)
            print(f"counts {result.counts}; run kept in {kept}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--store", choices=["sqlite", "postgresql"], action="append", default=[]
    )
    args = parser.parse_args()

    for kind in args.store or ["sqlite", "postgresql"]:
        rates = []
        for run in range(1, args.runs + 1):
            result = run_once(kind, args.tasks)
            twice = sum(1 for n in result.runs.values() if n > 1)
            lost = args.tasks - len(result.runs)
            rates.append(result.rate)
            print(
                f"{kind} run {run}: {args.tasks} tasks in {result.seconds:.1f} s = "
                f"{result.rate:.0f} tasks/s; lost {lost}, run twice {twice}",
                flush=True,
            )
        print(f"{kind} median: {statistics.median(rates):.0f} tasks/s", flush=True)


if __name__ == "__main__":
    main()

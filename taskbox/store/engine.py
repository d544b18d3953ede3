"""Connections to the store: SQLite in WAL mode or PostgreSQL, pooled per process kind."""

import logging
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# Pool sizes per process kind: the API serves requests from a thread pool, while the
# scheduler and each worker run one loop (plus the worker's lease-renewal thread).
POOL_SIZES = {"api": 10, "scheduler": 3, "worker": 3, "cli": 2}

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5

# One write lock per SQLite engine: threads of one process queue on it and are woken
# the moment it is free, instead of meeting SQLite's busy handler, which backs off
# in sleeps of up to 100 ms. Other processes still meet the busy handler.
_sqlite_write_locks: "weakref.WeakKeyDictionary[Engine, threading.RLock]" = (
    weakref.WeakKeyDictionary()
)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_store_engine(
    url: str, kind: str = "cli", synchronous: str = "NORMAL"
) -> Engine:
    """Open the store's engine with the settings each backend needs."""
    if is_sqlite(url):
        return _sqlite_engine(url, synchronous)

    size = POOL_SIZES.get(kind, 2)
    return create_engine(
        url,
        pool_size=size,
        max_overflow=size,
        pool_pre_ping=True,
        pool_recycle=1800,
        # Error messages then leave out statement parameters: payloads and results
        # would otherwise reach the logs whenever a statement fails.
        hide_parameters=True,
        # A store on another host that stops answering must fail a connect
        # quickly, so the loop backs off and /readyz says 503, instead of hanging.
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )


def _sqlite_engine(url: str, synchronous: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    engine = create_engine(
        url,
        connect_args={
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            "check_same_thread": False,
        },
        pool_size=5,
        max_overflow=10,
        hide_parameters=True,  # as above: no payloads in error messages
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself, so writes can
        # take the write lock up front instead of upgrading a read lock later,
        # which is what turns contention into "database is locked" errors.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # NORMAL in WAL mode keeps every commit through a crash of any process;
        # only a power loss or OS crash can drop the last commits. FULL closes
        # that too at the cost of an fsync per commit (TASKBOX_SQLITE_SYNCHRONOUS).
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("write"):
            _begin_immediate(conn.connection.dbapi_connection)
        else:
            conn.exec_driver_sql("BEGIN DEFERRED")

    _sqlite_write_locks[engine] = threading.RLock()
    return engine


def _begin_immediate(dbapi_connection: Any) -> None:
    """Take SQLite's write lock, polling every fraction of a millisecond while another
    process holds it.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15… ms between tries, so under
    several writer processes a task waits tens of milliseconds for a lock that was
    free again within a millisecond. It is turned off for this one statement only.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay_s = 0.0001
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(delay_s * random.uniform(0.5, 1.5))
            delay_s = min(delay_s * 2, 0.002)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction; on SQLite it holds the write lock from its first statement."""
    lock = _sqlite_write_locks.get(engine)
    with lock if lock is not None else nullcontext(), engine.connect() as conn:
        conn = conn.execution_options(write=True)
        with conn.begin():
            yield conn


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction."""
    with engine.connect() as conn, conn.begin():
        yield conn

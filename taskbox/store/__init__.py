"""The store: the single source of truth, on SQLite or PostgreSQL."""

from sqlalchemy import Engine

from taskbox.store.engine import create_store_engine
from taskbox.store.schedules import ScheduleStore
from taskbox.store.tasks import TaskStore


class Store:
    """Tasks, attempts and schedules, over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tasks = TaskStore(engine)
        self.schedules = ScheduleStore(engine)

    def ping(self) -> None:
        """Raise unless the store answers a query."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str, kind: str = "cli", synchronous: str = "NORMAL") -> Store:
    return Store(create_store_engine(url, kind, synchronous))

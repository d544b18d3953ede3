"""Opening what every process needs: the store (migrated), Redis and the registry."""

from dataclasses import dataclass

from taskbox.migrate import migrate
from taskbox.queue import Queue, connect
from taskbox.registry import Registry, load_registry
from taskbox.settings import Settings
from taskbox.store import Store, open_store


@dataclass
class Services:
    """Everything one process holds open, built once at its start."""

    settings: Settings
    store: Store
    queue: Queue
    registry: Registry

    def close(self) -> None:
        self.store.close()
        self.queue.client.close()


def open_services(settings: Settings, kind: str) -> Services:
    """Open the store (bringing its schema up to date), Redis and the task registry."""
    store = open_store(settings.store_url, kind, settings.sqlite_synchronous)
    migrate(store.engine)
    queue = Queue(connect(settings.effective_redis_url), settings.redis_prefix)
    registry = load_registry(settings.task_module_names)
    return Services(settings, store, queue, registry)

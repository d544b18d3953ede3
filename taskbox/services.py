"""Opening what every process needs: the store (migrated), Redis and the registry."""

import logging
import time
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from taskbox.migrate import migrate
from taskbox.outage import Outage
from taskbox.queue import Queue, connect
from taskbox.registry import Registry, load_registry
from taskbox.settings import Settings
from taskbox.store import Store, open_store
from taskbox.store.engine import is_sqlite

log = logging.getLogger(__name__)


API_REDIS_TIMEOUT_S = 2.0


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
    migrate_when_reachable(store, kind)
    # The API never blocks on Redis, so it can give up sooner: /readyz must answer
    # 503 within a load balancer's probe timeout when Redis hangs.
    timeout_s = API_REDIS_TIMEOUT_S if kind == "api" else 10.0
    queue = Queue(
        connect(settings.effective_redis_url, timeout_s), settings.redis_prefix
    )
    registry = load_registry(settings.task_module_names)
    return Services(settings, store, queue, registry)


def prepare_store(settings: Settings, kind: str) -> None:
    """Wait for the store and migrate it, before a component starts serving.

    Raises StoreTooNew when the store was migrated by a newer taskbox.
    """
    store = open_store(settings.store_url, kind, settings.sqlite_synchronous)
    try:
        migrate_when_reachable(store, kind)
    finally:
        store.close()


def migrate_when_reachable(store: Store, kind: str) -> None:
    """Migrate the store, waiting with back-off while it cannot be reached.

    A component on another host may start before the store does (or during a
    restart of it); it waits instead of crashing, and says so once.
    """
    outage = Outage(log, kind, {})
    while True:
        try:
            migrate(store.engine)
        except OperationalError as err:
            if is_sqlite(str(store.engine.url)):
                raise  # a local file that cannot be opened is a setting to fix
            time.sleep(outage.hit(err))
            continue
        outage.over()
        return

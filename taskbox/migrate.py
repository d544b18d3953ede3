"""Schema migrations (Alembic): apply them, or check the store matches this code."""

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from taskbox.errors import StoreTooNew
from taskbox.store.engine import is_sqlite

log = logging.getLogger(__name__)

# Any fixed number works; it only has to be the same in every taskbox process.
PG_MIGRATION_LOCK = 0x7461736B626F78


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", "taskbox:migrations")
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("taskbox ships no migrations; the package is incomplete")
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> str:
    """Bring the store's schema up to this code's; safe when processes race to it.

    Raises StoreTooNew when the store was migrated by a newer taskbox.
    """
    with _migration_lock(engine), engine.connect() as conn:
        current = current_revision(conn)
        _refuse_unknown(current)
        head = head_revision()
        if current != head:
            log.info(
                "migrating store from %s to %s",
                current or "empty",
                head,
                extra={"event": "store_migrated"},
            )
            config = _config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()
    return head


def check(engine: Engine) -> None:
    """Raise unless the store's schema is exactly this code's."""
    with engine.connect() as conn:
        current = current_revision(conn)
    _refuse_unknown(current)
    if current != head_revision():
        raise StoreTooNew(
            f"the store is at schema {current or 'empty'} but this taskbox needs "
            f"{head_revision()}; run 'taskbox migrate'"
        )


def _refuse_unknown(current: str | None) -> None:
    if current is None:
        return
    known = {
        script.revision
        for script in ScriptDirectory.from_config(_config()).walk_revisions()
    }
    if current not in known:
        raise StoreTooNew(
            f"the store is at schema {current}, which this taskbox does not know: it "
            "was migrated by a newer version; upgrade taskbox on this host"
        )


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Let one process migrate at a time; the others wait, then find nothing to do."""
    if is_sqlite(str(engine.url)):
        database = make_url(str(engine.url)).database or "taskbox.db"
        lock_path = Path(f"{database}.migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return

    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": PG_MIGRATION_LOCK}
            )
            conn.commit()

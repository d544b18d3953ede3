"""Schema migrations on SQLite and PostgreSQL: `taskbox migrate`, racing starts, and a
store that is newer than the code."""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from taskbox.migrate import head_revision
from tests.conftest import REPO, TASKBOX, clone_pg


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store with no schema at all: a new SQLite path, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'taskbox.db'}"
        return

    url, drop = clone_pg()
    yield url
    drop()


def taskbox(store_url: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TASKBOX, *args],
        env={
            **os.environ,
            "TASKBOX_DATABASE_URL": store_url,
            "TASKBOX_DATA_DIR": str(tmp_path / "data"),
            # Nothing listens here: a component that got past the schema check
            # would go on to wait for Redis instead of exiting.
            "TASKBOX_REDIS_URL": "redis://127.0.0.1:1/0",
            "PYTHONPATH": str(REPO),
        },
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def schema_of(store_url: str) -> tuple[str | None, set[str]]:
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            version = None
            if "alembic_version" in tables:
                version = conn.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar()
    finally:
        engine.dispose()
    return version, tables


def test_migrate_brings_an_empty_store_to_the_head(
    empty_store_url: str, tmp_path: Path
) -> None:
    process = taskbox(empty_store_url, tmp_path, "migrate")
    out, err = process.communicate(timeout=60)

    assert process.returncode == 0, err
    assert f"store is at schema {head_revision()}" in out
    version, tables = schema_of(empty_store_url)
    assert version == head_revision()
    assert {"task", "attempt", "schedule"} <= tables


def test_migrate_again_changes_nothing(empty_store_url: str, tmp_path: Path) -> None:
    first = taskbox(empty_store_url, tmp_path, "migrate")
    first.communicate(timeout=60)
    second = taskbox(empty_store_url, tmp_path, "migrate")
    _, err = second.communicate(timeout=60)

    assert second.returncode == 0, err
    assert "migrating store" not in err
    assert schema_of(empty_store_url)[0] == head_revision()


def test_processes_starting_at_once_migrate_the_store_once(
    empty_store_url: str, tmp_path: Path
) -> None:
    processes = [taskbox(empty_store_url, tmp_path, "migrate") for _ in range(4)]
    results = [(p.wait(timeout=90), p.communicate()) for p in processes]

    assert [code for code, _ in results] == [0, 0, 0, 0], results
    migrated = [err for _, (_, err) in results if "migrating store" in err]
    assert len(migrated) == 1
    assert schema_of(empty_store_url)[0] == head_revision()


def test_component_refuses_a_store_newer_than_the_code(
    empty_store_url: str, tmp_path: Path
) -> None:
    taskbox(empty_store_url, tmp_path, "migrate").communicate(timeout=60)
    engine = create_engine(empty_store_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()

    commands = ("scheduler", "worker", "api", "migrate")
    processes = [taskbox(empty_store_url, tmp_path, c) for c in commands]

    for command, process in zip(commands, processes, strict=True):
        _, err = process.communicate(timeout=60)
        assert process.returncode != 0, command
        assert "9999_future" in err, err
        assert "newer version" in err and "upgrade taskbox" in err
        assert "Traceback" not in err
    assert schema_of(empty_store_url)[0] == "9999_future"

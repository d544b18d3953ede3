"""A PostgreSQL the suite cannot reach fails the PostgreSQL tests in CI (CI=true)
instead of skipping them silently."""

import os
import subprocess
import sys

from tests.conftest import REPO, free_port

ONE_STORE_TEST = "tests/integration/test_store.py::test_missing_task_is_not_found"


def run_suite_without_postgres(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TASKBOX_TEST_POSTGRES": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}",
        "CI": "true" if ci else "false",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", ONE_STORE_TEST, "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unreachable_postgres_fails_the_postgres_tests_in_ci() -> None:
    result = run_suite_without_postgres(ci=True)

    assert "1 passed" in result.stdout  # the SQLite half still runs
    assert result.returncode != 0
    assert "1 error" in result.stdout
    assert "is not reachable" in result.stdout
    assert "CI must provide it" in result.stdout

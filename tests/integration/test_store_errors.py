"""Store errors end up in log lines, so they must not carry statement parameters."""

import pytest
from sqlalchemy.exc import IntegrityError

from taskbox.models import utcnow
from taskbox.store import Store
from taskbox.store.tasks import NewTask, new_task_row, tasks


def test_store_error_message_leaves_out_the_payload(store: Store) -> None:
    now = utcnow()
    store.tasks.submit([NewTask("echo", {}, now, idempotency_key="k")], now)
    secret = NewTask("echo", {"password": "hunter2-secret"}, now, idempotency_key="k")

    with pytest.raises(IntegrityError) as caught, store.engine.begin() as conn:
        conn.execute(tasks.insert(), new_task_row(secret, now))

    assert "hunter2-secret" not in str(caught.value)

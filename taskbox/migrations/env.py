"""Alembic environment: runs on the connection that taskbox.migrate hands over."""

from alembic import context
from sqlmodel import SQLModel

import taskbox.models  # noqa: F401  # registers the tables on SQLModel.metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with 'taskbox migrate', which opens the store")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()

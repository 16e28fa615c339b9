"""Alembic's environment, configured from Python (broker/store/schema.py), never from alembic.ini.

The caller hands over an open connection (in a transaction) as `config.attributes["connection"]`,
so migrations run inside the caller's transaction and under its lock.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from broker.store import tables  # noqa: F401  (registers the tables with the metadata)

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("fedbroker's migrations run through `fedbroker db upgrade`, with a connection")


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Only fedbroker's tables: another application's in the same database is never a diff
    (so dropping a table of ours takes a hand-written `op.drop_table`)."""
    return type_ != "table" or name in SQLModel.metadata.tables


context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    include_name=include_name,
    # SQLite alters a table by copying it: autogenerate writes future migrations that way.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

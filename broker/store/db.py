"""Engine and session handling; the only place that knows SQLite from PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from broker.store import tables  # noqa: F401  (registers the tables with the metadata)


def default_db_url() -> str:
    """SQLite under $XDG_DATA_HOME/fedbroker (the embedded default)."""
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    path = base / "fedbroker" / "broker.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


# Columns added to tables after databases already existed: `create_all` makes missing tables only,
# so a broker opening an older database adds these (with their defaults) itself.
ADDED_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "workloads": [
        ("reason", "VARCHAR NOT NULL DEFAULT ''"),
        ("infra_requeues", "INTEGER NOT NULL DEFAULT 0"),
        ("doubt_requeues", "INTEGER NOT NULL DEFAULT 0"),
        ("retry_at", "FLOAT"),
        ("preemptions", "INTEGER NOT NULL DEFAULT 0"),
    ],
    "workload_events": [("reason", "VARCHAR NOT NULL DEFAULT ''")],
}


def add_missing_columns(engine: Engine) -> list[str]:
    """Add the ADDED_COLUMNS an older database lacks; returns `table.column` for each one added."""
    inspector = inspect(engine)
    added = []
    with engine.begin() as conn:
        for table, columns in ADDED_COLUMNS.items():
            have = {c["name"] for c in inspector.get_columns(table)}
            for name, ddl in columns:
                if name not in have:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))
                    added.append(f"{table}.{name}")
    return added


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (Watch, List) run while the scheduler writes; NORMAL
    # sync is durable across process crashes, which is what a restart needs.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Store:
    def __init__(self, url: str) -> None:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _tune_sqlite)
        SQLModel.metadata.create_all(self.engine)
        add_missing_columns(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session
            session.commit()

    def close(self) -> None:
        self.engine.dispose()

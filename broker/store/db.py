"""Engine and session handling; the only place that knows SQLite from PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import tenacity
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from broker.store import schema
from broker.store.urls import redact


def default_db_url() -> str:
    """SQLite under $XDG_DATA_HOME/fedbroker (the embedded default)."""
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    path = base / "fedbroker" / "broker.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


@tenacity.retry(
    retry=tenacity.retry_if_exception(
        lambda e: isinstance(e, sqlite3.OperationalError) and "locked" in str(e)
    ),
    wait=tenacity.wait_fixed(0.05),
    stop=tenacity.stop_after_delay(10),
    reraise=True,
)
def _switch_to_wal(cursor: Any) -> None:
    cursor.execute("PRAGMA journal_mode=WAL")


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (Watch, List) run while the scheduler writes; NORMAL
    # sync is durable across process crashes, which is what a restart needs.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    # Switching a new file to WAL needs a lock that another broker starting at the same moment
    # may hold; SQLite then answers "database is locked" at once, busy handler or not. Once
    # one connection has switched, the file stays WAL and the pragma takes no lock.
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _json_text(value: Any) -> str:
    """JSON columns' text: orjson, several times faster than json on the commit path (the
    decisions' explanations); json for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)


def open_engine(url: str) -> Engine:
    """An engine for a database URL: psycopg 3 for PostgreSQL, SQLite tuned for a broker."""
    server = url.startswith("postgresql")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # A server's connection can drop between uses, so it is pinged at checkout; a SQLite
    # file's cannot, and the ping would be one more statement on every commit.
    engine = create_engine(
        url, pool_pre_ping=server, json_serializer=_json_text, json_deserializer=orjson.loads
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _tune_sqlite)
    return engine


class Store:
    """The broker's database, its schema brought to this broker's revision (broker/store/schema.py).

    `auto_upgrade`: migrate an older database here; if false, an older one raises
    schema.SchemaError saying to run `fedbroker db upgrade` (an empty one is always created,
    a newer one always refused)."""

    def __init__(self, url: str, *, auto_upgrade: bool = True) -> None:
        self.engine: Engine = open_engine(url)
        try:
            self.schema = schema.prepare(self.engine, shown_url=redact(url), auto_upgrade=auto_upgrade)
        except BaseException:
            self.engine.dispose()
            raise

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session
            session.commit()

    def close(self) -> None:
        self.engine.dispose()

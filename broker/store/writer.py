"""The one writer: each scheduling cycle's rows committed in one transaction, on its own thread.

SQLAlchemy Core statements, executed many rows at a time (no ORM unit of work, no flush
per row: the engine assigns sequence numbers itself). The thread keeps database waits,
such as PostgreSQL's fsync at commit, off the event loop, so agent streams, Watch and the
health service keep flowing while a commit waits.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.engine import Connection

from broker.engine.tx import Rows
from broker.store.db import Store
from broker.store.tables import (
    DecisionRow,
    LedgerRow,
    SettingRow,
    SiteHeardRow,
    SiteRow,
    WorkloadEventRow,
    WorkloadRow,
)

_WORKLOADS = WorkloadRow.__table__  # type: ignore[attr-defined]
_EVENTS = WorkloadEventRow.__table__  # type: ignore[attr-defined]
_DECISIONS = DecisionRow.__table__  # type: ignore[attr-defined]
_LEDGER = LedgerRow.__table__  # type: ignore[attr-defined]
_SITES = SiteRow.__table__  # type: ignore[attr-defined]
_SETTINGS = SettingRow.__table__  # type: ignore[attr-defined]
_HEARD = SiteHeardRow.__table__  # type: ignore[attr-defined]

_UPDATE_WORKLOAD = (
    update(_WORKLOADS)
    .where(_WORKLOADS.c.id == bindparam("b_id"))
    .values(
        state=bindparam("state"),
        site=bindparam("site"),
        nodes=bindparam("nodes"),
        attempt=bindparam("attempt"),
        acked=bindparam("acked"),
        traceparent=bindparam("traceparent"),
        message=bindparam("message"),
        updated_at=bindparam("updated_at"),
        started_at=bindparam("started_at"),
        reason=bindparam("reason"),
        infra_requeues=bindparam("infra_requeues"),
        doubt_requeues=bindparam("doubt_requeues"),
        retry_at=bindparam("retry_at"),
        preemptions=bindparam("preemptions"),
    )
)


class StoreWriter:
    def __init__(self, store: Store, fence: Callable[[Connection], None] | None = None) -> None:
        self.store = store
        self.fence = fence  # raises inside the transaction if this broker may not write (the lease)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="fedbroker-db-writer")
        self.last_commit_s = 0.0  # how long the last commit took (statements + commit)
        self.commits = 0

    async def commit(self, rows: Rows) -> None:
        """Store `rows` in one transaction; raises whatever the database raised (nothing is stored then)."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._commit, rows)

    def _commit(self, rows: Rows) -> None:
        start = time.perf_counter()
        with self.store.engine.begin() as conn:
            write(conn, rows)
            if self.fence is not None:
                self.fence(conn)  # last, so the lease row is locked only while the commit completes
        self.last_commit_s = time.perf_counter() - start
        self.commits += 1

    def close(self) -> None:
        self._thread.shutdown(wait=True)


def write(conn: Connection, rows: Rows) -> None:
    if rows.inserted:
        _insert(conn, _WORKLOADS, rows.inserted)
    if rows.updated:
        _update_workloads(conn, rows.updated)
    if rows.events:
        _insert(conn, _EVENTS, [e.row() for e in rows.events])
    if rows.decisions:
        _insert(conn, _DECISIONS, rows.decisions)
    if rows.ledger:
        _insert(conn, _LEDGER, rows.ledger)
    if rows.sites:
        _replace(conn, _SITES, rows.sites)
    if rows.settings:
        _replace(conn, _SETTINGS, [{"name": k, "value": v} for k, v in rows.settings.items()])
    if rows.heard:
        _replace(conn, _HEARD, [{"name": k, "at": v} for k, v in rows.heard.items()])


# Rows per INSERT statement: within SQLite's 32,766 and PostgreSQL's 65,535 parameters for the
# widest table (the ledger's 21 columns).
INSERT_CHUNK = 256


def _insert(conn: Connection, table: Any, values: list[dict[str, Any]]) -> None:
    """Many rows as multi-row INSERTs, not one execution per row. SQLite's executemany steps
    each row apart and lets go of the GIL around each step; under load each step then waited
    for the event loop's thread to hand the GIL back (1,000 rows took 1.3 s beside a busy
    thread, against 76 ms as multi-row statements). The statement text is built here, not by
    SQLAlchemy, whose multi-row VALUES cost more to compile than the rows to store; the values
    go through each column type's own bind processor, as SQLAlchemy would send them."""
    for keys, group in itertools.groupby(values, key=_keys):
        _execute_chunks(conn, _insert_statement(conn.dialect, table, keys), list(group))


def _update_workloads(conn: Connection, values: list[dict[str, Any]]) -> None:
    """On SQLite, many rows' changes in one UPDATE ... FROM a VALUES list per chunk, for the
    reason `_insert` gives. PostgreSQL keeps executemany: psycopg pipelines it, and a VALUES
    list there would need a cast per column (a NULL in every row reads as text)."""
    if conn.dialect.name != "sqlite":
        conn.execute(_UPDATE_WORKLOAD, values)
        return
    latest = {row["b_id"]: row for row in values}.values()  # one change per workload: the last
    for keys, group in itertools.groupby(latest, key=_keys):
        _execute_chunks(conn, _sqlite_update_statement(conn.dialect, keys), list(group))


def _execute_chunks(conn: Connection, statement: _Statement, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        params = [
            value if process is None else process(value)
            for row in chunk
            for process, value in zip(statement.processors, row.values(), strict=True)
        ]
        conn.exec_driver_sql(statement.sql(len(chunk)), tuple(params))


def _keys(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(row)  # rows made by one producer share their keys, in order


@dataclass(frozen=True)
class _Statement:
    """A statement with a VALUES list of any length: `head`, `one` per row, then `tail`."""

    head: str  # INSERT INTO t (a, b) VALUES
    one: str  # (?, ?)
    tail: str  # "" for an INSERT
    processors: tuple[Callable[[Any], Any] | None, ...]  # each value's bind processor, in order

    def sql(self, rows: int) -> str:
        return self.head + ", ".join([self.one] * rows) + self.tail


def _processors(dialect: Any, columns: list[Any]) -> tuple[Callable[[Any], Any] | None, ...]:
    return tuple(c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns)


@functools.cache
def _insert_statement(dialect: Any, table: Any, keys: tuple[str, ...]) -> _Statement:
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}[dialect.paramstyle]
    prepare = dialect.identifier_preparer
    columns = [table.c[key] for key in keys]
    names = ", ".join(prepare.format_column(c) for c in columns)
    return _Statement(
        head=f"INSERT INTO {prepare.format_table(table)} ({names}) VALUES ",
        one="(" + ", ".join([marker] * len(columns)) + ")",
        tail="",
        processors=_processors(dialect, columns),
    )


@functools.cache
def _sqlite_update_statement(dialect: Any, keys: tuple[str, ...]) -> _Statement:
    # It starts with UPDATE, not WITH: Python's sqlite3 opens the transaction before a statement
    # it sees is a change by its first word, and would run a WITH ... UPDATE in autocommit.
    assert keys[0] == "b_id", keys
    columns = [_WORKLOADS.c.id, *(_WORKLOADS.c[key] for key in keys[1:])]
    # A VALUES list's columns are column1, column2, ... in SQLite.
    changes = ", ".join(f"{key} = v.column{i}" for i, key in enumerate(keys[1:], start=2))
    return _Statement(
        head=f"UPDATE workloads SET {changes} FROM (VALUES ",
        one="(" + ", ".join(["?"] * len(keys)) + ")",
        tail=") AS v WHERE workloads.id = v.column1",
        processors=_processors(dialect, columns),
    )


def _replace(conn: Connection, table: Any, values: list[dict[str, Any]]) -> None:
    """Upsert by primary key `name` (a few rows: delete and insert is portable and plain)."""
    conn.execute(delete(table).where(table.c.name.in_([v["name"] for v in values])))
    conn.execute(insert(table), values)

"""The one writer: each scheduling cycle's rows committed in one transaction, on its own thread.

SQLAlchemy Core statements, executed many rows at a time (no ORM unit of work, no flush
per row: the engine assigns sequence numbers itself). The thread keeps database waits,
such as PostgreSQL's fsync at commit, off the event loop, so agent streams, Watch and the
health service keep flowing while a commit waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import multiprocessing.connection
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.engine import Connection, Engine

from broker.engine.tx import Rows
from broker.store.db import Store
from broker.store.lease import Lease, LeaseLost, fence
from broker.store.tables import (
    DecisionRow,
    LedgerRow,
    SettingRow,
    SiteHeardRow,
    SiteRow,
    WorkloadEventRow,
    WorkloadRow,
)

log = logging.getLogger("fedbroker.store")

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


class StoreWriterError(Exception):
    """A commit in the writer's process failed (the database's words), or the process ended."""


class StoreWriter:
    """Commits each cycle's rows in one transaction, one commit at a time.

    With `own_process` (what `fedbroker serve` uses), the statements run in a child process
    (broker/store/writer_child.py): SQLAlchemy's and the database driver's work then shares no
    GIL with the event loop. In the broker's own process, every call into SQLite gave the GIL up
    and waited to get it back from the loop's busy thread; a commit spent two thirds of its time
    so waiting, and the engine waits on its commits. This thread only sends the rows and waits.
    Without it (the tests' embedded engines, an in-memory database), the thread runs them."""

    def __init__(self, store: Store, lease: Lease | None = None, *, own_process: bool = False) -> None:
        self.store = store
        self.lease = lease  # its holder and epoch fence every commit
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="fedbroker-db-writer")
        self.last_commit_s = 0.0  # how long the last commit took (statements + commit)
        self.commits = 0
        url = store.engine.url
        sqlite = url.get_backend_name() == "sqlite"
        self._child_url: str | None = None
        if own_process and not (sqlite and url.database in (None, "", ":memory:")):  # a file or a server
            if sqlite:  # an absolute path: the child may not share the broker's directory
                url = url.set(database=os.path.abspath(url.database or ""))
            self._child_url = url.render_as_string(hide_password=False)
        self._child: WriterChild | None = None
        # It starts while the broker does (`ready`).
        self._starting = self._thread.submit(self._child_ready) if self._child_url is not None else None

    async def ready(self) -> None:
        """Once the writer's process runs: a broker serves only then, or its first commits
        would wait out the process's start (about half a second)."""
        if self._starting is not None:
            try:
                await asyncio.wrap_future(self._starting)
            except StoreWriterError as error:  # the first commit tries again, and fails if it must
                log.warning("%s", error)

    async def commit(self, rows: Rows) -> None:
        """Store `rows` in one transaction; raises whatever the database raised (nothing is stored then)."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._commit, rows)

    def _commit(self, rows: Rows) -> None:
        start = time.perf_counter()
        holder = (self.lease.broker_id, self.lease.epoch) if self.lease is not None else None
        if self._child_url is None:
            commit_rows(self.store.engine, rows, holder)
        else:
            self._child_ready().commit(rows, holder)
        self.last_commit_s = time.perf_counter() - start
        self.commits += 1

    def _child_ready(self) -> WriterChild:
        """The child process, started anew if there is none or it has ended (on this thread)."""
        if self._child is None or not self._child.alive():
            if self._child is not None:
                self._child.close()
            assert self._child_url is not None
            self._child = WriterChild(self._child_url)
        return self._child

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        if self._child is not None:
            self._child.close()
            self._child = None


def commit_rows(engine: Engine, rows: Rows, holder: tuple[str, int] | None) -> None:
    """One cycle's transaction: its rows, then the lease's fence (last, so the lease row is
    locked only while the commit completes)."""
    with engine.begin() as conn:
        write(conn, rows)
        if holder is not None:
            fence(conn, *holder)


class WriterChild:
    """The writer's process, spoken to over a socket pair with pickled messages: the database
    URL first (never on the command line, where `ps` shows it; answered "ready" once connected),
    then (rows, holder) per commit, each answered None, or (kind, message) for a failure. It
    ends when the broker closes its end."""

    def __init__(self, url: str) -> None:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "broker.store.writer_child", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            # Not in the terminal's process group: Ctrl-C stops the broker, which then closes
            # the socket; a signal that reached this process too could kill it mid-commit.
            start_new_session=True,
            # It imports the broker's modules as this process found them (tests, a source checkout).
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        theirs.close()
        self._pipe = multiprocessing.connection.Connection(ours.detach())
        try:
            self._pipe.send(url)
            answer = self._pipe.recv()
        except (EOFError, OSError) as error:
            answer = ("error", repr(error))
        if answer != "ready":
            self.close()
            raise StoreWriterError(f"the database writer process could not connect: {answer[1]}")

    def alive(self) -> bool:
        return self._process.poll() is None

    def commit(self, rows: Rows, holder: tuple[str, int] | None) -> None:
        try:
            self._pipe.send((rows, holder))
            answer = self._pipe.recv()
        except (EOFError, OSError) as error:
            # Whether it committed is unknown: the engine rebuilds from what the database holds.
            self.close()
            raise StoreWriterError(f"the database writer process ended during a commit ({error!r})") from None
        if answer is None:
            return
        kind, message = answer
        raise LeaseLost(message) if kind == "lease" else StoreWriterError(message)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._pipe.close()  # the child's next read ends, and so does it
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


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
    dialect = conn.dialect
    for keys, group in itertools.groupby(values, key=_keys):
        statement = _insert_statement(dialect, table, keys)
        rows = list(group)
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
class _InsertStatement:
    head: str  # INSERT INTO t (a, b) VALUES
    one: str  # (?, ?)
    processors: tuple[Callable[[Any], Any] | None, ...]

    def sql(self, rows: int) -> str:
        return self.head + ", ".join([self.one] * rows)


@functools.cache
def _insert_statement(dialect: Any, table: Any, keys: tuple[str, ...]) -> _InsertStatement:
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}[dialect.paramstyle]
    prepare = dialect.identifier_preparer
    columns = [table.c[key] for key in keys]
    names = ", ".join(prepare.format_column(c) for c in columns)
    return _InsertStatement(
        head=f"INSERT INTO {prepare.format_table(table)} ({names}) VALUES ",
        one="(" + ", ".join([marker] * len(columns)) + ")",
        processors=tuple(c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns),
    )


def _update_workloads(conn: Connection, values: list[dict[str, Any]]) -> None:
    """On SQLite, many rows' changes in one UPDATE ... FROM a VALUES list per chunk, for the
    reason `_insert` gives. PostgreSQL keeps executemany: psycopg pipelines it, and a VALUES
    list there would need a cast per column (a NULL in every row reads as text)."""
    if conn.dialect.name != "sqlite":
        conn.execute(_UPDATE_WORKLOAD, values)
        return
    latest = list({row["b_id"]: row for row in values}.values())  # one change per workload: the last
    statement = _sqlite_update_statement(conn.dialect, tuple(latest[0]))
    for start in range(0, len(latest), INSERT_CHUNK):
        chunk = latest[start : start + INSERT_CHUNK]
        params = [
            value if process is None else process(value)
            for row in chunk
            for process, value in zip(statement.processors, row.values(), strict=True)
        ]
        conn.exec_driver_sql(statement.sql(len(chunk)), tuple(params))


@dataclass(frozen=True)
class _UpdateStatement:
    head: str  # UPDATE workloads SET a = v.column2, b = v.column3 FROM (VALUES
    one: str  # (?, ?, ?)
    tail: str  # ) AS v WHERE workloads.id = v.column1
    processors: tuple[Callable[[Any], Any] | None, ...]

    def sql(self, rows: int) -> str:
        return self.head + ", ".join([self.one] * rows) + self.tail


@functools.cache
def _sqlite_update_statement(dialect: Any, keys: tuple[str, ...]) -> _UpdateStatement:
    # It starts with UPDATE, not WITH: Python's sqlite3 opens the transaction before a statement
    # it sees is a change by its first word, and would run a WITH ... UPDATE in autocommit.
    assert keys[0] == "b_id", keys
    columns = [_WORKLOADS.c.id, *(_WORKLOADS.c[key] for key in keys[1:])]
    # A VALUES list's columns are column1, column2, ... in SQLite.
    changes = ", ".join(f"{key} = v.column{i}" for i, key in enumerate(keys[1:], start=2))
    return _UpdateStatement(
        head=f"UPDATE workloads SET {changes} FROM (VALUES ",
        one="(" + ", ".join(["?"] * len(keys)) + ")",
        tail=") AS v WHERE workloads.id = v.column1",
        processors=tuple(c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns),
    )


def _replace(conn: Connection, table: Any, values: list[dict[str, Any]]) -> None:
    """Upsert by primary key `name` (a few rows: delete and insert is portable and plain)."""
    conn.execute(delete(table).where(table.c.name.in_([v["name"] for v in values])))
    conn.execute(insert(table), values)

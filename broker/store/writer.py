"""The one writer: each scheduling cycle's rows committed in one transaction, on its own thread.

SQLAlchemy Core statements, executed many rows at a time (no ORM unit of work, no flush
per row: the engine assigns sequence numbers itself). The thread keeps database waits,
such as PostgreSQL's fsync at commit, off the event loop, so agent streams, Watch and the
health service keep flowing while a commit waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
        conn.execute(insert(_WORKLOADS), rows.inserted)
    if rows.updated:
        conn.execute(_UPDATE_WORKLOAD, rows.updated)
    if rows.events:
        conn.execute(insert(_EVENTS), [e.row() for e in rows.events])
    if rows.decisions:
        conn.execute(insert(_DECISIONS), rows.decisions)
    if rows.ledger:
        conn.execute(insert(_LEDGER), rows.ledger)
    if rows.sites:
        _replace(conn, _SITES, rows.sites)
    if rows.settings:
        _replace(conn, _SETTINGS, [{"name": k, "value": v} for k, v in rows.settings.items()])
    if rows.heard:
        _replace(conn, _HEARD, [{"name": k, "at": v} for k, v in rows.heard.items()])


def _replace(conn: Connection, table: Any, values: list[dict[str, Any]]) -> None:
    """Upsert by primary key `name` (a few rows: delete and insert is portable and plain)."""
    conn.execute(delete(table).where(table.c.name.in_([v["name"] for v in values])))
    conn.execute(insert(table), values)

"""What the API reads from the database, and what recovery rebuilds from: plain records out.

Synchronous functions; the engine runs them on worker threads. Reads see committed state
only, which is exactly what callers have been told: the broker answers a write after the
commit that made it durable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Row

from broker.engine.records import Event, WorkloadRecord
from broker.lifecycle import PLACED, TERMINAL
from broker.store.tables import DecisionRow, SettingRow, SiteHeardRow, SiteRow, WorkloadEventRow, WorkloadRow

W = WorkloadRow.__table__  # type: ignore[attr-defined]
E = WorkloadEventRow.__table__  # type: ignore[attr-defined]
D = DecisionRow.__table__  # type: ignore[attr-defined]
S = SiteRow.__table__  # type: ignore[attr-defined]
HEARD = SiteHeardRow.__table__  # type: ignore[attr-defined]
SETTINGS = SettingRow.__table__  # type: ignore[attr-defined]


def record(row: Row[Any]) -> WorkloadRecord:
    return WorkloadRecord(
        seq=row.seq,
        id=row.id,
        name=row.name,
        tenant=row.tenant,
        backend=row.backend,
        spec=row.spec,
        state=row.state,
        site=row.site,
        nodes=tuple(row.nodes),
        attempt=row.attempt,
        acked=row.acked,
        trace_id=row.trace_id,
        traceparent=row.traceparent,
        message=row.message,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        reason=row.reason,
        infra_requeues=row.infra_requeues,
        doubt_requeues=row.doubt_requeues,
        retry_at=row.retry_at,
        preemptions=row.preemptions,
        request_id=row.request_id,
    )


def workload(conn: Connection, workload_id: str) -> WorkloadRecord | None:
    row = conn.execute(select(W).where(W.c.id == workload_id)).first()
    return None if row is None else record(row)


def workloads(
    conn: Connection, tenant: str | None, states: Iterable[str], limit: int
) -> list[WorkloadRecord]:
    query = select(W).order_by(W.c.seq.desc()).limit(limit)
    if tenant is not None:
        query = query.where(W.c.tenant == tenant)
    wanted = list(states)
    if wanted:
        query = query.where(W.c.state.in_(wanted))
    return [record(r) for r in conn.execute(query)]


def events_after(conn: Connection, workload_id: str, after_seq: int) -> list[Event]:
    rows = conn.execute(
        select(E).where(E.c.workload_id == workload_id).where(E.c.seq > after_seq).order_by(E.c.seq)
    )
    return [Event(r.seq, r.workload_id, r.state, r.site, r.attempt, r.message, r.at, r.reason) for r in rows]


def attempt_site(conn: Connection, workload_id: str, attempt: int) -> str | None:
    """The site an attempt was placed at (from its PLACED event), None if it never was."""
    return conn.execute(
        select(E.c.site)
        .where(E.c.workload_id == workload_id, E.c.attempt == attempt, E.c.state == PLACED)
        .order_by(E.c.seq)
        .limit(1)
    ).scalar()


def latest_decision(conn: Connection, workload_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(D.c.explanation, D.c.attempt)
        .where(D.c.workload_id == workload_id)
        .order_by(D.c.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else {**row.explanation, "attempt": row.attempt}


@dataclass
class Stored:
    """Everything recovery needs, read in one transaction."""

    unfinished: list[Row[Any]]  # workloads not in a terminal state, oldest first
    sites: list[Row[Any]]
    settings: dict[str, str]
    next_seq: int
    next_event: int
    heard: dict[str, float] = field(default_factory=dict)  # site -> wall time last heard from
    # (tenant, request id, workload id) of the newest submits that gave one, oldest first
    requests: list[tuple[str, str, str]] = field(default_factory=list)


def recent_requests(conn: Connection, limit: int) -> list[tuple[str, str, str]]:
    """The newest `limit` submits' (tenant, request id, workload id), oldest first."""
    rows = conn.execute(
        select(W.c.tenant, W.c.request_id, W.c.id)
        .where(W.c.request_id.is_not(None))
        .order_by(W.c.seq.desc())
        .limit(limit)
    ).all()
    return [(r.tenant, r.request_id, r.id) for r in reversed(rows)]


def request_owners(conn: Connection, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(tenant, request id, workload id) of those of `keys` that made a workload (by the unique index)."""
    found: list[tuple[str, str, str]] = []
    for tenant, request_id in keys:
        row = conn.execute(select(W.c.id).where(W.c.tenant == tenant, W.c.request_id == request_id)).first()
        if row is not None:
            found.append((tenant, request_id, row.id))
    return found


def for_recovery(conn: Connection, requests: int = 0) -> Stored:
    unfinished = list(conn.execute(select(W).where(W.c.state.not_in(list(TERMINAL))).order_by(W.c.seq)))
    max_seq = conn.execute(select(func.max(W.c.seq))).scalar() or 0
    max_event = conn.execute(select(func.max(E.c.seq))).scalar() or 0
    return Stored(
        unfinished=unfinished,
        sites=list(conn.execute(select(S))),
        settings={r.name: r.value for r in conn.execute(select(SETTINGS))},
        next_seq=max_seq + 1,
        next_event=max_event + 1,
        heard={r.name: r.at for r in conn.execute(select(HEARD))},
        requests=recent_requests(conn, requests) if requests else [],
    )

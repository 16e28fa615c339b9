"""Reads for the CLI and SDK: a workload by id prefix or name, filtered lists, events since a point.

Like `reads.py`, synchronous functions the engine runs on worker threads, over committed
state only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from broker.engine.records import Event, WorkloadRecord
from broker.store.reads import E, W, record

MAX_AMBIGUOUS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Filter:
    """Which workloads a List wants; None or empty means any."""

    tenant: str | None = None
    states: tuple[str, ...] = ()
    site: str | None = None
    name: str | None = None
    since: float | None = None  # submitted at or after (UNIX seconds)
    limit: int = 1000
    before_seq: int | None = None  # paging: only workloads older than this one (by seq)


def resolve(conn: Connection, ref: str, tenant: str | None) -> list[WorkloadRecord]:
    """Workloads `ref` may mean, best first: an id prefix (all matches), else a name (the latest
    with that name, per tenant). An empty list: nothing visible matches."""
    if not ref:
        return []
    by_prefix = select(W).where(W.c.id.startswith(ref, autoescape=True)).order_by(W.c.seq.desc())
    if tenant is not None:
        by_prefix = by_prefix.where(W.c.tenant == tenant)
    found = [record(r) for r in conn.execute(by_prefix.limit(MAX_AMBIGUOUS_SHOWN + 1))]
    if found:
        return found
    by_name = select(W).where(W.c.name == ref).order_by(W.c.seq.desc())
    if tenant is not None:
        by_name = by_name.where(W.c.tenant == tenant)
    latest: dict[str, WorkloadRecord] = {}
    for row in conn.execute(by_name.limit(100)):
        latest.setdefault(row.tenant, record(row))  # newest first: the first per tenant is its latest
    return list(latest.values())


def workloads(conn: Connection, wanted: Filter) -> tuple[list[WorkloadRecord], int]:
    """The matching workloads, newest first, and the latest event's seq read in the same transaction."""
    query = select(W).order_by(W.c.seq.desc()).limit(wanted.limit)
    if wanted.tenant is not None:
        query = query.where(W.c.tenant == wanted.tenant)
    if wanted.states:
        query = query.where(W.c.state.in_(list(wanted.states)))
    if wanted.site:
        query = query.where(W.c.site == wanted.site)
    if wanted.name:
        query = query.where(W.c.name == wanted.name)
    if wanted.since is not None:
        query = query.where(W.c.created_at >= wanted.since)
    if wanted.before_seq is not None:
        query = query.where(W.c.seq < wanted.before_seq)
    with conn.begin():
        records = [record(r) for r in conn.execute(query)]
        latest = conn.execute(select(func.max(E.c.seq))).scalar() or 0
    return records, int(latest)


def events_since(conn: Connection, tenant: str | None, after_seq: int, limit: int = 1000) -> list[Event]:
    """Events of every workload `tenant` may see (None: all), after `after_seq`, in order."""
    query = select(E).where(E.c.seq > after_seq).order_by(E.c.seq).limit(limit)
    if tenant is not None:
        query = query.join(W, W.c.id == E.c.workload_id).where(W.c.tenant == tenant)
    rows = conn.execute(query)
    return [Event(r.seq, r.workload_id, r.state, r.site, r.attempt, r.message, r.at, r.reason) for r in rows]

"""One scheduling cycle's output: the rows of its one transaction, and what follows the commit.

The rules (`engine/rules.py`) fill a `Tx` while deciding; the engine commits `rows()` in
one database transaction and only then carries out the effects: messages to agents,
watch wake-ups, answers to callers, and forgetting workloads that ended. Nothing here
touches the database or the network.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from broker.engine.records import Event, LiveWorkload, ToAgent


@dataclass
class Rows:
    """Plain values for one transaction (the store turns them into statements)."""

    inserted: list[dict[str, Any]]
    updated: list[dict[str, Any]]
    events: list[Event]
    decisions: list[dict[str, Any]]
    ledger: list[dict[str, Any]]  # the subsidy ledger's rows (broker/ledger.py)
    sites: list[dict[str, Any]]
    settings: dict[str, str]
    heard: dict[str, float] = field(default_factory=dict)  # site -> wall time last heard from

    def __bool__(self) -> bool:
        return any(
            (
                self.inserted,
                self.updated,
                self.events,
                self.decisions,
                self.ledger,
                self.sites,
                self.settings,
                self.heard,
            )
        )

    def __len__(self) -> int:
        return len(self.inserted) + len(self.updated) + len(self.events) + len(self.decisions)


@dataclass
class Tx:
    new: dict[str, LiveWorkload] = field(default_factory=dict)
    touched: dict[str, LiveWorkload] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    sites: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    heard: dict[str, float] = field(default_factory=dict)  # checkpoints (BrokerState.checkpoint_heard)
    # effects, after the commit
    messages: list[tuple[str, ToAgent]] = field(default_factory=list)
    replies: list[tuple[asyncio.Future[Any], Any]] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)  # workloads to forget (terminal)
    raw_updates: list[dict[str, Any]] = field(default_factory=list)  # rows with no live workload
    reload: Any = None  # a FederationConfig to use once this cycle is committed (engine/reload.py)

    @property
    def writes(self) -> bool:
        """Whether this cycle has rows to commit (cheap: no snapshot of them)."""
        return bool(
            self.new
            or self.touched
            or self.events
            or self.decisions
            or self.ledger
            or self.sites
            or self.settings
            or self.heard
            or self.raw_updates
        )

    def insert(self, workload: LiveWorkload) -> None:
        self.new[workload.id] = workload

    def touch(self, workload: LiveWorkload) -> None:
        if workload.id not in self.new:
            self.touched[workload.id] = workload

    def send(self, site: str, message: ToAgent) -> None:
        self.messages.append((site, message))

    def reply(self, future: asyncio.Future[Any] | None, value: Any) -> None:
        if future is not None:
            self.replies.append((future, value))

    def rows(self) -> Rows:
        """Snapshot the values now: the live objects keep changing in later cycles."""
        return Rows(
            inserted=[_insert_values(w) for w in self.new.values()],
            updated=[update_values(w) for w in self.touched.values()] + self.raw_updates,
            events=self.events,
            decisions=self.decisions,
            ledger=self.ledger,
            sites=list(self.sites.values()),
            settings=self.settings,
            heard=self.heard,
        )


def update_values(w: LiveWorkload) -> dict[str, Any]:
    return {
        "b_id": w.id,
        "state": w.state,
        "site": w.site,
        "nodes": list(w.nodes),
        "attempt": w.attempt,
        "acked": w.acked,
        "traceparent": w.traceparent,
        "message": w.message,
        "updated_at": w.updated_at,
        "started_at": w.started_at,
        "reason": w.reason,
        "infra_requeues": w.infra_requeues,
        "doubt_requeues": w.doubt_requeues,
        "retry_at": w.retry_at,
        "preemptions": w.preemptions,
    }


def _insert_values(w: LiveWorkload) -> dict[str, Any]:
    return {
        "seq": w.seq,
        "id": w.id,
        "name": w.name,
        "tenant": w.tenant,
        "backend": w.backend,
        "spec": w.spec,
        "state": w.state,
        "site": w.site,
        "nodes": list(w.nodes),
        "attempt": w.attempt,
        "acked": w.acked,
        "trace_id": w.trace_id,
        "traceparent": w.traceparent,
        "message": w.message,
        "created_at": w.created_at,
        "updated_at": w.updated_at,
        "started_at": w.started_at,
        "reason": w.reason,
        "infra_requeues": w.infra_requeues,
        "doubt_requeues": w.doubt_requeues,
        "retry_at": w.retry_at,
        "preemptions": w.preemptions,
        "request_id": w.request_id,
    }

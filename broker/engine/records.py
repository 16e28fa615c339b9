"""The engine's values: workloads (live and as stored), events, and what goes to agents.

A `LiveWorkload` is the engine's in-memory copy of a workload that has not ended; it
is what heartbeats and updates are checked against, so the hot paths never read the
database. A `WorkloadRecord` is the frozen form the API answers with, built from a
live workload or from a stored row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.placement import Request


@dataclass(frozen=True, slots=True)
class WorkloadRecord:
    seq: int
    id: str
    name: str
    tenant: str
    backend: str
    spec: dict[str, Any]
    state: str
    site: str | None
    nodes: tuple[str, ...]
    attempt: int
    acked: bool
    trace_id: str
    traceparent: str
    message: str
    created_at: float
    updated_at: float
    started_at: float | None
    reason: str = ""  # why the last attempt ended, as its site said (broker/engine/infra.py)
    infra_requeues: int = 0  # requeues that used no attempt (the infrastructure's failures)
    doubt_requeues: int = 0  # of those, for image_pull or launch_error
    preemptions: int = 0  # requeues for higher-priority work: they use no attempt either
    retry_at: float | None = None  # wall clock: not placed again before this (a free requeue's backoff)
    request_id: str | None = None  # the client's id for the submit that made it (idempotent submit)


@dataclass(slots=True)
class LiveWorkload:
    seq: int
    id: str
    name: str
    tenant: str
    backend: str
    spec: dict[str, Any]
    request: Request  # the placement core's view of it
    max_attempts: int
    state: str
    created_at: float
    updated_at: float
    trace_id: str = ""
    traceparent: str = ""  # W3C context of the current attempt, parent of its spans
    site: str | None = None
    nodes: tuple[str, ...] = ()
    attempt: int = 0
    acked: bool = False  # the site's agent has the current attempt (acked it or reported it)
    message: str = ""
    started_at: float | None = None  # wall clock: when the current attempt was reported RUNNING
    spec_wire: bytes | None = None  # the spec's wire form when known (None after a restart)
    reason: str = ""
    infra_requeues: int = 0
    doubt_requeues: int = 0
    retry_at: float | None = None
    preemptions: int = 0
    request_id: str | None = None

    @classmethod
    def restored(cls, record: WorkloadRecord, request: Request, max_attempts: int) -> LiveWorkload:
        """A stored workload back in memory (after a restart: its wire spec is rebuilt when needed)."""
        values = {f: getattr(record, f) for f in WorkloadRecord.__dataclass_fields__}
        return cls(**values, request=request, max_attempts=max_attempts)

    def record(self) -> WorkloadRecord:
        return WorkloadRecord(
            seq=self.seq,
            id=self.id,
            name=self.name,
            tenant=self.tenant,
            backend=self.backend,
            spec=self.spec,
            state=self.state,
            site=self.site,
            nodes=self.nodes,
            attempt=self.attempt,
            acked=self.acked,
            trace_id=self.trace_id,
            traceparent=self.traceparent,
            message=self.message,
            created_at=self.created_at,
            updated_at=self.updated_at,
            started_at=self.started_at,
            reason=self.reason,
            infra_requeues=self.infra_requeues,
            doubt_requeues=self.doubt_requeues,
            retry_at=self.retry_at,
            preemptions=self.preemptions,
            request_id=self.request_id,
        )


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    workload_id: str
    state: str
    site: str | None
    attempt: int
    message: str
    at: float
    reason: str = ""  # why the attempt ended, on the event that ends one

    def row(self) -> dict[str, Any]:
        """Its row's values (dataclasses.asdict copies recursively, at several times the cost)."""
        return {
            "seq": self.seq,
            "workload_id": self.workload_id,
            "state": self.state,
            "site": self.site,
            "attempt": self.attempt,
            "message": self.message,
            "at": self.at,
            "reason": self.reason,
        }


# ---------------------------------------------------------------------------- to agents


@dataclass(frozen=True, slots=True)
class Welcome:
    broker_id: str
    heartbeat_ttl_s: float


@dataclass(frozen=True, slots=True)
class Assign:
    workload_id: str
    attempt: int
    tenant: str
    spec: dict[str, Any]
    spec_wire: bytes | None
    nodes: tuple[str, ...]
    trace_context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CancelAttempt:
    workload_id: str
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class FetchLogs:
    """Relay an attempt's logs (broker/api/logs.py); sent straight to the stream, never through a cycle."""

    request_id: str
    workload_id: str
    attempt: int
    tail: int | None
    follow: bool


@dataclass(frozen=True, slots=True)
class StopLogs:
    request_id: str


ToAgent = Welcome | Assign | CancelAttempt | FetchLogs | StopLogs

"""The SDK's typed results: frozen dataclasses with an enum state, built from the wire messages.

`to_json()` gives the CLI's stable JSON keys (README), so the CLI and a notebook see the
same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fedbroker.v1 import site_service_pb2, types_pb2, usage_service_pb2, workload_service_pb2

from broker import lifecycle
from broker.spec import WorkloadSpec, spec_from_proto


class State(StrEnum):
    QUEUED = "QUEUED"
    PLACED = "PLACED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self.value in lifecycle.TERMINAL


def _time(stamp: Any) -> datetime | None:
    if not (stamp.seconds or stamp.nanos):
        return None
    return datetime.fromtimestamp(stamp.ToNanoseconds() / 1e9, UTC)


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


@dataclass(frozen=True)
class WorkloadStatus:
    """A workload as the broker sees it now."""

    id: str
    name: str
    tenant: str
    state: State
    site: str | None
    attempt: int
    message: str
    trace_id: str
    spec: WorkloadSpec | None
    created_at: datetime | None
    updated_at: datetime | None
    nodes: tuple[str, ...] = ()
    reason: str | None = None  # why the last attempt ended
    queue_position: int | None = None  # 1-based while queued
    site_unreachable_since: datetime | None = None
    requeue_at: datetime | None = None
    retry_at: datetime | None = None
    infra_requeues: int = 0

    @property
    def gpus(self) -> int:
        return 0 if self.spec is None else self.spec.resources.gpus

    @classmethod
    def from_proto(cls, w: types_pb2.Workload) -> WorkloadStatus:
        try:
            spec: WorkloadSpec | None = spec_from_proto(w.spec) if w.HasField("spec") else None
        except ValueError:
            spec = None  # a spec this SDK cannot read (newer broker): the rest still is
        return cls(
            id=w.id,
            name=w.name,
            tenant=w.tenant,
            state=State(lifecycle.from_proto(w.state)),
            site=w.site or None,
            attempt=w.attempt,
            message=w.message,
            trace_id=w.trace_id,
            spec=spec,
            created_at=_time(w.created_at),
            updated_at=_time(w.updated_at),
            nodes=tuple(w.nodes),
            reason=w.reason or None,
            queue_position=w.queue_position or None,
            site_unreachable_since=_time(w.site_unreachable_since),
            requeue_at=_time(w.requeue_at),
            retry_at=_time(w.retry_at),
            infra_requeues=w.infra_requeues,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tenant": self.tenant,
            "state": self.state.value,
            "site": self.site,
            "attempt": self.attempt,
            "trace_id": self.trace_id,
            "message": self.message,
            "backend": self.spec.backend if self.spec else None,
            "gpus": self.gpus,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "reason": self.reason,
            "infra_requeues": self.infra_requeues,
            "retry_at": iso(self.retry_at),
            "nodes": list(self.nodes),
            "queue_position": self.queue_position,
            "site_unreachable_since": iso(self.site_unreachable_since),
            "requeue_at": iso(self.requeue_at),
        }


@dataclass(frozen=True)
class Event:
    workload_id: str
    seq: int
    state: State
    site: str | None
    attempt: int
    message: str
    at: datetime | None
    reason: str | None = None

    @classmethod
    def from_proto(cls, e: workload_service_pb2.WorkloadEvent) -> Event:
        return cls(
            workload_id=e.workload_id,
            seq=e.seq,
            state=State(lifecycle.from_proto(e.state)),
            site=e.site or None,
            attempt=e.attempt,
            message=e.message,
            at=_time(e.at),
            reason=e.reason or None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload_id,
            "seq": self.seq,
            "state": self.state.value,
            "site": self.site,
            "attempt": self.attempt,
            "message": self.message,
            "at": iso(self.at),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ScoreTerms:
    locality_hours: float
    tenant_hkd: float  # what the tenant would pay there, after subsidy
    load: float
    locality_part: float  # the weighted fractions: they sum to the score (lower is better)
    cost_part: float
    load_part: float


@dataclass(frozen=True)
class Candidate:
    site: str
    eligible: bool
    reasons: tuple[str, ...]
    score: float | None
    terms: ScoreTerms | None


@dataclass(frozen=True)
class Explanation:
    workload: str
    chosen: str | None
    summary: str
    attempt: int
    candidates: tuple[Candidate, ...]

    @property
    def refused(self) -> bool:
        return self.summary.startswith("refused")

    @classmethod
    def from_proto(cls, e: types_pb2.Explanation) -> Explanation:
        candidates = []
        for c in e.candidates:
            terms = None
            if c.HasField("terms"):
                t = c.terms
                terms = ScoreTerms(
                    t.locality_hours, t.cost_hkd, t.load, t.locality_part, t.cost_part, t.load_part
                )
            score = c.score if c.HasField("score") else None
            candidates.append(Candidate(c.site, c.eligible, tuple(c.reasons), score, terms))
        return cls(e.workload, e.chosen or None, e.summary, e.attempt, tuple(candidates))

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "chosen": self.chosen,
            "summary": self.summary,
            "attempt": self.attempt,
            "candidates": [
                {
                    "site": c.site,
                    "eligible": c.eligible,
                    "reasons": list(c.reasons),
                    "score": c.score,
                    "terms": None
                    if c.terms is None
                    else {
                        "locality_hours": c.terms.locality_hours,
                        # the tenant's share, kept under its old name for compatibility
                        "cost_hkd": c.terms.tenant_hkd,
                        "tenant_hkd": c.terms.tenant_hkd,
                        "load": c.terms.load,
                        "parts": {
                            "locality": c.terms.locality_part,
                            "cost": c.terms.cost_part,
                            "load": c.terms.load_part,
                        },
                    },
                }
                for c in self.candidates
            ],
        }


@dataclass(frozen=True)
class GpuModelUsage:
    gpu_model: str
    gpus_total: int
    gpus_allocated: int
    gpus_reserved: int
    gpus_free: int
    price_hkd_per_gpu_hour: float | None


@dataclass(frozen=True)
class Site:
    name: str
    healthy: bool
    gpus_total: int
    gpus_allocated: int
    gpus_reserved: int
    gpus_free: int
    load: float
    backends: tuple[str, ...]
    datasets: tuple[str, ...]
    heartbeat_age_s: float | None
    nodes: int
    gpu_models: tuple[GpuModelUsage, ...] = field(default=())

    @classmethod
    def from_proto(cls, s: site_service_pb2.Site) -> Site:
        models = tuple(
            GpuModelUsage(
                m.gpu_model,
                m.gpus_total,
                m.gpus_allocated,
                m.gpus_reserved,
                m.gpus_free,
                m.price_hkd_per_gpu_hour or None,
            )
            for m in s.gpu_models
        )
        return cls(
            name=s.name,
            healthy=s.healthy,
            gpus_total=s.gpus_total,
            gpus_allocated=s.gpus_allocated,
            gpus_reserved=s.gpus_reserved,
            gpus_free=s.gpus_free,
            load=s.load,
            backends=tuple(s.backends),
            datasets=tuple(s.datasets),
            heartbeat_age_s=None if s.heartbeat_age_s < 0 else s.heartbeat_age_s,
            nodes=len(s.nodes),
            gpu_models=models,
        )

    def price(self, gpu_model: str) -> float | None:
        return next((m.price_hkd_per_gpu_hour for m in self.gpu_models if m.gpu_model == gpu_model), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "healthy": self.healthy,
            "gpus_total": self.gpus_total,
            "gpus_allocated": self.gpus_allocated,
            "gpus_reserved": self.gpus_reserved,
            "gpus_free": self.gpus_free,
            "load": round(self.load, 4),
            "backends": list(self.backends),
            "datasets": list(self.datasets),
            "heartbeat_age_s": None if self.heartbeat_age_s is None else round(self.heartbeat_age_s, 2),
            "nodes": self.nodes,
            "gpu_models": [
                {
                    "gpu_model": m.gpu_model,
                    "gpus_total": m.gpus_total,
                    "gpus_allocated": m.gpus_allocated,
                    "gpus_reserved": m.gpus_reserved,
                    "gpus_free": m.gpus_free,
                    "price_hkd_per_gpu_hour": m.price_hkd_per_gpu_hour,
                }
                for m in self.gpu_models
            ],
        }


@dataclass(frozen=True)
class UsageRow:
    tenant: str
    program: str | None
    site: str
    gpu_hours: float
    total_hkd: float  # what the work cost in all
    tenant_hkd: float
    program_hkd: float

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "program": self.program,
            "site": self.site,
            "gpu_hours": round(self.gpu_hours, 4),
            "cost_hkd": round(self.total_hkd, 2),  # the total, kept under its old name for compatibility
            "total_hkd": round(self.total_hkd, 2),
            "tenant_hkd": round(self.tenant_hkd, 2),
            "program_hkd": round(self.program_hkd, 2),
        }


@dataclass(frozen=True)
class Budget:
    tenant: str
    program: str
    budget_hkd: float
    spent_hkd: float
    reserved_hkd: float
    left_hkd: float

    def to_json(self) -> dict[str, Any]:
        keys = ("budget_hkd", "spent_hkd", "reserved_hkd", "left_hkd")
        return {
            "tenant": self.tenant,
            "program": self.program,
            **{k: round(getattr(self, k), 2) for k in keys},
        }


@dataclass(frozen=True)
class Usage:
    rows: tuple[UsageRow, ...]
    budgets: tuple[Budget, ...]

    @classmethod
    def from_proto(cls, r: usage_service_pb2.GetUsageResponse) -> Usage:
        rows = tuple(
            UsageRow(
                u.tenant, u.program or None, u.site, u.gpu_hours, u.cost_hkd, u.tenant_hkd, u.program_hkd
            )
            for u in r.rows
        )
        budgets = tuple(
            Budget(b.tenant, b.program, b.budget_hkd, b.spent_hkd, b.reserved_hkd, b.left_hkd)
            for b in r.budgets
        )
        return cls(rows, budgets)


@dataclass(frozen=True)
class LogLines:
    attempt: int
    site: str
    lines: tuple[str, ...]

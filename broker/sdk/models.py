"""The SDK's typed results: frozen dataclasses with an enum state, built from the wire messages.

`to_json()` gives the CLI's stable JSON keys (README), so the CLI and a notebook see the
same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
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
    program_hkd: float = 0.0  # what the subsidy program would pay there
    total_hkd: float = 0.0  # tenant_hkd + program_hkd


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
                    t.locality_hours,
                    t.cost_hkd,
                    t.load,
                    t.locality_part,
                    t.cost_part,
                    t.load_part,
                    t.program_hkd,
                    t.total_hkd or t.cost_hkd + t.program_hkd,  # a decision stored before total_hkd
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
                        "program_hkd": c.terms.program_hkd,
                        "total_hkd": c.terms.total_hkd,
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
    """Settlements summed by the dimensions asked for (one not grouped by is None/empty)."""

    tenant: str | None
    program: str | None
    site: str | None
    gpu_hours: float
    total_hkd: float  # what the work cost in all
    tenant_hkd: float
    program_hkd: float
    gpu_model: str | None = None
    month: str | None = None  # YYYY-MM, UTC
    # the same sums as exact decimals (the ledger's NUMERIC columns)
    exact: dict[str, Decimal] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, u: usage_service_pb2.UsageRow) -> UsageRow:
        exact = {
            "gpu_hours": u.gpu_hours_exact,
            "total_hkd": u.total_hkd_exact,
            "program_hkd": u.program_hkd_exact,
            "tenant_hkd": u.tenant_hkd_exact,
        }
        return cls(
            u.tenant or None,
            u.program or None,
            u.site or None,
            u.gpu_hours,
            u.total_hkd or u.cost_hkd,  # an older broker sends only cost_hkd (the total)
            u.tenant_hkd,
            u.program_hkd,
            u.gpu_model or None,
            u.month or None,
            {k: Decimal(v) for k, v in exact.items() if v},
        )

    def to_json(self) -> dict[str, Any]:
        def money(key: str, value: float, digits: int = 2) -> float:
            return float(self.exact[key]) if key in self.exact else round(value, digits)

        out: dict[str, Any] = {"tenant": self.tenant, "program": self.program, "site": self.site}
        if self.gpu_model is not None:
            out["gpu_model"] = self.gpu_model
        if self.month is not None:
            out["month"] = self.month
        total = money("total_hkd", self.total_hkd)
        return {
            **out,
            "gpu_hours": money("gpu_hours", self.gpu_hours, 6),
            "cost_hkd": total,  # the total, kept under its old name for compatibility
            "total_hkd": total,
            "program_hkd": money("program_hkd", self.program_hkd),
            "tenant_hkd": money("tenant_hkd", self.tenant_hkd),
        }


@dataclass(frozen=True)
class SiteQuote:
    """What a workload would cost at one site before it is submitted, and who would pay."""

    site: str
    eligible: bool
    reasons: tuple[str, ...]
    gpu_model: str
    gpu_hours: float
    price_hkd_per_gpu_hour: float
    total_hkd: float
    program_hkd: float
    tenant_hkd: float
    program: str | None  # None: not subsidised there
    budget_left_after_hkd: float | None  # None: the tenant has no subsidy program
    cap_left_after_hkd: float | None  # None: no monthly spend cap

    @classmethod
    def from_proto(cls, q: workload_service_pb2.SiteQuote) -> SiteQuote:
        return cls(
            q.site,
            q.eligible,
            tuple(q.reasons),
            q.gpu_model,
            q.gpu_hours,
            q.price_hkd_per_gpu_hour,
            q.total_hkd,
            q.program_hkd,
            q.tenant_hkd,
            q.program or None,
            q.budget_left_after_hkd if q.HasField("budget_left_after_hkd") else None,
            q.cap_left_after_hkd if q.HasField("cap_left_after_hkd") else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "eligible": self.eligible,
            "reasons": list(self.reasons),
            "gpu_model": self.gpu_model,
            "gpu_hours": self.gpu_hours,
            "price_hkd_per_gpu_hour": self.price_hkd_per_gpu_hour,
            "total_hkd": self.total_hkd,
            "program_hkd": self.program_hkd,
            "tenant_hkd": self.tenant_hkd,
            "program": self.program,
            "budget_left_after_hkd": self.budget_left_after_hkd,
            "cap_left_after_hkd": self.cap_left_after_hkd,
        }


@dataclass(frozen=True)
class Quote:
    """A dry run: where the workload would go now (`explanation`) and each site's price."""

    explanation: Explanation
    sites: tuple[SiteQuote, ...]

    @classmethod
    def from_proto(cls, r: workload_service_pb2.SubmitResponse) -> Quote:
        return cls(Explanation.from_proto(r.explanation), tuple(SiteQuote.from_proto(q) for q in r.quotes))


@dataclass(frozen=True)
class Budget:
    tenant: str
    program: str
    budget_hkd: float
    spent_hkd: float
    reserved_hkd: float
    left_hkd: float
    month: str = ""  # the month the cap counts (UTC)
    cap_hkd: float | None = None  # the tenant's monthly spend cap; None: none
    cap_used_hkd: float = 0.0  # paid by the tenant this month and held for its running work

    @classmethod
    def from_proto(cls, b: usage_service_pb2.TenantBudget) -> Budget:
        cap = b.cap_hkd if b.HasField("cap_hkd") else None
        values = (b.budget_hkd, b.spent_hkd, b.reserved_hkd, b.left_hkd)
        return cls(b.tenant, b.program, *values, b.month, cap, b.cap_used_hkd)

    def to_json(self) -> dict[str, Any]:
        keys = ("budget_hkd", "spent_hkd", "reserved_hkd", "left_hkd")
        return {
            "tenant": self.tenant,
            "program": self.program,
            **{k: round(getattr(self, k), 2) for k in keys},
            "month": self.month,
            "cap_hkd": None if self.cap_hkd is None else round(self.cap_hkd, 2),
            "cap_used_hkd": round(self.cap_used_hkd, 2),
        }


@dataclass(frozen=True)
class Usage:
    rows: tuple[UsageRow, ...]
    budgets: tuple[Budget, ...]

    @classmethod
    def from_proto(cls, r: usage_service_pb2.GetUsageResponse) -> Usage:
        return cls(
            tuple(UsageRow.from_proto(u) for u in r.rows), tuple(Budget.from_proto(b) for b in r.budgets)
        )


@dataclass(frozen=True)
class LogLines:
    attempt: int
    site: str
    lines: tuple[str, ...]

"""The placement core's values: what goes in (federation, inventory, requests) and what
comes out (decisions with their explanations). All frozen dataclasses, no behaviour beyond
``Explanation.to_dict`` (the explanation's JSON keys, README "Using it")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Node:
    """One node as an agent reports it."""

    name: str
    gpu_model: str
    gpus_allocatable: int
    gpus_allocated: int = 0
    cpus: float = 0.0  # 0 = unknown / not constrained
    memory_gb: float = 0.0  # 0 = unknown / not constrained


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """A site's static configuration, from federation.yaml."""

    name: str
    backends: frozenset[str]  # {"kubernetes", "ray"}
    subsidy_programs: frozenset[str]
    gpu_prices_hkd_per_hour: Mapping[str, float]  # GPU model -> HK$ per GPU-hour


@dataclass(frozen=True, slots=True)
class SubsidyProgram:
    name: str
    rate: float  # 0.7 = the program pays 70% of the compute cost


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    name: str
    subsidy_program: str | None = None
    # Remaining subsidy budget when the core is built: the broker passes the budget minus
    # what was already spent (settled), not minus what restored workloads will re-reserve.
    budget_hkd: float = 0.0
    quota_gpus: int | None = None  # None = unlimited
    home_site: str | None = None  # preferred for its work that names no `prefer` of its own
    fair_share_weight: float = 1.0  # a tenant of weight 2 is entitled to twice the share
    # A monthly cap on what the tenant pays itself (None: no cap); see filters.SpendCapFilter.
    max_hkd_per_month: float | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    size_gb: float
    replicas: frozenset[str]  # sites configured to hold it


@dataclass(frozen=True, slots=True)
class Weights:
    locality: float = 1.0
    cost: float = 1.0
    load: float = 1.0


@dataclass(frozen=True, slots=True)
class FairSharePolicy:
    """Queue order within a priority by each tenant's weighted share (see fairshare.py)."""

    enabled: bool = True
    half_life_s: float = 7 * 24 * 3600.0  # past usage counts half after this long


@dataclass(frozen=True, slots=True)
class Federation:
    sites: tuple[SiteConfig, ...]
    programs: tuple[SubsidyProgram, ...] = ()
    tenants: tuple[TenantPolicy, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    # frozenset({a, b}) -> Gbit/s, symmetric; a pair without a link uses the core's
    # default_link_gbit_s (1 Gbit/s unless the broker passes another).
    links_gbit_s: Mapping[frozenset[str], float] = field(default_factory=dict)
    weights: Weights = Weights()
    # A workload with preferred sites waits this long for them before other sites are
    # candidates, unless it sets its own ``overflow_after_s``.
    overflow_after_s: float = 600.0
    fair_share: FairSharePolicy = FairSharePolicy()
    # Priorities whose work may preempt running work of lower priority (off for the rest).
    preempting_priorities: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Request:
    """One workload to place."""

    workload_id: str
    tenant: str
    backend: str  # "ray" | "kubernetes"
    gpu_model: str
    gpus_per_replica: int
    replicas: int = 1  # all-or-nothing gang; each replica on ONE node
    cpus_per_replica: float = 0.0
    memory_gb_per_replica: float = 0.0
    datasets: tuple[str, ...] = ()
    subsidy: str = "preferred"  # "required" | "preferred" | "none"
    priority: int = 0
    estimated_hours: float = 1.0
    sites: tuple[str, ...] = ()  # allow-list; empty = any
    seq: int = 0  # submission order (older = smaller); the broker assigns it
    prefer: tuple[str, ...] = ()  # preferred sites, in order; empty = the tenant's home site
    overflow_after_s: float | None = None  # None = the federation's default
    submitted_at: float = 0.0  # when its overflow clock started (same time base as ``now``)

    @property
    def gpus_total(self) -> int:
        return self.gpus_per_replica * self.replicas


@dataclass(frozen=True, slots=True)
class ScoreTerms:
    locality_hours: float
    cost_hkd: float  # what the tenant pays after subsidy (the cost term); also `tenant_hkd`
    load: float
    program_hkd: float = 0.0  # what the subsidy program pays of the estimate

    def to_dict(self) -> dict[str, float]:
        # cost_hkd stays the tenant's share (compatibility); tenant + program = total
        return {
            "locality_hours": self.locality_hours,
            "cost_hkd": self.cost_hkd,
            "load": self.load,
            "tenant_hkd": self.cost_hkd,
            "program_hkd": self.program_hkd,
            "total_hkd": self.cost_hkd + self.program_hkd,
        }


@dataclass(frozen=True, slots=True)
class Candidate:
    site: str
    eligible: bool
    reasons: tuple[str, ...]  # empty when eligible
    score: float | None  # None when not eligible
    terms: ScoreTerms | None  # None when not eligible

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "eligible": self.eligible,
            "reasons": list(self.reasons),
            "score": self.score,
            "terms": None if self.terms is None else self.terms.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    workload: str
    chosen: str | None
    candidates: tuple[Candidate, ...]  # every configured site, sorted by site name
    summary: str  # one line: "placed on ...", "waiting: ...", "refused: ..."

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the contract (keys are stable)."""
        return {
            "workload": self.workload,
            "chosen": self.chosen,
            "candidates": [c.to_dict() for c in self.candidates],
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class Placed:
    workload_id: str
    site: str
    nodes: tuple[str, ...]  # one node name per replica (may repeat)
    explanation: Explanation


@dataclass(frozen=True, slots=True)
class Queued:
    workload_id: str
    explanation: Explanation


@dataclass(frozen=True, slots=True)
class Refused:
    """The request can never fit any configured site (see core.py for the rule)."""

    workload_id: str
    explanation: Explanation


Decision = Placed | Queued | Refused


@dataclass(frozen=True, slots=True)
class Preempted:
    """A running (or placed) workload the core took back to make room for a higher priority.

    The core has already put it back in its queue (at its original place); the broker
    cancels its attempt at ``site`` and requeues it without using one of its attempts."""

    workload_id: str
    site: str
    preemptor: str
    reason: str  # reasons.PREEMPTED, formatted


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one queue pass did: placements, and the preemptions made for waiting work."""

    placed: tuple[Placed, ...]
    preempted: tuple[Preempted, ...] = ()


@dataclass(frozen=True, slots=True)
class SiteUsage:
    """GPU counts of one site for the broker's SiteService, summed over reported nodes."""

    gpus_total: int  # allocatable
    gpus_allocated: int  # as reported by the agent
    gpus_reserved: int  # placed by the broker, not yet reported as running
    gpus_free: int  # allocatable - allocated - reserved per node, never negative


@dataclass(frozen=True, slots=True)
class Charge:
    """What one attempt's run cost, and who pays: the subsidy program and the tenant."""

    workload_id: str
    tenant: str
    site: str
    program: str | None  # None: not subsidised
    gpu_model: str
    gpus: int
    hours: float
    price_hkd_per_gpu_hour: float
    cost_hkd: float
    program_hkd: float
    tenant_hkd: float

"""Reservations of placed workloads: GPUs on nodes, CPUs/memory, tenant quota and budget.

Lifecycle of one placement (an ``Allocation``):
  placed/restored -> GPUs reserved on its nodes, CPUs/memory held, quota and budget taken,
      the tenant's share of its estimate held against its monthly spend cap;
  a report lists it running -> GPU reservation dropped (the agent's ``gpus_allocated`` now
      counts them), everything else kept;
  finish / cancel / requeue -> everything still held is released.
Releasing twice, or a report naming an unknown or ended workload, changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .capacity import SiteCapacity
from .model import Explanation, Request, TenantPolicy
from .pricing import BUDGET_EPS

QueueKey = tuple[int, int, int]  # (-priority, seq, arrival): smaller goes first


@dataclass(slots=True)
class Allocation:
    request: Request
    site: str
    nodes: tuple[str, ...]  # one per replica
    program_hkd: float  # subsidy reserved against the tenant budget
    explanation: Explanation
    key: QueueKey  # kept so a requeue goes back to its original place
    gpus_reserved: bool = True  # False once a report lists the workload running
    placed_at: float = 0.0  # the core's time at placement: what a preemption would waste
    tenant_hkd: float = 0.0  # the tenant's share of the estimate, held against its spend cap


class Ledger:
    """Who holds what. Budgets and quotas are per tenant; GPUs live in each SiteCapacity."""

    def __init__(self, tenants: Mapping[str, TenantPolicy]) -> None:
        self._tenants = dict(tenants)
        self.allocations: dict[str, Allocation] = {}
        self.gpus_in_use: dict[str, int] = {}  # tenant -> GPUs of its placed workloads
        # tenant -> CPUs and memory GB of its placed workloads (fair share's other resources)
        self.cpus_in_use: dict[str, float] = {}
        self.memory_in_use: dict[str, float] = {}
        self.budget_reserved: dict[str, float] = {}  # tenant -> HK$ reserved for subsidy
        # Spend caps: tenant -> HK$ it holds for placed work (its estimates' shares), and what it
        # paid this calendar month (data from the broker's ledger; the core has no calendar).
        self.cap_held: dict[str, float] = {}
        self.month_paid: dict[str, float] = {}

    def policy(self, tenant: str) -> TenantPolicy:
        """The tenant's policy; an unknown tenant has no program, no budget, no quota."""
        policy = self._tenants.get(tenant)
        if policy is None:
            policy = self._tenants[tenant] = TenantPolicy(tenant)
        return policy

    def spend(self, tenant: str, amount_hkd: float) -> None:
        """Money the program has paid: it leaves the tenant's budget for good."""
        policy = self.policy(tenant)
        self._tenants[tenant] = replace(policy, budget_hkd=max(0.0, policy.budget_hkd - amount_hkd))

    def paid(self, tenant: str, amount_hkd: float) -> None:
        """Money the tenant paid itself this month: it counts against its spend cap."""
        if amount_hkd > 0:
            self.month_paid[tenant] = self.month_paid.get(tenant, 0.0) + amount_hkd

    def cap_used(self, tenant: str) -> float:
        """What counts against the tenant's monthly spend cap: paid this month, and held."""
        return self.month_paid.get(tenant, 0.0) + self.cap_held.get(tenant, 0.0)

    def held(self, tenant: str) -> tuple[float, float, float]:
        """GPUs, CPUs and memory GB the tenant's placed workloads hold."""
        return (
            float(self.gpus_in_use.get(tenant, 0)),
            self.cpus_in_use.get(tenant, 0.0),
            self.memory_in_use.get(tenant, 0.0),
        )

    def budget_left(self, tenant: str) -> float:
        return max(0.0, self.policy(tenant).budget_hkd - self.budget_reserved.get(tenant, 0.0))

    def add(self, alloc: Allocation, capacity: SiteCapacity) -> None:
        req = alloc.request
        if alloc.gpus_reserved:
            for node, count in Counter(alloc.nodes).items():
                capacity.add_gpus(node, count * req.gpus_per_replica)
        self._hold(alloc, capacity, +1)
        t = req.tenant
        self.gpus_in_use[t] = self.gpus_in_use.get(t, 0) + req.gpus_total
        if req.cpus_per_replica or req.memory_gb_per_replica:
            n = req.replicas
            self.cpus_in_use[t] = self.cpus_in_use.get(t, 0.0) + req.cpus_per_replica * n
            self.memory_in_use[t] = self.memory_in_use.get(t, 0.0) + req.memory_gb_per_replica * n
        if alloc.program_hkd:
            self.budget_reserved[t] = self.budget_reserved.get(t, 0.0) + alloc.program_hkd
        if alloc.tenant_hkd:
            self.cap_held[t] = self.cap_held.get(t, 0.0) + alloc.tenant_hkd
        self.allocations[req.workload_id] = alloc

    def drop_gpus(self, alloc: Allocation, capacity: SiteCapacity) -> None:
        """The site reports the workload running: its GPUs now show as allocated."""
        if not alloc.gpus_reserved:
            return
        alloc.gpus_reserved = False
        for node, count in Counter(alloc.nodes).items():
            capacity.add_gpus(node, -count * alloc.request.gpus_per_replica)

    def remove(self, workload_id: str, capacity_of: Mapping[str, SiteCapacity]) -> Allocation | None:
        alloc = self.allocations.pop(workload_id, None)
        if alloc is None:
            return None
        capacity = capacity_of[alloc.site]
        self.drop_gpus(alloc, capacity)
        self._hold(alloc, capacity, -1)
        req = alloc.request
        t = req.tenant
        self.gpus_in_use[t] -= req.gpus_total
        if req.cpus_per_replica or req.memory_gb_per_replica:
            n = req.replicas
            self.cpus_in_use[t] = max(0.0, self.cpus_in_use[t] - req.cpus_per_replica * n)
            self.memory_in_use[t] = max(0.0, self.memory_in_use[t] - req.memory_gb_per_replica * n)
        if alloc.program_hkd:
            left = self.budget_reserved[t] - alloc.program_hkd
            self.budget_reserved[t] = 0.0 if left < BUDGET_EPS else left
        if alloc.tenant_hkd:
            left = self.cap_held[t] - alloc.tenant_hkd
            self.cap_held[t] = 0.0 if left < BUDGET_EPS else left
        return alloc

    @staticmethod
    def _hold(alloc: Allocation, capacity: SiteCapacity, sign: int) -> None:
        req = alloc.request
        if req.cpus_per_replica <= 0 and req.memory_gb_per_replica <= 0:
            return
        for node, count in Counter(alloc.nodes).items():
            capacity.add_held(
                node,
                sign * count * req.cpus_per_replica,
                sign * count * req.memory_gb_per_replica,
            )

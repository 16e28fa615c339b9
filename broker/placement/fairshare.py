"""Fair share between tenants: the queue order within a priority.

A tenant's share is dominant-resource (DRF, as Armada orders queues): for each resource
(GPUs, CPUs, memory) its *recent use* plus what it *holds now*, over the federation's
capacity of that resource; the largest of those, divided by the tenant's weight.

- Recent use is an exponentially decayed average of what the tenant held over time
  (Slurm's fair-tree decay): usage accrues while work is placed, and halves every
  ``half_life_s``. Stored as decayed resource-seconds; divided by the decay's mean life it
  reads as "resources held, on average, lately".
- What it holds now is counted too, so that one pass at one instant is fair as well: a
  placement raises its tenant's share at once and the next workload comes from whoever
  is lowest. Without it a quiet tenant's flood would take every free GPU in one pass.

Within one priority the pass takes, each time, the waiting workload (oldest first) of the
tenant with the lowest share (ties by the oldest workload), so with equal shares the
order is plain first-come-first-served. The core passes time in as an argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from heapq import heapify, heappop, heappush

from .model import FairSharePolicy
from .queue import Entry

Resources = tuple[float, float, float]  # GPUs, CPUs, memory GB


class FairShare:
    """Decayed usage per tenant and the share it gives (mutated only by the core)."""

    def __init__(self, policy: FairSharePolicy, weights: Mapping[str, float]) -> None:
        self.enabled = policy.enabled
        self.half_life_s = policy.half_life_s
        self._mean_life_s = policy.half_life_s / math.log(2)
        self._weights = dict(weights)
        self._usage: dict[str, list[float]] = {}  # tenant -> decayed resource-seconds
        self._at: float | None = None

    def weight(self, tenant: str) -> float:
        return self._weights.get(tenant, 1.0)

    def advance(self, now: float, held: Mapping[str, Resources]) -> None:
        """Let time pass to ``now``: decay past usage, accrue what each tenant held since."""
        if self._at is None:
            self._at = now
            return
        if now <= self._at:
            return
        dt = now - self._at
        self._at = now
        decay = 0.5 ** (dt / self.half_life_s)
        accrued = self._mean_life_s * (1.0 - decay)  # integral of the decay over dt
        for usage in self._usage.values():
            for r in range(3):
                usage[r] *= decay
        for tenant, amounts in held.items():
            usage = self._usage.setdefault(tenant, [0.0, 0.0, 0.0])
            for r in range(3):
                usage[r] += amounts[r] * accrued

    def tenants(self) -> set[str]:
        """Tenants with recent use."""
        return {t for t, usage in self._usage.items() if any(u > 1e-9 for u in usage)}

    def recent(self, tenant: str) -> Resources:
        """Resources the tenant held lately (decayed average)."""
        usage = self._usage.get(tenant)
        if usage is None:
            return (0.0, 0.0, 0.0)
        m = self._mean_life_s
        return (usage[0] / m, usage[1] / m, usage[2] / m)

    def share(self, tenant: str, held: Resources, capacity: Resources) -> float:
        recent = self.recent(tenant)
        dominant = 0.0
        for r in range(3):
            if capacity[r] > 0:
                dominant = max(dominant, (recent[r] + held[r]) / capacity[r])
        return dominant / self.weight(tenant)


def fair_order(entries: Sequence[Entry], share: Callable[[str], float]) -> Iterator[Entry]:
    """``entries`` (in queue order) re-ordered within each priority by tenant share.

    ``share`` is read again each time a tenant's next workload comes up, i.e. after the
    caller has handled the previous one, so a placement it made counts at once.
    Cost: one heap operation (over the tenants of that priority) per entry."""
    n = len(entries)
    i = 0
    while i < n:
        priority = entries[i].key[0]
        by_tenant: dict[str, list[Entry]] = {}
        j = i
        while j < n and entries[j].key[0] == priority:
            entry = entries[j]
            by_tenant.setdefault(entry.request.tenant, []).append(entry)
            j += 1
        if len(by_tenant) == 1:
            yield from entries[i:j]
        else:
            heap = [(share(t), es[0].key, t, 0) for t, es in by_tenant.items()]
            heapify(heap)
            while heap:
                current, _, tenant, k = heappop(heap)
                line = by_tenant[tenant]
                size = len(line)
                # The runner-up: this tenant's workloads come one after another until its
                # share changes (a placement) or the runner-up's next workload is older on
                # an equal share. Most are not placed, so this is one comparison each.
                rival, rival_key = (heap[0][0], heap[0][1]) if heap else (math.inf, line[-1].key)
                while True:
                    yield line[k]
                    k += 1
                    if k == size:
                        break
                    now_share = share(tenant)
                    if now_share != current:
                        break
                    if current < rival or (current == rival and line[k].key < rival_key):
                        continue
                    break
                if k < size:
                    heappush(heap, (share(tenant), line[k].key, tenant, k))
        i = j

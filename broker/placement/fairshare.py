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
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from heapq import heapify, heappop, heappush

from .model import FairSharePolicy
from .queue import Entry, Lines, entry_key
from .reservations import QueueKey

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

    def behind(self, now: float) -> bool:
        """Whether ``advance(now, ...)`` would change anything (the caller can skip
        gathering what tenants hold)."""
        return self._at is None or now > self._at

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


class FairOrder:
    """The queue re-ordered within each priority by tenant share, given as *runs*:
    ``(line, start, stop)``, the tenant's queued work ``line[start:stop]`` that comes
    next, one after another (oldest first), until its share would change.

    A run lasts while the tenant's share stays below the runner-up's (or equal, and its
    next workload is older than the runner-up's); with shares unchanged that is known up
    front (one bisection), so the order costs one heap step per run, not per entry. The
    consumer reports a change while it goes:

    - ``cut(k)``: it changed the run's tenant's share at ``line[k - 1]`` (a placement): the
      rest of the line comes up again at the new share;
    - ``reshare(tenant)``: another tenant's share changed (a preemption took its work
      back): its remaining work of this priority is re-keyed at once.

    ``share`` is read when a priority's tenants are first ranked and after each change.
    With equal shares the order is plain first-come-first-served."""

    def __init__(self, groups: Sequence[Lines], share: Callable[[str], float]) -> None:
        self._groups = groups  # one per priority, highest first (``WorkQueue.groups``)
        self._share = share
        self._cut: int | None = None
        self._current: str | None = None
        # The priority being ordered: each tenant's next index and its heap key's version
        self._lines: Lines = {}
        self._next: dict[str, int] = {}
        self._version: dict[str, int] = {}
        self._heap: list[tuple[float, QueueKey, str, int, int]] = []

    def cut(self, k: int) -> None:
        self._cut = k

    def reshare(self, tenant: str) -> None:
        if tenant == self._current or tenant not in self._version:
            return  # the running tenant is re-keyed when its run ends; others wait no more
        k = self._next[tenant]
        version = self._version[tenant] = self._version[tenant] + 1
        heappush(self._heap, (self._share(tenant), self._lines[tenant][k].key, tenant, k, version))

    def __iter__(self) -> Iterator[tuple[Sequence[Entry], int, int]]:
        for lines in self._groups:
            self._version = {}
            if len(lines) == 1:
                yield from self._alone(next(iter(lines.values())))
            else:
                yield from self._ranked(lines)

    def _alone(self, line: list[Entry]) -> Iterator[tuple[Sequence[Entry], int, int]]:
        """One tenant in this priority: its work in queue order, whatever its share."""
        i, size = 0, len(line)
        while i < size:
            self._cut = None
            yield line, i, size
            i = size if self._cut is None else self._cut

    def _ranked(self, lines: dict[str, list[Entry]]) -> Iterator[tuple[Sequence[Entry], int, int]]:
        share = self._share
        self._lines = lines
        self._next = dict.fromkeys(lines, 0)
        self._version = dict.fromkeys(lines, 0)
        heap = self._heap = [(share(t), line[0].key, t, 0, 0) for t, line in lines.items()]
        heapify(heap)
        version = self._version
        while heap:
            current, _, tenant, k, v = heappop(heap)
            if v != version.get(tenant):
                continue  # re-keyed since
            while heap and heap[0][4] != version.get(heap[0][2]):
                heappop(heap)  # the runner-up must be a live key
            line = lines[tenant]
            size = len(line)
            if not heap or current < heap[0][0]:
                stop = size
            else:  # an equal share: until the runner-up's next workload is older
                stop = max(k + 1, bisect_left(line, heap[0][1], lo=k + 1, key=entry_key))
            self._cut, self._current = None, tenant
            yield line, k, stop
            self._current = None
            k = stop if self._cut is None else self._cut
            if k < size:
                self._next[tenant] = k
                heappush(heap, (share(tenant), line[k].key, tenant, k, version[tenant]))
            else:
                del version[tenant]  # its line is done: nothing to re-key


def fair_order(groups: Sequence[Lines], share: Callable[[str], float]) -> Iterator[Entry]:
    """The fair order one workload at a time, each taken as if placed: ``share`` is read
    again after every workload (``PlacementCore.queued_ids`` raises it by the workload's
    size to show positions)."""
    order = FairOrder(groups, share)
    for line, start, _ in order:
        yield line[start]
        order.cut(start + 1)

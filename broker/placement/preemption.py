"""Preemption: which placed work to take back so that a higher-priority gang fits.

Asked only for a waiting workload whose priority the federation lets preempt, and only at
sites where capacity is all that stands in the way (every other filter passed). Victims:
whole placed workloads (never part of a gang) of strictly lower priority, of the same GPU
model, at that site. At each site, in order of cost, cheapest first:

  1. fewest GPU-hours lost (GPUs x time since it was placed: the work redone);
  2. work that overflowed away from its preferred sites before work at home (Armada
     preempts work running away from its home pool first);
  3. newest first;

victims are added until the gang would fit on the freed nodes (counted replica by replica,
CPUs and memory included), then any victim the gang turns out not to need is spared, most
expensive first (Kubernetes' "reprieve"). That is tried over the whole site and over each
node's victims alone; the cheapest set (GPU-hours lost, then victims at home) wins, and the
site whose set costs least (ties by name). So the chosen set always frees enough, never
splits a gang and never touches equal or higher priority; it is minimal (no victim can be
spared), a heuristic rather than the optimum of that knapsack.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .capacity import _EPS, NodeSlot, SiteCapacity
from .model import Request
from .reservations import Allocation

_UNCAPPED = 1 << 62  # "as many replicas as fit"
VictimCost = tuple[float, int, float, int, str]  # GPU-hours lost, at home, -placed_at, -seq, id


@dataclass(frozen=True, slots=True, eq=False)  # identity: sets of victims are compared by who
class Victim:
    allocation: Allocation
    cost: VictimCost


@dataclass(frozen=True, slots=True)
class Plan:
    site: str
    victims: tuple[Allocation, ...]
    cost: tuple[float, int]  # GPU-hours lost in all, victims at home


class PassPreemptions:
    """One queue pass's preemption bookkeeping: which waiting shapes may still look for
    victims (at most ``limit`` distinct ones per pass; one that found none is not asked
    again in the pass: the pool of victims only shrinks, and later work has no higher
    priority), and the placed work indexed by (site, GPU model), built on first use."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._tried: set[int] = set()
        self._failed: set[int] = set()
        self._index: dict[tuple[str, str], list[Allocation]] | None = None
        self._ranked: dict[tuple[str, str], list[Victim]] = {}

    def may_try(self, shape: int) -> bool:
        if shape in self._failed:
            return False
        return shape in self._tried or len(self._tried) < self._limit

    def tried(self, shape: int, found: bool) -> None:
        self._tried.add(shape)
        if not found:
            self._failed.add(shape)

    def victims(
        self,
        allocations: Mapping[str, Allocation],
        site: str,
        model: str,
        below: int,
        cost_of: Callable[[Allocation], VictimCost],
    ) -> list[Victim]:
        """Work placed at ``site`` on ``model`` GPUs with a priority below ``below``, still
        placed (victims leave), cheapest first. Costed and sorted once per pass: the pass's
        time does not move, so neither do the costs."""
        if self._index is None:
            self._index = {}
            for alloc in allocations.values():
                self._index.setdefault((alloc.site, alloc.request.gpu_model), []).append(alloc)
        ranked = self._ranked.get((site, model))
        if ranked is None:
            found = self._index.get((site, model), [])
            ranked = self._ranked[(site, model)] = sorted(
                (Victim(a, cost_of(a)) for a in found), key=lambda v: v.cost
            )
        return [
            v
            for v in ranked
            if v.allocation.request.priority < below
            and allocations.get(v.allocation.request.workload_id) is v.allocation
        ]


def victim_cost(alloc: Allocation, now: float, at_home: bool) -> VictimCost:
    req = alloc.request
    lost = req.gpus_total * max(0.0, now - alloc.placed_at) / 3600
    return (lost, int(at_home), -alloc.placed_at, -req.seq, req.workload_id)


def plan_at_site(
    site: str, capacity: SiteCapacity, request: Request, victims: Sequence[Victim]
) -> Plan | None:
    """The cheapest minimal set of ``victims`` (all at ``site``) after which the gang fits,
    or None if even all of them would not free enough.

    Tried: the greedy set over the whole site, and the greedy set of each node's victims
    alone (Kubernetes picks victims node by node: a few cheap victims spread over many
    nodes can cost more than one on a single node)."""
    base = _WhatIf(capacity, request).total
    ordered = sorted(victims, key=lambda v: v.cost)
    best = _greedy(capacity, request, base, ordered)
    if best is None:
        return None
    by_node: dict[str, list[Victim]] = {}
    for victim in ordered:
        for node in dict.fromkeys(victim.allocation.nodes):
            by_node.setdefault(node, []).append(victim)
    # Cheapest first victim first; a node whose cheapest victim alone loses as much as the
    # best set so far cannot do better, nor can any node after it.
    # A node whose victims, all gone, would not add the replicas the rest of the site lacks
    # cannot do it alone (most nodes, for a gang): skipped without a greedy run.
    probe = _WhatIf(capacity, request, base)
    best_cost = _cost(best)
    for node in sorted(by_node, key=lambda n: (by_node[n][0].cost, n)):
        if by_node[node][0].cost[0] >= best_cost[0]:
            break
        if base + probe.most_from(node) < request.replicas:
            continue
        chosen = _greedy(capacity, request, base, by_node[node])
        if chosen is not None and (cost := _cost(chosen)) < best_cost:
            best, best_cost = chosen, cost
    return Plan(site, tuple(v.allocation for v in best), best_cost)


def _cost(victims: Sequence[Victim]) -> tuple[float, int]:
    return (sum(v.cost[0] for v in victims), sum(v.cost[1] for v in victims))


def _greedy(
    capacity: SiteCapacity, request: Request, base: int, ordered: Sequence[Victim]
) -> list[Victim] | None:
    """Cheapest first until the gang fits, then spare what it turns out not to need."""
    fit = _WhatIf(capacity, request, base)
    chosen: list[Victim] = []
    for victim in ordered:
        fit.free(victim.allocation, +1)
        chosen.append(victim)
        if fit.fits():
            break
    else:
        return None
    for victim in reversed(chosen[:-1]):  # reprieve, most expensive first
        fit.free(victim.allocation, -1)
        if fit.fits():
            chosen.remove(victim)
        else:
            fit.free(victim.allocation, +1)
    return chosen


class _WhatIf:
    """Replicas of the gang that would fit at a site if some placed work were gone.

    The untouched nodes' count is taken once from the index; only nodes that victims
    free are recounted, as victims are added or spared."""

    def __init__(self, capacity: SiteCapacity, request: Request, base: int | None = None) -> None:
        self._cap = capacity
        self._g = request.gpus_per_replica
        self._c = request.cpus_per_replica
        self._m = request.memory_gb_per_replica
        self._need = request.replicas
        self._freed: dict[str, list[float]] = {}  # node -> [GPUs, CPUs, memory] freed
        self.total = self._base(request.gpu_model) if base is None else base

    def _base(self, model: str) -> int:
        """Replicas that fit now, all nodes counted: the site's own fit, uncapped (it asks
        only the nodes with at least one replica's GPUs free)."""
        return self._cap.fit(model, self._g, _UNCAPPED, self._c, self._m)

    def _slots(self, slot: NodeSlot, gpus: float, cpus: float, memory: float) -> int:
        free = min(slot.allocatable, slot.free + int(gpus))
        k = free // self._g
        c, m = self._c, self._m
        if c <= 0 and m <= 0:
            return max(k, 0)
        if c > 0 and slot.cpus > 0:
            held = self._cap.cpus_held.get(slot.name, 0.0) - cpus
            k = min(k, int((slot.cpus - held) / c + _EPS))
        if m > 0 and slot.memory_gb > 0:
            held = self._cap.memory_held.get(slot.name, 0.0) - memory
            k = min(k, int((slot.memory_gb - held) / m + _EPS))
        return max(k, 0)

    def most_from(self, node: str) -> int:
        """Replicas emptying ``node`` entirely would add (an upper bound on its victims')."""
        slot = self._cap.nodes.get(node)
        if slot is None:
            return 0
        held_c = self._cap.cpus_held.get(node, 0.0)
        held_m = self._cap.memory_held.get(node, 0.0)
        return self._slots(slot, slot.allocatable, held_c, held_m) - self._slots(slot, 0, 0.0, 0.0)

    def free(self, alloc: Allocation, sign: int) -> None:
        if self._c <= 0 and self._m <= 0:  # GPUs alone decide: one sum per replica's node
            self._free_gpus(alloc, sign)
            return
        req = alloc.request
        nodes = alloc.nodes
        counts = Counter(nodes).items() if len(nodes) > 1 else ((nodes[0], 1),)
        for node, count in counts:
            slot = self._cap.nodes.get(node)
            if slot is None:
                continue  # a node the latest report no longer lists: nothing to free there
            freed = self._freed.setdefault(node, [0.0, 0.0, 0.0])
            before = self._slots(slot, *freed)
            freed[0] += sign * count * req.gpus_per_replica
            freed[1] += sign * count * req.cpus_per_replica
            freed[2] += sign * count * req.memory_gb_per_replica
            self.total += self._slots(slot, *freed) - before

    def _free_gpus(self, alloc: Allocation, sign: int) -> None:
        g = self._g
        per = sign * alloc.request.gpus_per_replica
        slots = self._cap.nodes
        freed = self._freed
        for node in alloc.nodes:  # a node named twice holds two replicas: counted twice
            slot = slots.get(node)
            if slot is None:
                continue  # a node the latest report no longer lists: nothing to free there
            amounts = freed.get(node)
            if amounts is None:
                amounts = freed[node] = [0.0, 0.0, 0.0]
            before = slot.free + int(amounts[0])
            amounts[0] += per
            cap = slot.allocatable
            self.total += min(cap, before + per) // g - min(cap, before) // g

    def fits(self) -> bool:
        return self.total >= self._need

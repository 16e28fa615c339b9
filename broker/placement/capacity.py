"""The free-GPU index of one site: which nodes have how many GPUs free, per GPU model.

Per GPU model, ``buckets[f]`` is the name-sorted list of nodes with exactly ``f`` free GPUs
(free = allocatable - allocated - reserved, never negative). A gang fit is then a sum over
at most ``max GPUs per node`` buckets instead of a scan of the site's nodes, and best-fit
node choice walks the buckets from the smallest block that fits. Only requests that also
ask for CPUs/memory walk node names, and only those in buckets that fit the GPUs.

The index also owns the GPU reservations and CPU/memory holds per node, keyed by node name
so that a reservation survives a report that (for now) does not list its node.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence

from .errors import InvariantViolation
from .model import Node

_EPS = 1e-9  # float slack so 128 CPUs hold exactly 4 replicas of 32


class NodeSlot:
    """Mutable per-node state behind the index (not part of the public model)."""

    __slots__ = ("allocatable", "allocated", "cpus", "free", "memory_gb", "model", "name")

    def __init__(self, node: Node, reserved: int) -> None:
        self.name = node.name
        self.model = node.gpu_model
        self.allocatable = node.gpus_allocatable
        self.allocated = node.gpus_allocated
        self.cpus = node.cpus
        self.memory_gb = node.memory_gb
        self.free = max(0, node.gpus_allocatable - node.gpus_allocated - reserved)


class ModelIndex:
    """Nodes of one GPU model, bucketed by free GPUs."""

    __slots__ = ("buckets", "nodes")

    def __init__(self) -> None:
        self.buckets: list[list[str]] = [[]]
        self.nodes: list[NodeSlot] = []

    def largest_free(self) -> int:
        for f in range(len(self.buckets) - 1, 0, -1):
            if self.buckets[f]:
                return f
        return 0


class SiteCapacity:
    """Free-GPU index, reservations and CPU/memory holds of one site."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeSlot] = {}
        self.models: dict[str, ModelIndex] = {}
        self.reserved: dict[str, int] = {}  # node -> GPUs reserved (node may be unreported)
        self.cpus_held: dict[str, float] = {}  # node -> CPUs of workloads placed there
        self.memory_held: dict[str, float] = {}
        self.gpus_total = 0
        self.gpus_allocated = 0
        self.gpus_free = 0
        self.cpus_total = 0.0  # of nodes that say (0: unknown); fair share's capacity
        self.memory_gb_total = 0.0

    # --- inventory ---
    def replace(self, nodes: Sequence[Node]) -> None:
        """Take a full snapshot: rebuild the index (O(nodes at this site))."""
        self.nodes = {}
        self.models = {}
        total = allocated = free = 0
        cpus = memory = 0.0
        for node in nodes:
            if node.name in self.nodes:
                raise InvariantViolation(f"node {node.name} reported twice")
            if node.gpus_allocatable < 0 or node.gpus_allocated < 0:
                raise InvariantViolation(f"node {node.name} reports negative GPUs")
            slot = NodeSlot(node, self.reserved.get(node.name, 0))
            self.nodes[node.name] = slot
            idx = self.models.get(node.gpu_model)
            if idx is None:
                idx = self.models[node.gpu_model] = ModelIndex()
            idx.nodes.append(slot)
            if slot.free >= len(idx.buckets):
                idx.buckets.extend([] for _ in range(slot.free + 1 - len(idx.buckets)))
            idx.buckets[slot.free].append(slot.name)
            total += slot.allocatable
            cpus += slot.cpus
            memory += slot.memory_gb
            allocated += slot.allocated
            free += slot.free
        for idx in self.models.values():
            for bucket in idx.buckets:
                bucket.sort()
        self.gpus_total, self.gpus_allocated, self.gpus_free = total, allocated, free
        self.cpus_total, self.memory_gb_total = cpus, memory

    def has_model(self, model: str) -> bool:
        return model in self.models

    def reserved_on_nodes(self) -> int:
        """GPUs reserved on the nodes of the latest report."""
        return sum(n for name, n in self.reserved.items() if name in self.nodes)

    def usage_by_model(self) -> dict[str, tuple[int, int, int, int]]:
        """GPU model -> (allocatable, allocated, reserved, free) over the latest report's nodes
        (for metrics: O(nodes), read at scrape time, never on the placement path)."""
        out = {}
        for model, idx in self.models.items():
            total = allocated = reserved = free = 0
            for slot in idx.nodes:
                total += slot.allocatable
                allocated += slot.allocated
                reserved += self.reserved.get(slot.name, 0)
                free += slot.free
            out[model] = (total, allocated, reserved, free)
        return out

    # --- reservations ---
    def add_gpus(self, node: str, delta: int) -> None:
        """Reserve (delta > 0) or release (delta < 0) GPUs on a node and re-bucket it."""
        left = self.reserved.get(node, 0) + delta
        if left < 0:
            raise InvariantViolation(f"released more GPUs than reserved on node {node}")
        if left:
            self.reserved[node] = left
        else:
            self.reserved.pop(node, None)
        slot = self.nodes.get(node)
        if slot is None:
            return
        new = max(0, slot.allocatable - slot.allocated - left)
        old = slot.free
        if new == old:
            return
        buckets = self.models[slot.model].buckets
        bucket = buckets[old]
        del bucket[bisect_left(bucket, node)]
        if new >= len(buckets):  # a release can lift a node above the report's largest block
            buckets.extend([] for _ in range(new + 1 - len(buckets)))
        insort(buckets[new], node)
        slot.free = new
        self.gpus_free += new - old

    def add_held(self, node: str, cpus: float, memory_gb: float) -> None:
        """Hold (positive) or release (negative) CPUs/memory of a placed workload.

        Agents report no CPU/memory allocation, so the core holds what it placed until the
        workload ends (not only until it runs, unlike GPUs)."""
        if cpus:
            self.cpus_held[node] = c = self.cpus_held.get(node, 0.0) + cpus
            if c <= _EPS:
                del self.cpus_held[node]
        if memory_gb:
            self.memory_held[node] = m = self.memory_held.get(node, 0.0) + memory_gb
            if m <= _EPS:
                del self.memory_held[node]

    # --- fitting ---
    def _slots(self, slot: NodeSlot, free: int, g: int, c: float, m: float) -> int:
        """Replicas of (g GPUs, c CPUs, m GB) that fit on a node with ``free`` GPUs."""
        k = free // g
        if c > 0 and slot.cpus > 0:
            k = min(k, int((slot.cpus - self.cpus_held.get(slot.name, 0.0)) / c + _EPS))
        if m > 0 and slot.memory_gb > 0:
            k = min(k, int((slot.memory_gb - self.memory_held.get(slot.name, 0.0)) / m + _EPS))
        return max(k, 0)

    def fit(self, model: str, g: int, replicas: int, c: float = 0.0, m: float = 0.0) -> int:
        """How many of the gang's replicas fit now (capped at ``replicas``)."""
        idx = self.models.get(model)
        if idx is None:
            return 0
        buckets = idx.buckets
        found = 0
        if c <= 0 and m <= 0:  # fast path: counts only
            for f in range(g, len(buckets)):
                n = len(buckets[f])
                if n:
                    found += n * (f // g)
                    if found >= replicas:
                        return replicas
            return found
        nodes = self.nodes
        for f in range(g, len(buckets)):
            for name in buckets[f]:
                found += self._slots(nodes[name], f, g, c, m)
                if found >= replicas:
                    return replicas
        return found

    def largest_free(self, model: str) -> int:
        idx = self.models.get(model)
        return 0 if idx is None else idx.largest_free()

    def pick(self, model: str, g: int, replicas: int, c: float = 0.0, m: float = 0.0) -> list[str]:
        """Best-fit nodes for the gang, one name per replica, or [] if it does not fit.

        Best fit = the node with the fewest free GPUs that still fits, ties by node name:
        it fills fragments first and keeps whole nodes free for large gangs, and it is
        deterministic. Filling one node before the next is the same as choosing replica by
        replica, because a node's free block only shrinks below every untried node's.
        """
        idx = self.models.get(model)
        if idx is None:
            return []
        out: list[str] = []
        buckets, nodes = idx.buckets, self.nodes
        plain = c <= 0 and m <= 0
        for f in range(g, len(buckets)):
            for name in buckets[f]:
                k = f // g if plain else self._slots(nodes[name], f, g, c, m)
                if k:
                    out.extend([name] * min(k, replicas - len(out)))
                    if len(out) == replicas:
                        return out
        return []

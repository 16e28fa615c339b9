"""The queue of workloads waiting for room, in order, and their shapes.

Order: priority (higher first), then ``seq`` (older first), then arrival in this core (so
requests that share a seq, as tests' defaults do, keep submission order). A requeued
workload keeps its original key, so it goes back to where it was.

A *shape* is everything that decides whether a request fits (see ``shape_of``); within one
queue pass a shape that failed fails again (capacity, quota and budget only shrink during a
pass), and so does any larger shape of the same *class*. The gang size alone (GPU model,
GPUs per replica, replicas, CPUs, memory) is a coarser key that the pass tries first: if
it fits no site's free nodes, no tenant, backend or subsidy can change that. So a pass
skips work without touching nodes; its cost grows with the number of distinct shapes, not
queue x nodes.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import Counter

from .model import Explanation, Request
from .reservations import QueueKey

# tenant, backend, model, sites, subsidy, preferred sites
ShapeClass = tuple[str, str, str, tuple[str, ...], str, tuple[str, ...]]
ShapeSize = tuple[int, int, float, float, float]  # gpus/replica, replicas, cpus, mem, hours


def shape_of(request: Request, capped: bool = False) -> tuple[ShapeClass, ShapeSize]:
    """(class, size): requests of one class are comparable; a larger size fits no better.

    The tenant is in the class because quota and budget are per tenant; estimated hours
    only matter to the budget when subsidy is required, and to a spend cap (``capped``: the
    tenant has one) always. Preferred sites are in it because
    they decide the candidates; whether a workload is still in their round is added by the
    pass (it depends on the time).
    """
    klass = (
        request.tenant,
        request.backend,
        request.gpu_model,
        tuple(sorted(set(request.sites))),
        request.subsidy,
        request.prefer,
    )
    hours = request.estimated_hours if capped or request.subsidy == "required" else 0.0
    size = (
        request.gpus_per_replica,
        request.replicas,
        request.cpus_per_replica,
        request.memory_gb_per_replica,
        hours,
    )
    return klass, size


def dominates(size: tuple, smaller: tuple) -> bool:
    return all(a >= b for a, b in zip(size, smaller, strict=True))


class Entry:
    """One queued workload (mutable bookkeeping around the frozen request)."""

    __slots__ = (
        "cap",
        "cap_size",
        "explanation",
        "failures",
        "gpus",
        "key",
        "klass",
        "note",
        "overflow_at",
        "request",
        "shape",
        "size",
        "stamp",
        "waits",
    )

    def __init__(self, request: Request, key: QueueKey, klass: int, shape: int, size: ShapeSize, cap: int):
        self.request = request
        self.key = key
        self.klass = klass  # interned ShapeClass id
        self.shape = shape  # interned (class, size) id
        self.size = size
        self.cap = cap  # interned (GPU model, gang size) id: the capacity part of the shape
        self.cap_size = size[:4]  # gpus/replica, replicas, cpus, memory
        self.gpus = request.gpus_total
        self.waits = 0  # queue passes in which later work of its GPU model overtook it
        self.explanation: Explanation | None = None  # None: built on demand
        self.failures: list[list[tuple[str, str]]] | None = None  # the last pass's reasons
        # The pass whose state ``explanation``/``failures`` describe (the core's pass count
        # then): a later pass that skipped the entry made them stale without touching it.
        self.stamp = -1
        self.note: str | None = None  # why it is back in the queue (a preemption), until placed
        self.overflow_at = math.inf  # end of its preferred sites' round (inf: no preference)


def entry_key(entry: Entry) -> QueueKey:
    return entry.key


Lines = dict[str, list[Entry]]  # tenant -> its queued work of one priority, in queue order


class WorkQueue:
    """The queue in order, and the same entries as each tenant's line per priority (what
    fair share orders), kept as they change so that a pass need not regroup 50,000."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []  # sorted by key
        self._lines: dict[int, Lines] = {}  # -priority -> tenant -> line, sorted by key
        self._by_id: dict[str, Entry] = {}
        self.tenants: Counter[str] = Counter()  # tenant -> queued workloads

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, workload_id: object) -> bool:
        return workload_id in self._by_id

    def get(self, workload_id: str) -> Entry | None:
        return self._by_id.get(workload_id)

    def push(self, entry: Entry) -> None:
        insort(self._entries, entry, key=entry_key)
        tenant = entry.request.tenant
        insort(self._lines.setdefault(entry.key[0], {}).setdefault(tenant, []), entry, key=entry_key)
        self._by_id[entry.request.workload_id] = entry
        self.tenants[tenant] += 1

    def remove(self, workload_id: str) -> Entry | None:
        entry = self._by_id.pop(workload_id, None)
        if entry is not None:
            _drop(self._entries, entry)
            self._unline(entry)
        return entry

    def _unline(self, entry: Entry) -> None:
        tenant = entry.request.tenant
        group = self._lines[entry.key[0]]
        line = group[tenant]
        _drop(line, entry)
        if not line:
            del group[tenant]
            if not group:
                del self._lines[entry.key[0]]
        self.tenants[tenant] -= 1
        if not self.tenants[tenant]:
            del self.tenants[tenant]

    def remove_many(self, workload_ids: set[str]) -> None:
        """Drop several entries (after a pass placed them): one bisection each when they
        are few against the queue, else one O(queue) sweep."""
        gone = [e for e in map(self._by_id.pop, workload_ids, [None] * len(workload_ids)) if e is not None]
        if not gone:
            return
        for entry in gone:
            self._unline(entry)
        if len(gone) * 64 < len(self._entries):
            for entry in gone:
                _drop(self._entries, entry)
        else:
            self._entries = [e for e in self._entries if e.request.workload_id not in workload_ids]

    def entries(self) -> list[Entry]:
        """A snapshot, in queue order."""
        return list(self._entries)

    def groups(self) -> list[Lines]:
        """A snapshot of the tenants' lines, one mapping per priority, highest first."""
        return [{tenant: list(line) for tenant, line in self._lines[p].items()} for p in sorted(self._lines)]


def _drop(entries: list[Entry], entry: Entry) -> None:
    del entries[bisect_left(entries, entry.key, key=entry_key)]

"""The refusal rule, derived from the filter chain: "could this site *ever* take it?"

The core runs its own filters (``filters.default_filters``) with a hypothetical context
(nothing in use, the tenant's whole remaining budget, no holds, no pause, every overflow
time passed) against each site *emptied and healthy*:

- a site that has reported: its latest nodes at their allocatable GPUs and total
  CPUs/memory, nothing allocated, reserved or held;
- a site that never reported: no known nodes, so only its configuration can rule it out:
  it "has" a GPU model if its price list names it, and any gang "fits".

A request is refused only when this chain fails at every configured site. Nothing here
mirrors a filter, so a new filter takes part in refusal by being in the chain.
"""

from __future__ import annotations

from collections.abc import Sequence

from .capacity import SiteCapacity
from .filters import Filter
from .model import Node, Request
from .site import SiteView


class EmptyCapacity(SiteCapacity):
    """A site's nodes with nothing on them. Never changes once built, so fits are memoised."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        super().__init__()
        self.replace([Node(n.name, n.gpu_model, n.gpus_allocatable, 0, n.cpus, n.memory_gb) for n in nodes])
        self._fits: dict[tuple[str, int, int, float, float], int] = {}

    def fit(self, model: str, g: int, replicas: int, c: float = 0.0, m: float = 0.0) -> int:
        key = (model, g, replicas, c, m)
        hit = self._fits.get(key)
        if hit is None:
            hit = self._fits[key] = super().fit(model, g, replicas, c, m)
        return hit


class UnknownCapacity(SiteCapacity):
    """A site that never reported: any GPU model it prices might be there, in any amount."""

    def __init__(self, priced: frozenset[str]) -> None:
        super().__init__()
        self._priced = priced

    def has_model(self, model: str) -> bool:
        return model in self._priced

    def fit(self, model: str, g: int, replicas: int, c: float = 0.0, m: float = 0.0) -> int:
        return replicas if model in self._priced else 0

    def largest_free(self, model: str) -> int:
        return 0


class NeverJudge:
    """Runs the hypothetical chain against empty twins of the sites (rebuilt when a site's
    reported nodes change shape: allocations do not matter to an empty site)."""

    def __init__(self, filters: Sequence[Filter]) -> None:
        self._filters = filters
        # site -> (the report it was built from, its nodes' shapes, the twin)
        self._twins: dict[str, tuple[Sequence[Node], tuple, SiteView]] = {}

    def reasons(self, site: SiteView, snapshot: Sequence[Node], request: Request) -> list[str]:
        """Why ``site`` can never take ``request`` (empty: it might, some day)."""
        twin = self._twin(site, snapshot)
        out: list[str] = []
        for f in self._filters:
            reason = f.check(twin, request)
            if reason is not None:
                out.append(reason)
                if f.final:
                    break
        return out

    def _twin(self, site: SiteView, snapshot: Sequence[Node]) -> SiteView:
        cached = self._twins.get(site.name)
        if cached is not None and cached[0] is snapshot and cached[2].reported == site.reported:
            return cached[2]  # the common case: the same report object as last time
        shapes = tuple((n.name, n.gpu_model, n.gpus_allocatable, n.cpus, n.memory_gb) for n in snapshot)
        if cached is not None and cached[1] == shapes and cached[2].reported == site.reported:
            twin = cached[2]  # a new report, same nodes: only allocations moved
        else:
            twin = SiteView(site.config)
            twin.healthy = True
            twin.reported = site.reported
            if site.reported:
                twin.capacity = EmptyCapacity(snapshot)
            else:
                twin.capacity = UnknownCapacity(frozenset(site.config.gpu_prices_hkd_per_hour))
        self._twins[site.name] = (snapshot, shapes, twin)
        return twin

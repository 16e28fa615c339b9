"""Scorers: how good is an eligible site for a request? Lower is better for every term.

Each scorer yields one raw term (hours, HK$, utilisation). ``rank`` normalises each term
min-max over the eligible candidates (all equal -> 0, so a term that cannot tell sites
apart does not count), weights them with ``Federation.weights`` and sums. The lowest sum
wins; ties go by site name so that the same snapshot always gives the same decision.
"""

from __future__ import annotations

from collections.abc import Sequence

from .filters import FilterContext
from .locality import DatasetCatalog
from .model import Request, ScoreTerms, Weights
from .pricing import quote
from .site import SiteView


class LocalityScorer:
    """Hours to move the datasets the site lacks, from the nearest holder (data gravity)."""

    name = "locality"

    def __init__(self, catalog: DatasetCatalog) -> None:
        self._catalog = catalog

    def score(self, site: SiteView, request: Request) -> float:
        if not request.datasets:
            return 0.0
        return self._catalog.hours(request.datasets, site.name)


class CostScorer:
    """HK$ the tenant pays after subsidy (subsidy pull)."""

    name = "cost"

    def __init__(self, ctx: FilterContext) -> None:
        self._ctx = ctx

    def score(self, site: SiteView, request: Request) -> float:
        ctx = self._ctx
        program = None if request.subsidy == "none" else ctx.program_of(request.tenant)
        left = ctx.ledger.budget_left(request.tenant) if program is not None else 0.0
        return quote(site.config, request, program, left).tenant_hkd


class LoadScorer:
    """The site's GPU utilisation after this placement (load shedding)."""

    name = "load"

    def score(self, site: SiteView, request: Request) -> float:
        return site.load_after(request.gpus_per_replica * request.replicas)


def _normalise(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12:
        return [0.0] * len(values)
    span = hi - lo
    return [(v - lo) / span for v in values]


def rank(terms: Sequence[ScoreTerms], weights: Weights) -> list[float]:
    """Weighted sum of min-max normalised terms, one score per candidate (same order)."""
    loc = _normalise([t.locality_hours for t in terms])
    cost = _normalise([t.cost_hkd for t in terms])
    load = _normalise([t.load for t in terms])
    wl, wc, wd = weights.locality, weights.cost, weights.load
    return [wl * a + wc * b + wd * c for a, b, c in zip(loc, cost, load, strict=True)]

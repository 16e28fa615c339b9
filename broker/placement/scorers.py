"""Scorers: how good is an eligible site for a request? Lower is better for every term.

Each scorer yields one raw term (hours, HK$, utilisation). ``rank`` scales each to a
dimensionless fraction (see its docstring for why not min-max), weights them with
``Federation.weights`` and sums. The lowest sum wins; ties go by site name so that the
same snapshot always gives the same decision.
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


def rank(terms: Sequence[ScoreTerms], weights: Weights, estimated_hours: float) -> list[float]:
    """Weighted sum of dimensionless terms in [0, 1], one score per candidate (same order).

    Each term is scaled so that its size means something, rather than min-max over the
    candidates (which turns a 1 GB and an 8 TB difference, or HK$1 and HK$10,000, into the
    same 0-vs-1 swing):
    - locality: the share of time-to-result spent moving data, h / (h + estimated_hours);
    - cost: the price relative to the dearest candidate, cost / max(cost);
    - load: the utilisation after placement, already a fraction.
    """
    dearest = max((t.cost_hkd for t in terms), default=0.0)
    scores = []
    for t in terms:
        moving = t.locality_hours / (t.locality_hours + estimated_hours) if t.locality_hours > 0 else 0.0
        cost = t.cost_hkd / dearest if dearest > 0 else 0.0
        scores.append(weights.locality * moving + weights.cost * cost + weights.load * t.load)
    return scores

"""The placement core: pure filters, scores, queue, reservations and explanations.

Imports only the standard library and its own modules (a test checks it). Entry point:
``PlacementCore``; values in ``model``; reason texts in ``reasons``; errors in ``errors``.
"""

from __future__ import annotations

from . import reasons
from .core import DEFAULT_STARVATION_PASSES, PlacementCore
from .errors import (
    DuplicateWorkload,
    InvalidRequest,
    InvariantViolation,
    PlacementError,
    UnknownSite,
)
from .filters import (
    AllowListFilter,
    BackendFilter,
    Filter,
    GangFitFilter,
    GpuModelFilter,
    HealthFilter,
    HeldFilter,
    PausedFilter,
    QuotaFilter,
    SubsidyBudgetFilter,
    SubsidyProgramFilter,
    default_filters,
)
from .locality import DEFAULT_LINK_GBIT_S
from .metrics import PlacementMetrics
from .model import (
    Candidate,
    Charge,
    Dataset,
    Decision,
    Explanation,
    Federation,
    Node,
    Placed,
    Queued,
    Refused,
    Request,
    ScoreTerms,
    SiteConfig,
    SiteUsage,
    SubsidyProgram,
    TenantPolicy,
    Weights,
)
from .scorers import CostScorer, LoadScorer, LocalityScorer, rank

__all__ = [
    "DEFAULT_LINK_GBIT_S",
    "DEFAULT_STARVATION_PASSES",
    "AllowListFilter",
    "BackendFilter",
    "Candidate",
    "Charge",
    "CostScorer",
    "Dataset",
    "Decision",
    "DuplicateWorkload",
    "Explanation",
    "Federation",
    "Filter",
    "GangFitFilter",
    "GpuModelFilter",
    "HealthFilter",
    "HeldFilter",
    "InvalidRequest",
    "InvariantViolation",
    "LoadScorer",
    "LocalityScorer",
    "Node",
    "PausedFilter",
    "Placed",
    "PlacementCore",
    "PlacementError",
    "PlacementMetrics",
    "Queued",
    "QuotaFilter",
    "Refused",
    "Request",
    "ScoreTerms",
    "SiteConfig",
    "SiteUsage",
    "SubsidyBudgetFilter",
    "SubsidyProgram",
    "SubsidyProgramFilter",
    "TenantPolicy",
    "UnknownSite",
    "Weights",
    "default_filters",
    "rank",
    "reasons",
]

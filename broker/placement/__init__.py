"""The placement core: pure filters, scores, queue, reservations and explanations.

Imports only the standard library and its own modules (a test checks it). Entry point:
``PlacementCore``; values in ``model``; reason texts in ``reasons``; errors in ``errors``.
"""

from __future__ import annotations

from . import reasons
from .core import DEFAULT_PREEMPTION_WAIT_S, DEFAULT_STARVATION_PASSES, PlacementCore
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
    PreferenceFilter,
    QuotaFilter,
    SpendCapFilter,
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
    FairSharePolicy,
    Federation,
    Node,
    PassResult,
    Placed,
    Preempted,
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
from .queueview import QueueRow
from .scorers import CostScorer, LoadScorer, LocalityScorer, rank

__all__ = [
    "DEFAULT_LINK_GBIT_S",
    "DEFAULT_PREEMPTION_WAIT_S",
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
    "FairSharePolicy",
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
    "PassResult",
    "PausedFilter",
    "Placed",
    "PlacementCore",
    "PlacementError",
    "PlacementMetrics",
    "Preempted",
    "PreferenceFilter",
    "QueueRow",
    "Queued",
    "QuotaFilter",
    "Refused",
    "Request",
    "ScoreTerms",
    "SiteConfig",
    "SiteUsage",
    "SpendCapFilter",
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

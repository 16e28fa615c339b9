"""Counters the broker exports as metrics (Nomad's AllocMetric, aggregated).

Keys are bounded: filter names from ``reasons`` and decision kinds, never reason texts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class PlacementMetrics:
    filtered: Counter[str] = field(default_factory=Counter)  # filter name -> site rejections
    decisions: Counter[str] = field(default_factory=Counter)  # placed / queued / refused
    passes: int = 0  # queue passes run
    passes_skipped: int = 0  # passes asked for with nothing changed since the last
    evaluated_in_passes: int = 0  # queued workloads fully evaluated by passes
    skipped_by_shape: int = 0  # queued workloads skipped because their shape already failed
    skipped_by_quota: int = 0  # queued workloads skipped because their tenant's quota is short
    preempted: int = 0  # placed workloads taken back for higher-priority work

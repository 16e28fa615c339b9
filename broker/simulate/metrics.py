"""One row of figures per policy run, with units in the key names.

Percentiles are nearest-rank (as the traces' README computes them). Utilisation is the
GPU-time held by jobs (moving data included) over the site's GPUs x the makespan, the span
from the first arrival to the last completion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .replay import Run


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (0 for none)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


def summarise(run: Run) -> dict[str, Any]:
    waits = sorted(run.waits_s)
    # The least-served tenant: the one whose jobs' p95 wait is longest (what fair share is for).
    tenant_p95 = {t: percentile(sorted(w), 95) / 60.0 for t, w in sorted(run.tenant_waits_s.items())}
    worst = max(tenant_p95, key=lambda t: tenant_p95[t], default="")
    makespan_s = max(run.last_s - run.first_s, 0.0)
    minutes = 60.0
    return {
        "policy": run.policy,
        "jobs": run.submitted,
        "completed": run.completed,
        "refused": run.refused,
        "unfinished": run.submitted - run.refused - run.completed,
        "jct_mean_h": _mean(run.jct_s) / 3600,
        "wait_mean_min": _mean(waits) / minutes,
        "wait_p50_min": percentile(waits, 50) / minutes,
        "wait_p95_min": percentile(waits, 95) / minutes,
        "wait_p99_min": percentile(waits, 99) / minutes,
        "worst_tenant": worst,
        "worst_tenant_wait_p95_min": tenant_p95.get(worst, 0.0),
        "tenant_wait_p95_min": tenant_p95,
        # multi-node gangs are what anti-starvation holds protect: their tail, apart
        "gang_jobs": len(run.gang_waits_s),
        "gang_wait_p95_min": percentile(sorted(run.gang_waits_s), 95) / minutes,
        # work of a priority above 0 (the mapping's `priorities`): what preemption is for
        "urgent_jobs": len(run.urgent_waits_s),
        "urgent_wait_p95_min": percentile(sorted(run.urgent_waits_s), 95) / minutes,
        "preempted": run.preempted,
        "utilisation": {
            site: (run.busy_gpu_s[site] / (gpus * makespan_s) if gpus and makespan_s else 0.0)
            for site, gpus in run.gpus_total.items()
        },
        "placed": dict(run.placed_on),
        "data_moved_tb": run.moved_gb / 1000,
        "data_moving_h": run.moving_h,
        "subsidy_hkd": run.program_hkd,
        "tenant_paid_hkd": run.tenant_hkd,
        "makespan_h": makespan_s / 3600,
        "queue_passes": run.passes,
        "wall_s": run.wall_s,
        "sim_jobs_per_s": run.submitted / run.wall_s if run.wall_s > 0 else 0.0,
    }


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0

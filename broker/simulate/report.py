"""The simulation's output: one row per policy as a table, CSV or JSON object.

JSON rows keep nested per-site figures (``utilisation``, ``placed``); CSV and the table
flatten them into one column per site (``util_<site>``, ``placed_<site>``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from .scenario import Scenario

# (key, header, format) of the table, in order; per-site utilisation goes after "wait_p99_min".
_HEAD = [
    ("policy", "policy", "s"),
    ("completed", "done", ",d"),
    ("refused", "refused", ",d"),
    ("jct_mean_h", "JCT h", ".2f"),
    ("wait_mean_min", "wait mean m", ",.1f"),
    ("wait_p50_min", "p50 m", ",.1f"),
    ("wait_p95_min", "p95 m", ",.1f"),
    ("wait_p99_min", "p99 m", ",.1f"),
    ("worst_tenant_wait_p95_min", "worst tenant p95 m", ",.1f"),
    ("worst_tenant", "worst tenant", "s"),
    ("urgent_wait_p95_min", "urgent p95 m", ",.1f"),
    ("preempted", "preempted", ",d"),
]
_TAIL = [
    ("data_moved_tb", "moved TB", ",.1f"),
    ("data_moving_h", "moving h", ",.0f"),
    ("subsidy_hkd", "subsidy HK$", ",.0f"),
    ("tenant_paid_hkd", "tenant HK$", ",.0f"),
    ("makespan_h", "makespan h", ",.0f"),
    ("sim_jobs_per_s", "sim jobs/s", ",.0f"),
]


def context(scenario: Scenario, trace_path: str) -> dict[str, Any]:
    """What the rows were measured on (printed above the table, kept in the JSON)."""
    jobs = scenario.workload.jobs
    return {
        "trace": trace_path,
        "jobs": len(jobs),
        "skipped": dict(sorted(scenario.workload.skipped.items())),
        "seed": scenario.seed,
        "sites": {
            site: sum(n.gpus_allocatable for n in nodes) for site, nodes in sorted(scenario.inventory.items())
        },
    }


def as_json(ctx: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps({**ctx, "rows": [_rounded(r) for r in rows]}, indent=2)


def as_csv(rows: Sequence[dict[str, Any]]) -> str:
    flat = [_flat(r) for r in rows]
    out = io.StringIO()
    if flat:
        writer = csv.DictWriter(out, fieldnames=list(flat[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
    return out.getvalue()


def as_table(ctx: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    sites = list(ctx["sites"])
    columns = [*_HEAD, *[(f"util_{s}", f"util {s}", ".1%") for s in sites], *_TAIL]
    body = [[format(_flat(r, digits=None)[key], fmt) for key, _, fmt in columns] for r in rows]
    skipped = ", ".join(f"{n:,} {why}" for why, n in ctx["skipped"].items()) or "none"
    gpus = ", ".join(f"{s} {n:,} GPUs" for s, n in ctx["sites"].items())
    head = f"{ctx['trace']}: {ctx['jobs']:,} jobs (left out: {skipped}); {gpus}; seed {ctx['seed']}"
    table = tabulate(body, headers=[h for _, h, _ in columns], disable_numparse=True, stralign="right")
    return f"{head}\n\n{table}"


def _flat(row: dict[str, Any], digits: int | None = 6) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "utilisation":
            out.update({f"util_{s}": v for s, v in value.items()})
        elif key == "placed":
            out.update({f"placed_{s}": v for s, v in value.items()})
        elif key == "tenant_wait_p95_min":
            out.update({f"wait_p95_min_{t}": v for t, v in value.items()})
        else:
            out[key] = value
    return out if digits is None else _rounded(out)


def _rounded(value: Any) -> Any:
    """Floats to 6 decimals: enough for HK$ and fractions, without float noise."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value

"""What the CLI prints: JSON objects with the contract's stable keys, and human tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from fedbroker.v1 import site_service_pb2, types_pb2, workload_service_pb2
from tabulate import tabulate

from broker import lifecycle


def _iso(stamp: Any) -> str | None:
    return stamp.ToDatetime().isoformat() + "Z" if stamp.seconds or stamp.nanos else None


def workload_json(w: types_pb2.Workload) -> dict[str, Any]:
    return {
        "id": w.id,
        "name": w.name,
        "tenant": w.tenant,
        "state": lifecycle.from_proto(w.state),
        "site": w.site or None,
        "attempt": w.attempt,
        "trace_id": w.trace_id,
        "message": w.message,
        "backend": w.spec.backend,
        "gpus": w.spec.resources.gpus_per_replica * max(w.spec.resources.replicas, 1),
        "created_at": _iso(w.created_at),
        "updated_at": _iso(w.updated_at),
        "reason": w.reason or None,  # why the last attempt ended
        "infra_requeues": w.infra_requeues,
        "retry_at": _iso(w.retry_at),
    }


def explanation_json(e: types_pb2.Explanation) -> dict[str, Any]:
    return {
        "workload": e.workload,
        "chosen": e.chosen or None,
        "summary": e.summary,
        "attempt": e.attempt,
        "candidates": [
            {
                "site": c.site,
                "eligible": c.eligible,
                "reasons": list(c.reasons),
                "score": c.score if c.HasField("score") else None,
                "terms": {
                    "locality_hours": c.terms.locality_hours,
                    "cost_hkd": c.terms.cost_hkd,
                    "load": c.terms.load,
                }
                if c.HasField("terms")
                else None,
            }
            for c in e.candidates
        ],
    }


def site_json(s: site_service_pb2.Site) -> dict[str, Any]:
    return {
        "name": s.name,
        "healthy": s.healthy,
        "gpus_total": s.gpus_total,
        "gpus_allocated": s.gpus_allocated,
        "gpus_reserved": s.gpus_reserved,
        "gpus_free": s.gpus_free,
        "load": round(s.load, 4),
        "backends": list(s.backends),
        "datasets": list(s.datasets),
        "heartbeat_age_s": None if s.heartbeat_age_s < 0 else round(s.heartbeat_age_s, 2),
        "nodes": len(s.nodes),
    }


def event_json(e: workload_service_pb2.WorkloadEvent) -> dict[str, Any]:
    return {
        "workload": e.workload_id,
        "seq": e.seq,
        "state": lifecycle.from_proto(e.state),
        "site": e.site or None,
        "attempt": e.attempt,
        "message": e.message,
        "at": _iso(e.at),
        "reason": e.reason or None,
    }


def usage_json(r: Any) -> dict[str, Any]:
    return {
        "tenant": r.tenant,
        "program": r.program or None,
        "site": r.site,
        "gpu_hours": round(r.gpu_hours, 4),
        "cost_hkd": round(r.cost_hkd, 2),
        "tenant_hkd": round(r.tenant_hkd, 2),
        "program_hkd": round(r.program_hkd, 2),
    }


def budget_json(b: Any) -> dict[str, Any]:
    keys = ("budget_hkd", "spent_hkd", "reserved_hkd", "left_hkd")
    return {"tenant": b.tenant, "program": b.program, **{k: round(getattr(b, k), 2) for k in keys}}


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    # Numbers are formatted by the caller; tabulate must not re-parse "0.00" into "0".
    return tabulate(
        [[_cell(r.get(c)) for c in columns] for r in rows], headers=list(columns), disable_numparse=True
    )


def _cell(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return value


def explanation_text(data: dict[str, Any]) -> str:
    rows = []
    for c in data["candidates"]:
        terms = c["terms"] or {}
        rows.append(
            {
                "site": c["site"],
                "eligible": "yes" if c["eligible"] else "no",
                "score": None if c["score"] is None else f"{c['score']:.3f}",
                "locality_h": _fmt(terms.get("locality_hours"), ".2f"),
                "cost_hkd": _fmt(terms.get("cost_hkd"), ",.0f"),
                "load": _fmt(terms.get("load"), ".2f"),
                "reasons": "; ".join(c["reasons"]) or None,
            }
        )
    head = f"workload {data['workload']}: {data['summary']}"
    return (
        head
        + "\n\n"
        + table(rows, ["site", "eligible", "score", "locality_h", "cost_hkd", "load", "reasons"])
    )


def _fmt(value: float | None, spec: str) -> str | None:
    return None if value is None else format(value, spec)

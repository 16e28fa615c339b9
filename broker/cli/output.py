"""What the CLI prints: JSON objects with the contract's stable keys, and human tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
import yaml
from fedbroker.v1 import site_service_pb2, types_pb2, workload_service_pb2
from tabulate import tabulate

from broker.sdk import models


def _iso(stamp: Any) -> str | None:
    return stamp.ToDatetime().isoformat() + "Z" if stamp.seconds or stamp.nanos else None


def workload_json(w: types_pb2.Workload) -> dict[str, Any]:
    return models.WorkloadStatus.from_proto(w).to_json()


def explanation_json(e: types_pb2.Explanation) -> dict[str, Any]:
    return models.Explanation.from_proto(e).to_json()


def site_json(s: site_service_pb2.Site) -> dict[str, Any]:
    return models.Site.from_proto(s).to_json()


def event_json(e: workload_service_pb2.WorkloadEvent) -> dict[str, Any]:
    return models.Event.from_proto(e).to_json()


def usage_json(r: Any) -> dict[str, Any]:
    return models.UsageRow.from_proto(r).to_json()


def budget_json(b: Any) -> dict[str, Any]:
    return models.Budget.from_proto(b).to_json()


def emit_json(data: Any) -> None:
    """JSON, or YAML with `-o yaml` (the same keys)."""
    from broker.cli.common import output_format  # common imports the SDK; output stays light

    if output_format() == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
    else:
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
    """Every site: its score as the sum of its weighted parts (lower is better), or why not."""
    rows = []
    for c in data["candidates"]:
        terms = c["terms"] or {}
        parts = terms.get("parts") or {}
        rows.append(
            {
                "site": c["site"],
                "eligible": "yes" if c["eligible"] else "no",
                "score": None if c["score"] is None else f"{c['score']:.3f}",
                "= locality": _fmt(parts.get("locality"), ".3f"),
                "+ cost": _fmt(parts.get("cost"), ".3f"),
                "+ load": _fmt(parts.get("load"), ".3f"),
                "data_move_h": _fmt(terms.get("locality_hours"), ".2f"),
                "tenant_hkd": _fmt(terms.get("tenant_hkd"), ",.0f"),
                "gpu_util": _fmt(terms.get("load"), ".0%"),
                "reasons": "; ".join(c["reasons"]) or None,
            }
        )
    head = f"workload {data['workload']}: {data['summary']}"
    columns = ["site", "eligible", "score", "= locality", "+ cost", "+ load"]
    columns += ["data_move_h", "tenant_hkd", "gpu_util", "reasons"]
    legend = (
        "score = locality + cost + load, each a weighted fraction; lower is better.\n"
        "  locality: hours moving missing data / (that + estimated hours); cost: what the tenant pays\n"
        "  after subsidy / the dearest eligible site's; load: GPU utilisation after placement."
    )
    return f"{head}\n\n{table(rows, columns)}\n\n{legend}"


def _fmt(value: float | None, spec: str) -> str | None:
    return None if value is None else format(value, spec)

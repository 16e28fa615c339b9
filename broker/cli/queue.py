"""`fedbroker queue`: queued work in the order the scheduler will consider it.

Priority first; within a priority, tenants by fair share (the lowest weighted share goes
first; see broker/placement/fairshare.py), then age. Each row says what put it there (its
tenant's share and weight), its preference round (until when only its preferred sites may
take it) and what it waits for now. Tenants see their own rows, at their place in the
whole queue; operators see everyone's.
"""

from __future__ import annotations

import time
from typing import Any

import click
from fedbroker.v1 import workload_service_pb2

from broker.cli import humane, output
from broker.cli.common import client_options
from broker.client import Client

QUEUE_COLUMNS = ["pos", "id", "name", "tenant", "priority", "gpus", "share", "weight", "round", "reason"]


def row_json(w: workload_service_pb2.QueuedWorkload) -> dict[str, Any]:
    """The stable JSON keys of one queued workload."""
    overflow = w.overflow_at.ToDatetime().isoformat() + "Z" if w.HasField("overflow_at") else None
    return {
        "position": w.position,
        "id": w.id,
        "name": w.name,
        "tenant": w.tenant,
        "priority": w.priority,
        "gpus": w.gpus,
        "gpu_model": w.gpu_model,
        "fair_share": w.fair_share,
        "weight": w.weight,
        "preferred_sites": list(w.preferred_sites),
        "overflow_at": overflow,
        "reason": w.reason,
        "preempted": w.preempted or None,
    }


def _round(w: workload_service_pb2.QueuedWorkload, now: float) -> str:
    if not w.preferred_sites:
        return "-"
    preferred = ",".join(w.preferred_sites)
    if w.HasField("overflow_at"):
        left = humane.duration(w.overflow_at.ToNanoseconds() / 1e9 - now)
        return f"1: {preferred} ({left} left)"
    return f"2: {preferred} first"


def _table_row(w: workload_service_pb2.QueuedWorkload, fair: bool, now: float) -> dict[str, Any]:
    reason = w.reason.removeprefix("waiting: ")
    return {
        "pos": w.position,
        "id": w.id,
        "name": w.name,
        "tenant": w.tenant,
        "priority": w.priority,
        "gpus": f"{w.gpus} {w.gpu_model}",
        "share": f"{w.fair_share:.3f}" if fair else "-",
        "weight": f"{w.weight:g}",
        "round": _round(w, now),
        "reason": reason + (f" ({w.preempted})" if w.preempted else ""),
    }


@click.command()
@click.option("--tenant", default="", help="Operators: only this tenant's.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=0,
    help="At most this many rows, from the front [0: the broker's default, 100].",
)
@client_options
def queue(client: Client, as_json: bool, tenant: str, limit: int) -> None:
    """Queued work in the order the scheduler will consider it: priority, then tenants by
    fair share (share and weight shown), then age; with each one's preference round and
    what it waits for (like squeue --sort, kueue's pending workloads)."""
    answer = client.queue(tenant, limit)
    if as_json:
        output.emit_json(
            {
                "fair_share": answer.fair_share,
                "total": answer.total,
                "workloads": [row_json(w) for w in answer.workloads],
            }
        )
        return
    if not answer.workloads:
        click.echo("nothing is queued" + (f" for {tenant}" if tenant else ""))
        return
    now = time.time()
    rows = [_table_row(w, answer.fair_share, now) for w in answer.workloads]
    click.echo(output.table(rows, QUEUE_COLUMNS))
    if answer.total > len(rows):
        click.echo(f"({len(rows)} of {answer.total} shown: --limit N for more)")
    if not answer.fair_share:
        click.echo("fair share is off: first come first served within a priority")

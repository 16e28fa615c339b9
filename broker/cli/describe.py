"""`fedbroker describe ID`: everything about one workload (like kubectl describe, scontrol show job)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click

from broker.cli import humane, output
from broker.cli.common import client_options, sdk
from broker.client import Client
from broker.sdk.models import Event, Site, State, WorkloadStatus


@dataclass(frozen=True)
class Attempt:
    number: int
    site: str | None
    placed_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    outcome: str  # the state it ended in, or its current one
    message: str
    reason: str | None

    def run_seconds(self, now: datetime) -> float:
        if self.started_at is None:
            return 0.0
        return ((self.ended_at or now) - self.started_at).total_seconds()


def attempts_from(events: list[Event], current: WorkloadStatus) -> list[Attempt]:
    """Each attempt's site, times and outcome, read from the workload's events in order."""
    found: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.attempt < 1:
            continue  # queued before its first placement
        a = found.setdefault(event.attempt, {"site": None, "placed": None, "started": None, "ended": None})
        if event.state == State.PLACED:
            a.update(site=event.site, placed=event.at)
        elif event.state == State.RUNNING:
            a["started"] = event.at
        elif a["ended"] is None and (event.state.finished or event.state == State.QUEUED):
            a.update(ended=event.at, outcome=event.state.value, message=event.message, reason=event.reason)
            if event.state == State.QUEUED:
                a["outcome"] = "REQUEUED"
    out = []
    for number, a in sorted(found.items()):
        outcome = a.get("outcome") or current.state.value
        message = a.get("message") or (current.message if number == current.attempt else "")
        out.append(
            Attempt(
                number, a["site"], a["placed"], a["started"], a["ended"], outcome, message, a.get("reason")
            )
        )
    return out


def cost_so_far(attempts: list[Attempt], gpus: int, gpu_model: str, sites: list[Site]) -> float | None:
    """List price of the GPU time used so far (before subsidy); None when a price is unknown."""
    now = datetime.now(UTC)
    prices = {s.name: s.price(gpu_model) for s in sites}
    total = 0.0
    for attempt in attempts:
        seconds = attempt.run_seconds(now)
        if seconds <= 0:
            continue
        price = prices.get(attempt.site or "")
        if price is None:
            return None
        total += gpus * seconds / 3600 * price
    return total


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command()
@click.argument("workload", shell_complete=humane.complete_workloads)
@client_options
def describe(client: Client, as_json: bool, workload: str) -> None:
    """Everything about one workload: spec, site and nodes, times, attempts, cost so far, why, events."""
    api = sdk()
    status = api.get(workload)
    events = api.events(status.id)
    explanation = api.explain(status.id)
    attempts = attempts_from(events, status)
    now = datetime.now(UTC)
    started = next((a.started_at for a in attempts if a.started_at), None)
    ended = events[-1].at if status.state.finished and events else None
    run_seconds = sum(a.run_seconds(now) for a in attempts)
    gpu_model = status.spec.resources.gpu_model if status.spec else ""
    sites = api.sites() if attempts else []
    cost = cost_so_far(attempts, status.gpus, gpu_model, sites)
    data = {
        **status.to_json(),
        "spec": status.spec.model_dump(mode="json") if status.spec else None,
        "started_at": output.models.iso(started),
        "ended_at": output.models.iso(ended),
        "run_seconds": round(run_seconds, 3),
        # List price, before subsidy: the money issue's `total_hkd` (usage), not `tenant_hkd`
        # (the tenant's share); `cost_so_far_hkd` is the same figure under its first name.
        "total_hkd_so_far": None if cost is None else round(cost, 2),
        "cost_so_far_hkd": None if cost is None else round(cost, 2),
        "attempts": [
            {
                "attempt": a.number,
                "site": a.site,
                "placed_at": output.models.iso(a.placed_at),
                "started_at": output.models.iso(a.started_at),
                "ended_at": output.models.iso(a.ended_at),
                "outcome": a.outcome,
                "reason": a.reason,
                "message": a.message,
            }
            for a in attempts
        ],
        "explanation": explanation.to_json(),
        "events": [e.to_json() for e in events],
    }
    if as_json:
        output.emit_json(data)
        return
    click.echo(_text(status, data, attempts, explanation.summary, events))


def _text(
    status: WorkloadStatus, data: dict[str, Any], attempts: list[Attempt], summary: str, events: list[Event]
) -> str:
    spec = status.spec
    lines = [
        f"Name:        {status.name}",
        f"ID:          {status.id}",
        f"Tenant:      {status.tenant}",
        f"State:       {status.state.value}"
        + (f" (#{status.queue_position} in the queue)" if status.queue_position else ""),
        f"Message:     {status.message}",
    ]
    if status.site_unreachable_since:
        lines.append(f"Warning:     {humane.unreachable(data)}")
    lines += [
        f"Site:        {status.site or '-'}",
        f"Nodes:       {', '.join(status.nodes) or '-'}",
        f"Trace:       {status.trace_id or '-'}",
        "Times:",
        f"  Submitted: {_when(status.created_at)}",
        f"  Started:   {_when(_parse(data['started_at']))}",
        f"  Ended:     {_when(_parse(data['ended_at']))}",
        f"  Run time:  {humane.duration(data['run_seconds'])}",
        "Cost so far: "
        + (
            "unknown (no price)"
            if data["total_hkd_so_far"] is None
            else f"HK$ {data['total_hkd_so_far']:,.2f} (list price, before subsidy: the total, "
            "not the tenant's share; settled charges: fedbroker usage)"
        ),
    ]
    if spec is not None:
        r = spec.resources
        lines += [
            "Spec:",
            f"  Backend:   {spec.backend}",
            f"  Resources: {r.replicas} x {r.gpus_per_replica} {r.gpu_model}"
            + (f", {r.cpus_per_replica:g} CPUs" if r.cpus_per_replica else "")
            + (f", {r.memory_gb_per_replica:g} GB" if r.memory_gb_per_replica else "")
            + " per replica",
            f"  Datasets:  {', '.join(spec.datasets) or '-'}",
            f"  Subsidy:   {spec.subsidy}   Priority: {spec.priority}",
            f"  Estimated: {spec.estimated_hours:g} h",
            f"  Attempts:  at most {spec.max_attempts}   Sites: {', '.join(spec.sites) or 'any'}",
        ]
    lines.append("Attempts:")
    rows = [
        {
            "attempt": a.number,
            "site": a.site,
            "outcome": a.outcome,
            "reason": a.reason,
            "run": humane.duration(a.run_seconds(datetime.now(UTC))) if a.started_at else None,
            "message": a.message,
        }
        for a in attempts
    ]
    lines.append(
        _indent(output.table(rows, ["attempt", "site", "outcome", "reason", "run", "message"]))
        if rows
        else "  none yet"
    )
    lines += [
        "Explanation:",
        f"  {summary}",
        "  (fedbroker explain for every site's score or reasons)",
        "Events:",
    ]
    event_rows = [
        {
            "at": e.to_json()["at"],
            "state": e.state.value,
            "attempt": e.attempt,
            "site": e.site,
            "message": e.message,
        }
        for e in events
    ]
    lines.append(_indent(output.table(event_rows, ["at", "state", "attempt", "site", "message"])))
    return "\n".join(lines)


def _parse(stamp: str | None) -> datetime | None:
    return None if stamp is None else datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())

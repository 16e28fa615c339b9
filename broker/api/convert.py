"""Wire messages to the engine's values and back; what an agent sends is checked here first.

Nothing an agent or client sends reaches the engine unchecked: a snapshot with a negative
GPU count, a non-finite number, a node listed twice or an attempt in an impossible state
raises `BadReport` (the agent stream logs it and drops the message; the site goes
unhealthy by TTL if its reports stay broken).
"""

from __future__ import annotations

import math
from typing import Any

from fedbroker.v1 import agent_service_pb2, site_service_pb2, types_pb2, workload_service_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from broker import lifecycle
from broker.engine.commands import AttemptReport, Inventory
from broker.engine.engine import SiteStatus
from broker.engine.infra import REASON_MAX_CHARS
from broker.engine.records import (
    Assign,
    CancelAttempt,
    Event,
    FetchLogs,
    StopLogs,
    ToAgent,
    Welcome,
    WorkloadRecord,
)
from broker.placement import Node
from broker.spec import spec_to_proto

# What an agent may say of an attempt (QUEUED is the broker's alone).
_AGENT_STATES = frozenset({lifecycle.PLACED, lifecycle.RUNNING, *lifecycle.TERMINAL})


class BadReport(ValueError):
    """An agent message that is not applied; the text names the field at fault."""


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


# ---------------------------------------------------------------------------- to clients


def workload(record: WorkloadRecord, spec: types_pb2.WorkloadSpec | None = None) -> types_pb2.Workload:
    """`spec`: the wire form when the caller has it (Submit), saving a conversion."""
    message = types_pb2.Workload(
        id=record.id,
        name=record.name,
        tenant=record.tenant,
        state=lifecycle.to_proto(record.state),
        site=record.site or "",
        attempt=record.attempt,
        trace_id=record.trace_id,
        message=record.message,
        spec=spec if spec is not None else spec_to_proto(record.spec),
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
        reason=record.reason,
        infra_requeues=record.infra_requeues,
    )
    if record.retry_at is not None:
        message.retry_at.CopyFrom(timestamp(record.retry_at))
    return message


def event(row: Event) -> workload_service_pb2.WorkloadEvent:
    return workload_service_pb2.WorkloadEvent(
        workload_id=row.workload_id,
        seq=row.seq,
        state=lifecycle.to_proto(row.state),
        site=row.site or "",
        attempt=row.attempt,
        message=row.message,
        at=timestamp(row.at),
        reason=row.reason,
    )


def explanation(data: dict[str, Any]) -> types_pb2.Explanation:
    """An explanation's message. Its candidates, in the shape `Candidate.to_dict` makes (a
    score and terms, or None for both), are handed to protobuf as they are, which builds the
    nested messages in C: half the time of a field-by-field copy, and this runs for every
    Submit's answer. A stored explanation protobuf refuses (a key it lacks) goes field by field."""
    head = {
        "workload": data["workload"],
        "chosen": data.get("chosen") or "",
        "summary": data.get("summary", ""),
        "attempt": data.get("attempt", 0),
    }
    try:
        return types_pb2.Explanation(**head, candidates=data["candidates"])
    except (ValueError, TypeError):
        pass
    message = types_pb2.Explanation(**head)
    for c in data["candidates"]:
        candidate = message.candidates.add(site=c["site"], eligible=c["eligible"], reasons=c["reasons"])
        if c.get("score") is not None:
            candidate.score = c["score"]
        if c.get("terms"):
            candidate.terms.CopyFrom(types_pb2.ScoreTerms(**c["terms"]))
    return message


def site_quote(q: dict[str, Any]) -> workload_service_pb2.SiteQuote:
    """A dry run's estimate at one site (broker/engine/money.py); decimals as doubles of cents."""
    message = workload_service_pb2.SiteQuote(
        site=q["site"],
        eligible=q["eligible"],
        reasons=q["reasons"],
        gpu_model=q["gpu_model"],
        gpu_hours=float(q["gpu_hours"]),
        price_hkd_per_gpu_hour=float(q["price_hkd_per_gpu_hour"]),
        total_hkd=float(q["total_hkd"]),
        program_hkd=float(q["program_hkd"]),
        tenant_hkd=float(q["tenant_hkd"]),
        program=q["program"],
    )
    if q["budget_left_after_hkd"] is not None:
        message.budget_left_after_hkd = float(q["budget_left_after_hkd"])
    if q["cap_left_after_hkd"] is not None:
        message.cap_left_after_hkd = float(q["cap_left_after_hkd"])
    return message


def site(status: SiteStatus) -> site_service_pb2.Site:
    usage = status.usage
    total = usage.gpus_total
    return site_service_pb2.Site(
        name=status.name,
        healthy=status.healthy,
        gpus_total=total,
        gpus_allocated=usage.gpus_allocated,
        gpus_reserved=usage.gpus_reserved,
        gpus_free=usage.gpus_free,
        backends=status.backends,
        load=(usage.gpus_allocated + usage.gpus_reserved) / total if total else 0.0,
        heartbeat_age_s=-1.0 if status.heartbeat_age_s is None else status.heartbeat_age_s,
        datasets=status.datasets,
        nodes=[node_to_proto(n) for n in status.nodes],
    )


def node_to_proto(node: Node) -> types_pb2.Node:
    return types_pb2.Node(
        name=node.name,
        gpu_model=node.gpu_model,
        gpus_allocatable=node.gpus_allocatable,
        gpus_allocated=node.gpus_allocated,
        cpus=node.cpus,
        memory_gb=node.memory_gb,
    )


# ---------------------------------------------------------------------------- to agents


def to_agent(message: ToAgent, epoch: int = 0) -> agent_service_pb2.BrokerMessage:
    """The wire form; `epoch`: the lease epoch the sending broker holds (0: no lease)."""
    match message:
        case Assign():
            spec = (
                types_pb2.WorkloadSpec.FromString(message.spec_wire)
                if message.spec_wire is not None
                else spec_to_proto(message.spec)
            )
            return agent_service_pb2.BrokerMessage(
                assignment=agent_service_pb2.Assignment(
                    workload_id=message.workload_id,
                    attempt=message.attempt,
                    tenant=message.tenant,
                    spec=spec,
                    nodes=message.nodes,
                    trace_context=message.trace_context,
                    epoch=epoch,
                )
            )
        case CancelAttempt():
            return agent_service_pb2.BrokerMessage(
                cancel=agent_service_pb2.Cancel(
                    workload_id=message.workload_id,
                    attempt=message.attempt,
                    reason=message.reason,
                    epoch=epoch,
                )
            )
        case Welcome():
            return agent_service_pb2.BrokerMessage(
                welcome=agent_service_pb2.Welcome(
                    broker_id=message.broker_id, heartbeat_ttl_s=message.heartbeat_ttl_s, epoch=epoch
                )
            )
        case FetchLogs():
            return agent_service_pb2.BrokerMessage(
                fetch_logs=agent_service_pb2.FetchLogs(
                    request_id=message.request_id,
                    workload_id=message.workload_id,
                    attempt=message.attempt,
                    tail=message.tail,
                    follow=message.follow,
                )
            )
        case StopLogs():
            return agent_service_pb2.BrokerMessage(
                stop_logs=agent_service_pb2.StopLogs(request_id=message.request_id)
            )
    raise TypeError(f"not a message for agents: {message!r}")


# ---------------------------------------------------------------------------- from agents


def inventory(report: agent_service_pb2.InventoryReport) -> Inventory:
    names: set[str] = set()
    nodes = []
    for i, n in enumerate(report.nodes):
        where = f"nodes[{i}]"
        if not n.name:
            raise BadReport(f"{where}.name: empty")
        if n.name in names:
            raise BadReport(f"{where}.name: node {n.name[:64]!r} is listed twice")  # bounded echo
        names.add(n.name)
        if n.gpus_allocatable < 0 or n.gpus_allocated < 0:
            raise BadReport(f"{where}: GPU counts must not be negative")
        if n.gpus_allocated > n.gpus_allocatable:
            raise BadReport(f"{where}.gpus_allocated: {n.gpus_allocated} is above gpus_allocatable")
        for field in ("cpus", "memory_gb", "gpu_memory_gb"):
            value = getattr(n, field)
            if not (math.isfinite(value) and value >= 0):
                raise BadReport(f"{where}.{field}: must be a finite number >= 0")
        nodes.append(Node(n.name, n.gpu_model, n.gpus_allocatable, n.gpus_allocated, n.cpus, n.memory_gb))
    attempts = tuple(_attempt(w, f"workloads[{i}]") for i, w in enumerate(report.workloads))
    return Inventory(tuple(nodes), tuple(sorted(set(report.datasets))), attempts)


def attempt(update: agent_service_pb2.WorkloadUpdate) -> AttemptReport:
    return _attempt(update, "update")


def _attempt(
    item: agent_service_pb2.RunningWorkload | agent_service_pb2.WorkloadUpdate, where: str
) -> AttemptReport:
    if not item.workload_id:
        raise BadReport(f"{where}.workload_id: empty")
    if item.attempt < 1:
        raise BadReport(f"{where}.attempt: must be at least 1")
    try:
        state = lifecycle.from_proto(item.state)
    except ValueError:
        state = ""
    if state not in _AGENT_STATES:
        raise BadReport(f"{where}.state: an agent cannot report state {item.state}")
    exit_code = item.exit_code if item.HasField("exit_code") else None
    # An unknown reason is kept (bounded) and judged the workload's own: a newer agent's words still show.
    reason = item.reason[:REASON_MAX_CHARS]
    return AttemptReport(item.workload_id, item.attempt, state, item.message, exit_code, reason)

"""Store rows and engine values to wire messages and back."""

from __future__ import annotations

from typing import Any

from fedbroker.v1 import site_service_pb2, types_pb2, workload_service_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from broker import lifecycle
from broker.inventory import SiteState, node_to_proto
from broker.placement import SiteUsage
from broker.spec import spec_to_proto
from broker.store import WorkloadEventRow, WorkloadRow


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def workload(row: WorkloadRow) -> types_pb2.Workload:
    return types_pb2.Workload(
        id=row.id,
        name=row.name,
        tenant=row.tenant,
        state=lifecycle.to_proto(row.state),
        site=row.site or "",
        attempt=row.attempt,
        trace_id=row.trace_id,
        message=row.message,
        spec=spec_to_proto(row.spec),
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )


def event(row: WorkloadEventRow) -> workload_service_pb2.WorkloadEvent:
    assert row.seq is not None
    return workload_service_pb2.WorkloadEvent(
        workload_id=row.workload_id,
        seq=row.seq,
        state=lifecycle.to_proto(row.state),
        site=row.site or "",
        attempt=row.attempt,
        message=row.message,
        at=timestamp(row.at),
    )


def explanation(data: dict[str, Any]) -> types_pb2.Explanation:
    message = types_pb2.Explanation(
        workload=data["workload"],
        chosen=data.get("chosen") or "",
        summary=data.get("summary", ""),
        attempt=data.get("attempt", 0),
    )
    for c in data["candidates"]:
        candidate = message.candidates.add(site=c["site"], eligible=c["eligible"], reasons=c["reasons"])
        if c.get("score") is not None:
            candidate.score = c["score"]
        if c.get("terms"):
            candidate.terms.CopyFrom(types_pb2.ScoreTerms(**c["terms"]))
    return message


def site(state: SiteState, usage: SiteUsage, now: float) -> site_service_pb2.Site:
    age = state.heartbeat_age(now)
    total = usage.gpus_total
    return site_service_pb2.Site(
        name=state.name,
        healthy=state.healthy,
        gpus_total=total,
        gpus_allocated=usage.gpus_allocated,
        gpus_reserved=usage.gpus_reserved,
        gpus_free=usage.gpus_free,
        backends=state.backends,
        load=(usage.gpus_allocated + usage.gpus_reserved) / total if total else 0.0,
        heartbeat_age_s=-1.0 if age is None else age,
        datasets=state.datasets,
        nodes=[node_to_proto(n) for n in state.nodes],
    )

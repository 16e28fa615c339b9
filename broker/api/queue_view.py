"""WorkloadService.Queue's answer: the placement core's queue rows, with names and wall times.

Read on the engine's event loop (as List's live status is); changes nothing. The core's
time is the broker's wall clock, so an overflow time converts as is.
"""

from __future__ import annotations

from fedbroker.v1 import workload_service_pb2

from broker.api import convert
from broker.engine.engine import Engine


def queue_response(engine: Engine, tenant: str | None, limit: int) -> workload_service_pb2.QueueResponse:
    core = engine.state.core
    rows, total = core.queue_rows(tenant, limit)
    live = engine.state.live
    out = workload_service_pb2.QueueResponse(total=total, fair_share=core.fair_share_enabled)
    for row in rows:
        workload = live.get(row.workload_id)
        item = out.workloads.add(
            position=row.position,
            id=row.workload_id,
            name=workload.name if workload is not None else "",
            tenant=row.tenant,
            priority=row.priority,
            gpus=row.gpus,
            gpu_model=row.gpu_model,
            fair_share=row.fair_share,
            weight=row.weight,
            preferred_sites=row.preferred,
            reason=row.reason,
            preempted=row.preempted or "",
        )
        if row.overflow_at is not None:
            item.overflow_at.CopyFrom(convert.timestamp(row.overflow_at))
    return out

"""One row of the queue as the scheduler will consider it (``fedbroker queue``).

Built by ``PlacementCore.queue_rows``: position in the order of the next pass (priority,
then tenants by fair share, then age), the tenant's share and weight that put it there,
its preference round, and what it waits for now.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueRow:
    position: int  # 1-based, in the whole queue (a tenant's rows keep their place in it)
    workload_id: str
    tenant: str
    priority: int
    gpus: int
    gpu_model: str
    fair_share: float  # the tenant's weighted share now (0 with fair share off)
    weight: float  # the tenant's fair-share weight
    preferred: tuple[str, ...]  # its preferred sites (its own or its tenant's home), in order
    overflow_at: float | None  # while in round 1: when other sites may take it (core time)
    reason: str  # what it waits for now, its preference round included
    preempted: str | None  # why it is back in the queue, if a preemption took it back

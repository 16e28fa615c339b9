"""The live view of each site: its agent's last report, and whether it is healthy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fedbroker.v1 import types_pb2

from broker import placement


@dataclass
class SiteState:
    name: str
    backends: tuple[str, ...]
    agent_id: str = ""
    report_seq: int = 0
    nodes: list[placement.Node] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    last_report_at: float | None = None
    healthy: bool = False
    # Set on (re)connect: the first report after it is a full account of what the
    # agent runs, so attempts missing from it were lost with the agent.
    awaiting_first_report: bool = False
    # When the site went unhealthy; its running work is re-queued after the grace period.
    unhealthy_since: float | None = None

    def heartbeat_age(self, now: float) -> float | None:
        return None if self.last_report_at is None else max(0.0, now - self.last_report_at)


def node_from_proto(node: types_pb2.Node) -> placement.Node:
    return placement.Node(
        name=node.name,
        gpu_model=node.gpu_model,
        gpus_allocatable=node.gpus_allocatable,
        gpus_allocated=node.gpus_allocated,
        cpus=node.cpus,
        memory_gb=node.memory_gb,
    )


def node_to_proto(node: placement.Node) -> types_pb2.Node:
    return types_pb2.Node(
        name=node.name,
        gpu_model=node.gpu_model,
        gpus_allocatable=node.gpus_allocatable,
        gpus_allocated=node.gpus_allocated,
        cpus=node.cpus,
        memory_gb=node.memory_gb,
    )


def node_to_json(node: placement.Node) -> dict[str, Any]:
    return dataclasses.asdict(node)


def node_from_json(data: dict[str, Any]) -> placement.Node:
    return placement.Node(**data)

"""Pure: a Ray cluster's nodes and their use, as fedbroker's node inventory.

Inputs are what the dashboard answers (see `RayBackend` for where they come
from): each alive node's total resources and labels, and the GPUs in use per
node id. Nodes without GPUs are left out: the broker places GPU work only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from site_agents.backends.base import NodeInventory
from site_agents.backends.ray_jobs import ACCELERATOR_PREFIX, GIB, gpus_in_use


@dataclass(frozen=True)
class RayNode:
    node_id: str
    node_ip: str
    resources_total: Mapping[str, float]
    labels: Mapping[str, str]
    is_head: bool = False


def accelerator_of(resources: Mapping[str, float], default: str) -> str:
    types = sorted(
        name.removeprefix(ACCELERATOR_PREFIX) for name in resources if name.startswith(ACCELERATOR_PREFIX)
    )
    return types[0] if types else default


def inventory(
    nodes: Iterable[RayNode],
    gpus_used: Mapping[str, float],
    default_gpu_model: str,
    gpu_memory_gb: Mapping[str, float],
) -> list[NodeInventory]:
    """One NodeInventory per GPU node, named by node id (unique, unlike IPs), in id order."""
    result = []
    for node in sorted(nodes, key=lambda n: n.node_id):
        gpus = int(node.resources_total.get("GPU", 0))
        if gpus <= 0:
            continue
        model = accelerator_of(node.resources_total, default_gpu_model)
        labels = {**node.labels, "ray.io/node-ip": node.node_ip}
        if node.is_head:
            labels["ray.io/head-node"] = "true"
        result.append(
            NodeInventory(
                name=node.node_id,
                gpu_model=model,
                gpus_allocatable=gpus,
                gpus_allocated=min(gpus_in_use(gpus_used.get(node.node_id, 0.0)), gpus),
                gpu_memory_gb=gpu_memory_gb.get(model, 0.0),
                cpus=float(node.resources_total.get("CPU", 0.0)),
                memory_gb=round(float(node.resources_total.get("memory", 0.0)) / GIB, 2),
                labels=labels,
            )
        )
    return result


def gpus_used_by_node(cluster_status: Mapping[str, Any]) -> dict[str, float]:
    """GPUs in use per node id from `/api/cluster_status`'s load-metrics report ([used, total] pairs).

    The dashboard camel-cases that report's keys (`loadMetricsReport`, `usageByNode`);
    node ids (hex) and the `GPU` resource name come through unchanged.
    """
    data = cluster_status.get("data") or {}
    status = data.get("clusterStatus") or data.get("cluster_status") or {}
    report = status.get("loadMetricsReport") or status.get("load_metrics_report") or {}
    by_node = report.get("usageByNode") or report.get("usage_by_node") or {}
    used: dict[str, float] = {}
    for node_id, usage in by_node.items():
        pair = usage.get("GPU")
        if isinstance(pair, list | tuple) and pair:
            used[node_id] = float(pair[0])
    return used

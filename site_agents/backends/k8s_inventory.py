"""Pure: Kubernetes Nodes and Pods (as the API's JSON) to fedbroker's node inventory.

A node counts when it has `nvidia.com/gpu` allocatable, its Ready condition is
True, it is not cordoned, and it has no NoSchedule/NoExecute taint the site's
workload pods do not tolerate. Its GPUs in use are the `nvidia.com/gpu` requests
of the pods bound to it that have not ended. Records are slim on purpose: the
backend keeps one per node and per pod of the whole cluster in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from site_agents.backends.base import NodeInventory
from site_agents.backends.k8s_manifest import GPU_RESOURCE, PRODUCT_LABEL
from site_agents.config import KubernetesBackendConfig, Toleration

GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB, as GPU Feature Discovery publishes it
GIB = 2**30
_REPORTED_LABEL_PREFIXES = ("topology.kubernetes.io/", "node.kubernetes.io/instance-type", "nvidia.com/")
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX: dict[str, int | Decimal] = {
    "": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def quantity(text: object) -> Decimal:
    """A Kubernetes resource quantity ("128", "500m", "1056Gi") as a number; 0 when unreadable."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _SUFFIX:
        return Decimal(0)
    return Decimal(match.group(1)) * _SUFFIX[match.group(2)]


@dataclass(frozen=True)
class NodeRecord:
    name: str
    schedulable: bool  # Ready, not cordoned, no taint the workloads do not tolerate
    gpus: int
    product: str
    gpu_memory_gb: float
    cpus: float
    memory_gb: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodRecord:
    node: str  # "" while unbound
    gpus: int
    ended: bool


def node_record(node: Mapping[str, Any], tolerations: Sequence[Toleration]) -> NodeRecord:
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    labels = meta.get("labels") or {}
    allocatable = status.get("allocatable") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    blocking = [
        t
        for t in spec.get("taints") or []
        if t.get("effect") in ("NoSchedule", "NoExecute")
        and not any(_tolerates(tol, t) for tol in tolerations)
    ]
    memory_mib = quantity(labels.get(GPU_MEMORY_LABEL, 0))
    return NodeRecord(
        name=str(meta.get("name", "")),
        schedulable=ready and not spec.get("unschedulable") and not blocking,
        gpus=int(quantity(allocatable.get(GPU_RESOURCE, 0))),
        product=str(labels.get(PRODUCT_LABEL, "")),
        gpu_memory_gb=round(float(memory_mib) / 1024, 2),
        cpus=float(quantity(allocatable.get("cpu", 0))),
        memory_gb=round(float(quantity(allocatable.get("memory", 0))) / GIB, 2),
        labels={k: str(v) for k, v in labels.items() if k.startswith(_REPORTED_LABEL_PREFIXES)},
    )


def pod_record(pod: Mapping[str, Any]) -> PodRecord:
    spec = pod.get("spec") or {}
    phase = (pod.get("status") or {}).get("phase", "")
    gpus = 0
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        # Extended resources must set limits; requests, when given, equal them.
        amount = (resources.get("limits") or {}).get(GPU_RESOURCE) or (resources.get("requests") or {}).get(
            GPU_RESOURCE, 0
        )
        gpus += int(quantity(amount))
    return PodRecord(node=str(spec.get("nodeName") or ""), gpus=gpus, ended=phase in ("Succeeded", "Failed"))


def inventory(
    nodes: Iterable[NodeRecord], pods: Iterable[PodRecord], config: KubernetesBackendConfig
) -> list[NodeInventory]:
    used: dict[str, int] = {}
    for pod in pods:
        if pod.node and pod.gpus and not pod.ended:
            used[pod.node] = used.get(pod.node, 0) + pod.gpus
    return [
        NodeInventory(
            name=node.name,
            gpu_model=config.gpu_models.get(node.product, node.product)
            if node.product
            else config.default_gpu_model,
            gpus_allocatable=node.gpus,
            gpus_allocated=min(used.get(node.name, 0), node.gpus),
            gpu_memory_gb=node.gpu_memory_gb,
            cpus=node.cpus,
            memory_gb=node.memory_gb,
            labels=node.labels,
        )
        for node in sorted(nodes, key=lambda n: n.name)
        if node.schedulable and node.gpus > 0
    ]


def _tolerates(toleration: Toleration, taint: Mapping[str, Any]) -> bool:
    if toleration.key != taint.get("key"):
        return False
    if toleration.effect is not None and toleration.effect != taint.get("effect"):
        return False
    return toleration.operator == "Exists" or toleration.value == taint.get("value")

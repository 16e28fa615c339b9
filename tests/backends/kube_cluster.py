"""The Kubernetes stand-in: kmock's API emulator on 127.0.0.1, a kubeconfig, GPU nodes, a Job controller.

kmock serves the real Kubernetes HTTP API (lists, watches, create, patch,
delete) from memory, so the backend runs the official client unchanged. It
runs no controllers and ignores label selectors; `JobController` plays the
parts of the Job controller, the scheduler and the kubelet that the tests need.
Every Job the backend creates is validated strictly against the Kubernetes
schema (kubernetes-validate): `invalid` collects what failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp.test_utils
import kmock
import yaml

from .kube_controller import JobController

NAMESPACE = "fedbroker-workloads"
RESOURCES = {
    "v1/nodes": ("Node", False, set()),
    "v1/pods": ("Pod", True, {"log", "status"}),
    "batch/v1/jobs": ("Job", True, {"status"}),
}


def gpu_node(
    name: str,
    gpus: int = 8,
    product: str | None = "NVIDIA-H800",
    *,
    ready: bool = True,
    unschedulable: bool = False,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": name,
        "topology.kubernetes.io/zone": "hk-1a",
        "nvidia.com/gpu.memory": "81559",
    }
    if product:
        labels["nvidia.com/gpu.product"] = product
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {
            "allocatable": {"cpu": "127500m", "memory": "1056Gi", "nvidia.com/gpu": str(gpus), "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


class KubeCluster:
    def __init__(self, emulator: kmock.KubernetesEmulator, server: kmock.Server, kubeconfig: Path) -> None:
        self.emulator = emulator
        self.server = server
        self.kubeconfig = kubeconfig
        self.controller = JobController(emulator, NAMESPACE)

    @property
    def invalid(self) -> list[str]:
        return self.controller.invalid

    def add_node(self, node: dict[str, Any]) -> None:
        """Seed a node without an event (a watch sees it only by listing: what a missed event looks like)."""
        self.emulator.objects["v1/nodes", None, node["metadata"]["name"]] = node

    def remove_node(self, name: str) -> None:
        del self.emulator.objects["v1/nodes", None, name]

    def add_pod(self, namespace: str, name: str, node: str, gpus: int, phase: str = "Running") -> None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "nodeName": node,
                "containers": [
                    {"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
                ],
            },
            "status": {"phase": phase},
        }
        self.emulator.objects["v1/pods", namespace, name] = pod

    async def patch_node(self, name: str, patch: dict[str, Any]) -> None:
        """Change a node through the API (watchers see the event)."""
        await self.emulator.patch(f"/api/v1/nodes/{name}", json=patch)

    async def expire_watches(self, resource: str = "v1/nodes") -> None:
        """What a real server says when a watch's resourceVersion is too old: an ERROR event, 410 Gone."""
        gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired"}
        await self.emulator._buses[kmock.resource(resource)].put({"type": "ERROR", "object": gone})

    def lists(self, resource: str) -> int:
        """How many LIST requests (not watches) the server answered for a resource."""
        return self._count(resource, "LIST")

    def watches(self, resource: str) -> int:
        return self._count(resource, "WATCH")

    def _count(self, resource: str, action: str) -> int:
        want = kmock.resource(resource)
        return sum(
            1
            for request in self.emulator._requests
            if request.resource == want and str(request.action).endswith(action)
        )


class _QuickShutdownServer(aiohttp.test_utils.RawTestServer):
    """A watch still streaming when a test ends (a backend closed mid-read) must not hold the
    emulator's shutdown for aiohttp's default 60 s: that outlasted the tests' own timeouts."""

    async def _make_runner(self, **kwargs: Any) -> Any:
        return await super()._make_runner(shutdown_timeout=1.0, **kwargs)


@contextlib.asynccontextmanager
async def kube_cluster(tmp_dir: Path, nodes: int = 2, gpus: int = 8) -> AsyncIterator[KubeCluster]:
    async with (
        kmock.KubernetesEmulator() as emulator,
        kmock.Server(emulator, server_cls=_QuickShutdownServer) as server,
    ):
        for resource, (kind, namespaced, subresources) in RESOURCES.items():
            emulator.resources[resource] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, subresources=subresources, verbs={"list", "watch", "get"}
            )
        kubeconfig = tmp_dir / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(_kubeconfig(str(server.url).rstrip("/"))))
        cluster = KubeCluster(emulator, server, kubeconfig)
        for i in range(nodes):
            cluster.add_node(gpu_node(f"gpu-{i}", gpus))
        async with cluster.controller.running():
            yield cluster


def _kubeconfig(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "agent", "user": {"token": "test"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "agent"}}],
        "current-context": "kmock",
    }

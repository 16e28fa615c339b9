"""The contract suite's Kubernetes site: the backend against the kmock stand-in and its Job controller."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock

from site_agents.backends.base import AttemptKey, Backend, Launch
from site_agents.backends.kubernetes import KubernetesBackend
from site_agents.config import KubernetesBackendConfig

from .kube_cluster import NAMESPACE, KubeCluster, kube_cluster
from .sites import launch_of


class KubeSite:
    name = "kubernetes"
    gpus = 16
    settle_s = 15.0

    def __init__(self, cluster: KubeCluster, **config: Any) -> None:
        self.cluster = cluster
        self.config = KubernetesBackendConfig(
            kind="kubernetes",
            namespace=NAMESPACE,
            kubeconfig=str(cluster.kubeconfig),
            gpu_models={"NVIDIA-H800": "H800"},
            **config,
        )
        self.backend: Backend = KubernetesBackend(self.config)

    def workload(
        self, workload_id: str, *, seconds: float = 0.0, exit_code: int = 0, replicas: int = 1, gpus: int = 1
    ) -> Launch:
        env = {
            "FEDBROKER_WORKLOAD_ID": workload_id,
            "FEDBROKER_ATTEMPT": "1",
            "FEDBROKER_SIM_SECONDS": str(seconds),
            "FEDBROKER_SIM_EXIT_CODE": str(exit_code),
        }
        return launch_of(
            AttemptKey(workload_id, 1),
            "kubernetes",
            replicas,
            gpus,
            env,
            image="registry.example/train:1.2",
            command=("python", "train.py"),
        )

    async def restart(self) -> Backend:
        return KubernetesBackend(self.config)

    async def copies(self, key: AttemptKey) -> int:
        return self.cluster.controller.creations.get(key.resource_name(), 0)

    async def stopped(self, key: AttemptKey) -> bool:
        objects = self.cluster.emulator.objects
        ident = (kmock.resource("batch/v1/jobs"), NAMESPACE, key.resource_name())
        if ident not in objects or objects[ident].deleted:
            return True
        return bool((objects[ident].raw.get("status") or {}).get("conditions"))

    def log_line(self, launch: Launch) -> str:
        return f"hello from {launch.key.workload_id}"


@contextlib.asynccontextmanager
async def kube_site(patience_s: float = 120.0, **config: Any) -> AsyncIterator[KubeSite]:
    with tempfile.TemporaryDirectory(prefix="fb-kube-") as tmp:
        async with kube_cluster(Path(tmp)) as cluster:
            site = KubeSite(cluster, unschedulable_timeout_s=patience_s, **config)
            try:
                yield site
            finally:
                await site.backend.close()
            assert not cluster.invalid, cluster.invalid

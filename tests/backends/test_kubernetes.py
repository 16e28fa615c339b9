"""What only the Kubernetes backend does: its Job manifest, node filtering, the cache, pod failure reasons.

Real parts: the official client against kmock's API emulator (`kube_cluster.py`),
every created Job validated strictly against the Kubernetes schema.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from site_agents.backends.base import AttemptKey, Launch, Reason, Resources, State
from site_agents.backends.k8s_manifest import job_manifest, key_of
from site_agents.backends.k8s_status import verdict
from site_agents.backends.kubernetes import KubernetesBackend
from site_agents.config import KubernetesBackendConfig
from site_agents.errors import BackendUnavailable

from .kube_cluster import NAMESPACE, KubeCluster, gpu_node, kube_cluster
from .kube_site import KubeSite
from .sites import new_id, statuses_until, wait_nodes
from .test_contract import ended

CONFIG = KubernetesBackendConfig(kind="kubernetes", namespace=NAMESPACE, gpu_models={"NVIDIA-H800": "H800"})


def run_with_cluster(test: Callable[[KubeCluster, KubeSite], Awaitable[None]], nodes: int = 2) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="fb-kube-") as tmp:
            async with kube_cluster(Path(tmp), nodes=nodes) as cluster:
                site = KubeSite(cluster, unschedulable_timeout_s=60)
                try:
                    async with asyncio.timeout(60):
                        await test(cluster, site)
                finally:
                    await site.backend.close()
                assert not cluster.invalid, cluster.invalid

    asyncio.run(main())


def test_a_gang_is_an_indexed_job_with_its_gpus_env_deadline_and_labels() -> None:
    launch = Launch(
        key=AttemptKey("Whisper_FT/1", 3),
        tenant="lion-rock-ai",
        backend="kubernetes",
        resources=Resources(2, 8, "H800", cpus_per_replica=32.5, memory_gb_per_replica=256),
        env={"TRACEPARENT": "00-ab-cd-01", "EPOCHS": "3"},
        nodes=("gpu-0", "gpu-1"),
        estimated_hours=1.5,
        image="registry.example/train:1.2",
        command=("python", "train.py"),
    )
    job = job_manifest(launch, CONFIG)
    kubernetes_validate.validate(job, kubernetes_validate.utils.latest_version(), strict=True)
    spec = job["spec"]
    assert job["metadata"]["name"] == launch.key.resource_name()
    assert job["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "fedbroker",
        "fedbroker.io/workload": "Whisper_FT-1",
        "fedbroker.io/tenant": "lion-rock-ai",
        "fedbroker.io/attempt": "3",
    }
    assert key_of(job) == launch.key  # found again after a restart, odd id and all
    assert (spec["completionMode"], spec["parallelism"], spec["completions"]) == ("Indexed", 2, 2)
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 10_800)  # 1.5 h x 2
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {
        "limits": {"nvidia.com/gpu": "8", "cpu": "32500m", "memory": "262144Mi"},
        "requests": {"cpu": "32500m", "memory": "262144Mi"},
    }
    assert {"name": "TRACEPARENT", "value": "00-ab-cd-01"} in container["env"]
    assert container["command"] == ["python", "train.py"]
    required = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["H800", "NVIDIA-H800"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    single = job_manifest(
        dataclasses.replace(launch, resources=Resources(1, 1), estimated_hours=None), CONFIG
    )
    assert "completionMode" not in single["spec"] and "activeDeadlineSeconds" not in single["spec"]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ({"pod": {"reason": "Evicted", "message": "low on memory"}}, (Reason.LOST, None)),
        ({"container": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}, (Reason.OOM, 137)),
        ({"container": {"terminated": {"reason": "Error", "exitCode": 2}}}, (Reason.EXIT, 2)),
        ({"job": "DeadlineExceeded"}, (Reason.EXIT, None)),
        ({"container": {"waiting": {"reason": "CreateContainerConfigError"}}}, (Reason.LAUNCH_ERROR, None)),
        ({"container": {"waiting": {"reason": "InvalidImageName"}}}, (Reason.IMAGE_PULL, None)),
    ],
)
def test_pod_and_job_reasons_say_why_an_attempt_failed(
    reason: dict[str, Any], expected: tuple[Reason, int | None]
) -> None:
    key = AttemptKey("w", 1)
    conditions = [{"type": "Failed", "status": "True", "reason": reason.get("job", "BackoffLimitExceeded")}]
    waiting = "waiting" in reason.get("container", {})
    job = {"spec": {"parallelism": 1}, "status": {} if waiting else {"conditions": conditions}}
    pod: dict[str, Any] = {
        "metadata": {"name": "p"},
        "spec": {"nodeName": "n"},
        "status": {"phase": "Failed", **reason.get("pod", {})},
    }
    if "container" in reason:
        pod["status"]["containerStatuses"] = [{"name": "workload", "state": reason["container"]}]
    status = verdict(key, job, [pod]).status
    assert (status.state, status.reason, status.exit_code) == (State.FAILED, *expected)


def test_only_ready_uncordoned_untainted_gpu_nodes_count_and_pods_anywhere_use_them() -> None:
    async def test(cluster: KubeCluster, site: KubeSite) -> None:
        cluster.add_node(gpu_node("not-ready", ready=False))
        cluster.add_node(gpu_node("cordoned", unschedulable=True))
        cluster.add_node(
            gpu_node("tainted", taints=[{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}])
        )
        cluster.add_node(gpu_node("gpu-tainted", taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]))
        cluster.add_node(gpu_node("unlabelled", gpus=4, product=None))
        cluster.add_node(gpu_node("cpu-only", gpus=0))
        cluster.add_pod("team-a", "trainer", "gpu-0", gpus=3)
        cluster.add_pod("team-a", "finished", "gpu-1", gpus=8, phase="Succeeded")
        nodes = {n.name: n for n in await site.backend.nodes()}
        assert sorted(nodes) == ["gpu-0", "gpu-1", "gpu-tainted", "unlabelled"]
        assert (nodes["gpu-0"].gpus_allocated, nodes["gpu-1"].gpus_allocated) == (3, 0)
        assert (nodes["gpu-0"].gpu_model, nodes["unlabelled"].gpu_model) == ("H800", "unknown")
        assert (nodes["gpu-0"].cpus, nodes["gpu-0"].memory_gb, nodes["gpu-0"].gpu_memory_gb) == (
            127.5,
            1056,
            79.65,
        )
        assert nodes["gpu-0"].labels["topology.kubernetes.io/zone"] == "hk-1a"
        # A change through the API reaches the cache by the watch.
        await cluster.patch_node("gpu-1", {"spec": {"unschedulable": True}})
        await wait_nodes(site.backend, lambda ns: "gpu-1" not in {n.name for n in ns}, 10)

    run_with_cluster(test)


def test_heartbeats_read_the_cache_and_410_gone_lists_again() -> None:
    async def test(cluster: KubeCluster, site: KubeSite) -> None:
        await site.backend.nodes()
        served = len(cluster.emulator._requests)
        for _ in range(20):
            await site.backend.nodes()
        assert len(cluster.emulator._requests) == served  # no API call per heartbeat
        lists = cluster.lists("v1/nodes")
        # kmock replays every object when a watch opens: change things silently only once it is open.
        async with asyncio.timeout(10):
            while not cluster.watches("v1/nodes"):
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        cluster.remove_node("gpu-1")  # no event: only a fresh list can show it
        cluster.add_node(gpu_node("gpu-9"))
        await asyncio.sleep(0.2)
        assert {n.name for n in await site.backend.nodes()} == {"gpu-0", "gpu-1"}
        await cluster.expire_watches("v1/nodes")
        await wait_nodes(site.backend, lambda ns: {n.name for n in ns} == {"gpu-0", "gpu-9"}, 10)
        assert cluster.lists("v1/nodes") == lists + 1

    run_with_cluster(test)


@pytest.mark.parametrize(
    ("outcome", "reason", "exit_code", "deleted"),
    [("ImagePullBackOff", Reason.IMAGE_PULL, None, True), ("OOMKilled", Reason.OOM, 137, False)],
)
def test_pod_failures_end_the_attempt_with_their_reason(
    outcome: str, reason: Reason, exit_code: int | None, deleted: bool
) -> None:
    async def test(cluster: KubeCluster, site: KubeSite) -> None:
        launch = site.workload(new_id("pod"), seconds=0.5)
        launch = dataclasses.replace(launch, env={**launch.env, "FEDBROKER_TEST_OUTCOME": outcome})
        changes = site.backend.changes()
        await site.backend.launch(launch)
        last = (await statuses_until(changes, launch.key, ended, 15))[-1]
        assert (last.state, last.reason, last.exit_code) == (State.FAILED, reason, exit_code)
        # An image that never comes would hold the Job forever: the backend deletes it.
        async with asyncio.timeout(5):
            while deleted and not await site.stopped(launch.key):
                await asyncio.sleep(0.05)
        job = cluster.emulator.objects["batch/v1/jobs", NAMESPACE, launch.key.resource_name()]
        assert job.deleted is deleted

    run_with_cluster(test)


def test_a_kubeconfig_that_cannot_be_read_is_one_clear_error(tmp_path: Path) -> None:
    config = KubernetesBackendConfig(kind="kubernetes", kubeconfig=str(tmp_path / "nope"))
    with pytest.raises(BackendUnavailable, match=r"cannot load the Kubernetes config from .*nope"):
        KubernetesBackend(config)

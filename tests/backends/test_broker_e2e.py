"""One workload through the broker onto each real backend, to SUCCEEDED, its output read by `fedbroker logs`.

Real parts only: `fedbroker serve` and `fedbroker agent` processes on loopback; Sandy Ridge's
agent on the session's local Ray head (a real Ray job runs the entrypoint), Cyberport's on
the kmock Kubernetes API with the test Job controller (tests/backends/kube_cluster.py),
which runs in a thread of this process with its own event loop, since the agent process
talks to it over HTTP while the test waits synchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.localfed import DEV_TOKENS, LocalFederation
from broker.spec import load_spec

from .kube_cluster import NAMESPACE, KubeCluster, kube_cluster

TENANT = "lion-rock-ai"


@contextlib.contextmanager
def kube_cluster_in_thread(tmp_dir: Path) -> Iterator[KubeCluster]:
    """The kmock stand-in and its Job controller, served from a thread's event loop."""
    loop = asyncio.new_event_loop()
    ready: Future[KubeCluster] = Future()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with kube_cluster(tmp_dir) as cluster:
                ready.set_result(cluster)
                await stop.wait()
        except BaseException as error:
            if not ready.done():
                ready.set_exception(error)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield ready.result(timeout=60)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture(scope="module")
def fed(
    tmp_path_factory: pytest.TempPathFactory, ray_address: str
) -> Iterator[tuple[LocalFederation, KubeCluster]]:
    workdir = tmp_path_factory.mktemp("real-backends")
    with kube_cluster_in_thread(workdir) as cluster:
        backends: dict[str, dict[str, Any]] = {
            "sandy-ridge": {"kind": "ray", "address": ray_address, "poll_s": 0.2},
            "cyberport": {
                "kind": "kubernetes",
                "namespace": NAMESPACE,
                "kubeconfig": str(cluster.kubeconfig),
                "gpu_models": {"NVIDIA-H800": "H800"},
            },
        }
        with LocalFederation(workdir, agent_overrides={"heartbeat_s": 0.5}, backends=backends) as federation:
            federation.start_broker()
            for site in federation.agent_configs:
                federation.start_agent(site)
            federation.wait_healthy(timeout=60)
            yield federation, cluster
        assert not cluster.invalid, cluster.invalid  # every Job the agent sent was schema-valid


def cli(fed: LocalFederation, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDBROKER_ENDPOINT": fed.endpoint, "FEDBROKER_TOKEN": DEV_TOKENS[TENANT]}
    return subprocess.run(
        [sys.executable, "-m", "broker", *args], capture_output=True, text=True, env=env, timeout=180
    )


def run_to_success(fed: LocalFederation, tmp_path: Path, workload: dict[str, Any]) -> str:
    path = tmp_path / f"{workload['name']}.yaml"
    path.write_text(yaml.safe_dump(workload))
    with fed.client(TENANT) as client:
        workload_id = client.submit(load_spec(path)).workload.id
    watched = cli(fed, "watch", workload_id, "--timeout", "150")
    assert watched.returncode == 0, (
        f"{watched.stdout}{watched.stderr}\n{fed.log_tail('agent-sandy-ridge')}\n{fed.log_tail('agent-cyberport')}"
    )
    return workload_id


def test_a_ray_workload_runs_as_a_real_ray_job_and_its_logs_are_read_through_the_broker(
    fed: tuple[LocalFederation, KubeCluster], tmp_path: Path
) -> None:
    federation, _ = fed
    code = "import os; print('hello from', os.environ['FEDBROKER_WORKLOAD_ID'], 'on ray', flush=True)"
    workload_id = run_to_success(
        federation,
        tmp_path,
        {
            "name": "ray-e2e",
            "backend": "ray",
            "ray": {"entrypoint": f"python -c {shlex.quote(code)}"},
            "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
            "sites": ["sandy-ridge"],
        },
    )
    logs = cli(federation, "logs", workload_id)
    assert logs.returncode == 0, logs.stderr
    assert f"hello from {workload_id} on ray" in logs.stdout.splitlines()
    got = cli(federation, "get", workload_id, "-o", "json")
    assert '"reason": "exit"' in got.stdout and '"site": "sandy-ridge"' in got.stdout


def test_a_kubernetes_workload_runs_as_a_job_and_its_logs_are_read_through_the_broker(
    fed: tuple[LocalFederation, KubeCluster], tmp_path: Path
) -> None:
    federation, cluster = fed
    workload_id = run_to_success(
        federation,
        tmp_path,
        {
            "name": "kube-e2e",
            "backend": "kubernetes",
            "kubernetes": {"image": "registry.example.hk/e2e:1", "command": ["python", "train.py"]},
            "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
            "sites": ["cyberport"],
            "env": {"FEDBROKER_SIM_SECONDS": "0.5"},
        },
    )
    assert cluster.controller.creations == {f"fb-{workload_id}-1": 1}  # one Job, launched once
    logs = cli(federation, "logs", workload_id)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == [f"hello from {workload_id}", "exit code 0"]
    tail = cli(federation, "logs", workload_id, "--tail", "1")
    assert tail.stdout.splitlines() == ["exit code 0"]

"""Benchmark of the site backends: time from launch() to RUNNING, and what nodes() costs per heartbeat.

    .venv/bin/python bench/backends.py              # a table
    .venv/bin/python bench/backends.py --json       # {"rows": [...]}
    .venv/bin/python bench/backends.py --no-ray     # without starting a local Ray head

Method:
  1. launch -> RUNNING, median of 20 sequential launches (1 GPU each, the next one after the
     previous ended), from the launch() call to the RUNNING status out of changes():
     - simulated: the backend alone;
     - ray: a real local Ray head (4 logical GPUs), tiny `python -c` jobs; the backend reads
       job states every poll_s (0.2 s here, 1 s by default), which bounds the resolution;
     - kubernetes: the official client against kmock's API emulator and the test Job
       controller, which starts a pod 0.2 s after binding it: the figure is that scripted
       start plus the backend's own cost (create, watch, status), not a real cluster's.
  2. nodes() per heartbeat with 1,000 GPU nodes and 5,000 GPU pods (kubernetes: in the
     emulator; simulated: 1,000 configured nodes): the first call (kubernetes: the initial
     list of nodes, pods and Jobs), a heartbeat when nothing changed (the cached inventory),
     and a heartbeat after a pod changed (the inventory recomputed from the caches), median
     of 200 and 20 calls. Ray is measured at its one node: two dashboard reads per call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from site_agents.backends.base import Backend, State
from site_agents.backends.kubernetes import KubernetesBackend
from site_agents.backends.simulated import SimulatedBackend
from site_agents.config import KubernetesBackendConfig, NodeGroup
from tests.backends.kube_cluster import NAMESPACE, gpu_node, kube_cluster
from tests.backends.kube_site import KubeSite
from tests.backends.ray_head import ray_head
from tests.backends.sites import RaySite, SimulatedSite, Site, new_id

LAUNCHES = 20
NODES, PODS = 1_000, 5_000


def row(backend: str, measure: str, samples: list[float], note: str = "") -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "backend": backend,
        "measure": measure,
        "n": len(samples),
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "note": note,
    }


async def launch_to_running(site: Site) -> list[float]:
    changes = site.backend.changes()
    samples = []
    for _ in range(LAUNCHES):
        launch = site.workload(new_id("bench"), seconds=0.5)
        started = time.perf_counter()
        await site.backend.launch(launch)
        running = None
        async with asyncio.timeout(60):
            async for status in changes:
                if status.key != launch.key:
                    continue
                if status.state is State.RUNNING and running is None:
                    running = time.perf_counter() - started
                if status.state.terminal:
                    break
        assert running is not None, f"{launch.key} never reported RUNNING"
        samples.append(running)
    return samples


async def timed(call: Callable[[], Awaitable[Any]], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


@contextlib.asynccontextmanager
async def big_kube_cluster() -> AsyncIterator[tuple[Any, Backend]]:
    with tempfile.TemporaryDirectory(prefix="fb-bench-") as tmp:
        async with kube_cluster(Path(tmp), nodes=0) as cluster:
            for i in range(NODES):
                cluster.add_node(gpu_node(f"node-{i:04d}"))
            for i in range(PODS):
                cluster.add_pod(f"team-{i % 7}", f"pod-{i:05d}", f"node-{i % NODES:04d}", gpus=1)
            config = KubernetesBackendConfig(
                kind="kubernetes", namespace=NAMESPACE, kubeconfig=str(cluster.kubeconfig)
            )
            backend = KubernetesBackend(config)
            try:
                yield cluster, backend
            finally:
                await backend.close()


async def kube_heartbeats() -> list[dict[str, Any]]:
    async with big_kube_cluster() as (cluster, backend):
        first = await timed(backend.nodes, 1)
        nodes = await backend.nodes()
        assert len(nodes) == NODES and sum(n.gpus_allocated for n in nodes) == PODS
        cached = await timed(backend.nodes, 200)
        changed = []
        for i in range(20):
            phase = "Succeeded" if i % 2 == 0 else "Running"
            await cluster.emulator.patch(
                "/api/v1/namespaces/team-0/pods/pod-00000", json={"status": {"phase": phase}}
            )
            want = PODS - 1 if phase == "Succeeded" else PODS
            async with asyncio.timeout(10):  # until the watch event is in the cache
                while sum(n.gpus_allocated for n in await backend.nodes()) != want:
                    await asyncio.sleep(0.001)
            backend._inventory = None  # the event above was already folded in: time a recompute alone
            changed += await timed(backend.nodes, 1)
    scale = f"{NODES} nodes, {PODS} pods"
    return [
        row("kubernetes", "nodes() first call", first, f"{scale}: lists nodes, pods, Jobs"),
        row("kubernetes", "nodes() heartbeat, unchanged", cached, f"{scale}: cached inventory"),
        row(
            "kubernetes", "nodes() heartbeat, after a pod change", changed, f"{scale}: recomputed from caches"
        ),
    ]


async def simulated_heartbeats() -> list[dict[str, Any]]:
    group = NodeGroup(
        count=NODES, name_prefix="n", gpu_model="H800", gpus=8, gpu_memory_gb=80, cpus=128, memory_gb=1024
    )
    backend = SimulatedBackend([group])
    samples = await timed(backend.nodes, 200)
    return [row("simulated", "nodes() heartbeat", samples, f"{NODES} nodes")]


async def simulated_launches() -> dict[str, Any]:
    site = SimulatedSite()
    return row("simulated", "launch -> RUNNING", await launch_to_running(site), "in-process timers")


async def kube_launches() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fb-bench-") as tmp:
        async with kube_cluster(Path(tmp)) as cluster:
            site = KubeSite(cluster)
            try:
                samples = await launch_to_running(site)
            finally:
                await site.backend.close()
    return row(
        "kubernetes", "launch -> RUNNING", samples, "kmock emulator + test Job controller (0.2 s pod start)"
    )


async def ray_rows(address: str) -> list[dict[str, Any]]:
    site = RaySite(address)
    try:
        await site.backend.nodes()  # the first job on a fresh head also starts its workers: not timed
        launches = await launch_to_running(site)
        heartbeats = await timed(site.backend.nodes, 20)
    finally:
        await site.backend.close()
    return [
        row("ray", "launch -> RUNNING", launches, "local head, 2 cores; status read every 0.2 s"),
        row("ray", "nodes() heartbeat", heartbeats, "1 node: list_nodes + /api/cluster_status"),
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray rows (no local Ray head)")
    args = ap.parse_args(argv)
    rows = [asyncio.run(simulated_launches()), *asyncio.run(simulated_heartbeats())]
    rows.append(asyncio.run(kube_launches()))
    rows += asyncio.run(kube_heartbeats())
    if not args.no_ray:
        with ray_head() as address:
            rows += asyncio.run(ray_rows(address))
    if args.json:
        print(json.dumps({"rows": rows}, indent=2))
        return
    from tabulate import tabulate

    print(tabulate(rows, headers="keys", tablefmt="simple"))


if __name__ == "__main__":
    main()

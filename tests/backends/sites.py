"""One face for the three backends under the contract suite: how each is built, scripted and inspected.

A test asks a site for a workload that runs `seconds`, prints a line and exits
with `exit_code`; each site turns that into what its backend really runs (env
for the simulated backend, a `python -c` entrypoint for Ray, a container the
test Job controller plays for Kubernetes). `restart()` builds a second backend
over the same cluster, as an agent restart does.
"""

from __future__ import annotations

import asyncio
import shlex
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from site_agents.backends.base import AttemptKey, AttemptStatus, Backend, Launch, NodeInventory, Resources
from site_agents.backends.ray import RayBackend
from site_agents.backends.simulated import SimulatedBackend, SimulatedCluster
from site_agents.config import NodeGroup, RayBackendConfig

GPU_MODEL = "H800"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Site(Protocol):
    name: str
    backend: Backend
    gpus: int  # GPUs in the whole site, all on nodes of GPU_MODEL
    settle_s: float  # how long a change may take to show (Ray and Kubernetes poll or watch)

    def workload(
        self, workload_id: str, *, seconds: float = 0.0, exit_code: int = 0, replicas: int = 1, gpus: int = 1
    ) -> Launch: ...

    async def restart(self) -> Backend: ...

    async def copies(self, key: AttemptKey) -> int:
        """How many cluster-side runs (jobs) exist for this attempt."""
        ...

    async def stopped(self, key: AttemptKey) -> bool:
        """Whether the cluster has stopped (or removed) what ran this attempt."""
        ...

    def log_line(self, launch: Launch) -> str:
        """A line the attempt's logs must contain."""
        ...


def launch_of(
    key: AttemptKey, backend: str, replicas: int, gpus: int, env: dict[str, str], **spec: Any
) -> Launch:
    return Launch(
        key=key,
        tenant="lion-rock-ai",
        backend=backend,
        resources=Resources(replicas=replicas, gpus_per_replica=gpus, gpu_model=GPU_MODEL),
        env={"TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", **env},
        estimated_hours=1.0,
        **spec,
    )


class SimulatedSite:
    name = "simulated"
    gpus = 16
    settle_s = 2.0

    def __init__(self) -> None:
        group = NodeGroup(
            count=2,
            name_prefix="sim-h800",
            gpu_model=GPU_MODEL,
            gpus=8,
            gpu_memory_gb=80,
            cpus=64,
            memory_gb=512,
        )
        self.cluster = SimulatedCluster([group], time_scale=0.0001)
        self.backend: Backend = SimulatedBackend(cluster=self.cluster)

    def workload(
        self, workload_id: str, *, seconds: float = 0.0, exit_code: int = 0, replicas: int = 1, gpus: int = 1
    ) -> Launch:
        env = {"FEDBROKER_SIM_SECONDS": str(seconds), "FEDBROKER_SIM_EXIT_CODE": str(exit_code)}
        return launch_of(AttemptKey(workload_id, 1), "ray", replicas, gpus, env, entrypoint="python train.py")

    async def restart(self) -> Backend:
        return SimulatedBackend(cluster=self.cluster)

    async def copies(self, key: AttemptKey) -> int:
        return self.cluster.starts.count(key)

    async def stopped(self, key: AttemptKey) -> bool:
        run = self.cluster.runs[key]
        return run.task is None and not run.allocation

    def log_line(self, launch: Launch) -> str:
        return "running on"


class RaySite:
    name = "ray"
    gpus = 4
    settle_s = 30.0

    def __init__(self, address: str, **config: Any) -> None:
        self.config = RayBackendConfig(kind="ray", address=address, poll_s=0.2, **config)
        self.backend: Backend = RayBackend(self.config)

    def workload(
        self, workload_id: str, *, seconds: float = 0.0, exit_code: int = 0, replicas: int = 1, gpus: int = 1
    ) -> Launch:
        code = (
            "import os, sys, time; print('hello from', os.environ['FEDBROKER_WORKLOAD_ID'], flush=True); "
            f"time.sleep({seconds}); sys.exit({exit_code})"
        )
        env = {"FEDBROKER_WORKLOAD_ID": workload_id, "FEDBROKER_ATTEMPT": "1"}
        return launch_of(
            AttemptKey(workload_id, 1),
            "ray",
            replicas,
            gpus,
            env,
            entrypoint=f"python -c {shlex.quote(code)}",
        )

    async def restart(self) -> Backend:
        return RayBackend(self.config)

    def _client(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.config.address)

    async def copies(self, key: AttemptKey) -> int:
        jobs = await asyncio.to_thread(lambda: self._client().list_jobs())
        return sum(1 for job in jobs if (job.metadata or {}).get("fedbroker.workload_id") == key.workload_id)

    async def stopped(self, key: AttemptKey) -> bool:
        info = await asyncio.to_thread(lambda: self._client().get_job_info(key.resource_name()))
        return str(info.status.value) in {"STOPPED", "SUCCEEDED", "FAILED"}

    def log_line(self, launch: Launch) -> str:
        return f"hello from {launch.key.workload_id}"


async def statuses_until(
    changes: AsyncIterator[AttemptStatus],
    key: AttemptKey,
    done: Callable[[AttemptStatus], bool],
    timeout: float,
) -> list[AttemptStatus]:
    """The statuses of `key` from the stream, up to and including the first for which `done` holds."""
    seen: list[AttemptStatus] = []
    async with asyncio.timeout(timeout):
        async for status in changes:
            if status.key == key:
                seen.append(status)
                if done(status):
                    return seen
    raise AssertionError(f"the changes of {key} ended without the awaited status: {seen}")


async def wait_nodes(
    backend: Backend, predicate: Callable[[list[NodeInventory]], bool], timeout: float
) -> list[NodeInventory]:
    async with asyncio.timeout(timeout):
        while not predicate(nodes := await backend.nodes()):
            await asyncio.sleep(0.2)
    return nodes

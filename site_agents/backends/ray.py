"""The Ray backend: attempts as Ray jobs through the Job Submission API (the dashboard's HTTP address).

Inventory. Two dashboard reads per heartbeat: `ray.util.state.list_nodes` (the
public state API) for the alive nodes with their total resources (`GPU`, `CPU`,
`memory`, `accelerator_type:<model>`; `default_gpu_model` where a node has none)
and labels; and `/api/cluster_status`, the autoscaler's load-metrics report that
`ray status` prints, for the GPUs in use on each node. Neither needs the agent
to join the cluster as a driver (`ray.init`), which would tie it to the
cluster's Ray and Python versions and hold a GCS connection; the usage report is
refreshed by Ray's monitor every few seconds, which is fresher than the broker
needs (it reserves what it places until reports show it).

Launch. One job per attempt, `submission_id = AttemptKey.resource_name()`: a
re-sent assignment never starts a second job, because Ray refuses a duplicate
id, and the backend then treats the existing job as this launch. The job's
metadata names its workload and attempt, so a restarted agent finds the jobs it
owns (`list_jobs`) and reports their state first from `changes()`. The
workload's env (with TRACEPARENT) goes into the runtime env's `env_vars`, over
the workload's own runtime_env. A GPU model that some node advertises as
`accelerator_type:<model>` pins the job to such nodes.

Gangs. One replica asks for `entrypoint_num_gpus` (CPUs, memory) directly. A
gang of replicas > 1 runs `ray_gang.py` as the entrypoint: it creates a
placement group of one bundle per replica (gpus_per_replica GPUs, and the
replica's CPUs and memory), STRICT_SPREAD when the broker reserved the replicas
on distinct nodes, else PACK, waits until all of it is placed, then runs the
workload's entrypoint with the group in its environment. The entrypoint uses it
like this:

    ray.init(namespace=os.environ["FEDBROKER_RAY_NAMESPACE"])
    group = ray.util.get_placement_group(os.environ["FEDBROKER_PLACEMENT_GROUP"])
    # FEDBROKER_PLACEMENT_GROUP_ID holds its hex id too
    strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)
    Worker.options(scheduling_strategy=strategy).remote(...)

The attempt is RUNNING once the group is placed; Ray removes the group when the job ends.

Status. Ray has no watch: non-terminal jobs are read every `poll_s`. PENDING ->
PLACED, RUNNING -> RUNNING, SUCCEEDED, FAILED (its error type and exit code give
the reason), STOPPED -> CANCELLED. A job, or a gang's placement group, not
started within `start_timeout_s` is stopped and ends FAILED `no_capacity`
(that reason lives in this process: after an agent restart such a job reads as
cancelled). Cancel is `stop_job`; logs are `get_job_logs` / `tail_job_logs`.

Every Ray client call blocks, so each runs in a worker thread (`asyncio.to_thread`):
a slow submit never stalls the agent's stream or heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from site_agents.backends import ray_jobs
from site_agents.backends.base import AttemptKey, AttemptStatus, Launch, NodeInventory, Reason, State
from site_agents.backends.ray_inventory import RayNode, gpus_used_by_node, inventory
from site_agents.config import RayBackendConfig
from site_agents.errors import AttemptNotFound, BackendError, missing_extra

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

log = logging.getLogger("fedbroker.agent.ray")

T = TypeVar("T")
RECOVER_WINDOW_S = 600.0  # after a restart, jobs that ended this recently are reported too
HTTP_TIMEOUT_S = 10.0
# Ray may answer "does not exist" for a moment after accepting a submission; past this, gone is gone.
UNSEEN_GRACE_S = 30.0


@dataclass
class _Job:
    key: AttemptKey
    submission_id: str
    gang: bool
    started_at: float  # time.time() of submission, for the start timeout (Ray's own clock after a restart)
    last: AttemptStatus | None = None
    ended: bool = False
    seen: bool = False  # Ray has answered for it at least once


class RayBackend:
    kind: str = "ray"
    backends: tuple[str, ...] = ("ray",)

    def __init__(self, config: RayBackendConfig, *, clock: Callable[[], float] = time.time) -> None:
        try:  # the Ray client is an extra: only a site that runs Ray needs it
            import ray.job_submission
            import ray.util.state  # noqa: F401
            import requests  # noqa: F401
        except ImportError:
            raise missing_extra("ray", "ray[default]") from None
        self._config = config
        self._address = config.address.rstrip("/")
        self._clock = clock
        self._client: JobSubmissionClient | None = None
        self._client_lock = asyncio.Lock()
        self._jobs: dict[AttemptKey, _Job] = {}
        self._changes: asyncio.Queue[AttemptStatus] = asyncio.Queue()
        self._poller: asyncio.Task[None] | None = None
        self._recovered = asyncio.Event()
        self._accelerators: set[str] | None = None  # models some node advertises, from the last inventory

    # --- the Backend interface -------------------------------------------------------------

    async def nodes(self) -> list[NodeInventory]:
        raw_nodes, status = await self._call(self._read_inventory)
        self._accelerators = {
            name.removeprefix(ray_jobs.ACCELERATOR_PREFIX)
            for node in raw_nodes
            for name in node.resources_total
            if name.startswith(ray_jobs.ACCELERATOR_PREFIX)
        }
        return inventory(
            raw_nodes, gpus_used_by_node(status), self._config.default_gpu_model, self._config.gpu_memory_gb
        )

    async def launch(self, launch: Launch) -> None:
        self._start()
        key = launch.key
        if key in self._jobs:
            return
        sid = key.resource_name()
        problem = _refusal(launch)
        if problem:
            job = self._jobs[key] = _Job(key, sid, False, self._clock(), ended=True)
            self._emit(job, AttemptStatus(key, State.FAILED, problem, reason=Reason.LAUNCH_ERROR))
            return
        if self._accelerators is None:
            await self.nodes()
        request = ray_jobs.submission(launch, self._accelerators or set(), self._config.namespace)
        client = await self._ray()
        job = self._jobs[key] = _Job(key, sid, request.gang, self._clock())
        try:
            await self._call(lambda: _submit(client, request))
        except BackendError:
            del self._jobs[key]
            raise
        log.info("submitted Ray job %s for %s", sid, key)

    async def cancel(self, key: AttemptKey) -> None:
        job = self._jobs.get(key)
        if job is None or job.ended:
            return
        await self._stop(job, AttemptStatus(key, State.CANCELLED, "cancelled", reason=Reason.CANCELLED))

    async def changes(self) -> AsyncIterator[AttemptStatus]:
        self._start()
        while True:
            yield await self._changes.get()

    async def logs(
        self, key: AttemptKey, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[str]:
        client = await self._ray()
        sid = key.resource_name()
        text = await self._call(lambda: _job_logs(client, sid, key))
        lines = text.splitlines()
        start = 0 if tail is None else max(len(lines) - tail, 0)
        if not follow:
            for line in lines[start:]:
                yield line
            return
        # tail_job_logs streams the log from its start: skip what the tail leaves out.
        skip, pending = start, ""
        async for chunk in client.tail_job_logs(sid):
            pending += chunk
            *complete, pending = pending.split("\n")
            for line in complete:
                if skip:
                    skip -= 1
                else:
                    yield line
        if pending:
            yield pending

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    # --- polling ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever(), name="ray backend poller")

    async def _poll_forever(self) -> None:
        delay = self._config.poll_s
        while True:
            try:
                if not self._recovered.is_set():
                    await self._recover()
                    self._recovered.set()
                await self._poll()
                delay = self._config.poll_s
            except BackendError as error:  # the dashboard is away: keep the last states, retry
                log.warning("cannot read Ray job statuses: %s", error)
                delay = min(delay * 2, 30.0)
            await asyncio.sleep(delay)

    async def _recover(self) -> None:
        """Adopt the jobs an earlier run of this agent submitted; report them first."""
        client = await self._ray()
        jobs = await self._call(client.list_jobs)
        now = self._clock()
        for details in sorted(jobs, key=lambda d: d.start_time or 0):
            key = ray_jobs.key_of(details.metadata)
            if key is None or key in self._jobs or details.submission_id != key.resource_name():
                continue
            status = ray_jobs.status_of(
                key,
                _str(details.status) or "",
                details.message,
                error_type=_str(details.error_type),
                exit_code=details.driver_exit_code,
                driver_node=details.driver_node_id,
            )
            ended_s = (details.end_time or 0) / 1000
            if status.state.terminal and now - ended_s > RECOVER_WINDOW_S:
                continue
            started = (details.start_time or 0) / 1000 or now
            job = self._jobs[key] = _Job(
                key, details.submission_id, ray_jobs.is_gang(details.metadata), started, seen=True
            )
            log.info("found Ray job %s of %s (%s) from an earlier run", job.submission_id, key, status.state)
            if status.state is State.RUNNING and job.gang:
                continue  # the poll that follows says whether its placement group is ready
            self._emit(job, status)

    async def _poll(self) -> None:
        live = [job for job in self._jobs.values() if not job.ended]
        if not live:
            return
        client = await self._ray()
        found = await self._call(lambda: _read_jobs(client, self._address, live))
        now = self._clock()
        for job in live:
            if job.ended:  # cancelled while we read
                continue
            details, gang_ready = found[job.submission_id]
            if details is None:
                if job.seen or now - job.started_at > UNSEEN_GRACE_S:
                    gone = AttemptStatus(job.key, State.FAILED, "the Ray job is gone", reason=Reason.LOST)
                    self._emit(job, gone)
                continue
            job.seen = True
            status = ray_jobs.status_of(
                job.key,
                _str(details.status) or "",
                details.message,
                error_type=_str(details.error_type),
                exit_code=details.driver_exit_code,
                driver_node=details.driver_node_id,
                gang_ready=gang_ready,
            )
            if status.state is State.PLACED and now - job.started_at > self._config.start_timeout_s:
                message = f"not started within {self._config.start_timeout_s:g}s: {status.message}"
                await self._stop(
                    job, AttemptStatus(job.key, State.FAILED, message, reason=Reason.NO_CAPACITY)
                )
                continue
            self._emit(job, status)

    async def _stop(self, job: _Job, final: AttemptStatus) -> None:
        client = await self._ray()
        await self._call(lambda: client.stop_job(job.submission_id))
        if not job.ended:
            self._emit(job, final)

    def _emit(self, job: _Job, status: AttemptStatus) -> None:
        if job.ended or status == job.last:  # a terminal state is final
            return
        job.last = status
        job.ended = status.state.terminal
        self._changes.put_nowait(status)

    # --- the Ray client, off the event loop ----------------------------------------------------

    async def _ray(self) -> JobSubmissionClient:
        async with self._client_lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient

                self._client = await self._call(lambda: JobSubmissionClient(self._address))
            return self._client

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run a blocking Ray call in a thread; its errors become BackendError (AttemptNotFound passes)."""
        try:
            return await asyncio.to_thread(fn)
        except BackendError:
            raise
        except Exception as error:
            raise BackendError(f"Ray at {self._address}: {_short(error)}") from error

    def _read_inventory(self) -> tuple[list[RayNode], dict[str, Any]]:
        import requests
        from ray.util.state import list_nodes

        alive = list_nodes(
            address=self._address,
            filters=[("state", "=", "ALIVE")],
            limit=10_000,  # the API server's own cap
            timeout=int(HTTP_TIMEOUT_S),
            raise_on_missing_output=False,
        )
        response = requests.get(f"{self._address}/api/cluster_status", timeout=HTTP_TIMEOUT_S)
        response.raise_for_status()
        nodes = [
            RayNode(
                n.node_id,
                n.node_ip,
                dict(n.resources_total or {}),
                dict(n.labels or {}),
                bool(n.is_head_node),
            )
            for n in alive
        ]
        return nodes, response.json()


def _refusal(launch: Launch) -> str:
    if launch.backend != "ray":
        return f"backend {launch.backend!r} is not run by this site's Ray backend"
    if not launch.entrypoint.strip():
        return "the workload has no ray.entrypoint"
    return ""


def _submit(client: JobSubmissionClient, request: ray_jobs.Submission) -> None:
    try:
        client.submit_job(**request.kwargs())
    except RuntimeError as error:
        if "already exists" not in str(error):
            raise
        # A re-sent assignment, or a submit whose answer was lost: the job is this launch.
        client.get_job_info(request.submission_id)


def _read_jobs(
    client: JobSubmissionClient, address: str, jobs: list[_Job]
) -> dict[str, tuple[Any, bool | None]]:
    """Each job's details (None when Ray no longer knows it) and, for a running gang, whether it is placed."""
    from ray.util.state import list_placement_groups

    found: dict[str, tuple[Any, bool | None]] = {}
    for job in jobs:
        try:
            details = client.get_job_info(job.submission_id)
        except RuntimeError as error:
            if "does not exist" not in str(error):
                raise
            found[job.submission_id] = (None, None)
            continue
        gang_ready = None
        if job.gang and _str(details.status) == "RUNNING":
            groups = list_placement_groups(
                address=address,
                filters=[("name", "=", job.submission_id)],
                timeout=int(HTTP_TIMEOUT_S),
                raise_on_missing_output=False,
            )
            gang_ready = any(_str(g.state) == "CREATED" for g in groups)
        found[job.submission_id] = (details, gang_ready)
    return found


def _job_logs(client: JobSubmissionClient, sid: str, key: AttemptKey) -> str:
    try:
        return client.get_job_logs(sid)
    except RuntimeError as error:
        if "does not exist" in str(error):
            raise AttemptNotFound(f"{key} has no Ray job {sid}") from None
        raise


def _str(value: object) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _short(error: Exception) -> str:
    """Ray's HTTP errors embed the server's traceback: keep the last line that says something."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip().strip(".")]
    return lines[-1] if lines else type(error).__name__

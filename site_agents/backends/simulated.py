"""The simulated backend: GPU nodes from the config, workloads that are timers.

A first-class backend (the demo and the benchmarks run on it), not a test mock.
It stands in for whatever the site declares, so it takes Ray and Kubernetes
workloads alike. A workload's env scripts its fate:

- `FEDBROKER_SIM_SECONDS`: how long it runs (else estimated_hours x 3600 x time_scale;
  one hour when there is no estimate);
- `FEDBROKER_SIM_EXIT_CODE`: how it ends (default 0 -> SUCCEEDED, else FAILED "exit code N");
- `FEDBROKER_SIM_ENV_FILE`: a path where the run writes, as JSON, the environment it was
  started with (TRACEPARENT and the agent's variables included), as a real workload could
  print its own.

Placement on nodes: the broker's hint (one node per replica) when the whole gang
fits there, else first fit in node-name order, else FAILED `no_capacity`
"no room: needs 2x8 H800". asyncio is its only clock; `sleep` is injectable.

The nodes and runs live in a `SimulatedCluster`, the part that would outlive an
agent at a real site: a backend built over a cluster that already runs attempts
(an agent restarted in the same process) reports them first, as Ray and
Kubernetes do. Each run records a few log lines, so `logs` behaves as elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from site_agents.backends.base import (
    AttemptKey,
    AttemptStatus,
    Launch,
    NodeInventory,
    Reason,
    Resources,
    State,
)
from site_agents.config import NodeGroup
from site_agents.errors import AttemptNotFound

SIM_SECONDS = "FEDBROKER_SIM_SECONDS"
SIM_EXIT_CODE = "FEDBROKER_SIM_EXIT_CODE"
SIM_ENV_FILE = "FEDBROKER_SIM_ENV_FILE"
DEFAULT_HOURS = 1.0
RECOVER_WINDOW_S = 600.0  # a new backend reports runs that ended this recently, like the real ones

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Run:
    launch: Launch
    status: AttemptStatus
    allocation: dict[str, int] = field(default_factory=dict)  # node -> GPUs
    task: asyncio.Task[None] | None = None
    lines: list[str] = field(default_factory=list)
    grew: asyncio.Event = field(default_factory=asyncio.Event)  # set (and replaced) when lines change
    ended_at: float | None = None

    def log(self, line: str) -> None:
        self.lines.append(line)
        self.grew.set()
        self.grew = asyncio.Event()


class SimulatedCluster:
    """The simulated site's nodes and runs, shared by every backend (agent) built over it."""

    def __init__(
        self,
        node_groups: Sequence[NodeGroup],
        time_scale: float = 0.001,
        *,
        sleep: Sleep = asyncio.sleep,
        keep_finished: int = 10_000,
    ) -> None:
        self._time_scale = time_scale
        self._sleep = sleep
        self.nodes: dict[str, NodeInventory] = {}
        for group in node_groups:
            for i in range(group.count):
                name = f"{group.name_prefix}-{i}"
                self.nodes[name] = NodeInventory(
                    name=name,
                    gpu_model=group.gpu_model,
                    gpus_allocatable=group.gpus,
                    gpus_allocated=0,
                    gpu_memory_gb=group.gpu_memory_gb,
                    cpus=group.cpus,
                    memory_gb=group.memory_gb,
                    labels=dict(group.labels),
                )
        self.order = sorted(self.nodes, key=_natural)  # first fit walks cp-h800-2 before cp-h800-10
        self.allocated = dict.fromkeys(self.nodes, 0)
        self.runs: dict[AttemptKey, _Run] = {}
        # Ended runs are remembered (a late re-send stays a no-op) up to a bound, oldest forgotten first.
        self._finished: deque[AttemptKey] = deque()
        self._keep_finished = keep_finished
        self.subscribers: list[asyncio.Queue[AttemptStatus]] = []
        # What it was asked to run, and each real start: demos and tests read these.
        self.launches: dict[AttemptKey, Launch] = {}
        self.starts: list[AttemptKey] = []

    def subscribe(self) -> asyncio.Queue[AttemptStatus]:
        """A queue of every change from now on, primed with the runs a restarted agent must hear of."""
        queue: asyncio.Queue[AttemptStatus] = asyncio.Queue()
        now = time.monotonic()
        for run in self.runs.values():
            if run.ended_at is None or now - run.ended_at <= RECOVER_WINDOW_S:
                queue.put_nowait(run.status)
        self.subscribers.append(queue)
        return queue

    def launch(self, launch: Launch, accepts: Sequence[str]) -> None:
        key = launch.key
        if key in self.runs:
            return
        self.launches[key] = launch
        run = _Run(launch, AttemptStatus(key, State.PLACED))
        self.runs[key] = run
        run.log(f"fedbroker simulated: {key} ({launch.backend}, {launch.resources}) accepted")
        if launch.backend not in accepts:
            self._end(run, State.FAILED, f"backend {launch.backend!r} is not run at this site")
            return
        try:
            seconds, exit_code = _script(launch, self._time_scale)
        except ValueError as error:
            self._end(run, State.FAILED, str(error))
            return
        placement = self._fit(launch.resources, launch.nodes)
        if placement is None:
            self._end(run, State.FAILED, f"no room: needs {launch.resources}", reason=Reason.NO_CAPACITY)
            return
        for name in placement:
            self.allocated[name] += launch.resources.gpus_per_replica
            run.allocation[name] = run.allocation.get(name, 0) + launch.resources.gpus_per_replica
        self.starts.append(key)
        run.log(f"running on {','.join(placement)} for {seconds:g}s")
        if env_file := launch.env.get(SIM_ENV_FILE):
            _write_env(run, env_file)
        self._set(run, AttemptStatus(key, State.RUNNING, nodes=tuple(placement)))
        run.task = asyncio.create_task(self._finish_after(run, seconds, exit_code), name=f"sim {key}")

    def cancel(self, key: AttemptKey) -> None:
        run = self.runs.get(key)
        if run is None or run.status.state.terminal:
            return
        if run.task is not None:
            run.task.cancel()
        self._end(run, State.CANCELLED, "cancelled", reason=Reason.CANCELLED)

    async def _finish_after(self, run: _Run, seconds: float, exit_code: int) -> None:
        await self._sleep(seconds)
        state = State.SUCCEEDED if exit_code == 0 else State.FAILED
        self._end(run, state, f"exit code {exit_code}", exit_code, Reason.EXIT)

    def _end(
        self,
        run: _Run,
        state: State,
        message: str,
        exit_code: int | None = None,
        reason: Reason = Reason.LAUNCH_ERROR,
    ) -> None:
        for name, gpus in run.allocation.items():
            self.allocated[name] -= gpus
        run.allocation.clear()
        run.task = None
        run.ended_at = time.monotonic()
        run.log(f"{state.value.lower()}: {message}")
        self._set(run, AttemptStatus(run.launch.key, state, message, exit_code, run.status.nodes, reason))
        self._finished.append(run.launch.key)
        while len(self._finished) > self._keep_finished:
            old = self._finished.popleft()
            self.runs.pop(old, None)
            self.launches.pop(old, None)

    def _set(self, run: _Run, status: AttemptStatus) -> None:
        run.status = status
        for queue in self.subscribers:
            queue.put_nowait(status)

    def _fit(self, need: Resources, hint: Sequence[str]) -> list[str] | None:
        """One node per replica: the hint if the whole gang fits there, else first fit, else None."""
        if len(hint) == need.replicas:
            placed = self._take(need, [[name] for name in hint])
            if placed is not None:
                return placed
        return self._take(need, [self.order] * need.replicas)

    def _take(self, need: Resources, choices: Sequence[Sequence[str]]) -> list[str] | None:
        # GPUs this gang takes so far, per node: free GPUs are read only for the nodes looked
        # at (the broker's hint is one node per replica; a copy of every node's count made
        # each launch cost O(nodes), and a site's start of N jobs O(N^2)).
        taken: dict[str, int] = {}
        placed: list[str] = []
        for options in choices:
            for name in options:
                node = self.nodes.get(name)
                if node is None or (need.gpu_model and node.gpu_model != need.gpu_model):
                    continue
                free = node.gpus_allocatable - self.allocated[name] - taken.get(name, 0)
                if free >= need.gpus_per_replica:
                    taken[name] = taken.get(name, 0) + need.gpus_per_replica
                    placed.append(name)
                    break
            else:
                return None
        return placed


class SimulatedBackend:
    kind: str = "simulated"
    backends: tuple[str, ...] = ("kubernetes", "ray")

    def __init__(
        self,
        node_groups: Sequence[NodeGroup] = (),
        time_scale: float = 0.001,
        *,
        sleep: Sleep = asyncio.sleep,
        keep_finished: int = 10_000,
        cluster: SimulatedCluster | None = None,
    ) -> None:
        self.cluster = cluster or SimulatedCluster(
            node_groups, time_scale, sleep=sleep, keep_finished=keep_finished
        )
        self._changes = self.cluster.subscribe()

    @property
    def launches(self) -> dict[AttemptKey, Launch]:
        return self.cluster.launches

    @property
    def starts(self) -> list[AttemptKey]:
        return self.cluster.starts

    async def nodes(self) -> list[NodeInventory]:
        c = self.cluster
        return [replace(c.nodes[name], gpus_allocated=c.allocated[name]) for name in c.order]

    async def launch(self, launch: Launch) -> None:
        self.cluster.launch(launch, self.backends)

    async def cancel(self, key: AttemptKey) -> None:
        self.cluster.cancel(key)

    async def changes(self) -> AsyncIterator[AttemptStatus]:
        while True:
            yield await self._changes.get()

    async def logs(
        self, key: AttemptKey, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[str]:
        run = self.cluster.runs.get(key)
        if run is None:
            raise AttemptNotFound(f"{key} is not known to this simulated site")
        start = 0 if tail is None else max(len(run.lines) - tail, 0)
        for line in run.lines[start:]:
            yield line
        seen = len(run.lines)
        while follow and not run.status.state.terminal:
            await run.grew.wait()
            for line in run.lines[seen:]:
                yield line
            seen = len(run.lines)

    async def close(self) -> None:
        if self._changes in self.cluster.subscribers:
            self.cluster.subscribers.remove(self._changes)


def _write_env(run: _Run, path: str) -> None:
    try:
        Path(path).write_text(json.dumps(dict(run.launch.env), sort_keys=True))
    except OSError as error:
        run.log(f"cannot write the environment to {path}: {error}")


def _script(launch: Launch, time_scale: float) -> tuple[float, int]:
    """(seconds to run, exit code) from the workload's env and estimate; ValueError names a bad variable."""
    raw_seconds = launch.env.get(SIM_SECONDS)
    if raw_seconds is not None:
        try:
            seconds = float(raw_seconds)
        except ValueError:
            seconds = -1.0
        if not seconds >= 0:  # also refuses NaN
            raise ValueError(f"{SIM_SECONDS} must be a number of seconds >= 0, got {raw_seconds!r}")
    else:
        hours = launch.estimated_hours if launch.estimated_hours is not None else DEFAULT_HOURS
        seconds = hours * 3600 * time_scale
    raw_code = launch.env.get(SIM_EXIT_CODE, "0")
    try:
        exit_code = int(raw_code)
    except ValueError:
        raise ValueError(f"{SIM_EXIT_CODE} must be an integer, got {raw_code!r}") from None
    return seconds, exit_code


def _natural(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

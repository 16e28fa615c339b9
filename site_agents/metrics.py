"""The site agent's metrics: connection, attempts, launches and the site's GPUs as the agent reads them.

Launch outcomes and durations, and the latest inventory, are taken by `MeteredBackend`,
a wrapper around the site's backend (no hook inside the agent's loop); the rest is read
at scrape/export time on the agent's event loop (`LoopReader`), from the agent itself.
Every series carries the agent's site; labels are bounded (GPU models, attempt states).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from broker.observability.loop_reads import LoopReader
from site_agents.agent import Agent
from site_agents.backends.base import AttemptKey, AttemptStatus, Backend, Launch, NodeInventory

SITE = "fedbroker.site"
GPU_MODEL = "fedbroker.gpu.model"
GPU_STATE = "fedbroker.gpu.state"
ATTEMPT_STATE = "fedbroker.attempt.state"
OUTCOME = "fedbroker.launch.outcome"
OPERATION = "fedbroker.backend.operation"
LAUNCH_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class MeteredBackend:
    """The site's backend, timing launches and keeping the latest node inventory for the gauges."""

    def __init__(self, backend: Backend, meter: Meter, site: str) -> None:
        self._backend = backend
        self.kind = backend.kind
        self.backends = backend.backends
        self.site = site
        self.inventory: list[NodeInventory] | None = None
        self.inventory_at: float | None = None  # monotonic time of the last successful nodes()
        self._launches = meter.create_counter("fedbroker.agent.launches", "{attempt}", "Backend launches")
        self._launch_duration = meter.create_histogram(
            "fedbroker.agent.launch.duration",
            "s",
            "The backend's launch call",
            explicit_bucket_boundaries_advisory=LAUNCH_BUCKETS_S,
        )
        self._errors = meter.create_counter(
            "fedbroker.agent.backend.errors", "{error}", "Backend calls that raised, by operation"
        )
        for outcome in ("ok", "error"):
            self._launches.add(0, {SITE: site, OUTCOME: outcome})
        for operation in ("nodes", "launch", "cancel"):
            self._errors.add(0, {SITE: site, OPERATION: operation})

    async def nodes(self) -> list[NodeInventory]:
        try:
            nodes = await self._backend.nodes()
        except Exception:
            self._errors.add(1, {SITE: self.site, OPERATION: "nodes"})
            raise
        self.inventory, self.inventory_at = nodes, time.monotonic()
        return nodes

    async def launch(self, launch: Launch) -> None:
        started = time.perf_counter()
        outcome = "error"
        try:
            await self._backend.launch(launch)
            outcome = "ok"
        finally:
            self._launch_duration.record(time.perf_counter() - started, {SITE: self.site})
            self._launches.add(1, {SITE: self.site, OUTCOME: outcome})
            if outcome == "error":
                self._errors.add(1, {SITE: self.site, OPERATION: "launch"})

    async def cancel(self, key: AttemptKey) -> None:
        try:
            await self._backend.cancel(key)
        except Exception:
            self._errors.add(1, {SITE: self.site, OPERATION: "cancel"})
            raise

    def changes(self) -> AsyncIterator[AttemptStatus]:
        return self._backend.changes()

    def logs(self, key: AttemptKey, tail: int | None = None, follow: bool = False) -> AsyncIterator[str]:
        return self._backend.logs(key, tail, follow)

    async def close(self) -> None:
        await self._backend.close()


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    connected: bool
    attempts: dict[str, int] = field(default_factory=dict)  # state -> attempts the agent knows
    gpus: dict[str, tuple[int, int]] = field(default_factory=dict)  # model -> (allocatable, allocated)
    inventory_age_s: float | None = None


class AgentMetrics:
    def __init__(self, meter: Meter, agent: Agent, backend: MeteredBackend) -> None:
        self._agent = agent
        self._backend = backend
        self._site = {SITE: backend.site}
        self._reader = LoopReader(asyncio.get_running_loop(), self._take)
        gauge = meter.create_observable_gauge
        gauge("fedbroker.agent.connected", [self._connected], "1", "1 while the stream to the broker is open")
        gauge("fedbroker.agent.attempts", [self._attempts], "{attempt}", "Attempts the agent knows, by state")
        gauge("fedbroker.agent.gpu.limit", [self._gpu_limit], "{gpu}", "GPUs allocatable, by model")
        gauge("fedbroker.agent.gpu.usage", [self._gpu_usage], "{gpu}", "GPUs allocated, by model")
        gauge(
            "fedbroker.agent.inventory.age",
            [self._inventory_age],
            "s",
            "Seconds since the backend last answered for the site's nodes (absent before the first)",
        )

    def _take(self) -> AgentSnapshot:
        """On the agent's loop: the agent's and the backend's state, at once."""
        gpus: dict[str, tuple[int, int]] = {}
        for node in self._backend.inventory or ():
            total, allocated = gpus.get(node.gpu_model, (0, 0))
            gpus[node.gpu_model] = (total + node.gpus_allocatable, allocated + node.gpus_allocated)
        at = self._backend.inventory_at
        return AgentSnapshot(
            connected=self._agent.connected,
            attempts=dict(Counter(str(s.state) for s in self._agent.attempts())),
            gpus=gpus,
            inventory_age_s=None if at is None else time.monotonic() - at,
        )

    def _connected(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._reader.get()) is not None:
            yield Observation(int(s.connected), self._site)

    def _attempts(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._reader.get()) is not None:
            for state, count in s.attempts.items():
                yield Observation(count, {**self._site, ATTEMPT_STATE: state})

    def _gpu_limit(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._reader.get()) is not None:
            for model, (total, _allocated) in s.gpus.items():
                yield Observation(total, {**self._site, GPU_MODEL: model})

    def _gpu_usage(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._reader.get()) is not None:
            for model, (_total, allocated) in s.gpus.items():
                yield Observation(allocated, {**self._site, GPU_MODEL: model, GPU_STATE: "allocated"})

    def _inventory_age(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._reader.get()) is not None and s.inventory_age_s is not None:
            yield Observation(s.inventory_age_s, self._site)

"""The one interface every backend implements (simulated, Ray, Kubernetes), and its values.

A backend knows four things: its nodes, how to start and stop one attempt of a
workload, how to tell the agent that an attempt changed state (and why it
ended), and where an attempt's logs are. It knows nothing of gRPC or the
broker; the agent translates at its edge.

Idempotency is the backend's contract too: `launch` keyed by (workload_id,
attempt) must never start a second copy. Real backends get this from the
cluster by naming the object after the attempt (`AttemptKey.resource_name`:
the Kubernetes Job name, the Ray `submission_id`), so it survives agent restarts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class State(StrEnum):
    """An attempt's state as a backend sees it; the names match the broker's workload states."""

    PLACED = "PLACED"  # taken, not running yet (a Job waiting for pods, a Ray job PENDING)
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (State.SUCCEEDED, State.FAILED, State.CANCELLED)


_NOT_DNS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, order=True)
class AttemptKey:
    workload_id: str
    attempt: int

    def resource_name(self) -> str:
        """A stable DNS-1123 label for this attempt (K8s Job name, Ray submission_id).

        Long or odd workload ids keep a readable prefix plus a hash, so two attempts never share a name.
        """
        readable = _NOT_DNS.sub("-", self.workload_id.lower()).strip("-")
        name = f"fb-{readable}-{self.attempt}"
        if len(name) <= 63 and readable == self.workload_id:
            return name
        digest = hashlib.sha256(f"{self.workload_id}/{self.attempt}".encode()).hexdigest()[:10]
        return f"fb-{readable[:36].strip('-')}-{digest}-{self.attempt}"[:63]

    def __str__(self) -> str:
        return f"{self.workload_id}#{self.attempt}"


@dataclass(frozen=True)
class NodeInventory:
    name: str
    gpu_model: str
    gpus_allocatable: int
    gpus_allocated: int
    gpu_memory_gb: float
    cpus: float
    memory_gb: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    """One replica's needs; `replicas` replicas form an all-or-nothing gang."""

    replicas: int
    gpus_per_replica: int
    gpu_model: str = ""  # empty: any model
    cpus_per_replica: float = 0.0
    memory_gb_per_replica: float = 0.0

    def __str__(self) -> str:
        return f"{self.replicas}x{self.gpus_per_replica} {self.gpu_model or 'GPU'}".rstrip()


@dataclass(frozen=True)
class Launch:
    """Start attempt `key` of a workload. Only the section of `backend` is filled."""

    key: AttemptKey
    tenant: str
    backend: str  # the workload's backend: "ray" | "kubernetes"
    resources: Resources
    # Everything the workload's processes see: its own env plus what the agent adds
    # (TRACEPARENT, FEDBROKER_WORKLOAD_ID, FEDBROKER_ATTEMPT).
    env: Mapping[str, str] = field(default_factory=dict)
    nodes: tuple[str, ...] = ()  # the broker's hint, one node per replica, as it reserved them
    estimated_hours: float | None = None
    entrypoint: str = ""  # ray
    runtime_env: Mapping[str, Any] = field(default_factory=dict)  # ray
    image: str = ""  # kubernetes
    command: tuple[str, ...] = ()  # kubernetes


class Reason(StrEnum):
    """Why an attempt ended, in words the broker acts on.

    The infrastructure's failures (no_capacity, image_pull, lost, launch_error) are
    not the workload's fault: the broker may requeue them without using an attempt.
    """

    NONE = ""  # not ended, or ended in a way no other value says
    EXIT = "exit"  # the workload's process exited; exit_code says how
    LAUNCH_ERROR = "launch_error"  # the backend could not start it (bad spec, runtime env, API refusal)
    NO_CAPACITY = "no_capacity"  # nowhere to run it (no room, unschedulable, gang not placed in time)
    IMAGE_PULL = "image_pull"  # the container image could not be pulled
    OOM = "oom"  # killed for using more memory than it asked for
    LOST = "lost"  # its node, pod or job vanished under it
    CANCELLED = "cancelled"  # stopped on request


@dataclass(frozen=True)
class AttemptStatus:
    key: AttemptKey
    state: State
    message: str = ""
    exit_code: int | None = None
    nodes: tuple[str, ...] = ()
    reason: str = Reason.NONE  # a `Reason` value; plain str so that the wire carries it as is


class Backend(Protocol):
    """What the agent needs from a site's compute. Errors are raised as `site_agents.errors.BackendError`."""

    kind: str  # "simulated" | "kubernetes" | "ray"
    backends: tuple[str, ...]  # the workload backends it accepts, sent in Hello

    async def nodes(self) -> list[NodeInventory]:
        """A full snapshot of the site's nodes, gpus_allocated counting what runs there."""
        ...

    async def launch(self, launch: Launch) -> None:
        """Start the attempt; a no-op when that (workload_id, attempt) is already known.

        Returning means the backend has taken it; its fate (RUNNING, or FAILED such as
        "no room") arrives through `changes`.
        """
        ...

    async def cancel(self, key: AttemptKey) -> None:
        """Stop that attempt only (never another attempt of its workload); a no-op if unknown or ended."""
        ...

    def changes(self) -> AsyncIterator[AttemptStatus]:
        """Every state change, in order, for one consumer (the agent), for as long as it iterates.

        A backend that finds attempts already running when it starts (a restarted agent
        on Kubernetes or Ray) yields their current status first, so the agent can resync.
        """
        ...

    def logs(self, key: AttemptKey, tail: int | None = None, follow: bool = False) -> AsyncIterator[str]:
        """The attempt's log lines (without newlines): the last `tail` (all when None), then,
        with `follow`, new lines as they come until the attempt ends.

        Raises `site_agents.errors.AttemptNotFound` when the backend does not know the attempt.
        """
        ...

    async def close(self) -> None:
        """Stop watching the cluster (threads, streams); workloads keep running where they run."""
        ...

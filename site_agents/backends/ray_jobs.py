"""Pure translation between fedbroker's attempts and Ray jobs: what to submit, what a job's state means.

No Ray import and no I/O here: `RayBackend` calls the cluster, these functions
decide. A job carries its attempt in its metadata (`fedbroker.workload_id`,
`fedbroker.attempt`), so an agent that restarts recognises its jobs whatever
`AttemptKey.resource_name` made of an odd workload id.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from site_agents.backends.base import AttemptKey, AttemptStatus, Launch, Reason, State

WORKLOAD_META = "fedbroker.workload_id"
ATTEMPT_META = "fedbroker.attempt"
TENANT_META = "fedbroker.tenant"
REPLICAS_META = "fedbroker.replicas"
ACCELERATOR_PREFIX = "accelerator_type:"
# Ray's idiom for "on a node of this accelerator type": a sliver of the node's one
# accelerator_type:X resource (what @ray.remote(accelerator_type=...) asks for).
ACCELERATOR_SLIVER = 0.001
GIB = 2**30
_GANG_SOURCE = (Path(__file__).with_name("ray_gang.py")).read_text()


@dataclass(frozen=True)
class Submission:
    """The keyword arguments of `JobSubmissionClient.submit_job`, plus what the backend tracks."""

    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    entrypoint_num_gpus: float | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None
    gang: bool = False

    def kwargs(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "submission_id": self.submission_id,
            "entrypoint": self.entrypoint,
            "runtime_env": self.runtime_env,
            "metadata": self.metadata,
        }
        for name in (
            "entrypoint_num_gpus",
            "entrypoint_num_cpus",
            "entrypoint_memory",
            "entrypoint_resources",
        ):
            if (value := getattr(self, name)) is not None:
                args[name] = value
        return args


def gang_strategy(launch: Launch) -> str:
    """STRICT_SPREAD when the broker reserved each replica on its own node, else PACK."""
    hint = launch.nodes
    spread = len(hint) == launch.resources.replicas and len(set(hint)) == len(hint)
    return "STRICT_SPREAD" if spread else "PACK"


def submission(launch: Launch, accelerator_types: Collection[str], namespace: str) -> Submission:
    """The Ray job for one attempt. `accelerator_types`: the models some node advertises as a resource."""
    res = launch.resources
    key = launch.key
    sid = key.resource_name()
    runtime_env = dict(launch.runtime_env)
    # The agent's variables (TRACEPARENT, FEDBROKER_*) win over the workload's runtime_env.
    env_vars = {**dict(runtime_env.get("env_vars") or {}), **launch.env}
    pinned = (
        {f"{ACCELERATOR_PREFIX}{res.gpu_model}": ACCELERATOR_SLIVER}
        if res.gpu_model in accelerator_types
        else {}
    )
    memory = int(res.memory_gb_per_replica * GIB) or None
    metadata = {
        WORKLOAD_META: key.workload_id,
        ATTEMPT_META: str(key.attempt),
        TENANT_META: launch.tenant,
        REPLICAS_META: str(res.replicas),
    }
    if res.replicas <= 1:
        runtime_env["env_vars"] = env_vars
        return Submission(
            submission_id=sid,
            entrypoint=launch.entrypoint,
            runtime_env=runtime_env,
            metadata=metadata,
            entrypoint_num_gpus=res.gpus_per_replica or None,
            entrypoint_num_cpus=res.cpus_per_replica or None,
            entrypoint_memory=memory,
            entrypoint_resources=pinned or None,
        )
    bundle: dict[str, float] = dict(pinned)
    if res.gpus_per_replica:
        bundle["GPU"] = res.gpus_per_replica
    if res.cpus_per_replica:
        bundle["CPU"] = res.cpus_per_replica
    if memory:
        bundle["memory"] = memory
    bundle = bundle or {"CPU": 1}  # Ray refuses empty bundles
    env_vars.update(
        {
            "FEDBROKER_ENTRYPOINT": launch.entrypoint,
            "FEDBROKER_GANG_BUNDLES": json.dumps([bundle] * res.replicas),
            "FEDBROKER_GANG_STRATEGY": gang_strategy(launch),
            "FEDBROKER_PLACEMENT_GROUP": sid,
            "FEDBROKER_RAY_NAMESPACE": namespace,
        }
    )
    runtime_env["env_vars"] = env_vars
    return Submission(
        submission_id=sid,
        entrypoint=f"python -c {shlex.quote(_GANG_SOURCE)}",
        runtime_env=runtime_env,
        metadata=metadata,
        gang=True,
    )


def key_of(metadata: Mapping[str, str] | None) -> AttemptKey | None:
    """The attempt a job belongs to, or None for a job fedbroker did not submit."""
    if not metadata or WORKLOAD_META not in metadata:
        return None
    try:
        return AttemptKey(metadata[WORKLOAD_META], int(metadata.get(ATTEMPT_META, "")))
    except ValueError:
        return None


def is_gang(metadata: Mapping[str, str] | None) -> bool:
    return int((metadata or {}).get(REPLICAS_META, "1") or 1) > 1


# Ray's JobErrorType values, by what they mean for the attempt.
_ERROR_REASONS = {
    "RUNTIME_ENV_SETUP_FAILURE": Reason.LAUNCH_ERROR,
    "JOB_ENTRYPOINT_COMMAND_START_ERROR": Reason.LAUNCH_ERROR,
    "JOB_SUPERVISOR_ACTOR_START_TIMEOUT": Reason.NO_CAPACITY,
    "JOB_SUPERVISOR_ACTOR_UNSCHEDULABLE": Reason.NO_CAPACITY,
    "JOB_SUPERVISOR_ACTOR_START_FAILURE": Reason.LOST,
    "JOB_SUPERVISOR_ACTOR_DIED": Reason.LOST,
    "JOB_SUPERVISOR_ACTOR_UNKNOWN_FAILURE": Reason.LOST,
    "JOB_ENTRYPOINT_COMMAND_ERROR": Reason.EXIT,
}


def status_of(
    key: AttemptKey,
    status: str,
    message: str | None,
    *,
    error_type: str | None = None,
    exit_code: int | None = None,
    driver_node: str | None = None,
    gang_ready: bool | None = None,
) -> AttemptStatus:
    """A Ray job's state as an attempt's. `gang_ready`: whether a gang's placement group is placed."""
    first_line = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    nodes = (driver_node,) if driver_node else ()
    if status == "PENDING":
        return AttemptStatus(key, State.PLACED, first_line)
    if status == "RUNNING":
        if gang_ready is False:
            return AttemptStatus(key, State.PLACED, "waiting for the gang's placement group", nodes=nodes)
        return AttemptStatus(key, State.RUNNING, first_line, nodes=nodes)
    if status == "SUCCEEDED":
        code = 0 if exit_code is None else exit_code
        return AttemptStatus(key, State.SUCCEEDED, f"exit code {code}", code, nodes, Reason.EXIT)
    if status == "STOPPED":
        return AttemptStatus(key, State.CANCELLED, first_line or "stopped", None, nodes, Reason.CANCELLED)
    reason = _ERROR_REASONS.get(str(error_type or ""), Reason.EXIT if exit_code is not None else Reason.LOST)
    if reason is Reason.EXIT and exit_code is not None:
        return AttemptStatus(key, State.FAILED, f"exit code {exit_code}", exit_code, nodes, reason)
    return AttemptStatus(key, State.FAILED, first_line or f"Ray job {status}", exit_code, nodes, reason)


def gpus_in_use(used: float) -> int:
    """Whole GPUs taken: a fractional share still makes a GPU unavailable to a whole-GPU replica."""
    return math.ceil(used - 1e-9)

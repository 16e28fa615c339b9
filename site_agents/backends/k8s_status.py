"""Pure: an attempt's state from its Job and the Job's pods (the API's JSON).

The Job's conditions say whether it ended (Complete, Failed); its pods say why
(OOMKilled, an exit code, an eviction) and what stops it before it runs: an
image that cannot be pulled, a container that cannot be created, a pod that
cannot be scheduled. The first two end the attempt at once (Kubernetes would
wait forever); `unschedulable` is returned apart, because only time makes it
`no_capacity` and the backend keeps the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from site_agents.backends.base import AttemptKey, AttemptStatus, Reason, State
from site_agents.backends.k8s_manifest import INDEX_LABEL

IMAGE_PULL = frozenset(
    {"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)  # ErrImagePull is retried
CANNOT_CREATE = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
LOST = frozenset(
    {"Evicted", "NodeLost", "Shutdown", "Terminated", "UnexpectedAdmissionError", "NodeAffinity"}
)

Json = Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    status: AttemptStatus
    unschedulable: str = ""  # a pod's scheduler message while it cannot be placed
    job_finished: bool = False  # Kubernetes already ended the Job (nothing left to delete)


def verdict(key: AttemptKey, job: Json, pods: Sequence[Json]) -> Verdict:
    spec = job.get("spec") or {}
    replicas = int(spec.get("parallelism") or 1)
    pods = sorted(pods, key=_index)
    nodes = tuple(
        str((p.get("spec") or {}).get("nodeName")) for p in pods if (p.get("spec") or {}).get("nodeName")
    )
    conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []}
    if _true(conditions.get("Complete")):
        return Verdict(
            AttemptStatus(key, State.SUCCEEDED, "exit code 0", 0, nodes, Reason.EXIT), job_finished=True
        )
    failed = conditions.get("Failed")
    if _true(failed):
        if any(not _pod_ended(p) for p in pods):
            # The Job's and the pods' watches race: the pod that failed it has not shown its
            # end here yet. Its update comes next and says why (OOMKilled, an exit code).
            return Verdict(AttemptStatus(key, State.RUNNING, "", None, nodes))
        return Verdict(_failure(key, failed or {}, pods, nodes), job_finished=True)
    for pod in pods:
        for container in _containers(pod):
            waiting = (container.get("state") or {}).get("waiting") or {}
            why, text = waiting.get("reason", ""), waiting.get("message", "")
            if why in IMAGE_PULL:
                message = f"{why}: {text or container.get('image', '')}".strip()
                return Verdict(AttemptStatus(key, State.FAILED, message, None, nodes, Reason.IMAGE_PULL))
            if why in CANNOT_CREATE:
                message = f"{why}: {text}".strip(": ")
                return Verdict(AttemptStatus(key, State.FAILED, message, None, nodes, Reason.LAUNCH_ERROR))
    unschedulable = next((m for p in pods if (m := _unschedulable(p))), "")
    # A pod that already ended still ran: until the Job concludes, the attempt stays RUNNING.
    running = [p for p in pods if (p.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")]
    if len(running) >= replicas:
        return Verdict(AttemptStatus(key, State.RUNNING, "", None, nodes))
    if unschedulable:
        return Verdict(
            AttemptStatus(key, State.PLACED, f"unschedulable: {unschedulable}", None, nodes), unschedulable
        )
    message = f"{len(running)}/{replicas} pods running" if pods else "waiting for pods"
    return Verdict(AttemptStatus(key, State.PLACED, message, None, nodes))


def _failure(key: AttemptKey, condition: Json, pods: Sequence[Json], nodes: tuple[str, ...]) -> AttemptStatus:
    why = str(condition.get("reason") or "")
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("reason") in LOST or _disrupted(pod):
            message = f"pod {_name(pod)} {status.get('reason') or 'disrupted'}: {status.get('message', '')}"
            return AttemptStatus(key, State.FAILED, message.strip(": "), None, nodes, Reason.LOST)
        for container in _containers(pod):
            ended = (container.get("state") or {}).get("terminated") or {}
            if ended.get("reason") == "OOMKilled":
                code = ended.get("exitCode")
                return AttemptStatus(
                    key, State.FAILED, f"OOMKilled in pod {_name(pod)}", code, nodes, Reason.OOM
                )
            if ended.get("exitCode") not in (None, 0):
                code = int(ended["exitCode"])
                return AttemptStatus(key, State.FAILED, f"exit code {code}", code, nodes, Reason.EXIT)
    if why == "DeadlineExceeded":
        message = "ran past its deadline (activeDeadlineSeconds)"
        return AttemptStatus(key, State.FAILED, message, None, nodes, Reason.EXIT)
    message = f"{why}: {condition.get('message', '')}".strip(": ") or "the Job failed"
    return AttemptStatus(key, State.FAILED, message, None, nodes, Reason.LOST)


def _pod_ended(pod: Json) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed") or status.get("reason") in LOST or _disrupted(pod):
        return True
    return any((c.get("state") or {}).get("terminated") for c in _containers(pod))


def _containers(pod: Json) -> list[Json]:
    return list((pod.get("status") or {}).get("containerStatuses") or [])


def _unschedulable(pod: Json) -> str:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            return str(condition.get("message") or "no node fits")
    return ""


def _disrupted(pod: Json) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conditions)


def _true(condition: Json | None) -> bool:
    return bool(condition) and (condition or {}).get("status") == "True"


def _name(pod: Json) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))


def _index(pod: Json) -> tuple[int, str]:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    try:
        return int(labels.get(INDEX_LABEL, 0)), _name(pod)
    except ValueError:
        return 0, _name(pod)

"""Pure: the `batch/v1` Job that runs one attempt, and the names and labels that find it again.

One Job per attempt, named `AttemptKey.resource_name()`, so that a second create
of the same attempt is a 409 Conflict, never a second Job. `backoffLimit: 0`:
the broker, not Kubernetes, decides whether an attempt is retried. A gang is an
Indexed Job with parallelism = completions = replicas (each pod sees its index in
JOB_COMPLETION_INDEX); Kubernetes itself does not start the pods together, a
gang scheduler (Kueue, Volcano) does where the site runs one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from site_agents.backends.base import AttemptKey, Launch
from site_agents.config import KubernetesBackendConfig

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "fedbroker"
WORKLOAD_LABEL = "fedbroker.io/workload"
TENANT_LABEL = "fedbroker.io/tenant"
ATTEMPT_LABEL = "fedbroker.io/attempt"
WORKLOAD_ANNOTATION = "fedbroker.io/workload-id"  # the id as is; a label value may have had to change
TENANT_ANNOTATION = "fedbroker.io/tenant"
GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
HOSTNAME_LABEL = "kubernetes.io/hostname"
CONTAINER = "workload"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
SELECTOR = f"{MANAGED_BY}={MANAGER}"

_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")


def label_value(text: str) -> str:
    """A valid label value (63 chars of [A-Za-z0-9_.-], alphanumeric at both ends) close to `text`."""
    return _NOT_LABEL.sub("-", text)[:63].strip("-_.")


def key_of(job: Mapping[str, Any]) -> AttemptKey | None:
    """The attempt a Job runs, or None for a Job fedbroker did not make."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if labels.get(MANAGED_BY) != MANAGER or WORKLOAD_ANNOTATION not in annotations:
        return None
    try:
        return AttemptKey(annotations[WORKLOAD_ANNOTATION], int(labels.get(ATTEMPT_LABEL, "")))
    except ValueError:
        return None


def products_of(model: str, config: KubernetesBackendConfig) -> list[str]:
    """The nvidia.com/gpu.product values that mean `model` at this site."""
    return sorted({product for product, name in config.gpu_models.items() if name == model} | {model})


def job_manifest(launch: Launch, config: KubernetesBackendConfig) -> dict[str, Any]:
    res = launch.resources
    key = launch.key
    labels = {
        MANAGED_BY: MANAGER,
        WORKLOAD_LABEL: label_value(key.workload_id),
        TENANT_LABEL: label_value(launch.tenant),
        ATTEMPT_LABEL: str(key.attempt),
    }
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "completions": res.replicas,
        "parallelism": res.replicas,
        "ttlSecondsAfterFinished": config.ttl_after_finished_s,
        "template": {"metadata": {"labels": dict(labels)}, "spec": _pod_spec(launch, config)},
    }
    if res.replicas > 1:
        spec["completionMode"] = "Indexed"
    if launch.estimated_hours:
        spec["activeDeadlineSeconds"] = max(
            1, math.ceil(launch.estimated_hours * 3600 * config.deadline_multiple)
        )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": key.resource_name(),
            "namespace": config.namespace,
            "labels": labels,
            "annotations": {WORKLOAD_ANNOTATION: key.workload_id, TENANT_ANNOTATION: launch.tenant},
        },
        "spec": spec,
    }


def _pod_spec(launch: Launch, config: KubernetesBackendConfig) -> dict[str, Any]:
    res = launch.resources
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if res.gpus_per_replica:
        limits[GPU_RESOURCE] = str(res.gpus_per_replica)
    if res.cpus_per_replica:
        requests["cpu"] = limits["cpu"] = _cpu(res.cpus_per_replica)
    if res.memory_gb_per_replica:
        requests["memory"] = limits["memory"] = f"{math.ceil(res.memory_gb_per_replica * 1024)}Mi"
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": launch.image,
        "env": [{"name": name, "value": value} for name, value in sorted(launch.env.items())],
        "resources": {"limits": limits, **({"requests": requests} if requests else {})},
    }
    if launch.command:
        container["command"] = list(launch.command)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "tolerations": [t.model_dump(exclude_none=True) for t in config.tolerations],
    }
    affinity = _affinity(res.gpu_model, launch.nodes, config)
    if affinity:
        pod["affinity"] = {"nodeAffinity": affinity}
    return pod


def _affinity(model: str, hint: Sequence[str], config: KubernetesBackendConfig) -> dict[str, Any]:
    affinity: dict[str, Any] = {}
    if model:
        terms: list[dict[str, Any]] = [
            {
                "matchExpressions": [
                    {"key": PRODUCT_LABEL, "operator": "In", "values": products_of(model, config)}
                ]
            }
        ]
        if model == config.default_gpu_model:  # unlabelled GPU nodes count as the default model
            terms.append({"matchExpressions": [{"key": PRODUCT_LABEL, "operator": "DoesNotExist"}]})
        affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
    if hint:
        # The broker's reservation is a preference: a stale report must not make the pod unschedulable.
        affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {
                "weight": 100,
                "preference": {
                    "matchExpressions": [
                        {"key": HOSTNAME_LABEL, "operator": "In", "values": sorted(set(hint))}
                    ]
                },
            }
        ]
    return affinity


def _cpu(cpus: float) -> str:
    millis = math.ceil(cpus * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"

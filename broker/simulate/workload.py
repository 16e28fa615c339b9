"""Trace jobs -> the placement core's requests, through the mapping and a seed.

What the trace does not say is filled in here, deterministically: the same trace, mapping
and seed always give the same jobs. One ``random.Random(seed)`` is drawn from in trace
order, per job: its tenant (when its cluster is split between tenants), whether it asks
for subsidy (``preferred``) or not (``none``), then each dataset of its tenant in name
order. A tenant's ``priorities`` are drawn from a second generator (seeded from the seed),
one draw per job of that tenant, so adding them changes no other draw.

Shapes: fractional GPU requests round *up* to whole GPUs (a GPU-sharing pod takes a GPU:
the core places whole GPUs). A job that fits on one node of ``gpus_per_node`` (the trace's
column, else the mapping's) is one replica; a larger one is a gang of
``ceil(gpus / gpus_per_node)`` replicas of equal size, all or nothing. The estimate the
core sees is the job's real duration (the traces carry no user estimates).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from broker.federation import placement_request
from broker.placement import Request
from broker.spec import parse_spec

from .mapping import Mapping
from .trace import TraceJob


@dataclass(frozen=True, slots=True)
class SimJob:
    """One job to replay: when it arrives, how long it runs, what it asks the core for."""

    index: int  # position in submit order (also the request's seq)
    job_id: str
    submit_s: float
    duration_s: float
    request: Request
    home: str  # its tenant's home site


@dataclass(frozen=True, slots=True)
class Workload:
    jobs: tuple[SimJob, ...]
    skipped: Counter[str]  # reason -> trace jobs left out


class UnmappedCluster(ValueError):
    def __init__(self, job: TraceJob) -> None:
        super().__init__(f"line {job.line}: cluster {job.cluster!r} is not under the mapping's clusters")


def build_workload(jobs: Sequence[TraceJob], mapping: Mapping, seed: int) -> Workload:
    rng = random.Random(seed)
    # Priorities from a generator of their own: a mapping that adds them leaves the other
    # draws (tenant, subsidy, datasets) as they were.
    priority_rng = random.Random(f"{seed}:priority")
    skipped: Counter[str] = Counter()
    out: list[SimJob] = []
    start = mapping.start_s
    shares = {c: mapping.tenant_shares(c) for c in {j.cluster for j in jobs}}
    # Requests go through a real WorkloadSpec and placement_request, so every default the
    # broker applies to a submitted workload applies here too.
    template = parse_spec(
        {
            "name": "trace-job",
            "backend": mapping.backend,
            mapping.backend: {"entrypoint": "replay"} if mapping.backend == "ray" else {"image": "replay"},
            "resources": {"gpus_per_replica": 1, "gpu_model": mapping.gpu_model},
        },
        "simulate template",
    )
    for job in jobs:
        choices = shares[job.cluster]
        if not choices:
            raise UnmappedCluster(job)
        end = job.submit_s + job.duration_s
        if end < start:
            skipped["ended before start_s"] += 1
            continue
        submit = max(job.submit_s, start)  # running when the window opens: only the rest of its run
        tenant = choices[0][0] if len(choices) == 1 else _pick(rng, choices)
        tmap = mapping.tenants[tenant]
        subsidy = "preferred" if rng.random() < tmap.subsidy_share else "none"
        datasets = tuple(d for d, p in sorted(tmap.datasets.items()) if rng.random() < p)
        priority = _priority(priority_rng, tmap.priorities) if tmap.priorities else 0
        replicas, per_replica = gang(job.gpus, job.gpus_per_node, mapping.gpus_per_node)
        spec = template.model_copy(
            update={
                "resources": template.resources.model_copy(
                    update={"gpus_per_replica": per_replica, "replicas": replicas}
                ),
                "datasets": list(datasets),
                "subsidy": subsidy,
                "priority": priority,
                "estimated_hours": max(end - submit, 0.0) / 3600,
            }
        )
        index = len(out)
        request = placement_request(job.job_id, tenant, spec, index, submitted_at=submit)
        out.append(SimJob(index, job.job_id, submit, end - submit, request, tmap.home))
    return Workload(tuple(out), skipped)


def gang(gpus: float, trace_per_node: float | None, default_per_node: int) -> tuple[int, int]:
    """(replicas, GPUs per replica) for a request of ``gpus`` (rounded up to whole GPUs)."""
    whole = max(1, math.ceil(gpus - 1e-9))
    per_node = max(1, math.ceil(trace_per_node - 1e-9)) if trace_per_node else default_per_node
    if whole <= per_node:
        return 1, whole
    replicas = math.ceil(whole / per_node)
    return replicas, math.ceil(whole / replicas)


def _pick(rng: random.Random, choices: list[tuple[str, float]]) -> str:
    total = sum(w for _, w in choices)
    x = rng.random() * total
    for name, w in choices:
        x -= w
        if x < 0:
            return name
    return choices[-1][0]


def _priority(rng: random.Random, chances: dict[int, float]) -> int:
    """One draw: each priority with its chance (in priority order), else 0."""
    x = rng.random()
    for priority, chance in sorted(chances.items()):
        x -= chance
        if x < 0:
            return priority
    return 0

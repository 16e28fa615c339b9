"""The replay loop: a trace on a simulated clock through the real placement core.

One event heap of completions, merged with the arrivals (already in submit order). At each
instant, in order:
  1. completions: the core charges each attempt (``charge``) and releases it (``finish``);
  2. if anything finished, or a waiting job's overflow time came (its preferred sites'
     round is over), one queue pass (``schedule_pass``): queued work is placed by the core
     in its queue order, as the broker's scheduling cycle does; nothing else can make
     room, so the core is asked only then;
  3. arrivals: each is routed by the policy and submitted (placed now, queued or refused);
     if one of a priority that may preempt queued, one more pass (it may take back
     lower-priority running work);
  4. one sample of the queue length and the GPUs in use per site, for the plot.

A preempted job is charged for what it ran, stops at once, and waits in the queue again;
when placed again it runs its whole duration again (the work is lost, as in a cancel).
A job's wait is all its time in the queue, before and after a preemption.

A site's inventory is reported once, empty, at the start, and every site stays healthy;
the core's reservations then stand for the running work (no agent reports running lists),
and are released when the job finishes. The core is given the simulated time at every
call (overflow rounds, fair-share decay). A placed job first moves the datasets its site
lacks (the core's locality hours, i.e. over the configured link) and then runs for its
trace duration; it holds its GPUs, and is charged, for both. Data is moved again for every
job that needs it elsewhere (no cache between jobs).
"""

from __future__ import annotations

import heapq
import math
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from broker.placement import (
    DEFAULT_STARVATION_PASSES,
    Federation,
    Node,
    Placed,
    PlacementCore,
    Queued,
)

from .policies import Policy
from .workload import SimJob


@dataclass(slots=True)
class Timeline:
    """Step-function samples: from ``t[k]`` until ``t[k+1]`` the values at index k held."""

    t: array[float] = field(default_factory=lambda: array("d"))
    queued: array[float] = field(default_factory=lambda: array("d"))
    busy: dict[str, array[float]] = field(default_factory=dict)  # site -> GPUs in use


@dataclass(slots=True)
class Run:
    """What happened to every job under one policy (metrics.summarise reads it)."""

    policy: str
    gpus_total: dict[str, int]  # site -> GPUs
    submitted: int = 0
    refused: int = 0
    completed: int = 0
    waits_s: list[float] = field(default_factory=list)  # per completed job: its time queued
    tenant_waits_s: dict[str, list[float]] = field(default_factory=dict)  # the same, per tenant
    gang_waits_s: list[float] = field(default_factory=list)  # the same, for multi-node gangs only
    urgent_waits_s: list[float] = field(default_factory=list)  # the same, for priority above 0
    preempted: int = 0  # running jobs taken back for higher-priority work
    starts: dict[str, tuple[str, float]] = field(default_factory=dict)  # workload -> (site, start)
    refused_ids: list[str] = field(default_factory=list)
    jct_s: list[float] = field(default_factory=list)  # per completed job: submit to end
    busy_gpu_s: dict[str, float] = field(default_factory=dict)  # site -> GPU-seconds held
    placed_on: dict[str, int] = field(default_factory=dict)  # site -> jobs placed
    moved_gb: float = 0.0
    moving_h: float = 0.0
    program_hkd: float = 0.0
    tenant_hkd: float = 0.0
    first_s: float = 0.0
    last_s: float = 0.0
    passes: int = 0
    wall_s: float = 0.0
    timeline: Timeline = field(default_factory=Timeline)


def inventory_nodes(
    sites: Mapping[str, Sequence[tuple[int, str, int, float, float]]],
) -> dict[str, list[Node]]:
    """site -> nodes from (count, GPU model, GPUs, CPUs, memory GB) groups, named per site."""
    out: dict[str, list[Node]] = {}
    for site, groups in sites.items():
        nodes: list[Node] = []
        for g, (count, model, gpus, cpus, memory) in enumerate(groups):
            nodes += [Node(f"{site}-g{g}-{k:04d}", model, gpus, 0, cpus, memory) for k in range(count)]
        out[site] = nodes
    return out


def replay(
    federation: Federation,
    inventory: Mapping[str, Sequence[Node]],
    jobs: Sequence[SimJob],
    policy: Policy,
    *,
    dataset_sites: Mapping[str, tuple[float, frozenset[str]]] | None = None,
    starvation_passes: int = DEFAULT_STARVATION_PASSES,
) -> Run:
    """Replay ``jobs`` (in submit order) under ``policy``; ``dataset_sites`` maps a dataset
    to (size GB, sites holding it), only to count the data moved."""
    started = time.perf_counter()
    configured = policy.federation(replace(federation, weights=policy.weights(federation.weights)))
    core = PlacementCore(configured, starvation_passes=starvation_passes)
    sites = sorted(s.name for s in federation.sites)
    for name in sites:
        nodes = list(inventory.get(name, ()))
        core.update_site(name, nodes=nodes)
        core.set_healthy(name, True)
    run = Run(policy.name, {s: sum(n.gpus_allocatable for n in inventory.get(s, ())) for s in sites})
    run.busy_gpu_s = dict.fromkeys(sites, 0.0)
    run.placed_on = dict.fromkeys(sites, 0)
    datasets = dataset_sites or {}
    busy = dict.fromkeys(sites, 0)
    tl = run.timeline
    tl.busy = {s: array("d") for s in sites}
    by_id = {job.request.workload_id: job for job in jobs}
    running: dict[str, tuple[str, float, float]] = {}  # workload -> (site, hold seconds, end)
    heap: list[tuple[float, int, str]] = []  # (end, index, workload): index breaks ties
    waited: dict[str, float] = {}  # workload -> seconds queued so far
    queued_since: dict[str, float] = {}  # workload -> when it (last) joined the queue
    preempting = configured.preempting_priorities
    queued = 0

    def start(placed: Placed, now: float) -> None:
        job = by_id[placed.workload_id]
        req = job.request
        site = placed.site
        hours = 0.0
        if req.datasets:
            chosen = next(c for c in placed.explanation.candidates if c.site == site)
            hours = chosen.terms.locality_hours if chosen.terms is not None else 0.0
            for name in req.datasets:
                size, holders = datasets.get(name, (0.0, frozenset()))
                if holders and site not in holders:
                    run.moved_gb += size
        run.moving_h += hours
        hold = hours * 3600 + job.duration_s
        wid = placed.workload_id
        running[wid] = (site, hold, now + hold)
        heapq.heappush(heap, (now + hold, job.index, wid))
        busy[site] += req.gpus_total
        run.placed_on[site] += 1
        run.starts[wid] = (site, now)
        waited[wid] = waited.get(wid, 0.0) + now - queued_since.pop(wid, job.submit_s)

    def evict(wid: str, now: float) -> None:
        """A preemption took the running job back: charged for what it ran, queued again."""
        site, hold, end = running.pop(wid)
        ran = now - (end - hold)
        charge = core.charge(wid, ran / 3600)
        if charge is not None:
            run.program_hkd += charge.program_hkd
            run.tenant_hkd += charge.tenant_hkd
        gpus = by_id[wid].request.gpus_total
        busy[site] -= gpus
        run.busy_gpu_s[site] += gpus * ran
        run.preempted += 1
        queued_since[wid] = now

    def queue_pass(now: float) -> None:
        nonlocal queued
        run.passes += 1
        result = core.schedule_pass(now=now)
        for victim in result.preempted:
            evict(victim.workload_id, now)
            queued += 1
        for placed in result.placed:
            start(placed, now)
            queued -= 1

    n = len(jobs)
    i = 0
    run.first_s = jobs[0].submit_s if jobs else 0.0
    while i < n or heap:
        now = jobs[i].submit_s if i < n else math.inf
        if heap and heap[0][0] <= now:
            now = heap[0][0]
        overflow = core.next_overflow_at()
        overflowed = False
        if overflow is not None and overflow <= now:
            now, overflowed = overflow, True
        # 1. completions
        freed = False
        while heap and heap[0][0] <= now:
            end, _, wid = heapq.heappop(heap)
            if wid not in running or running[wid][2] != end:
                continue  # an attempt a preemption ended early
            site, hold, _ = running.pop(wid)
            charge = core.charge(wid, hold / 3600)
            if charge is not None:
                run.program_hkd += charge.program_hkd
                run.tenant_hkd += charge.tenant_hkd
            core.finish(wid, now=now)
            job = by_id[wid]
            busy[site] -= job.request.gpus_total
            run.busy_gpu_s[site] += job.request.gpus_total * hold
            run.jct_s.append(now - job.submit_s)
            wait = waited.pop(wid)
            run.waits_s.append(wait)
            run.tenant_waits_s.setdefault(job.request.tenant, []).append(wait)
            if job.request.replicas > 1:
                run.gang_waits_s.append(wait)
            if job.request.priority > 0:
                run.urgent_waits_s.append(wait)
            run.completed += 1
            run.last_s = now
            freed = True
        # 2. one queue pass, only when GPUs were freed or a round of preferred sites ended
        if freed or overflowed:
            queue_pass(now)
        # 3. arrivals
        may_preempt = False
        while i < n and jobs[i].submit_s <= now:
            job = jobs[i]
            i += 1
            run.submitted += 1
            decision = core.submit(policy.route(job, core), now=now)
            if isinstance(decision, Placed):
                start(decision, now)
            elif isinstance(decision, Queued):
                queued += 1
                may_preempt = may_preempt or job.request.priority in preempting
            else:
                run.refused += 1
                run.refused_ids.append(job.job_id)
        if may_preempt:
            queue_pass(now)
        # 4. sample
        tl.t.append(now)
        tl.queued.append(queued)
        for s in sites:
            tl.busy[s].append(busy[s])
    run.wall_s = time.perf_counter() - started
    return run

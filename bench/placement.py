"""Benchmark of the placement core alone: decisions/s, decision latency, queue pass time
and peak memory at 2 sites/64 nodes, 10 sites/500 nodes and 10 sites/5,000 nodes (8 GPUs
per node), each with 50,000 queued workloads of mixed shapes from a fixed seed, with fair
share between the 20 tenants (weights 1-3) and preemption by priority-2 work on.

    .venv/bin/python bench/placement.py                 # all three scales, a table
    .venv/bin/python bench/placement.py --scale small   # a quick run
    .venv/bin/python bench/placement.py --json          # {"rows": [...]}
    .venv/bin/python bench/placement.py --no-fair-share --no-preemption   # FIFO, for comparison

Method, per scale, in a fresh forked process:
  1. build the federation, report every site's nodes (empty) and mark them healthy;
  2. submit workloads one by one until 50,000 wait in the queue, timing each ``submit``
     (a decision; some are placed, most queue, a few are refused) -> decisions/s (decisions
     over the summed submit time), p50, p99;
  3. an inventory change: 2% of the placed workloads finish and one site reports (its
     running list included) -> time one full ``schedule()`` pass over the whole queue
     (wall time, and the process's CPU time, which other work on the machine inflates less);
  4. sustained placements: finish running work in 10% batches, a pass after each (30
     rounds or 10,000 placements) -> placements/s over the time of those finishes and
     passes, the queue of ~50,000 still waiting behind them;
  5. peak memory = the process's peak RSS (resource.getrusage ru_maxrss), which includes
     the interpreter and the generated requests, not only the core.
The clock and the seeded random generator live here; the core takes neither: each submit
is 0.1 simulated seconds after the last, and the core is given that time (fair-share decay,
what a preemption wastes). A third of the tenants have a home site (round 1 of their work
prefers it, for the default 600 s).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import random
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.gc_tuning import tune_gc
from broker.placement import (
    Dataset,
    FairSharePolicy,
    Federation,
    Node,
    Placed,
    PlacementCore,
    Queued,
    Request,
    SiteConfig,
    SubsidyProgram,
    TenantPolicy,
)

DRAIN_PLACEMENTS = 10_000
DRAIN_ROUNDS = 30
SCALES = {"small": (2, 64), "medium": (10, 500), "large": (10, 5000)}
MODELS = ("H800", "A100-80GB", "L40S")
GPUS_PER_NODE = 8


def build(
    n_sites: int, n_nodes: int, seed: int, fair_share: bool = True, preemption: bool = True
) -> tuple[Federation, dict[str, list[Node]]]:
    rng = random.Random(seed)
    names = [f"site-{i:02d}" for i in range(n_sites)]
    sites, inventory = [], {}
    for i, name in enumerate(names):
        backends = frozenset({"kubernetes", "ray"} if i % 3 else {"kubernetes"})
        programs = frozenset({"aiss"} if i % 2 == 0 else set())
        prices = {m: round(rng.uniform(15, 45), 1) for m in MODELS}
        sites.append(SiteConfig(name, backends, programs, prices))
        count = n_nodes // n_sites + (1 if i < n_nodes % n_sites else 0)
        inventory[name] = [
            Node(f"{name}-n{j:05d}", MODELS[j % len(MODELS)], GPUS_PER_NODE, 0, 128.0, 1024.0)
            for j in range(count)
        ]
    links = {
        frozenset({a, b}): rng.choice([10.0, 40.0, 100.0])
        for k, a in enumerate(names)
        for b in names[k + 1 :]
        if rng.random() < 0.5
    }
    datasets = tuple(
        Dataset(
            f"ds-{k}", rng.choice([50.0, 500.0, 2000.0, 8000.0]), frozenset(rng.sample(names, k=1 + (k % 2)))
        )
        for k in range(8)
    )
    tenants = tuple(
        TenantPolicy(
            f"tenant-{k:02d}",
            "aiss" if k % 2 == 0 else None,
            budget_hkd=rng.choice([50_000.0, 500_000.0, 5_000_000.0]),
            quota_gpus=None if k % 4 else 512,
            home_site=names[k % n_sites] if k % 3 == 0 else None,
            fair_share_weight=float(1 + k % 3),
        )
        for k in range(20)
    )
    fed = Federation(
        tuple(sites),
        (SubsidyProgram("aiss", 0.7),),
        tenants,
        datasets,
        links,
        fair_share=FairSharePolicy(enabled=fair_share, half_life_s=24 * 3600.0),
        preempting_priorities=frozenset({2}) if preemption else frozenset(),
    )
    return fed, inventory


def workloads(fed: Federation, seed: int) -> Iterator[Request]:
    """An endless, seeded stream of mixed shapes (1-64 GPUs, gangs of 1-8 replicas)."""
    rng = random.Random(seed + 1)
    names = [s.name for s in fed.sites]
    for i in itertools.count():
        per = rng.choice([1, 1, 2, 4, 8, 8])
        replicas = rng.choice([1, 1, 1, 2, 2, 4, 8])
        while per * replicas > 64:
            replicas //= 2
        tenant = f"tenant-{rng.randrange(20):02d}"
        yield Request(
            workload_id=f"w{i:06d}",
            tenant=tenant,
            backend=rng.choice(["kubernetes", "kubernetes", "ray"]),
            gpu_model=rng.choice(MODELS),
            gpus_per_replica=per,
            replicas=replicas,
            cpus_per_replica=rng.choice([0.0, 0.0, 16.0]),
            memory_gb_per_replica=rng.choice([0.0, 0.0, 128.0]),
            datasets=tuple(rng.sample([d.name for d in fed.datasets], k=rng.choice([0, 0, 1, 2]))),
            subsidy=rng.choice(["preferred", "preferred", "required", "none"]),
            priority=rng.choice([0, 0, 0, 1, 2]),
            estimated_hours=rng.choice([0.5, 2.0, 12.0]),
            sites=tuple(rng.sample(names, k=2)) if rng.random() < 0.1 else (),
            seq=i,
        )


def measure(scale: str, queued: int, seed: int, fair_share: bool = True, preemption: bool = True) -> dict:
    n_sites, n_nodes = SCALES[scale]
    tune_gc()  # the collector as `fedbroker serve` sets it (a full sweep inside a pass is not the core's)
    fed, inventory = build(n_sites, n_nodes, seed, fair_share, preemption)
    core = PlacementCore(fed)
    for name, nodes in inventory.items():
        core.update_site(name, nodes=nodes)
        core.set_healthy(name, True)

    # 2. decisions: submit until `queued` wait in the queue, timing each submit
    lat = []
    placed: list[Placed] = []
    in_queue = 0
    clock = time.perf_counter
    stream = workloads(fed, seed)
    reqs = []
    while in_queue < queued:
        r = next(stream)
        reqs.append(r)  # kept alive, as the broker would
        now = len(reqs) * 0.1
        a = clock()
        d = core.submit(r, now=now)
        lat.append(clock() - a)
        if isinstance(d, Placed):
            placed.append(d)
        elif isinstance(d, Queued):
            in_queue += 1
    total = sum(lat)

    # 3. an inventory change: 2% of placed work finishes, one site reports, one pass
    rng = random.Random(seed + 2)
    done = rng.sample(placed, k=max(1, len(placed) // 50))
    now = len(reqs) * 0.1 + 60
    for p in done:
        core.finish(p.workload_id, now=now)
    site = fed.sites[0].name
    core.update_site(site, nodes=inventory[site], running=[])
    a, cpu = clock(), time.process_time()
    result = core.schedule_pass(now=now)
    pass_s, pass_cpu_s = clock() - a, time.process_time() - cpu
    passed = list(result.placed)
    preempted = len(result.preempted)
    a = clock()
    core.schedule_pass(now=now)  # a second pass with nothing changed: the steady-state cost
    idle_pass_s = clock() - a

    # 4. sustained placements: as the queue drains, finish running work in batches of 5%
    #    and run a pass after each (as the broker does on every report), timing both.
    finished = {p.workload_id for p in done}
    running = [p.workload_id for p in placed if p.workload_id not in finished]
    running += [p.workload_id for p in passed]
    placements, drain_s, rounds = 0, 0.0, 0
    while placements < DRAIN_PLACEMENTS and running and rounds < DRAIN_ROUNDS:
        rounds += 1
        cut = max(1, len(running) // 10)
        batch, running = running[:cut], running[cut:]
        now += 60
        a = clock()
        for workload_id in batch:
            core.finish(workload_id, now=now)
        step = core.schedule_pass(now=now)
        drain_s += clock() - a
        placements += len(step.placed)
        preempted += len(step.preempted)
        victims = {v.workload_id for v in step.preempted}
        running = [w for w in running if w not in victims]
        running += [p.workload_id for p in step.placed]

    lat.sort()
    return {
        "scale": scale,
        "sites": n_sites,
        "nodes": n_nodes,
        "queued": in_queue,
        "submitted": len(reqs),
        "placed_at_submit": len(placed),
        "placed_in_pass": len(passed),
        "decisions_per_s": round(len(reqs) / total),
        "placements_per_s": round(placements / drain_s) if drain_s else 0,
        "drain_placements": placements,
        "decision_p50_ms": round(statistics.median(lat) * 1e3, 3),
        "decision_p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 3),
        "queue_pass_s": round(pass_s, 3),
        "queue_pass_cpu_s": round(pass_cpu_s, 3),
        "preempted": preempted,
        "fair_share": fair_share,
        "preemption": preemption,
        "idle_pass_s": round(idle_pass_s, 3),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _child(scale: str, queued: int, seed: int, fair: bool, preempt: bool, out: multiprocessing.Queue) -> None:
    out.put(measure(scale, queued, seed, fair, preempt))


def run_isolated(scale: str, queued: int, seed: int, fair: bool = True, preempt: bool = True) -> dict:
    """Each scale in a fresh forked process, so peak RSS is that scale's own."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(scale, queued, seed, fair, preempt, q))
    proc.start()
    row = q.get()
    proc.join()
    return row


JSON_KEYS = (
    "sites",
    "nodes",
    "queued",
    "decisions_per_s",
    "placements_per_s",
    "decision_p50_ms",
    "decision_p99_ms",
    "queue_pass_s",
    "queue_pass_cpu_s",
    "preempted",
    "fair_share",
    "preemption",
    "peak_mb",
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", choices=[*SCALES, "all"], default="all")
    ap.add_argument("--queued", type=int, default=50_000, help="queued workloads per scale")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    ap.add_argument("--no-fair-share", action="store_true", help="first come first served within a priority")
    ap.add_argument("--no-preemption", action="store_true", help="no priority may preempt")
    args = ap.parse_args(argv)
    scales = list(SCALES) if args.scale == "all" else [args.scale]
    fair, preempt = not args.no_fair_share, not args.no_preemption
    rows = [run_isolated(s, args.queued, args.seed, fair, preempt) for s in scales]
    if args.json:
        print(json.dumps({"rows": [{k: r[k] for k in JSON_KEYS} for r in rows]}))
        return
    from tabulate import tabulate

    cols = [
        "sites",
        "nodes",
        "submitted",
        "placed_at_submit",
        "queued",
        "decisions_per_s",
        "decision_p50_ms",
        "decision_p99_ms",
        "placements_per_s",
        "placed_in_pass",
        "queue_pass_s",
        "queue_pass_cpu_s",
        "idle_pass_s",
        "preempted",
        "peak_mb",
    ]
    print(tabulate([[r[c] for c in cols] for r in rows], headers=cols, tablefmt="github"))
    print("peak_mb: peak RSS of the scale's process (resource.getrusage), requests included")
    print("queue_pass_cpu_s: the pass's process CPU time (on a shared machine, less noisy than wall)")
    print(f"fair share {'on' if fair else 'off'}, preemption {'on' if preempt else 'off'}")


if __name__ == "__main__":
    main()

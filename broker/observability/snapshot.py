"""One consistent read of the engine's memory for the observable metrics.

Taken on the event loop (the engine's thread; see `loop_reads`) at scrape or export time,
never on the hot path: O(sites x nodes + unfinished workloads), which a scrape every few
seconds can afford and a submit could not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from broker.engine.engine import Engine
from broker.lifecycle import QUEUED
from broker.placement import SiteUsage


@dataclass(frozen=True, slots=True)
class SiteHealth:
    healthy: bool
    heartbeat_age_s: float | None  # None: not heard from since this broker started


@dataclass(frozen=True, slots=True)
class Subsidy:
    program: str
    reserved_hkd: float  # held by placed subsidised workloads
    spent_hkd: float  # paid out, over all settled charges (the store's, not this process's)
    left_hkd: float  # still placeable


@dataclass(frozen=True, slots=True)
class BrokerSnapshot:
    gpus: dict[tuple[str, str], SiteUsage] = field(default_factory=dict)  # (site, GPU model)
    sites: dict[str, SiteHealth] = field(default_factory=dict)
    queued: dict[tuple[str, int], int] = field(default_factory=dict)  # (tenant, priority) -> workloads
    oldest_queued_s: dict[str, float] = field(default_factory=dict)  # tenant -> longest wait since submit
    workloads: dict[str, int] = field(default_factory=dict)  # state -> unfinished workloads
    subsidy: dict[str, Subsidy] = field(default_factory=dict)  # tenant -> money
    decisions: dict[str, int] = field(default_factory=dict)  # placed / queued / refused
    rejections: dict[str, int] = field(default_factory=dict)  # filter key -> site rejections
    passes: dict[str, int] = field(default_factory=dict)  # run / skipped
    paused: bool = False
    cycles: int = 0
    fair_shares: dict[str, float] = field(default_factory=dict)  # tenant -> its fair share now
    preempted: int = 0  # placed workloads taken back for higher-priority work


def take(engine: Engine) -> BrokerSnapshot:
    """Read `engine`; call on its event loop only (the engine changes it between awaits)."""
    try:
        state = engine.state
    except AssertionError:  # not started yet, or a standby that holds no state: nothing to report
        return BrokerSnapshot()
    core = state.core
    now = engine.clock.now()
    gpus: dict[tuple[str, str], SiteUsage] = {}
    sites: dict[str, SiteHealth] = {}
    for site in engine.config.sites:
        for model, usage in core.site_usage_by_model(site.name).items():
            gpus[(site.name, model)] = usage
        link = engine.links[site.name]
        age = max(0.0, now - link.heard_at) if link.heard else None
        sites[site.name] = SiteHealth(core.healthy(site.name), age)
    queued: Counter[tuple[str, int]] = Counter()
    first_submitted: dict[str, float] = {}
    states: Counter[str] = Counter()
    for workload in state.live.values():
        states[workload.state] += 1
        if workload.state == QUEUED:
            queued[(workload.tenant, workload.request.priority)] += 1
            if workload.created_at < first_submitted.get(workload.tenant, float("inf")):
                first_submitted[workload.tenant] = workload.created_at
    wall = engine.wall()
    subsidy = {}
    for tenant in engine.config.tenants:
        if tenant.subsidy is None:
            continue
        remaining = core.budget_remaining(tenant.name)
        subsidy[tenant.name] = Subsidy(
            program=tenant.subsidy.program,
            reserved_hkd=core.budget_reserved(tenant.name),
            spent_hkd=max(0.0, tenant.subsidy.budget_hkd - remaining),
            left_hkd=core.budget_left(tenant.name),
        )
    metrics = core.metrics
    return BrokerSnapshot(
        gpus=gpus,
        sites=sites,
        queued=dict(queued),
        oldest_queued_s={tenant: max(0.0, wall - at) for tenant, at in first_submitted.items()},
        workloads=dict(states),
        subsidy=subsidy,
        decisions=dict(metrics.decisions),
        rejections=dict(metrics.filtered),
        passes={"run": metrics.passes, "skipped": metrics.passes_skipped},
        paused=core.paused,
        cycles=engine.cycles,
        fair_shares=core.fair_shares(),
        preempted=metrics.preempted,
    )

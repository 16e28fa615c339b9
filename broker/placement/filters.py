"""Filters: can this site take this request now? Each answers with a reason or None.

``default_filters`` is the one place that wires them, in order (Nomad's NewGenericStack).
A filter marked ``final`` rules the site out for good (static config, or no such GPUs), so
the pipeline stops there instead of adding reasons that follow from it; otherwise every
failing filter's reason is kept, so an explanation shows all that stands in the way.

The same chain also answers "can this site *ever* take it?" (the refusal rule): run with a
*hypothetical* context (nothing in use, the whole budget, no holds, no pause, time at
infinity) against the site emptied and healthy (``never.py``). So refusal cannot drift from
placement; a filter only picks the wording of its reason from ``ctx.hypothetical``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from . import reasons as R
from .model import Request, SubsidyProgram
from .pricing import BUDGET_EPS, quote
from .reservations import Ledger
from .site import SiteView


@dataclass(frozen=True, slots=True)
class Hold:
    """Anti-starvation: a long-waiting gang keeps (site, GPU model) for itself (see core)."""

    workload: str
    order: tuple[int, int]  # (-priority, seq) of the holder
    passes: int
    nominated: bool = False  # held for a preemptor until its victims' GPUs show free


class Filter(Protocol):
    name: str  # metric key, from reasons
    final: bool  # a rejection here makes the later filters moot

    def check(self, site: SiteView, request: Request) -> str | None: ...


def plain_time(t: float) -> str:
    """How the core writes a time when the broker gives it no calendar (the simulator)."""
    return f"t={t:,.0f}s"


@dataclass(slots=True)
class FilterContext:
    """Shared state some filters read (owned and mutated by the core)."""

    ledger: Ledger
    programs: Mapping[str, SubsidyProgram]
    holds: dict[tuple[str, str], Hold]
    paused: bool = False  # an operator stopped placement (`fedbroker pause`)
    now: float = 0.0  # the time of the core's current call (the core has no clock)
    overflow_after_s: float = 600.0  # the federation's default
    hypothetical: bool = False  # the "can it ever fit" judgement: nothing in use, no time limit
    format_time: Callable[[float], str] = field(default=plain_time)

    def program_of(self, tenant: str) -> SubsidyProgram | None:
        name = self.ledger.policy(tenant).subsidy_program
        return None if name is None else self.programs.get(name)

    def in_use(self, tenant: str) -> int:
        return 0 if self.hypothetical else self.ledger.gpus_in_use.get(tenant, 0)

    def quota_room(self, tenant: str) -> float:
        """GPUs the tenant's quota has left (inf: no quota). Tenant-wide: the quota filter
        fails a request for more at every site alike, so a pass may skip such work."""
        quota = self.ledger.policy(tenant).quota_gpus
        return math.inf if quota is None else quota - self.in_use(tenant)

    def budget_left(self, tenant: str) -> float:
        if self.hypothetical:
            return self.ledger.policy(tenant).budget_hkd  # the whole budget, none reserved
        return self.ledger.budget_left(tenant)

    def preference(self, request: Request) -> tuple[str, ...]:
        """Preferred sites in order: the request's own, else its tenant's home site; only
        those its allow-list permits."""
        prefer = request.prefer
        if not prefer:
            home = self.ledger.policy(request.tenant).home_site
            prefer = (home,) if home else ()
        if prefer and request.sites:
            prefer = tuple(s for s in prefer if s in request.sites)
        return prefer

    def overflow_at(self, request: Request) -> float:
        after = request.overflow_after_s
        return request.submitted_at + (self.overflow_after_s if after is None else after)


class PausedFilter:
    """While an operator has paused placement, nothing is placed anywhere; work queues."""

    name = R.PAUSED_KEY
    final = False

    def __init__(self, ctx: FilterContext) -> None:
        self._ctx = ctx

    def check(self, site: SiteView, request: Request) -> str | None:
        return R.PAUSED if self._ctx.paused else None


class HealthFilter:
    name = R.HEALTH
    final = False

    def check(self, site: SiteView, request: Request) -> str | None:
        return None if site.healthy else R.UNHEALTHY


class BackendFilter:
    name = R.BACKEND
    final = True

    def check(self, site: SiteView, request: Request) -> str | None:
        if request.backend in site.config.backends:
            return None
        return R.BACKEND_NOT_OFFERED.format(backend=request.backend)


class GpuModelFilter:
    name = R.GPU_MODEL
    final = True

    def check(self, site: SiteView, request: Request) -> str | None:
        if not site.capacity.has_model(request.gpu_model):
            return R.NO_GPU_MODEL.format(model=request.gpu_model)
        if request.gpu_model not in site.config.gpu_prices_hkd_per_hour:
            return R.NOT_PRICED.format(model=request.gpu_model)
        return None


class AllowListFilter:
    name = R.ALLOWED_SITES
    final = True

    def check(self, site: SiteView, request: Request) -> str | None:
        if not request.sites or site.name in request.sites:
            return None
        return R.NOT_ALLOWED


class QuotaFilter:
    name = R.QUOTA
    final = False

    def __init__(self, ctx: FilterContext) -> None:
        self._ctx = ctx

    def check(self, site: SiteView, request: Request) -> str | None:
        quota = self._ctx.ledger.policy(request.tenant).quota_gpus
        if quota is None:
            return None
        gpus = request.gpus_total
        if gpus > quota:  # more than the whole quota: no amount of waiting helps
            return R.QUOTA_NEVER.format(needed=gpus, quota=quota)
        if gpus <= self._ctx.quota_room(request.tenant):
            return None
        return R.QUOTA_EXCEEDED.format(quota=quota, in_use=self._ctx.in_use(request.tenant))


class SubsidyProgramFilter:
    """``subsidy: required`` needs an approved tenant and a site honouring its program.
    (``preferred`` falls back to full price in the cost score instead.)"""

    name = R.SUBSIDY_PROGRAM
    final = True

    def __init__(self, ctx: FilterContext) -> None:
        self._ctx = ctx

    def check(self, site: SiteView, request: Request) -> str | None:
        if request.subsidy != "required":
            return None
        program = self._ctx.program_of(request.tenant)
        if program is None:
            return R.NO_SUBSIDY_PROGRAM
        if program.name not in site.config.subsidy_programs:
            return R.SUBSIDY_NOT_HONOURED.format(program=program.name)
        return None


class SubsidyBudgetFilter:
    """``subsidy: required``: the remaining budget covers the program's share here."""

    name = R.SUBSIDY_BUDGET_KEY
    final = False

    def __init__(self, ctx: FilterContext) -> None:
        self._ctx = ctx

    def check(self, site: SiteView, request: Request) -> str | None:
        if request.subsidy != "required":
            return None
        program = self._ctx.program_of(request.tenant)
        left = self._ctx.budget_left(request.tenant)
        q = quote(site.config, request, program, left)
        if q.subsidised:
            return None
        return R.SUBSIDY_BUDGET.format(left=left, needed=q.needed_hkd)


class SpendCapFilter:
    """A tenant's monthly cap on what it pays itself (``max_hkd_per_month``): its share of the
    estimate here (after subsidy, as the cost score prices it), on top of what it paid this
    month and holds for placed work, must fit. Hypothetically (the refusal rule) only the
    estimate counts: a month with nothing spent comes."""

    name = R.SPEND_CAP_KEY
    final = False

    def __init__(self, ctx: FilterContext) -> None:
        self._ctx = ctx

    def check(self, site: SiteView, request: Request) -> str | None:
        ctx = self._ctx
        cap = ctx.ledger.policy(request.tenant).max_hkd_per_month
        if cap is None:
            return None
        program = ctx.program_of(request.tenant)
        needed = quote(site.config, request, program, ctx.budget_left(request.tenant)).tenant_hkd
        if ctx.hypothetical:
            return None if needed <= cap + BUDGET_EPS else R.SPEND_CAP_NEVER.format(needed=needed, cap=cap)
        used = ctx.ledger.cap_used(request.tenant)
        if used + needed <= cap + BUDGET_EPS:
            return None
        return R.SPEND_CAP.format(cap=cap, used=used, needed=needed)


class HeldFilter:
    """GPUs held for an older (or higher-priority) starving gang are not for later work."""

    name = R.HELD
    final = False

    def __init__(self, ctx: FilterContext) -> None:
        self._holds = ctx.holds

    def check(self, site: SiteView, request: Request) -> str | None:
        if not self._holds:
            return None
        hold = self._holds.get((site.name, request.gpu_model))
        if hold is None or hold.workload == request.workload_id:
            return None
        if (-request.priority, request.seq) < hold.order:  # ahead of the holder: not blocked
            return None
        if hold.nominated:
            return R.GPUS_NOMINATED.format(model=request.gpu_model, holder=hold.workload)
        return R.GPUS_HELD.format(model=request.gpu_model, holder=hold.workload, passes=hold.passes)


class PreferenceFilter:
    """Round 1 of a workload with preferred sites: only those, until its overflow time.

    Final: in round 1 another site is out whatever else holds there, and skipping its
    node-level fit keeps a long preferred-only queue cheap."""

    name = R.PREFERENCE
    final = True

    def __init__(self, ctx: FilterContext) -> None:
        self._ctx = ctx

    def check(self, site: SiteView, request: Request) -> str | None:
        ctx = self._ctx
        if ctx.hypothetical:
            return None  # every workload overflows some day
        prefer = ctx.preference(request)
        if not prefer or site.name in prefer:
            return None
        at = ctx.overflow_at(request)
        if ctx.now >= at:
            return None
        return R.NOT_PREFERRED_YET.format(preferred=", ".join(prefer), at=ctx.format_time(at))


class GangFitFilter:
    """Every replica on one node, counting CPUs/memory when both sides give them."""

    name = R.GANG_FIT
    final = False

    def __init__(self, ctx: FilterContext) -> None:
        self._ctx = ctx

    def check(self, site: SiteView, request: Request) -> str | None:
        cap = site.capacity
        g, n = request.gpus_per_replica, request.replicas
        fit = cap.fit(request.gpu_model, g, n, request.cpus_per_replica, request.memory_gb_per_replica)
        if fit >= n:
            return None
        shape = R.shape_text(n, g, request.gpu_model, request.cpus_per_replica, request.memory_gb_per_replica)
        largest = cap.largest_free(request.gpu_model)
        if self._ctx.hypothetical:  # the site empty: its nodes are too small, or too few
            if largest < g:
                return R.GANG_NEVER_NODE.format(shape=shape, largest=largest)
            return R.GANG_NEVER_PARTIAL.format(shape=shape, fit=fit, replicas=n)
        if largest < g:
            return R.GANG_NO_BLOCK.format(shape=shape, largest=largest)
        return R.GANG_PARTIAL.format(shape=shape, fit=fit, replicas=n)


def default_filters(ctx: FilterContext) -> tuple[Filter, ...]:
    """The filter chain, in order. Cheap checks first; the node-level fit last."""
    return (
        PausedFilter(ctx),  # an operator's pause: everything waits, whatever else holds
        HealthFilter(),  # a silent agent's inventory is stale: nothing lands there
        BackendFilter(),  # static: the site cannot run this kind of job at all
        GpuModelFilter(),  # no node of the model reported: nothing below can help
        AllowListFilter(),  # static: the tenant excluded the site
        PreferenceFilter(ctx),  # round 1: preferred sites only, until the overflow time
        SubsidyProgramFilter(ctx),  # subsidy: required -> approved and honoured here
        QuotaFilter(ctx),  # tenant-wide: same answer at every site
        SubsidyBudgetFilter(ctx),  # subsidy: required -> the remaining budget covers it
        SpendCapFilter(ctx),  # the tenant's monthly cap on what it pays itself
        HeldFilter(ctx),  # anti-starvation: GPUs kept for a long-waiting gang
        GangFitFilter(ctx),  # the expensive one: whole gang on real nodes, replica by replica
    )

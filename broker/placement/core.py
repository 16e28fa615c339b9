"""PlacementCore: the sans-IO placement state machine the broker drives from one task.

It owns the live view of every site (inventory index, health, datasets), the queue and the
reservations; inputs are method calls, outputs are decisions with explanations. No clock,
no randomness, no I/O: the same calls in the same order give the same decisions.

Deciding one request (``_decide``), in steps:
  1. run the filter chain (filters.default_filters) at every site, collecting reasons;
  2. score the eligible sites (scorers), normalise, weight, pick the lowest (ties by name);
  3. pick nodes best-fit inside the chosen site (capacity.SiteCapacity.pick);
  4. if no site is eligible: ``Refused`` when no site could ever take it (rule below),
     else ``Queued`` with what it waits for.

Refusal rule ("can never fit"): the filter chain itself, run with a hypothetical context
against each site emptied and healthy (``never.py``). A request is refused only when every
configured site can never take it; a queue pass never refuses (a site that shrank may grow
again), it keeps the workload waiting.

Time: the core has no clock. ``submit``, ``schedule`` and ``schedule_pass`` take ``now``
(the broker's wall clock, the simulator's trace clock); without it the last time given
holds. Time drives three things: the overflow of preferred sites (``PreferenceFilter``: a
workload with preferred sites, its own ``prefer`` or its tenant's home site, waits up to its
overflow time for them, then any site may take it, the preferred ones still first), the
decay of fair-share usage (``fairshare.py``), and what a preemption would waste.

Queue order: priority first; within a priority, by tenant fair share when enabled
(``fairshare.FairOrder``), oldest first within a tenant. A waiting workload whose priority
may preempt, and that fits nowhere for capacity alone, takes back lower-priority placed work
(``preemption.py``): the victims go back to the queue at their place (returned in the
pass's ``PassResult.preempted`` for the broker to cancel), and the preemptor is placed at
once if their GPUs were only reserved, else it holds that (site, GPU model) until the
site's report shows them free (at most ``preemption_wait_s``; then it may preempt again).

Anti-starvation (Slurm/Kueue-style holding, not aging): small work keeps slipping into GPUs
a large gang is waiting for, and aging cannot fix that, because the gang is already
considered first and still does not fit. So each pass counts, per queued workload, the
passes in which later work of its GPU model was placed while it waited (it was overtaken).
Once a workload has been overtaken ``starvation_passes`` times it *holds* every
(site, GPU model) where capacity is its only obstacle: work queued behind it (lower
priority, or same priority and newer), including new submits, may not take GPUs of that
model there, so running work drains until the gang fits. Work ahead of it and other sites
or models are unaffected. Holds are recomputed each pass, so they vanish when the holder
is placed, cancelled or stops being capacity-bound. Counting overtakes rather than passes
keeps the policy independent of how often the broker runs passes; the cost is idle GPUs
while a site drains (Slurm's backfill of short jobs would need a clock, which the core
does not have).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import NamedTuple

from . import explain as explain_
from . import reasons as R
from .capacity import SiteCapacity
from .errors import DuplicateWorkload, InvalidRequest, InvariantViolation, UnknownSite
from .fairshare import FairOrder, FairShare, fair_order
from .filters import FilterContext, Hold, default_filters, plain_time
from .locality import DEFAULT_LINK_GBIT_S, DatasetCatalog
from .metrics import PlacementMetrics
from .model import (
    Candidate,
    Charge,
    Decision,
    Explanation,
    Federation,
    Node,
    PassResult,
    Placed,
    Preempted,
    Queued,
    Refused,
    Request,
    ScoreTerms,
    SiteUsage,
)
from .never import NeverJudge
from .preemption import PassPreemptions, Plan, VictimCost, plan_at_site, victim_cost
from .pricing import Quote, quote
from .queue import Entry, ShapeClass, ShapeSize, WorkQueue, dominates, shape_of
from .queueview import QueueRow
from .reservations import Allocation, Ledger, QueueKey
from .scorers import CostScorer, LoadScorer, LocalityScorer, rank
from .site import SiteView

_SUBSIDY_MODES = frozenset({"required", "preferred", "none"})
DEFAULT_STARVATION_PASSES = 5
DEFAULT_PREEMPTION_WAIT_S = 120.0
# Distinct waiting shapes that may look for victims in one pass: bounds the pass's cost
# when many high-priority workloads wait (the rest look in the next pass, a second later).
PREEMPTION_SHAPES_PER_PASS = 16
_STATIC_SETS_MAX = 1 << 20  # distinct usable-site sets in one pass (at most 2^sites, and classes)


class _Nomination(NamedTuple):
    """A preemptor waiting for its victims' GPUs to show free at ``site`` (Kubernetes'
    nominated node)."""

    site: str
    model: str
    until: float  # then it may preempt again if it still does not fit


class _Outcome(NamedTuple):
    decision: Decision | None  # None: queued, explanation not built (explain=False)
    site: SiteView | None  # the chosen site when placed
    quote: Quote | None  # its price when placed
    hold_sites: tuple[str, ...]  # sites where only capacity stands in the way
    failures: list[list[tuple[str, str]]] | None = None  # per site, when not placed


class PlacementCore:
    """Filters, scores, queue, reservations and explanations of the whole federation."""

    def __init__(
        self,
        federation: Federation,
        *,
        starvation_passes: int = DEFAULT_STARVATION_PASSES,
        default_link_gbit_s: float = DEFAULT_LINK_GBIT_S,
        format_time: Callable[[float], str] = plain_time,
        preemption_wait_s: float = DEFAULT_PREEMPTION_WAIT_S,
    ) -> None:
        self._fed = federation
        self._weights = federation.weights
        self._sites: dict[str, SiteView] = {
            s.name: SiteView(s) for s in sorted(federation.sites, key=lambda s: s.name)
        }
        self._site_list = list(self._sites.values())
        self._ledger = Ledger({t.name: t for t in federation.tenants})
        self._programs = {p.name: p for p in federation.programs}
        self._holds: dict[tuple[str, str], Hold] = {}
        ctx = FilterContext(
            self._ledger,
            self._programs,
            self._holds,
            overflow_after_s=federation.overflow_after_s,
            format_time=format_time,
        )
        self._ctx = ctx
        self._filters = default_filters(ctx)
        # The refusal rule: the same chain, asked about empty sites with nothing in use.
        never_ctx = replace(ctx, holds={}, hypothetical=True, now=math.inf)
        self._never = NeverJudge(default_filters(never_ctx))
        self._fair = FairShare(
            federation.fair_share, {t.name: t.fair_share_weight for t in federation.tenants}
        )
        self._preempting = federation.preempting_priorities
        self.preemption_wait_s = preemption_wait_s
        self._nominations: dict[str, _Nomination] = {}
        # Placed work the last pass preempted, until the broker has charged it.
        self._evicted: dict[str, Allocation] = {}
        self._overflows: list[tuple[float, str]] = []  # (overflow time, workload) still in round 1
        self._capacity_total: tuple[float, float, float] | None = None
        self._catalog = DatasetCatalog(federation.datasets, federation.links_gbit_s, default_link_gbit_s)
        self._locality = LocalityScorer(self._catalog)
        self._cost = CostScorer(self._ctx)
        self._load = LoadScorer()
        self._queue = WorkQueue()
        self._arrivals = 0
        self._pass_no = 0  # queue passes run: what an entry's explanation stamp refers to
        self._klass_ids: dict[ShapeClass, int] = {}
        self._shape_ids: dict[tuple[int, ShapeSize], int] = {}
        self._cap_ids: dict[tuple, int] = {}
        self.starvation_passes = starvation_passes
        self.metrics = PlacementMetrics()
        # Whether anything a pass depends on changed since the last pass. A pass over an
        # unchanged state places nothing (failing is monotone), so the broker may call
        # schedule() on every heartbeat and pay only when something changed.
        self._dirty = True
        self._snapshots: dict[str, tuple[Node, ...]] = {}

    # ------------------------------------------------------------------ site view
    def _site(self, site: str) -> SiteView:
        view = self._sites.get(site)
        if view is None:
            raise UnknownSite(f"site {site} is not configured", site=site)
        return view

    def update_site(
        self,
        site: str,
        *,
        nodes: Sequence[Node],
        datasets: Iterable[str] = (),
        running: Iterable[str] = (),
    ) -> None:
        """Take a full inventory snapshot; drop the GPU reservations of workloads it lists
        running (their GPUs are in ``gpus_allocated`` now) in the same step."""
        view = self._site(site)
        running = frozenset(running)
        cap = view.capacity
        for wid in running:
            alloc = self._ledger.allocations.get(wid)
            if alloc is not None and alloc.site == site and alloc.gpus_reserved:
                self._ledger.drop_gpus(alloc, cap)  # unknown/ended/elsewhere: ignored
                self._dirty = True
        snapshot = tuple(nodes)
        if snapshot != self._snapshots.get(site):  # most heartbeats repeat the last one
            self._snapshots[site] = snapshot
            cap.replace(snapshot)
            self._capacity_total = None
            self._dirty = True
        view.reported = True
        view.running = running
        if self._catalog.report(site, datasets):
            self._dirty = True

    def set_healthy(self, site: str, healthy: bool) -> None:
        view = self._site(site)
        if view.healthy != healthy:
            view.healthy = healthy
            self._dirty = True

    def set_paused(self, paused: bool) -> None:
        """Stop (or restart) placement everywhere: submits queue, passes place nothing."""
        if self._ctx.paused != paused:
            self._ctx.paused = paused
            self._dirty = True

    def healthy(self, site: str) -> bool:
        return self._site(site).healthy

    @property
    def fair_share_enabled(self) -> bool:
        return self._fair.enabled

    @property
    def paused(self) -> bool:
        return self._ctx.paused

    def site_inventory(self, site: str) -> tuple[tuple[Node, ...], frozenset[str]]:
        """The latest reported nodes and the datasets its storage reports."""
        self._site(site)
        return self._snapshots.get(site, ()), self._catalog.reported(site)

    def site_usage(self, site: str) -> SiteUsage:
        cap = self._site(site).capacity
        return SiteUsage(cap.gpus_total, cap.gpus_allocated, cap.reserved_on_nodes(), cap.gpus_free)

    def site_usage_by_model(self, site: str) -> dict[str, SiteUsage]:
        """`site_usage` per GPU model (the broker's metrics)."""
        by_model = self._site(site).capacity.usage_by_model()
        return {model: SiteUsage(*counts) for model, counts in by_model.items()}

    # ------------------------------------------------------------------ workloads
    def evaluate(self, request: Request, *, now: float | None = None) -> Decision:
        """Dry run: the decision ``submit`` would make now; changes nothing."""
        _validate(request)
        self._at(now)
        decision = self._decide(request, refuse=True, count=False).decision
        assert decision is not None
        return decision

    def submit(self, request: Request, *, refuse: bool = True, now: float | None = None) -> Decision:
        """Place the request now, or queue it; ``Refused`` (only when ``refuse``) if no
        site could ever take it. A broker restoring work it had queued passes
        ``refuse=False``: that work was judged able to fit once, and keeps waiting."""
        _validate(request)
        self._at(now)
        wid = request.workload_id
        if wid in self._queue or wid in self._ledger.allocations:
            raise DuplicateWorkload(f"workload {wid} is already held", workload=wid)
        out = self._decide(request, refuse=refuse, count=True)
        decision = out.decision
        assert decision is not None
        key = self._next_key(request)
        if isinstance(decision, Placed):
            self._commit(request, out, key)
        elif isinstance(decision, Queued):
            # Its explanation is not kept: ``explain`` rebuilds it when asked, from the state
            # then; 50,000 queued explanations would be a million objects for the collector.
            self._enqueue(self._entry(request, key))
            if request.priority in self._preempting:
                self._dirty = True  # the next pass may find it victims
        self.metrics.decisions[type(decision).__name__.lower()] += 1
        return decision

    def restore(
        self,
        request: Request,
        site: str,
        nodes: Sequence[str],
        *,
        placed_at: float | None = None,
        program_hkd: float | None = None,
        tenant_hkd: float | None = None,
    ) -> None:
        """After a broker restart: a workload already placed or running at ``site`` on
        ``nodes`` takes back its quota, its budget share (if still covered) and, unless the
        site's latest report lists it running, its GPU reservation. Idempotent.
        ``placed_at``: when it was placed or started (what a preemption would waste).
        ``program_hkd``: the budget share it held when placed (the broker's ledger row), so a
        restart gives every workload back its own reservation; else priced again now.
        ``tenant_hkd``: likewise, the tenant's share it holds against its spend cap."""
        _validate(request)
        view = self._site(site)
        if len(nodes) != request.replicas:
            raise InvalidRequest(
                f"restore of {request.workload_id} names {len(nodes)} nodes for {request.replicas} replicas",
                workload=request.workload_id,
                site=site,
            )
        wid = request.workload_id
        self._accrue()
        old = self._ledger.remove(wid, self._capacities())
        queued = self._queue.remove(wid)
        if old is not None:
            key = old.key
        elif queued is not None:
            key = queued.key
        else:
            key = self._next_key(request)
        program = None if request.subsidy == "none" else self._ctx.program_of(request.tenant)
        if program_hkd is None or tenant_hkd is None:
            priced = quote(view.config, request, program, self._ledger.budget_left(request.tenant))
            program_hkd = priced.program_hkd if program_hkd is None else program_hkd
            tenant_hkd = priced.tenant_hkd if tenant_hkd is None else tenant_hkd
        candidates = tuple(
            Candidate(s.name, True, (), 0.0, None)
            if s.name == site
            else Candidate(s.name, False, (R.NOT_EVALUATED,), None, None)
            for s in self._site_list
        )
        expl = Explanation(wid, site, candidates, R.RESTORED.format(site=site))
        when = self._ctx.now if placed_at is None else placed_at
        alloc = Allocation(
            request, site, tuple(nodes), program_hkd, expl, key, placed_at=when, tenant_hkd=tenant_hkd
        )
        alloc.gpus_reserved = wid not in view.running
        self._ledger.add(alloc, view.capacity)

    def cancel(self, workload_id: str, *, now: float | None = None) -> None:
        """Queued: drop it. Placed: release GPUs, CPUs/memory, quota and budget share."""
        self._at(now)
        queued = self._queue.remove(workload_id)
        self._accrue()
        placed = self._ledger.remove(workload_id, self._capacities())
        self._drop_holds(workload_id)
        self._nominations.pop(workload_id, None)
        self._evicted.pop(workload_id, None)
        if queued is not None or placed is not None:
            self._dirty = True

    def charge(self, workload_id: str, hours: float) -> Charge | None:
        """Settle what a placed workload's attempt ran for ``hours`` cost, before it is
        finished or requeued. The program pays its rate of the real cost if the workload
        was placed as subsidised, up to what the budget has left (its own reservation
        included), and that leaves the budget for good; the tenant pays the rest.
        Releases nothing: ``finish``/``requeue``/``cancel`` do that. A workload the last
        pass preempted is charged here too (once): it is already back in the queue."""
        alloc = self._ledger.allocations.get(workload_id)
        reserved = True
        if alloc is None:
            alloc = self._evicted.pop(workload_id, None)
            reserved = False  # its budget share was released when it was preempted
            if alloc is None:
                return None
        req = alloc.request
        price = self._sites[alloc.site].config.gpu_prices_hkd_per_hour.get(req.gpu_model, 0.0)
        cost = req.gpus_total * max(0.0, hours) * price
        program = self._ctx.program_of(req.tenant) if alloc.program_hkd > 0 else None
        paid = 0.0
        if program is not None:
            available = self._ledger.budget_left(req.tenant) + (alloc.program_hkd if reserved else 0.0)
            paid = min(cost * program.rate, available)
            self._ledger.spend(req.tenant, paid)
        self._ledger.paid(req.tenant, cost - paid)
        return Charge(
            workload_id=workload_id,
            tenant=req.tenant,
            site=alloc.site,
            program=None if program is None else program.name,
            gpu_model=req.gpu_model,
            gpus=req.gpus_total,
            hours=max(0.0, hours),
            price_hkd_per_gpu_hour=price,
            cost_hkd=cost,
            program_hkd=paid,
            tenant_hkd=cost - paid,
        )

    def budget_left(self, tenant: str) -> float:
        return self._ledger.budget_left(tenant)

    def spend(self, tenant: str, amount_hkd: float, tenant_hkd: float = 0.0) -> None:
        """The broker settled an attempt (its ledger, in decimals): the program paid this much
        for good, and the tenant ``tenant_hkd`` this month (its spend cap). Use instead of
        ``charge`` when the broker does the arithmetic itself."""
        self._ledger.spend(tenant, amount_hkd)
        self._ledger.paid(tenant, tenant_hkd)

    def new_month(self, paid_hkd: Mapping[str, float]) -> None:
        """A calendar month began (or the broker started): what each tenant has paid itself in
        it so far (the core has no calendar; the broker's ledger says). Spend caps count from it."""
        paid = {t: v for t, v in paid_hkd.items() if v > 0}
        if paid != self._ledger.month_paid:
            self._ledger.month_paid = paid
            self._dirty = True  # work waiting on a cap may fit now

    def subsidy_held(self, workload_id: str) -> float | None:
        """The budget share a placed workload holds (0: placed unsubsidised); None if not placed."""
        alloc = self._ledger.allocations.get(workload_id)
        return None if alloc is None else alloc.program_hkd

    def budget_reserved(self, tenant: str) -> float:
        """HK$ of the tenant's budget held by its placed subsidised workloads."""
        return self._ledger.budget_reserved.get(tenant, 0.0)

    def budget_remaining(self, tenant: str) -> float:
        """HK$ the tenant's program has not paid out yet (reservations included)."""
        return self._ledger.policy(tenant).budget_hkd

    def finish(self, workload_id: str, *, now: float | None = None) -> None:
        """The workload ended (succeeded or failed): release like cancel."""
        self.cancel(workload_id, now=now)

    def requeue(self, workload_id: str, *, now: float | None = None) -> None:
        """A placed workload goes back to the queue at its original position."""
        self._at(now)
        self._accrue()
        alloc = self._ledger.remove(workload_id, self._capacities())
        if alloc is None:
            return
        self._drop_holds(workload_id)
        self._enqueue(self._entry(alloc.request, alloc.key))
        self._dirty = True

    def explain(self, workload_id: str) -> Explanation | None:
        """A placed workload's decision; a queued one's reasons now, with its preemption
        (if the core took it back) and its tenant's fair share."""
        alloc = self._ledger.allocations.get(workload_id)
        if alloc is not None:
            return alloc.explanation
        entry = self._queue.get(workload_id)
        if entry is None:
            return None
        expl = self._queued_explanation(entry)
        notes = [expl.summary]
        if entry.note:
            notes.append(entry.note)
        if self._fair.enabled and self._tenants_competing():
            tenant = entry.request.tenant
            share = self._share(tenant)
            notes.append(R.FAIR_SHARE.format(tenant=tenant, share=share, weight=self._fair.weight(tenant)))
        return expl if len(notes) == 1 else replace(expl, summary="; ".join(notes))

    def _tenants_competing(self) -> bool:
        """More than one tenant waits or holds GPUs: only then does fair share order anything."""
        tenants = set(self._queue.tenants)
        if len(tenants) > 1:
            return True
        return any(g and t not in tenants for t, g in self._ledger.gpus_in_use.items())

    def _queued_explanation(self, entry: Entry) -> Explanation:
        workload_id = entry.request.workload_id
        if entry.stamp != self._pass_no:  # a pass since skipped it: what it knew is stale
            entry.explanation = entry.failures = None
            entry.stamp = self._pass_no
        if entry.explanation is None:
            if entry.failures is not None:  # evaluated by the last pass: its reasons
                entry.explanation = self._waiting(entry.request, entry.failures)
            else:  # skipped by the last pass (shape, quota): evaluate it now
                decision = self._decide(entry.request, refuse=False, count=False).decision
                assert decision is not None
                expl = decision.explanation
                if isinstance(decision, Placed):
                    expl = explain_.fits_next_pass(workload_id, decision.site, expl.candidates)
                entry.explanation = expl
        return entry.explanation

    def queued_count(self, tenant: str) -> int:
        """How many of `tenant`'s workloads wait in the queue now (the API's per-tenant bound)."""
        return self._queue.tenants.get(tenant, 0)

    def queued_ids(self) -> list[str]:
        """Queue order as the next pass would start it (shares as they stand now)."""
        entries = self._queue.entries()
        if self._fair.enabled:
            self._accrue()
            # Positions as if each were placed in turn: its tenant's share rises by its size.
            extra: dict[str, list[float]] = {}

            def share(tenant: str) -> float:
                held = self._ledger.held(tenant)
                more = extra.get(tenant, [0.0, 0.0, 0.0])
                return self._fair.share(
                    tenant, (held[0] + more[0], held[1] + more[1], held[2] + more[2]), self._capacity()
                )

            ordered = []
            for e in fair_order(self._queue.groups(), share):
                ordered.append(e)
                r = e.request
                more = extra.setdefault(r.tenant, [0.0, 0.0, 0.0])
                more[0] += r.gpus_total
                more[1] += r.cpus_per_replica * r.replicas
                more[2] += r.memory_gb_per_replica * r.replicas
            entries = ordered
        return [e.request.workload_id for e in entries]

    def queue_rows(self, tenant: str | None = None, limit: int = 0) -> tuple[list[QueueRow], int]:
        """The queue in the order the next pass would consider it (``queued_ids``), as rows
        with what put each where it is; only ``tenant``'s rows if given (at their place in
        the whole queue), at most ``limit`` (0: all). Returns the rows and how many there
        were before the limit. What each waits for is built for the rows returned only."""
        shares: dict[str, float] = {}
        weight = self._fair.weight
        rows: list[QueueRow] = []
        total = 0
        for position, wid in enumerate(self.queued_ids(), start=1):
            entry = self._queue.get(wid)
            assert entry is not None
            req = entry.request
            if tenant is not None and req.tenant != tenant:
                continue
            total += 1
            if limit and len(rows) >= limit:
                continue
            if req.tenant not in shares:
                shares[req.tenant] = self._share(req.tenant) if self._fair.enabled else 0.0
            at = entry.overflow_at
            rows.append(
                QueueRow(
                    position=position,
                    workload_id=wid,
                    tenant=req.tenant,
                    priority=req.priority,
                    gpus=req.gpus_total,
                    gpu_model=req.gpu_model,
                    fair_share=shares[req.tenant],
                    weight=weight(req.tenant),
                    preferred=self._ctx.preference(req),
                    overflow_at=at if at > self._ctx.now and at != math.inf else None,
                    reason=self._queued_explanation(entry).summary,
                    preempted=entry.note,
                )
            )
        return rows, total

    def next_overflow_at(self) -> float | None:
        """When the next waiting workload's preferred-sites round ends (None: none waits in
        one): a caller that runs passes only on change must run one then."""
        heap = self._overflows
        while heap and heap[0][1] not in self._queue:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fair_shares(self) -> dict[str, float]:
        """Tenant -> its fair share now, for every tenant with queued or placed work or
        recent use (metrics, ``fedbroker list``)."""
        tenants = set(self._queue.tenants)
        tenants |= {t for t, g in self._ledger.gpus_in_use.items() if g}
        tenants |= self._fair.tenants()
        return {t: self._share(t) for t in sorted(tenants)}

    def holds(self) -> dict[tuple[str, str], str]:
        """(site, GPU model) -> the workload holding it against starvation (for metrics)."""
        return {k: h.workload for k, h in self._holds.items()}

    # ------------------------------------------------------------------ the queue pass
    def schedule(self, *, force: bool = False, now: float | None = None) -> list[Placed]:
        """One queue pass; the placements it made (see ``schedule_pass``, which also
        returns its preemptions: a broker that enables preemption calls that)."""
        return list(self.schedule_pass(force=force, now=now).placed)

    def schedule_pass(self, *, force: bool = False, now: float | None = None) -> PassResult:
        """One pass over the queue in order, placing what fits and reserving as it goes.

        0. if nothing changed since the last pass (and not ``force``), and no waiting
           workload's overflow time has come, return at once: a pass over an unchanged
           state places nothing;
        1. forget the last pass's holds (this pass rebuilds them in order), keeping those
           of preemptors waiting for their victims' GPUs (until their wait is over);
        2. take the queue in order (fair share within a priority: runs of one tenant's
           work, ``fairshare.FairOrder``), cheapest test first:
           a. a tenant whose quota has no GPU left: its whole run waits, untouched; a
              workload larger than what its tenant's quota has left waits (the quota filter
              is tenant-wide: it would fail at every site);
           b. skip it if its gang size (GPU model, GPUs/replica, replicas, CPUs, memory),
              or a smaller one, fits no site's free nodes now (one bucket sum per site,
              asked once per size and remembered until the next placement);
           c. skip it if its shape, or a smaller one of its class, already failed;
           d. else run the filters and scores: place it, or record its shape as failed;
           a workload overtaken often enough holds the sites it waits for; one whose
           priority may preempt looks for victims where only capacity is missing. A
           placement raises its tenant's share (its run ends there); a preemption lowers
           the victims' tenants' shares, and their work moves up in the order at once;
        3. drop the placed from the queue; count who was overtaken.

        Failing is monotone within a pass (placements only take capacity, quota and
        budget; a preemption frees capacity only for its preemptor, which holds it; the
        quota it gives back to the victims' tenants is counted at once, but shapes that
        already failed stay failed), so what failed once stays failed until the pass ends. Cost: O(queue) set
        lookups + one heap step per run + O(distinct gang sizes x sites x GPUs per node) +
        one full decision per distinct shape that passes (b) + one per placement + a
        bounded number of victim searches. What a skipped workload waits for is not
        written down: ``explain`` builds it on demand (entries carry the pass their
        reasons are from, so a pass need not touch what it skips).
        """
        self._at(now)
        metrics = self.metrics
        self._evicted.clear()  # the broker charged the last pass's victims after it
        if self._ctx.paused:
            return PassResult(())  # stays dirty: the pass runs when placement resumes
        self._overflow_due()
        if not (self._dirty or force):
            metrics.passes_skipped += 1
            return PassResult(())
        self._dirty = False
        self._holds.clear()
        self._hold_nominated()
        metrics.passes += 1
        self._pass_no += 1
        stamp = self._pass_no
        sites = self._site_list
        ctx = self._ctx
        fair = self._fair.enabled
        preempting_priorities = self._preempting
        failed: dict[int, tuple[str, ...] | None] = {}  # shape id -> hold sites (None: unknown)
        failed_sizes: dict[int, list[ShapeSize]] = {}  # class id -> failed sizes
        cap_failed: set[int] = set()  # gang sizes that fit no site's free nodes now
        cap_failed_sizes: dict[tuple[str, int], list[tuple]] = {}  # (GPU model, site set) -> sizes
        static_ids: dict[int, int] = {}  # class (and round) -> id of the sites it may use
        static_sets: list[tuple[SiteView, ...]] = []  # the interned site sets
        static_index: dict[tuple[SiteView, ...], int] = {}
        cap_ok: set[int] = set()  # gang sizes that fit somewhere (until the next placement)
        rooms: dict[str, float] = {}  # tenant -> GPUs its quota has left (until it changes)
        last_place: dict[str, int] = {}  # GPU model -> position of the pass's last placement
        runs: list[tuple[int, Sequence[Entry], int, int]] = []  # (position, line, start, stop)
        placed: list[Placed] = []
        placed_ids: set[str] = set()
        preempted: list[Preempted] = []
        preempt = PassPreemptions(PREEMPTION_SHAPES_PER_PASS)
        starve = self.starvation_passes
        shares: dict[str, float] = {}
        skipped = by_quota = evaluated = 0

        def share(tenant: str) -> float:
            if tenant not in shares:
                shares[tenant] = self._share(tenant)
            return shares[tenant]

        def room(tenant: str) -> float:
            left = rooms.get(tenant)
            if left is None:
                left = rooms[tenant] = ctx.quota_room(tenant)
            return left

        def took(req: Request, at: int, victims: Sequence[Preempted]) -> None:
            """``req`` was placed at position ``at``, maybe after taking ``victims`` back:
            capacity shrank, and the tenants' quota rooms and shares moved."""
            placed_ids.add(req.workload_id)
            last_place[req.gpu_model] = at
            cap_ok.clear()  # capacity shrank: "fits somewhere" must be asked again
            rooms.pop(req.tenant, None)
            if fair:
                shares[req.tenant] = self._share(req.tenant)  # its next workload waits its turn
            changed_shares(victims)

        def changed_shares(victims: Sequence[Preempted]) -> None:
            for victim in victims:
                tenant = self._evicted[victim.workload_id].request.tenant
                rooms.pop(tenant, None)
                if fair:  # its share fell: its work of this priority moves up at once
                    shares[tenant] = self._share(tenant)
                    fair_runs.reshare(tenant)

        fair_runs = FairOrder(self._queue.groups() if fair else (), share)
        order: Iterable[tuple[Sequence[Entry], int, int]]
        if fair:
            order = fair_runs
        else:
            entries = self._queue.entries()
            order = ((entries, 0, len(entries)),)
        now = ctx.now
        pos = 0  # position in this pass's order of the run's first entry
        for line, start, stop in order:
            if fair and room(line[start].request.tenant) < 1:
                # The tenant's quota is spent: none of its work in this run can be placed,
                # whatever its shape; nor can it preempt or hold (quota is not capacity).
                by_quota += stop - start
                runs.append((pos, line, start, stop))
                pos += stop - start
                continue
            end = stop
            for k in range(start, stop):
                entry = line[k]
                req = entry.request
                left = rooms.get(req.tenant)
                if left is None:
                    left = room(req.tenant)
                if entry.gpus > left:  # the quota filter fails it at every site
                    by_quota += 1
                    continue
                # A workload still in its preferred sites' round fails apart from the same
                # shape past it: the two have different candidates.
                round1 = entry.overflow_at > now
                shape = entry.shape * 2 + round1
                klass = entry.klass * 2 + round1
                # The sites its class may use at all this pass (health, backend, GPU model,
                # allow-list, subsidy program, preference round: none changes within a pass).
                sid = static_ids.get(klass)
                if sid is None:
                    usable = self._static_sites(req, round1)
                    sid = static_ids[klass] = static_index.setdefault(usable, len(static_sets))
                    if sid == len(static_sets):
                        static_sets.append(usable)
                cap = entry.cap * _STATIC_SETS_MAX + sid
                skip = cap in cap_failed or shape in failed
                if not skip and cap not in cap_ok:
                    # (a) capacity first, at the sites it may use: tenant and budget cannot make room
                    sizes = cap_failed_sizes.get((req.gpu_model, sid))
                    if (sizes and any(dominates(entry.cap_size, s) for s in sizes)) or not any(
                        site.capacity.fit(req.gpu_model, *entry.cap_size) >= req.replicas
                        for site in static_sets[sid]
                    ):
                        cap_failed.add(cap)
                        cap_failed_sizes.setdefault((req.gpu_model, sid), []).append(entry.cap_size)
                        skip = True
                    else:
                        cap_ok.add(cap)
                if not skip:
                    # (b) a smaller shape of its class already failed (quota, budget, sites...)
                    sizes = failed_sizes.get(klass)
                    if sizes and any(dominates(entry.size, s) for s in sizes):
                        failed[shape] = None
                        skip = True
                at = pos + k - start
                done: Placed | None = None
                if skip:
                    skipped += 1
                    preempting = req.priority in preempting_priorities and self._may_preempt(entry, preempt)
                    if not preempting and (
                        entry.waits < starve
                        or all((site.name, req.gpu_model) in self._holds for site in sites)
                    ):
                        continue
                    hold_sites = failed.get(shape)
                    if hold_sites is None:  # not evaluated in this pass: ask, once per shape
                        hold_sites = self._decide(req, refuse=False, count=False).hold_sites
                        failed[shape] = hold_sites
                else:
                    evaluated += 1
                    out = self._decide(req, refuse=False, count=True, explain=False)
                    hold_sites = out.hold_sites
                    preempting = False
                    if isinstance(out.decision, Placed):
                        self._commit(req, out, entry.key)
                        done = out.decision
                    else:
                        entry.explanation, entry.failures, entry.stamp = None, out.failures, stamp
                        failed[shape] = hold_sites
                        failed_sizes.setdefault(klass, []).append(entry.size)
                        preempting = self._may_preempt(entry, preempt)
                if done is None and preempting:
                    before = len(preempted)
                    # placed at once on GPUs its victims had reserved, or None
                    done = self._preempt(entry, hold_sites, preempt, preempted)
                    changed_shares(preempted[before:])
                if done is None:
                    if entry.waits >= starve:
                        self._hold(entry, hold_sites)
                    continue
                placed.append(done)
                took(req, at, ())
                if fair:
                    end = k + 1
                    fair_runs.cut(end)
                    break
            runs.append((pos, line, start, end))
            pos += end - start
        self._queue.remove_many(placed_ids)
        self._count_overtaken(runs, last_place, placed_ids)
        metrics.evaluated_in_passes += evaluated
        metrics.skipped_by_shape += skipped
        metrics.skipped_by_quota += by_quota
        metrics.decisions["placed"] += len(placed)
        metrics.preempted += len(preempted)
        return PassResult(tuple(placed), tuple(preempted))

    @staticmethod
    def _count_overtaken(
        runs: Sequence[tuple[int, Sequence[Entry], int, int]], last_place: dict[str, int], placed: set[str]
    ) -> None:
        """Each workload the pass left waiting that later work of its GPU model overtook
        (was placed after it in the pass's order) has waited one more pass."""
        horizon = max(last_place.values(), default=-1)  # nothing at or after it was overtaken
        for first, line, start, stop in runs:
            if first >= horizon:
                break  # runs come in order
            for k in range(start, min(stop, start + horizon - first)):
                entry = line[k]
                req = entry.request
                if last_place.get(req.gpu_model, -1) > first + k - start and req.workload_id not in placed:
                    entry.waits += 1

    def _static_sites(self, req: Request, round1: bool) -> tuple[SiteView, ...]:
        """The sites a request's class may use at all in this pass (what only capacity,
        quota, budget or holds could still rule out)."""
        ctx = self._ctx
        prefer = ctx.preference(req) if round1 else ()
        program = ctx.program_of(req.tenant) if req.subsidy == "required" else None
        return tuple(
            site
            for site in self._site_list
            if site.healthy
            and req.backend in site.config.backends
            and req.gpu_model in site.config.gpu_prices_hkd_per_hour
            and site.capacity.has_model(req.gpu_model)
            and (not req.sites or site.name in req.sites)
            and (not prefer or site.name in prefer)
            and (
                req.subsidy != "required"
                or (program is not None and program.name in site.config.subsidy_programs)
            )
        )

    def _may_preempt(self, entry: Entry, preempt: PassPreemptions) -> bool:
        req = entry.request
        if req.priority not in self._preempting or not preempt.may_try(entry.shape):
            return False
        nomination = self._nominations.get(req.workload_id)
        if nomination is not None:
            if self._ctx.now < nomination.until:
                return False  # its victims' GPUs are on their way
            del self._nominations[req.workload_id]  # waited long enough: it may look again
        return True

    def _preempt(
        self, entry: Entry, hold_sites: Sequence[str], preempt: PassPreemptions, out: list[Preempted]
    ) -> Placed | None:
        """Take back the cheapest lower-priority work at one of ``hold_sites`` so that the
        entry fits there; place it now if that freed GPUs at once, else nominate it."""
        req = entry.request
        plan = self._plan(req, hold_sites, preempt)
        preempt.tried(entry.shape, plan is not None)
        if plan is None:
            return None
        for victim in plan.victims:
            vreq = victim.request
            vid = vreq.workload_id
            self._accrue()
            self._ledger.remove(vid, self._capacities())
            self._drop_holds(vid)
            self._evicted[vid] = victim
            reason = R.PREEMPTED.format(
                site=plan.site,
                preemptor=req.workload_id,
                priority=req.priority,
                victim_priority=vreq.priority,
            )
            back = self._entry(vreq, victim.key)
            back.note = reason
            self._enqueue(back)
            out.append(Preempted(vid, plan.site, req.workload_id, reason))
        self._dirty = True  # victims wait again: the next pass looks at them
        decided = self._decide(req, refuse=False, count=False)
        if isinstance(decided.decision, Placed):
            self._commit(req, decided, entry.key)
            return decided.decision
        self._nominations[req.workload_id] = _Nomination(
            plan.site, req.gpu_model, self._ctx.now + self.preemption_wait_s
        )
        self._holds[(plan.site, req.gpu_model)] = Hold(
            req.workload_id, (-req.priority, req.seq), entry.waits, nominated=True
        )
        return None

    def _plan(self, req: Request, hold_sites: Sequence[str], preempt: PassPreemptions) -> Plan | None:
        best: Plan | None = None
        now = self._ctx.now
        preference = self._ctx.preference

        def cost(alloc: Allocation) -> VictimCost:
            prefer = preference(alloc.request)
            return victim_cost(alloc, now, not prefer or alloc.site in prefer)

        allocations = self._ledger.allocations
        for name in hold_sites:  # in site-name order: ties go to the first
            victims = preempt.victims(allocations, name, req.gpu_model, req.priority, cost)
            if not victims:
                continue
            plan = plan_at_site(name, self._sites[name].capacity, req, victims)
            if plan is not None and (best is None or plan.cost < best.cost):
                best = plan
        return best

    # ------------------------------------------------------------------ internals
    def _decide(self, request: Request, *, refuse: bool, count: bool, explain: bool = True) -> _Outcome:
        filters = self._filters
        filtered = self.metrics.filtered
        failures: list[list[tuple[str, str]]] = []
        eligible: list[int] = []
        hold_sites: list[str] = []
        for i, site in enumerate(self._site_list):
            fails: list[tuple[str, str]] = []
            for f in filters:
                reason = f.check(site, request)
                if reason is not None:
                    fails.append((f.name, reason))
                    if count:
                        filtered[f.name] += 1
                    if f.final:
                        break
            failures.append(fails)
            if not fails:
                eligible.append(i)
            elif all(name == R.GANG_FIT for name, _ in fails):
                hold_sites.append(site.name)
        wid = request.workload_id
        if eligible:
            return self._choose(request, eligible, failures)
        if refuse:
            snapshots = self._snapshots
            never = [
                (s.name, self._never.reasons(s, snapshots.get(s.name, ()), request)) for s in self._site_list
            ]
            if all(rs for _, rs in never):
                return _Outcome(Refused(wid, explain_.refused(wid, never)), None, None, ())
        if not explain:
            return _Outcome(None, None, None, tuple(hold_sites), failures)
        expl = self._waiting(request, failures)
        return _Outcome(Queued(wid, expl), None, None, tuple(hold_sites), failures)

    def _waiting(self, request: Request, failures: list[list[tuple[str, str]]]) -> Explanation:
        candidates = [
            explain_.ineligible(s.name, fails) for s, fails in zip(self._site_list, failures, strict=True)
        ]
        return explain_.waiting(request.workload_id, candidates, failures, self._round_note(request, None))

    def _round_note(self, request: Request, chosen: str | None) -> str | None:
        """Where a workload with preferred sites stands: which round, and when it overflows."""
        ctx = self._ctx
        prefer = ctx.preference(request)
        if not prefer:
            return None
        if chosen is not None and chosen in prefer:
            return R.PREFERRED_SITE
        at = ctx.overflow_at(request)
        preferred = ", ".join(prefer)
        if ctx.now < at:
            return R.ROUND_ONE.format(preferred=preferred, at=ctx.format_time(at))
        return R.ROUND_TWO.format(preferred=preferred, at=ctx.format_time(at))

    def _choose(
        self, request: Request, eligible: list[int], failures: list[list[tuple[str, str]]]
    ) -> _Outcome:
        sites = self._site_list
        program = None if request.subsidy == "none" else self._ctx.program_of(request.tenant)
        left = self._ledger.budget_left(request.tenant) if program is not None else 0.0
        gpus = request.gpus_per_replica * request.replicas
        terms: list[ScoreTerms] = []
        quotes: list[Quote] = []
        for i in eligible:
            site = sites[i]
            q = quote(site.config, request, program, left)
            quotes.append(q)
            loc = self._catalog.hours(request.datasets, site.name) if request.datasets else 0.0
            terms.append(ScoreTerms(loc, q.tenant_hkd, site.load_after(gpus), q.program_hkd))
        scores = rank(terms, self._weights, request.estimated_hours)
        # An eligible preferred site wins in preference order, whatever the scores; else
        # the lowest score; eligible is in site-name order, so min() breaks ties by name.
        prefer = self._ctx.preference(request)
        if prefer:
            ranks = [
                prefer.index(sites[i].name) if sites[i].name in prefer else len(prefer) for i in eligible
            ]
            best = min(range(len(eligible)), key=lambda k: (ranks[k], scores[k]))
        else:
            best = min(range(len(eligible)), key=scores.__getitem__)
        candidates: list[Candidate] = []
        j = 0
        for i, site in enumerate(sites):
            if j < len(eligible) and eligible[j] == i:
                candidates.append(Candidate(site.name, True, (), scores[j], terms[j]))
                j += 1
            else:
                candidates.append(explain_.ineligible(site.name, failures[i]))
        chosen = sites[eligible[best]]
        nodes = chosen.capacity.pick(
            request.gpu_model,
            request.gpus_per_replica,
            request.replicas,
            request.cpus_per_replica,
            request.memory_gb_per_replica,
        )
        if len(nodes) != request.replicas:
            raise InvariantViolation(
                "gang fit passed but no nodes could be picked",
                workload=request.workload_id,
                site=chosen.name,
            )
        wid = request.workload_id
        expl = explain_.placed(
            wid, candidates[eligible[best]], candidates, self._round_note(request, chosen.name)
        )
        decision = Placed(wid, chosen.name, tuple(nodes), expl)
        return _Outcome(decision, chosen, quotes[best], ())

    def _commit(self, request: Request, out: _Outcome, key: QueueKey) -> None:
        decision = out.decision
        assert isinstance(decision, Placed) and out.site is not None and out.quote is not None
        alloc = Allocation(
            request,
            decision.site,
            decision.nodes,
            out.quote.program_hkd,
            decision.explanation,
            key,
            placed_at=self._ctx.now,
            tenant_hkd=out.quote.tenant_hkd,
        )
        self._accrue()
        self._ledger.add(alloc, out.site.capacity)
        self._nominations.pop(request.workload_id, None)

    def _hold(self, entry: Entry, sites: Sequence[str]) -> None:
        req = entry.request
        hold = Hold(req.workload_id, (-req.priority, req.seq), entry.waits)
        for site in sites:
            self._holds.setdefault((site, req.gpu_model), hold)  # an earlier holder keeps it

    def _drop_holds(self, workload_id: str) -> None:
        for k in [k for k, h in self._holds.items() if h.workload == workload_id]:
            del self._holds[k]

    def _at(self, now: float | None) -> None:
        """Time passes to ``now`` (None: the last time given). Fair-share usage catches up
        lazily (``_accrue``): most calls (a submit that queues) change nothing it counts."""
        if now is not None and now > self._ctx.now:
            self._ctx.now = now

    def _accrue(self) -> None:
        """Bring fair-share usage up to now, with what tenants held since it last was: call
        before what tenants hold changes, and before shares are read."""
        if self._fair.enabled and self._fair.behind(self._ctx.now):
            held = {t: self._ledger.held(t) for t, g in self._ledger.gpus_in_use.items() if g}
            self._fair.advance(self._ctx.now, held)

    def _capacity(self) -> tuple[float, float, float]:
        """The federation's GPUs, CPUs and memory GB, as reported (fair share's yardstick)."""
        if self._capacity_total is None:
            total = [0.0, 0.0, 0.0]
            for site in self._site_list:
                cap = site.capacity
                total[0] += cap.gpus_total
                total[1] += cap.cpus_total
                total[2] += cap.memory_gb_total
            self._capacity_total = (total[0], total[1], total[2])
        return self._capacity_total

    def _share(self, tenant: str) -> float:
        self._accrue()
        return self._fair.share(tenant, self._ledger.held(tenant), self._capacity())

    def _enqueue(self, entry: Entry) -> None:
        self._queue.push(entry)
        req = entry.request
        if self._ctx.preference(req):
            at = entry.overflow_at = self._ctx.overflow_at(req)
            if at > self._ctx.now:  # still in round 1: a pass is due when it overflows
                heapq.heappush(self._overflows, (at, req.workload_id))

    def _overflow_due(self) -> None:
        """A waiting workload's overflow time has come: other sites may take it now."""
        now = self._ctx.now
        while self._overflows and self._overflows[0][0] <= now:
            _, wid = heapq.heappop(self._overflows)
            if wid in self._queue:
                self._dirty = True

    def _hold_nominated(self) -> None:
        """Re-hold what waiting preemptors were promised, until their wait is over."""
        for wid, nom in list(self._nominations.items()):
            entry = self._queue.get(wid)
            if entry is None or not self._sites[nom.site].healthy or self._ctx.now >= nom.until:
                # gone, its site gone, or waited long enough: it may look for victims again
                # (dropped here too: a pass may skip it, e.g. on its tenant's quota)
                del self._nominations[wid]
                continue
            req = entry.request
            hold = Hold(wid, (-req.priority, req.seq), entry.waits, nominated=True)
            self._holds.setdefault((nom.site, nom.model), hold)

    def _capacities(self) -> dict[str, SiteCapacity]:
        return {name: view.capacity for name, view in self._sites.items()}

    def _next_key(self, request: Request) -> QueueKey:
        self._arrivals += 1
        return (-request.priority, request.seq, self._arrivals)

    def _entry(self, request: Request, key: QueueKey) -> Entry:
        klass, size = shape_of(request, self._ledger.policy(request.tenant).max_hkd_per_month is not None)
        kid = self._klass_ids.setdefault(klass, len(self._klass_ids))
        sid = self._shape_ids.setdefault((kid, size), len(self._shape_ids))
        cap = (request.gpu_model, *size[:4])
        cid = self._cap_ids.setdefault(cap, len(self._cap_ids))
        return Entry(request, key, kid, sid, size, cid)


def _validate(request: Request) -> None:
    wid = request.workload_id
    problems = []
    if not wid:
        problems.append("workload_id is empty")
    if request.gpus_per_replica < 1:
        problems.append("gpus_per_replica must be at least 1")
    if request.replicas < 1:
        problems.append("replicas must be at least 1")
    if request.cpus_per_replica < 0 or request.memory_gb_per_replica < 0:
        problems.append("cpus and memory per replica must not be negative")
    if request.estimated_hours < 0:
        problems.append("estimated_hours must not be negative")
    if request.subsidy not in _SUBSIDY_MODES:
        problems.append(f"subsidy must be one of {sorted(_SUBSIDY_MODES)}")
    if problems:
        raise InvalidRequest("; ".join(problems), workload=wid or None)

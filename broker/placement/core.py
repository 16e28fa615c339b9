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

Refusal rule ("can never fit"): a site can never take a request when, with the site empty
and healthy, it still fails: backend not offered; not in the allow-list; the tenant's quota
is below the request's GPUs; subsidy required and the tenant has no program, the site does
not honour it, or the tenant's whole budget is below the program's share; or capacity. The
capacity judgement uses the nodes of the site's latest report at their *allocatable* GPUs
(and total CPUs/memory): no node of the model, or the gang does not fit even empty. A site
that has never reported has no known nodes, so it is judged only on the static reasons
above plus "no such GPU model" when its price list does not name the model. A request is
refused only when every configured site can never take it; a queue pass never refuses (a
site that shrank may grow again), it keeps the workload waiting.

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

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from . import explain as explain_
from . import reasons as R
from .capacity import SiteCapacity
from .errors import DuplicateWorkload, InvalidRequest, InvariantViolation, UnknownSite
from .filters import FilterContext, Hold, default_filters
from .locality import DEFAULT_LINK_GBIT_S, DatasetCatalog
from .metrics import PlacementMetrics
from .model import (
    Candidate,
    Charge,
    Decision,
    Explanation,
    Federation,
    Node,
    Placed,
    Queued,
    Refused,
    Request,
    ScoreTerms,
    SiteUsage,
)
from .pricing import Quote, quote
from .queue import Entry, ShapeClass, ShapeSize, WorkQueue, dominates, shape_of
from .reservations import Allocation, Ledger, QueueKey
from .scorers import CostScorer, LoadScorer, LocalityScorer, rank
from .site import SiteView

_SUBSIDY_MODES = frozenset({"required", "preferred", "none"})
DEFAULT_STARVATION_PASSES = 5


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
        self._ctx = FilterContext(self._ledger, self._programs, self._holds)
        self._filters = default_filters(self._ctx)
        self._catalog = DatasetCatalog(federation.datasets, federation.links_gbit_s, default_link_gbit_s)
        self._locality = LocalityScorer(self._catalog)
        self._cost = CostScorer(self._ctx)
        self._load = LoadScorer()
        self._queue = WorkQueue()
        self._arrivals = 0
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
    def evaluate(self, request: Request) -> Decision:
        """Dry run: the decision ``submit`` would make now; changes nothing."""
        _validate(request)
        decision = self._decide(request, refuse=True, count=False).decision
        assert decision is not None
        return decision

    def submit(self, request: Request, *, refuse: bool = True) -> Decision:
        """Place the request now, or queue it; ``Refused`` (only when ``refuse``) if no
        site could ever take it. A broker restoring work it had queued passes
        ``refuse=False``: that work was judged able to fit once, and keeps waiting."""
        _validate(request)
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
            entry = self._entry(request, key)
            entry.explanation = decision.explanation
            self._queue.push(entry)
        self.metrics.decisions[type(decision).__name__.lower()] += 1
        return decision

    def restore(self, request: Request, site: str, nodes: Sequence[str]) -> None:
        """After a broker restart: a workload already placed or running at ``site`` on
        ``nodes`` takes back its quota, its budget share (if still covered) and, unless the
        site's latest report lists it running, its GPU reservation. Idempotent."""
        _validate(request)
        view = self._site(site)
        if len(nodes) != request.replicas:
            raise InvalidRequest(
                f"restore of {request.workload_id} names {len(nodes)} nodes for {request.replicas} replicas",
                workload=request.workload_id,
                site=site,
            )
        wid = request.workload_id
        old = self._ledger.remove(wid, self._capacities())
        queued = self._queue.remove(wid)
        if old is not None:
            key = old.key
        elif queued is not None:
            key = queued.key
        else:
            key = self._next_key(request)
        program = None if request.subsidy == "none" else self._ctx.program_of(request.tenant)
        q = quote(view.config, request, program, self._ledger.budget_left(request.tenant))
        candidates = tuple(
            Candidate(s.name, True, (), 0.0, None)
            if s.name == site
            else Candidate(s.name, False, (R.NOT_EVALUATED,), None, None)
            for s in self._site_list
        )
        expl = Explanation(wid, site, candidates, R.RESTORED.format(site=site))
        alloc = Allocation(request, site, tuple(nodes), q.program_hkd, expl, key)
        alloc.gpus_reserved = wid not in view.running
        self._ledger.add(alloc, view.capacity)

    def cancel(self, workload_id: str) -> None:
        """Queued: drop it. Placed: release GPUs, CPUs/memory, quota and budget share."""
        queued = self._queue.remove(workload_id)
        placed = self._ledger.remove(workload_id, self._capacities())
        self._drop_holds(workload_id)
        if queued is not None or placed is not None:
            self._dirty = True

    def charge(self, workload_id: str, hours: float) -> Charge | None:
        """Settle what a placed workload's attempt ran for ``hours`` cost, before it is
        finished or requeued. The program pays its rate of the real cost if the workload
        was placed as subsidised, up to what the budget has left (its own reservation
        included), and that leaves the budget for good; the tenant pays the rest.
        Releases nothing: ``finish``/``requeue``/``cancel`` do that."""
        alloc = self._ledger.allocations.get(workload_id)
        if alloc is None:
            return None
        req = alloc.request
        price = self._sites[alloc.site].config.gpu_prices_hkd_per_hour.get(req.gpu_model, 0.0)
        cost = req.gpus_total * max(0.0, hours) * price
        program = self._ctx.program_of(req.tenant) if alloc.program_hkd > 0 else None
        paid = 0.0
        if program is not None:
            available = self._ledger.budget_left(req.tenant) + alloc.program_hkd
            paid = min(cost * program.rate, available)
            self._ledger.spend(req.tenant, paid)
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

    def budget_reserved(self, tenant: str) -> float:
        """HK$ of the tenant's budget held by its placed subsidised workloads."""
        return self._ledger.budget_reserved.get(tenant, 0.0)

    def budget_remaining(self, tenant: str) -> float:
        """HK$ the tenant's program has not paid out yet (reservations included)."""
        return self._ledger.policy(tenant).budget_hkd

    def finish(self, workload_id: str) -> None:
        """The workload ended (succeeded or failed): release like cancel."""
        self.cancel(workload_id)

    def requeue(self, workload_id: str) -> None:
        """A placed workload goes back to the queue at its original position."""
        alloc = self._ledger.remove(workload_id, self._capacities())
        if alloc is None:
            return
        self._drop_holds(workload_id)
        self._queue.push(self._entry(alloc.request, alloc.key))
        self._dirty = True

    def explain(self, workload_id: str) -> Explanation | None:
        alloc = self._ledger.allocations.get(workload_id)
        if alloc is not None:
            return alloc.explanation
        entry = self._queue.get(workload_id)
        if entry is None:
            return None
        if entry.explanation is None:
            if entry.failures is not None:  # evaluated by the last pass: its reasons
                entry.explanation = self._waiting(workload_id, entry.failures)
            else:  # skipped by shape in the last pass: evaluate it now
                decision = self._decide(entry.request, refuse=False, count=False).decision
                assert decision is not None
                expl = decision.explanation
                if isinstance(decision, Placed):
                    expl = explain_.fits_next_pass(workload_id, decision.site, expl.candidates)
                entry.explanation = expl
        return entry.explanation

    def queued_ids(self) -> list[str]:
        return [e.request.workload_id for e in self._queue.entries()]

    def holds(self) -> dict[tuple[str, str], str]:
        """(site, GPU model) -> the workload holding it against starvation (for metrics)."""
        return {k: h.workload for k, h in self._holds.items()}

    # ------------------------------------------------------------------ the queue pass
    def schedule(self, *, force: bool = False) -> list[Placed]:
        """One pass over the queue in order, placing what fits and reserving as it goes.

        0. if nothing changed since the last pass (and not ``force``), return at once: a
           pass over an unchanged state places nothing;
        1. forget the last pass's holds (this pass rebuilds them in order);
        2. for each queued workload, cheapest test first:
           a. skip it if its gang size (GPU model, GPUs/replica, replicas, CPUs, memory),
              or a smaller one, fits no site's free nodes now (one bucket sum per site,
              asked once per size and remembered until the next placement);
           b. skip it if its shape, or a smaller one of its class, already failed;
           c. else run the filters and scores: place it, or record its shape as failed;
           a workload overtaken often enough holds the sites it waits for;
        3. drop the placed from the queue; count who was overtaken.

        Failing is monotone within a pass (placements only take capacity, quota and
        budget), so what failed once stays failed until the pass ends. Cost: O(queue) set
        lookups + O(distinct gang sizes x sites x GPUs per node) + one full decision per
        distinct shape that passes (a) + one per placement. Skipped workloads' explanations
        are rebuilt on demand by ``explain``.
        """
        metrics = self.metrics
        if self._ctx.paused:
            return []  # stays dirty: the pass runs when placement resumes
        if not (self._dirty or force):
            metrics.passes_skipped += 1
            return []
        self._dirty = False
        self._holds.clear()
        metrics.passes += 1
        sites = self._site_list
        failed: dict[int, tuple[str, ...] | None] = {}  # shape id -> hold sites (None: unknown)
        failed_sizes: dict[int, list[ShapeSize]] = {}  # class id -> failed sizes
        cap_failed: set[int] = set()  # gang sizes that fit no site's free nodes now
        cap_failed_sizes: dict[str, list[tuple]] = {}  # GPU model -> such sizes
        cap_ok: set[int] = set()  # gang sizes that fit somewhere (until the next placement)
        last_place: dict[str, int] = {}  # GPU model -> position of the pass's last placement
        waiting: list[tuple[int, Entry]] = []
        placed: list[Placed] = []
        placed_ids: set[str] = set()
        starve = self.starvation_passes
        for pos, entry in enumerate(self._queue.entries()):
            req = entry.request
            skip = entry.cap in cap_failed or entry.shape in failed
            if not skip and entry.cap not in cap_ok:
                # (a) capacity first: tenant, backend and subsidy cannot make room
                sizes = cap_failed_sizes.get(req.gpu_model)
                if (sizes and any(dominates(entry.cap_size, s) for s in sizes)) or not any(
                    site.capacity.fit(req.gpu_model, *entry.cap_size) >= req.replicas for site in sites
                ):
                    cap_failed.add(entry.cap)
                    cap_failed_sizes.setdefault(req.gpu_model, []).append(entry.cap_size)
                    skip = True
                else:
                    cap_ok.add(entry.cap)
            if not skip:
                # (b) a smaller shape of its class already failed (quota, budget, sites...)
                sizes = failed_sizes.get(entry.klass)
                if sizes and any(dominates(entry.size, s) for s in sizes):
                    failed[entry.shape] = None
                    skip = True
            if skip:
                metrics.skipped_by_shape += 1
                entry.explanation = entry.failures = None
                waiting.append((pos, entry))
                if entry.waits >= starve and any(
                    (site.name, req.gpu_model) not in self._holds for site in sites
                ):
                    hold_sites = failed.get(entry.shape)
                    if hold_sites is None:  # not evaluated in this pass: ask, once per shape
                        hold_sites = self._decide(req, refuse=False, count=False).hold_sites
                        failed[entry.shape] = hold_sites
                    self._hold(entry, hold_sites)
                continue
            metrics.evaluated_in_passes += 1
            out = self._decide(req, refuse=False, count=True, explain=False)
            if isinstance(out.decision, Placed):
                self._commit(req, out, entry.key)
                placed.append(out.decision)
                placed_ids.add(req.workload_id)
                last_place[req.gpu_model] = pos
                cap_ok.clear()  # capacity shrank: "fits somewhere" must be asked again
                continue
            entry.explanation, entry.failures = None, out.failures
            failed[entry.shape] = out.hold_sites
            failed_sizes.setdefault(entry.klass, []).append(entry.size)
            waiting.append((pos, entry))
            if entry.waits >= starve:
                self._hold(entry, out.hold_sites)
        self._queue.remove_many(placed_ids)
        for pos, entry in waiting:
            if last_place.get(entry.request.gpu_model, -1) > pos:
                entry.waits += 1
        metrics.decisions["placed"] += len(placed)
        return placed

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
            never = [(s.name, self._never(s, request)) for s in self._site_list]
            if all(rs for _, rs in never):
                return _Outcome(Refused(wid, explain_.refused(wid, never)), None, None, ())
        if not explain:
            return _Outcome(None, None, None, tuple(hold_sites), failures)
        expl = self._waiting(wid, failures)
        return _Outcome(Queued(wid, expl), None, None, tuple(hold_sites), failures)

    def _waiting(self, wid: str, failures: list[list[tuple[str, str]]]) -> Explanation:
        candidates = [
            explain_.ineligible(s.name, fails) for s, fails in zip(self._site_list, failures, strict=True)
        ]
        return explain_.waiting(wid, candidates, failures)

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
            terms.append(ScoreTerms(loc, q.tenant_hkd, site.load_after(gpus)))
        scores = rank(terms, self._weights, request.estimated_hours)
        # lowest score wins; eligible is in site-name order, so min() breaks ties by name
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
        expl = explain_.placed(wid, candidates[eligible[best]], candidates)
        decision = Placed(wid, chosen.name, tuple(nodes), expl)
        return _Outcome(decision, chosen, quotes[best], ())

    def _never(self, site: SiteView, request: Request) -> list[str]:
        """Reasons this site could never take the request (empty: it might, some day).

        Mirrors the filter chain with the site empty and healthy, stopping at the same
        ``final`` (configuration) reasons."""
        cfg = site.config
        if request.backend not in cfg.backends:
            return [R.BACKEND_NOT_OFFERED.format(backend=request.backend)]
        model = request.gpu_model
        priced = model in cfg.gpu_prices_hkd_per_hour
        if not (site.capacity.has_model(model) if site.reported else priced):
            return [R.NO_GPU_MODEL.format(model=model)]
        if not priced:
            return [R.NOT_PRICED.format(model=model)]
        if request.sites and site.name not in request.sites:
            return [R.NOT_ALLOWED]
        policy = self._ledger.policy(request.tenant)
        program = None
        if request.subsidy == "required":
            program = self._ctx.program_of(request.tenant)
            if program is None:
                return [R.NO_SUBSIDY_PROGRAM]
            if program.name not in cfg.subsidy_programs:
                return [R.SUBSIDY_NOT_HONOURED.format(program=program.name)]
        out: list[str] = []
        gpus = request.gpus_total
        if policy.quota_gpus is not None and gpus > policy.quota_gpus:
            out.append(R.QUOTA_NEVER.format(needed=gpus, quota=policy.quota_gpus))
        if program is not None:
            q = quote(cfg, request, program, policy.budget_hkd)
            if not q.subsidised:
                out.append(R.SUBSIDY_BUDGET.format(left=policy.budget_hkd, needed=q.needed_hkd))
        if site.reported:
            g, n = request.gpus_per_replica, request.replicas
            c, m = request.cpus_per_replica, request.memory_gb_per_replica
            fit, largest = site.capacity.never_fit(model, g, n, c, m)
            if fit < n:
                shape = R.shape_text(n, g, model, c, m)
                if largest < g:
                    out.append(R.GANG_NEVER_NODE.format(shape=shape, largest=largest))
                else:
                    out.append(R.GANG_NEVER_PARTIAL.format(shape=shape, fit=fit, replicas=n))
        return out

    def _commit(self, request: Request, out: _Outcome, key: QueueKey) -> None:
        decision = out.decision
        assert isinstance(decision, Placed) and out.site is not None and out.quote is not None
        alloc = Allocation(
            request, decision.site, decision.nodes, out.quote.program_hkd, decision.explanation, key
        )
        self._ledger.add(alloc, out.site.capacity)

    def _hold(self, entry: Entry, sites: Sequence[str]) -> None:
        req = entry.request
        hold = Hold(req.workload_id, (-req.priority, req.seq), entry.waits)
        for site in sites:
            self._holds.setdefault((site, req.gpu_model), hold)  # an earlier holder keeps it

    def _drop_holds(self, workload_id: str) -> None:
        for k in [k for k, h in self._holds.items() if h.workload == workload_id]:
            del self._holds[k]

    def _capacities(self) -> dict[str, SiteCapacity]:
        return {name: view.capacity for name, view in self._sites.items()}

    def _next_key(self, request: Request) -> QueueKey:
        self._arrivals += 1
        return (-request.priority, request.seq, self._arrivals)

    def _entry(self, request: Request, key: QueueKey) -> Entry:
        klass, size = shape_of(request)
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

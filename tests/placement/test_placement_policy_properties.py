"""Properties of issue 13's policy over random federations and call sequences.

- fair share: a tenant never gets more than its weighted share while a tenant waits
  with work that fits where its did (within one workload's granularity);
- preemption: never frees less than needed, never splits a gang, never takes equal or
  higher priority, never happens where the preemptor fits without it;
- preference: a workload never goes elsewhere before its overflow time, nor while a
  preferred site could take it.
The test's own tally (test_placement_properties.Tally) says what fits where.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_placement_properties import Tally

from broker.placement import (
    Federation,
    Node,
    Placed,
    PlacementCore,
    Request,
    SiteConfig,
    TenantPolicy,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NEVER_HOLD = 10**9
BOTH = frozenset({"kubernetes", "ray"})
T0 = 50_000.0


def _sites(draw, n_sites: int, max_nodes: int = 5) -> tuple[tuple[SiteConfig, ...], dict[str, list[Node]]]:
    sites, inventory = [], {}
    for s in range(n_sites):
        name = f"s{s}"
        sites.append(SiteConfig(name, BOTH, frozenset(), {"H800": draw(st.sampled_from([10.0, 30.0]))}))
        inventory[name] = [
            Node(f"{name}-n{i}", "H800", 8, draw(st.sampled_from([0, 0, 4, 8])))
            for i in range(draw(st.integers(1, max_nodes)))
        ]
    return tuple(sites), inventory


def _start(fed: Federation, inventory: dict[str, list[Node]], healthy: bool = True) -> PlacementCore:
    core = PlacementCore(fed, starvation_passes=NEVER_HOLD)
    for name, nodes in inventory.items():
        core.update_site(name, nodes=nodes)
        core.set_healthy(name, healthy)
    return core


# ------------------------------------------------------------------ fair share
@st.composite
def fair_scenarios(draw):
    sites, inventory = _sites(draw, draw(st.integers(1, 3)))
    tenants = tuple(
        TenantPolicy(f"t{k}", fair_share_weight=draw(st.sampled_from([1.0, 1.0, 2.0])))
        for k in range(draw(st.integers(2, 3)))
    )
    gpus = draw(st.sampled_from([1, 2, 4, 8]))
    counts = [draw(st.integers(0, 12)) for _ in tenants]
    rounds = draw(st.lists(st.integers(0, 2**16), min_size=1, max_size=4))  # finish masks
    return Federation(sites, tenants=tenants), inventory, gpus, counts, rounds


@SETTINGS
@given(fair_scenarios())
def test_no_tenant_gets_more_than_its_weighted_share_while_another_waits(scenario):
    fed, inventory, gpus, counts, rounds = scenario
    core = _start(fed, inventory, healthy=False)  # everything queues first: a flood
    weights = {t.name: t.fair_share_weight for t in fed.tenants}
    seq = 0
    for tenant, count in zip(weights, counts, strict=True):
        for i in range(count):
            seq += 1
            core.submit(Request(f"{tenant}-{i}", tenant, "kubernetes", "H800", gpus, seq=seq), now=T0)
    for name in inventory:
        core.set_healthy(name, True)
    held: Counter[str] = Counter()
    placed_ids: list[str] = []
    for mask in rounds:
        placed = core.schedule(now=T0)  # one instant: shares are what each holds now
        got = Counter()
        for p in placed:
            tenant = p.workload_id.split("-")[0]
            held[tenant] += gpus
            got[tenant] += 1
            placed_ids.append(p.workload_id)
        waiting = Counter(w.split("-")[0] for w in core.queued_ids())
        for a in got:
            for b in waiting:
                if a != b:
                    # a's last placement came when its share was no more than b's
                    assert (held[a] - gpus) / weights[a] <= held[b] / weights[b] + 1e-9, (a, b, held)
        for bit, wid in enumerate(list(placed_ids)):  # some work ends before the next pass
            if mask >> bit & 1:
                core.finish(wid, now=T0)
                placed_ids.remove(wid)
                held[wid.split("-")[0]] -= gpus


# ------------------------------------------------------------------ preemption
@st.composite
def preemption_scenarios(draw):
    sites, inventory = _sites(draw, draw(st.integers(1, 3)), max_nodes=4)
    running = [
        Request(
            f"low{i}",
            "t0",
            "kubernetes",
            "H800",
            draw(st.sampled_from([1, 2, 4, 8])),
            replicas=draw(st.integers(1, 2)),
            priority=draw(st.integers(0, 3)),
            seq=i,
        )
        for i in range(draw(st.integers(0, 10)))
    ]
    preemptor = Request(
        "high",
        "t1",
        "kubernetes",
        "H800",
        draw(st.sampled_from([2, 4, 8])),
        replicas=draw(st.integers(1, 3)),
        priority=draw(st.integers(1, 4)),
        seq=100,
    )
    allowed = frozenset(draw(st.sets(st.integers(1, 4), min_size=1)))
    reported_running = draw(st.booleans())
    ages = [draw(st.integers(0, 7200)) for _ in running]
    fed = Federation(sites, tenants=(TenantPolicy("t0"), TenantPolicy("t1")), preempting_priorities=allowed)
    return fed, inventory, running, ages, preemptor, reported_running


@SETTINGS
@given(preemption_scenarios())
def test_preemption_frees_enough_whole_gangs_of_lower_priority_only(scenario):
    fed, inventory, running, ages, preemptor, reported_running = scenario
    core = _start(fed, inventory)
    tally = Tally(fed, {s: list(ns) for s, ns in inventory.items()})
    for req, age in zip(running, ages, strict=True):
        d = core.submit(req, now=T0 + age)
        if isinstance(d, Placed):
            tally.placed[req.workload_id] = (req, d.site, d.nodes)
    if reported_running:  # their GPUs show as allocated; reservations dropped
        tally.started = set(tally.placed)
        for site in inventory:
            here = [w for w, (_, s, _) in tally.placed.items() if s == site]
            core.update_site(site, nodes=tally.report(site), running=here)
    could_fit = any(tally.fits(preemptor, s) for s in inventory)
    decision = core.submit(preemptor, now=T0 + 7200)
    result = core.schedule_pass(now=T0 + 7200)
    requests = {r.workload_id: r for r in [*running, preemptor]}
    for v in result.preempted:  # queued low work may preempt too: the same rules hold
        assert requests[v.workload_id].priority < requests[v.preemptor].priority  # never equal or higher
        assert requests[v.preemptor].priority in fed.preempting_priorities
    mine = [v for v in result.preempted if v.preemptor == "high"]
    if isinstance(decision, Placed) or could_fit:
        assert mine == []  # it fitted without taking anything back
        return
    if not mine:
        return
    sites = {v.site for v in mine}
    assert len(sites) == 1
    (site,) = sites
    queued = set(core.queued_ids())
    for v in mine:
        req, at, _ = tally.placed.pop(v.workload_id)
        tally.started.discard(v.workload_id)
        assert at == site
        assert v.workload_id in queued  # the whole gang went back to the queue
        assert v.reason in core.explain(v.workload_id).summary
        assert v.reason == (
            f"preempted at {site} by high (priority {preemptor.priority} over {req.priority}): "
            "requeued without using an attempt"
        )
    for v in result.preempted:  # others' victims leave the tally too
        if v.workload_id in tally.placed:
            tally.placed.pop(v.workload_id)
            tally.started.discard(v.workload_id)
    for p in result.placed:
        if p.workload_id != "high":
            tally.placed[p.workload_id] = (requests[p.workload_id], p.site, p.nodes)
    placed = [p for p in result.placed if p.workload_id == "high"]
    if placed:  # placed at once on the GPUs its victims had reserved
        assert [p.site for p in placed] == [site]
        return
    assert reported_running  # only running victims' GPUs take a report to come free
    assert tally.fits(preemptor, site)  # with the victims gone it fits there: enough was freed
    core.update_site(site, nodes=tally.report(site), running=[w for w in tally.started if w in tally.placed])
    later = core.schedule_pass(now=T0 + 7201).placed
    placed = [p for p in later if p.workload_id == "high"]
    if not placed:  # only work ahead of it in the queue may have taken the freed GPUs
        ahead = [p for p in later if p.site == site]
        assert ahead and all(
            (-requests[p.workload_id].priority, requests[p.workload_id].seq) < (-preemptor.priority, 100)
            for p in ahead
        )
        return
    assert [p.site for p in placed] == [site]


# ------------------------------------------------------------------ preference and overflow
@st.composite
def preference_scenarios(draw):
    sites, inventory = _sites(draw, draw(st.integers(2, 3)))
    names = sorted(inventory)
    ops = []
    t = T0
    for i in range(draw(st.integers(1, 25))):
        t += draw(st.sampled_from([0, 0, 30, 300, 900]))
        kind = draw(st.sampled_from(["submit"] * 3 + ["finish", "schedule"]))
        if kind == "submit":
            prefer = tuple(draw(st.permutations(names))[: draw(st.integers(0, 2))])
            req = Request(
                f"w{i}",
                "t0",
                "kubernetes",
                "H800",
                draw(st.sampled_from([2, 4, 8])),
                replicas=draw(st.integers(1, 2)),
                prefer=prefer,
                overflow_after_s=draw(st.sampled_from([None, 0.0, 600.0])),
                submitted_at=t,
                seq=i,
            )
            ops.append(("submit", t, req))
        elif kind == "finish":
            ops.append(("finish", t, f"w{draw(st.integers(0, i))}"))
        else:
            ops.append(("schedule", t, None))
    return Federation(sites, tenants=(TenantPolicy("t0"),), overflow_after_s=900.0), inventory, ops


@SETTINGS
@given(preference_scenarios())
def test_never_elsewhere_before_overflow_nor_while_a_preferred_site_could_take_it(scenario):
    fed, inventory, ops = scenario
    core = _start(fed, inventory)
    tally = Tally(fed, {s: list(ns) for s, ns in inventory.items()})
    requests: dict[str, Request] = {}

    def check(decision: Placed, now: float) -> None:
        req = requests[decision.workload_id]
        if req.prefer and decision.site not in req.prefer:
            after = fed.overflow_after_s if req.overflow_after_s is None else req.overflow_after_s
            assert now >= req.submitted_at + after
            assert not any(tally.fits(req, s) for s in req.prefer)
        if req.prefer and decision.site in req.prefer:
            better = req.prefer[: req.prefer.index(decision.site)]
            assert not any(tally.fits(req, s) for s in better)  # the first preferred that fits
        tally.placed[req.workload_id] = (req, decision.site, decision.nodes)

    for kind, now, arg in ops:
        if kind == "submit":
            requests[arg.workload_id] = arg
            d = core.submit(arg, now=now)
            if isinstance(d, Placed):
                check(d, now)
        elif kind == "finish":
            core.finish(arg, now=now)
            tally.placed.pop(arg, None)
        else:
            for p in core.schedule(now=now):
                check(p, now)

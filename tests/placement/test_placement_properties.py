"""Property-based checks over random federations and random call sequences.

A tiny simulated agent per site reports ``gpus_allocated`` = external use + the GPUs of
the workloads it has started, so the core's reservations can be checked against an
independent tally: no node, budget or quota is ever over-committed, gangs are whole, the
same calls give the same decisions, and adding a workload's data to a site never makes
that site less preferred.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.placement import (
    Dataset,
    Federation,
    Node,
    Placed,
    PlacementCore,
    Queued,
    Refused,
    Request,
    SiteConfig,
    SubsidyProgram,
    TenantPolicy,
)

MODELS = ("A100", "H800")
BACKENDS = ("kubernetes", "ray")
NEVER_HOLD = 10**9  # holds legitimately block work; the completeness check excludes them

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def federations(draw, datasets: bool = False):
    n_sites = draw(st.integers(1, 4))
    sites, inventory = [], {}
    for s in range(n_sites):
        name = f"s{s}"
        backends = {"kubernetes"} | draw(st.sets(st.sampled_from(BACKENDS)))
        programs = draw(st.sets(st.just("aiss")))
        prices = {m: draw(st.sampled_from([10.0, 20.0, 38.0])) for m in MODELS}
        sites.append(SiteConfig(name, frozenset(backends), frozenset(programs), prices))
        inventory[name] = [
            Node(
                f"{name}-n{i}",
                draw(st.sampled_from(MODELS)),
                alloc := draw(st.integers(1, 8)),
                draw(st.integers(0, alloc)),
                draw(st.sampled_from([0.0, 32.0, 64.0])),
                draw(st.sampled_from([0.0, 256.0])),
            )
            for i in range(draw(st.integers(0, 8)))
        ]
    tenants = (
        TenantPolicy(
            "t0",
            "aiss",
            budget_hkd=draw(st.sampled_from([0.0, 500.0, 5000.0])),
            quota_gpus=draw(st.sampled_from([None, 8, 24])),
        ),
        TenantPolicy("t1", quota_gpus=draw(st.sampled_from([None, 16]))),
    )
    ds = ()
    if datasets:
        ds = tuple(
            Dataset(f"d{i}", draw(st.sampled_from([10.0, 500.0, 5000.0])), frozenset()) for i in range(2)
        )
        ds = tuple(
            Dataset(d.name, d.size_gb, frozenset(draw(st.sets(st.sampled_from([s.name for s in sites])))))
            for d in ds
        )
    fed = Federation(
        sites=tuple(sites),
        programs=(SubsidyProgram("aiss", 0.7),),
        tenants=tenants,
        datasets=ds,
    )
    return fed, inventory


@st.composite
def requests(draw, wid: str, sites: list[str], datasets: tuple[str, ...] = ()):
    return Request(
        workload_id=wid,
        tenant=draw(st.sampled_from(["t0", "t1"])),
        backend=draw(st.sampled_from(["kubernetes", "kubernetes", "ray"])),
        gpu_model=draw(st.sampled_from(MODELS)),
        gpus_per_replica=draw(st.sampled_from([1, 1, 2, 4, 8])),
        replicas=draw(st.integers(1, 3)),
        cpus_per_replica=draw(st.sampled_from([0.0, 0.0, 16.0])),
        memory_gb_per_replica=draw(st.sampled_from([0.0, 0.0, 100.0])),
        datasets=datasets,
        subsidy=draw(st.sampled_from(["required", "preferred", "preferred", "none", "none"])),
        priority=draw(st.integers(0, 2)),
        estimated_hours=draw(st.sampled_from([1.0, 10.0])),
        sites=draw(st.sampled_from([(), (), (), *((s,) for s in sites)])),
        seq=draw(st.integers(0, 50)),
    )


@st.composite
def scenarios(draw):
    fed, inventory = draw(federations())
    names = sorted(inventory)
    ops = []
    for i in range(draw(st.integers(1, 30))):
        kind = draw(
            st.sampled_from(["submit"] * 4 + ["finish", "cancel", "requeue", "report", "schedule", "health"])
        )
        if kind == "submit":
            ops.append(("submit", draw(requests(f"w{i}", names))))
        elif kind in ("finish", "cancel", "requeue"):
            ops.append((kind, f"w{draw(st.integers(0, i))}"))
        elif kind == "report":
            ops.append(("report", draw(st.sampled_from(names)), draw(st.integers(0, 2**16))))
        elif kind == "health":
            ops.append(("health", draw(st.sampled_from(names)), draw(st.booleans())))
        else:
            ops.append(("schedule",))
    return fed, inventory, ops


@dataclass
class Tally:
    """The test's own view: what is placed where, and which of it the agent started."""

    fed: Federation
    inventory: dict[str, list[Node]]
    placed: dict[str, tuple[Request, str, tuple[str, ...]]] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    healthy: dict[str, bool] = field(default_factory=dict)

    def node_load(self, site: str) -> tuple[Counter, Counter, Counter]:
        gpus, cpus, mem = Counter(), Counter(), Counter()
        for req, s, nodes in self.placed.values():
            if s != site:
                continue
            for n in nodes:
                gpus[n] += req.gpus_per_replica
                cpus[n] += req.cpus_per_replica
                mem[n] += req.memory_gb_per_replica
        return gpus, cpus, mem

    def report(self, site: str) -> list[Node]:
        started = Counter()
        for wid, (req, s, nodes) in self.placed.items():
            if s == site and wid in self.started:
                for n in nodes:
                    started[n] += req.gpus_per_replica
        return [
            Node(
                n.name,
                n.gpu_model,
                n.gpus_allocatable,
                n.gpus_allocated + started[n.name],
                n.cpus,
                n.memory_gb,
            )
            for n in self.inventory[site]
        ]

    def fits(self, req: Request, site: str) -> bool:
        gpus, cpus, mem = self.node_load(site)
        slots = 0
        for n in self.inventory[site]:
            if n.gpu_model != req.gpu_model:
                continue
            k = (n.gpus_allocatable - n.gpus_allocated - gpus[n.name]) // req.gpus_per_replica
            if req.cpus_per_replica and n.cpus:
                k = min(k, int((n.cpus - cpus[n.name]) / req.cpus_per_replica + 1e-9))
            if req.memory_gb_per_replica and n.memory_gb:
                k = min(k, int((n.memory_gb - mem[n.name]) / req.memory_gb_per_replica + 1e-9))
            slots += max(k, 0)
        return slots >= req.replicas

    def check(self, core: PlacementCore) -> None:
        tenants = {t.name: t for t in self.fed.tenants}
        for site, nodes in self.inventory.items():
            gpus, cpus, mem = self.node_load(site)
            for n in nodes:
                assert n.gpus_allocated + gpus[n.name] <= n.gpus_allocatable, (site, n)
                if n.cpus:
                    assert cpus[n.name] <= n.cpus + 1e-9
                if n.memory_gb:
                    assert mem[n.name] <= n.memory_gb + 1e-9
            usage = core.site_usage(site)
            assert usage.gpus_free >= 0 and usage.gpus_reserved >= 0
        in_use = Counter()
        for req, _, _ in self.placed.values():
            in_use[req.tenant] += req.gpus_total
        for name, policy in tenants.items():
            if policy.quota_gpus is not None:
                assert in_use[name] <= policy.quota_gpus
            assert core._ledger.budget_left(name) >= 0
            assert core._ledger.budget_reserved.get(name, 0.0) <= policy.budget_hkd + 1e-6


def run(fed, inventory, ops) -> list[str]:
    core = PlacementCore(fed, starvation_passes=NEVER_HOLD)
    tally = Tally(fed, {s: list(ns) for s, ns in inventory.items()})
    requests_by_id: dict[str, Request] = {}
    for site, ns in inventory.items():
        core.update_site(site, nodes=ns)
        core.set_healthy(site, True)
        tally.healthy[site] = True
    log: list[str] = []

    def take(decision, req: Request) -> None:
        assert len(decision.nodes) == req.replicas  # whole gang
        models = {n.name: n.gpu_model for n in tally.inventory[decision.site]}
        assert all(models[n] == req.gpu_model for n in decision.nodes)
        assert tally.fits(req, decision.site)  # a site without room is never chosen
        assert tally.healthy[decision.site]
        tally.placed[req.workload_id] = (req, decision.site, decision.nodes)
        log.append(f"placed {req.workload_id} {decision.site} {decision.nodes}")

    for op in ops:
        kind = op[0]
        if kind == "submit":
            req = op[1]
            requests_by_id[req.workload_id] = req
            dry = core.evaluate(req)
            decision = core.submit(req)
            assert dry == decision
            if isinstance(decision, Placed):
                take(decision, req)
            else:
                log.append(f"{type(decision).__name__} {decision.explanation.summary}")
                if isinstance(decision, Refused):
                    assert not any(
                        tally.fits(req, s)
                        for s in tally.inventory
                        if req.backend in _cfg(fed, s).backends
                        and (not req.sites or s in req.sites)
                        and req.subsidy != "required"
                        and not _over_quota(fed, req)
                    )
        elif kind in ("finish", "cancel", "requeue"):
            getattr(core, kind)(op[1])
            if op[1] in tally.placed:
                del tally.placed[op[1]]
                tally.started.discard(op[1])
        elif kind == "report":
            site, mask = op[1], op[2]
            here = sorted(w for w, (_, s, _) in tally.placed.items() if s == site)
            for bit, wid in enumerate(here):
                if mask >> bit & 1:
                    tally.started.add(wid)
            running = sorted(w for w in tally.started if w in here)
            core.update_site(site, nodes=tally.report(site), running=running)
        elif kind == "health":
            core.set_healthy(op[1], op[2])
            tally.healthy[op[1]] = op[2]
        else:
            for p in core.schedule():
                take(p, requests_by_id[p.workload_id])
            # What lets the core skip passes when nothing changed: a second full pass
            # over the same state places nothing.
            assert core.schedule(force=True) == []
        tally.check(core)
    return log


def _cfg(fed: Federation, site: str) -> SiteConfig:
    return next(s for s in fed.sites if s.name == site)


def _over_quota(fed: Federation, req: Request) -> bool:
    policy = next(t for t in fed.tenants if t.name == req.tenant)
    return policy.quota_gpus is not None and req.gpus_total > policy.quota_gpus


@SETTINGS
@given(scenarios())
def test_never_overcommits_gangs_are_whole_and_decisions_are_deterministic(scenario):
    fed, inventory, ops = scenario
    assert run(fed, inventory, ops) == run(fed, inventory, ops)


@SETTINGS
@given(st.data())
def test_queued_only_when_no_healthy_site_could_take_it_now(data):
    fed, inventory = data.draw(federations())
    core = PlacementCore(fed, starvation_passes=NEVER_HOLD)
    for site, ns in inventory.items():
        core.update_site(site, nodes=ns)
        core.set_healthy(site, True)
    tally = Tally(fed, inventory)
    req = data.draw(requests("w", sorted(inventory)))
    req = Request(**{**_fields(req), "subsidy": "none", "tenant": "t1"})
    decision = core.evaluate(req)
    could = [
        s
        for s in inventory
        if req.backend in _cfg(fed, s).backends
        and (not req.sites or s in req.sites)
        and not _over_quota(fed, req)
        and tally.fits(req, s)
    ]
    assert isinstance(decision, Placed) == bool(could)
    if isinstance(decision, Placed):
        assert decision.site in could
    else:
        assert isinstance(decision, Queued | Refused)


@SETTINGS
@given(st.data())
def test_more_of_the_data_at_a_site_never_makes_it_less_preferred(data):
    # Uniform bandwidth (no links): adding a replica at the chosen site lowers only that
    # site's locality. (With links, a new replica can also shorten other sites' transfers;
    # "all else equal" then does not hold, see locality.py.)
    fed, inventory = data.draw(federations(datasets=True))
    core = PlacementCore(fed)
    for site, ns in inventory.items():
        core.update_site(site, nodes=ns)
        core.set_healthy(site, True)
    req = data.draw(requests("w", sorted(inventory), datasets=("d0", "d1")))
    before = core.evaluate(req)
    if not isinstance(before, Placed):
        return
    extra = data.draw(st.sets(st.sampled_from(["d0", "d1"]), min_size=1))
    core.update_site(before.site, nodes=inventory[before.site], datasets=sorted(extra))
    after = core.evaluate(req)
    assert isinstance(after, Placed) and after.site == before.site


def _fields(req: Request) -> dict:
    return {f: getattr(req, f) for f in Request.__dataclass_fields__}

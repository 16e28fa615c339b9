"""The queue: order, passes that skip failed shapes, and anti-starvation holds."""

from __future__ import annotations

from placement_fixtures import core, federation, nodes, reasons_by_site, req, site

from broker.placement import FairSharePolicy, Node, Placed, Queued, TenantPolicy


def one_site(count=1, **kw):
    return core(federation(site("cyberport")), {"cyberport": nodes("cp", count)}, **kw)


def test_queue_order_is_priority_then_age():
    c = one_site()
    assert isinstance(c.submit(req("running", seq=0)), Placed)
    c.submit(req("old-low", seq=1))
    c.submit(req("new-high", seq=3, priority=5))
    c.submit(req("older-high", seq=2, priority=5))
    c.submit(req("oldest-low-late", seq=0))  # a seq older than old-low, submitted later
    assert c.queued_ids() == ["older-high", "new-high", "oldest-low-late", "old-low"]
    order = []
    current = "running"
    for _ in range(4):
        c.finish(current)
        [p] = c.schedule()
        order.append(current := p.workload_id)
    assert order == ["older-high", "new-high", "oldest-low-late", "old-low"]


def test_requeue_keeps_the_original_place_and_releases_the_reservation():
    c = one_site(2)
    c.submit(req("a", seq=1))
    c.submit(req("b", seq=2))
    c.submit(req("c", seq=3))
    c.submit(req("d", seq=4))
    assert c.queued_ids() == ["c", "d"]
    c.requeue("a")
    assert c.queued_ids() == ["a", "c", "d"]
    assert c.site_usage("cyberport").gpus_reserved == 8
    [p] = c.schedule()
    assert p.workload_id == "a"


def test_a_pass_skips_shapes_that_already_failed_without_scanning_nodes():
    c = one_site(4)
    assert isinstance(c.submit(req("filler", replicas=2)), Placed)
    for i in range(50):
        c.submit(req(f"q{i}", replicas=3, seq=i + 1))
    for i in range(50):
        c.submit(req(f"huge{i}", replicas=4, seq=100 + i))  # larger: dominated, skipped too
    assert c.schedule() == []
    # no site has room for 3x8: one capacity check per gang size, no per-workload filters
    assert c.metrics.evaluated_in_passes == 0
    assert c.metrics.skipped_by_shape == 100
    # a skipped workload's explanation is rebuilt on demand, with its own numbers
    expl = c.explain("huge7")
    assert expl.workload == "huge7"
    assert expl.summary == "waiting: needs 4x8 H800 on single nodes; room for 2 of 4 at cyberport"


def test_a_pass_skips_the_work_of_a_tenant_whose_quota_is_spent_without_evaluating_it():
    fed = federation(
        site("cyberport"),
        tenants=[TenantPolicy("lion", quota_gpus=8), TenantPolicy("tiger")],
        fair_share=FairSharePolicy(enabled=True),
    )
    c = core(fed, {"cyberport": nodes("cp", 2)})
    c.submit(req("running"))
    c.submit(req("tiger-0", tenant="tiger"))  # the site is full
    for i in range(20):
        c.submit(req(f"q{i}", gpus_per_replica=4, seq=i + 1))
        c.submit(req(f"big{i}", gpus_per_replica=8, seq=100 + i))
    c.submit(req("tiger-1", tenant="tiger", seq=500))
    c.finish("tiger-0")
    assert [p.workload_id for p in c.schedule()] == ["tiger-1"]
    assert c.metrics.evaluated_in_passes == 1  # tiger's; lion's 40 wait on its quota unread
    assert c.metrics.skipped_by_quota == 40 and c.metrics.skipped_by_shape == 0
    # the skipped still explain themselves truthfully, built on demand with their own numbers
    quota = "waiting: tenant quota 8 GPUs: 8 in use at cyberport"
    assert c.explain("q0").summary == f"{quota}; tenant lion fair share 0.500 (weight 1)"
    assert c.explain("big7").summary == f"{quota}; tenant lion fair share 0.500 (weight 1)"


def test_quota_room_skips_only_what_is_larger_than_it_and_moves_with_placements():
    fed = federation(site("cyberport"), tenants=[TenantPolicy("lion", quota_gpus=12), TenantPolicy("tiger")])
    c = core(fed, {"cyberport": nodes("cp", 2)})
    c.submit(req("running"))  # 8 of 12: room for 4
    c.submit(req("other", tenant="tiger"))  # the site is full
    for i in range(5):
        c.submit(req(f"big{i}", seq=i + 1))  # 8 GPUs: more than the room
    for i in range(3):
        c.submit(req(f"small{i}", gpus_per_replica=2, seq=10 + i))
    c.finish("other")
    placed = [p.workload_id for p in c.schedule()]
    assert placed == ["small0", "small1"]  # then the room is 0: small2 waits on quota too
    assert c.metrics.skipped_by_quota == 6
    assert c.explain("small2").summary == "waiting: tenant quota 12 GPUs: 12 in use at cyberport"


def test_a_pass_skips_a_class_whose_smaller_shape_failed_on_budget():
    fed = federation(
        site("cyberport", programs=["aiss"]), tenants=[TenantPolicy("lion", "aiss", budget_hkd=3000.0)]
    )
    c = core(fed, {"cyberport": nodes("cp", 8)})
    for i in range(20):
        c.submit(req(f"q{i}", gpus_per_replica=4, estimated_hours=12, subsidy="required", seq=i + 1))
        c.submit(req(f"big{i}", estimated_hours=12, subsidy="required", seq=100 + i))
    assert c.schedule(force=True) == []
    # q0 and q1 took the budget at submit (HK$ 446 left); 38 wait. In the pass q2 fails on
    # budget, and every other workload of its class is as large or larger: none is decided
    assert c.metrics.evaluated_in_passes == 1
    assert c.metrics.skipped_by_shape == 37
    assert c.explain("big3").summary.startswith("waiting: subsidy budget HK$ ")


def test_a_small_shape_still_fits_after_a_large_one_failed():
    c = core(federation(site("cyberport")), {"cyberport": nodes("cp", 1, allocated=8)})
    c.submit(req("big", seq=1))
    c.submit(req("small", gpus_per_replica=2, seq=2))
    c.submit(req("small2", gpus_per_replica=2, seq=3))
    c.update_site("cyberport", nodes=nodes("cp", 1, allocated=4))
    assert [p.workload_id for p in c.schedule()] == ["small", "small2"]
    assert c.queued_ids() == ["big"]


def test_anti_starvation_holds_gpus_for_a_gang_that_keeps_being_overtaken():
    # 2 nodes x 8; four 4-GPU jobs running; a 2x8 gang waits; 4-GPU jobs keep arriving.
    c = one_site(2, starvation_passes=2)
    for i in range(4):
        assert isinstance(c.submit(req(f"r{i}", gpus_per_replica=4, seq=i)), Placed)
    assert isinstance(c.submit(req("gang", replicas=2, seq=10)), Queued)
    for i in range(6):
        c.submit(req(f"s{i}", gpus_per_replica=4, seq=20 + i))
    # two passes in which small work overtakes the gang
    c.finish("r0")
    assert [p.workload_id for p in c.schedule()] == ["s0"]
    c.finish("r1")
    assert [p.workload_id for p in c.schedule()] == ["s1"]
    # overtaken twice: now the gang holds cyberport's H800s against later work
    c.finish("r2")
    assert c.schedule() == []
    assert c.holds() == {("cyberport", "H800"): "gang"}
    held = "H800 GPUs held for gang, which has waited 2 passes"
    assert reasons_by_site(c.explain("s2")) == {"cyberport": (held,)}
    assert c.explain("s2").summary == f"waiting: {held} at cyberport"
    # new submits behind it are held too; higher priority work is not
    assert reasons_by_site(c.submit(req("late", gpus_per_replica=4, seq=99)).explanation) == {
        "cyberport": (held,)
    }
    urgent = c.evaluate(req("urgent", gpus_per_replica=4, seq=100, priority=9))
    assert isinstance(urgent, Placed)
    # the site drains; the gang gets both nodes
    c.finish("r3")
    c.finish("s0")
    assert c.schedule() == []  # s1 still runs on one node
    c.finish("s1")
    placed = c.schedule()
    assert placed[0].workload_id == "gang" and placed[0].nodes == ("cp-0", "cp-1")
    assert c.holds() == {}


def test_holds_are_dropped_when_the_holder_is_cancelled():
    c = one_site(1, starvation_passes=1)
    c.submit(req("r0", gpus_per_replica=4))
    c.submit(req("r1", gpus_per_replica=4))
    c.submit(req("gang", seq=5))
    c.submit(req("s0", gpus_per_replica=4, seq=6))
    c.submit(req("s1", gpus_per_replica=4, seq=7))
    c.finish("r0")
    assert [p.workload_id for p in c.schedule()] == ["s0"]
    c.finish("r1")
    assert c.schedule() == []
    assert c.holds() == {("cyberport", "H800"): "gang"}
    c.cancel("gang")
    assert c.holds() == {}
    assert [p.workload_id for p in c.schedule()] == ["s1"]


def test_inventory_growth_lets_queued_work_in():
    c = one_site(2)
    c.submit(req("a"))
    assert isinstance(c.submit(req("b", replicas=2, seq=1)), Queued)
    grown = [*nodes("cp", 2), Node("cp-new", "H800", 8), Node("cp-x", "H800", 8)]
    c.update_site("cyberport", nodes=grown)
    [p] = c.schedule()
    assert p.workload_id == "b" and p.nodes == ("cp-1", "cp-new")


def test_fair_order_runs_end_at_a_cut_and_a_reshare_moves_a_tenant_up_at_once():
    from broker.placement.fairshare import FairOrder
    from broker.placement.queue import WorkQueue

    c = one_site()
    queue = WorkQueue()
    for i, tenant in enumerate(["a", "a", "b", "b", "c", "c"]):
        queue.push(c._entry(req(f"{tenant}{i}", tenant=tenant, seq=i), (0, i, i)))
    shares = {"a": 0.1, "b": 0.5, "c": 0.3}
    order = FairOrder(queue.groups(), shares.__getitem__)
    seen = []
    for line, start, stop in order:
        ids = [e.request.workload_id for e in line[start:stop]]
        seen.append(ids)
        if ids[0] == "a0":  # a's first is "placed": a's share jumps; b's falls (a preemption)
            shares["a"], shares["b"] = 0.9, 0.0
            order.cut(start + 1)
            order.reshare("b")
    # offered: a's run (it took one); b before c at once (0.0 < 0.3); a last (0.9)
    assert seen == [["a0", "a1"], ["b2", "b3"], ["c4", "c5"], ["a1"]]

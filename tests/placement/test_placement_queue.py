"""The queue: order, passes that skip failed shapes, and anti-starvation holds."""

from __future__ import annotations

from placement_fixtures import core, federation, nodes, reasons_by_site, req, site

from broker.placement import Node, Placed, Queued, TenantPolicy


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


def test_a_pass_skips_a_class_whose_smaller_shape_failed_on_quota():
    fed = federation(site("cyberport"), tenants=[TenantPolicy("lion", quota_gpus=8)])
    c = core(fed, {"cyberport": nodes("cp", 4)})
    c.submit(req("running"))
    for i in range(20):
        c.submit(req(f"q{i}", gpus_per_replica=4, seq=i + 1))
        c.submit(req(f"big{i}", gpus_per_replica=8, seq=100 + i))
    assert c.schedule() == []
    assert c.metrics.evaluated_in_passes == 1  # q0 fails on quota; the rest are skipped
    assert c.metrics.skipped_by_shape == 39
    assert c.explain("q0").summary == "waiting: tenant quota 8 GPUs: 8 in use at cyberport"


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

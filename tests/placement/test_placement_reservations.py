"""Reservations: taken at placement, dropped when reported running, released at the end;
restored after a broker restart; never over-committed whatever the order of calls."""

from __future__ import annotations

import pytest
from placement_fixtures import core, federation, nodes, req, site

from broker.placement import Node, Placed, PlacementCore, Queued, SiteUsage, SubsidyProgram, TenantPolicy


def fed_with_budget(budget=10_000.0, quota=None):
    return federation(
        site("cyberport", programs=["aiss"]),
        tenants=[TenantPolicy("lion", "aiss", budget_hkd=budget, quota_gpus=quota)],
    )


def one_site(count=2, **kw):
    return core(fed_with_budget(**kw), {"cyberport": nodes("cp", count)})


def test_report_listing_the_workload_running_swaps_reservation_for_allocation():
    c = one_site()
    d = c.submit(req("w1"))
    assert c.site_usage("cyberport") == SiteUsage(16, 0, 8, 8)
    # a report before it runs keeps the reservation (no gap)
    c.update_site("cyberport", nodes=nodes("cp", 2))
    assert c.site_usage("cyberport") == SiteUsage(16, 0, 8, 8)
    # the report that lists it running shows its GPUs allocated: no double count
    running = [Node("cp-0", "H800", 8, 8), Node("cp-1", "H800", 8)]
    c.update_site("cyberport", nodes=running, running=["w1"])
    assert c.site_usage("cyberport") == SiteUsage(16, 8, 0, 8)
    assert d.nodes == ("cp-0",)
    # quota and budget stay taken while it runs
    assert c._ledger.gpus_in_use["lion"] == 8
    c.finish("w1")
    assert c._ledger.gpus_in_use["lion"] == 0
    assert c._ledger.budget_left("lion") == 10_000.0
    # a late report that still lists it resurrects nothing
    c.update_site("cyberport", nodes=running, running=["w1"])
    assert c.site_usage("cyberport") == SiteUsage(16, 8, 0, 8)
    assert c.explain("w1") is None


def test_finish_cancel_and_requeue_release_gpus_quota_and_budget():
    c = one_site(quota=16)
    for wid in ("a", "b"):
        assert isinstance(c.submit(req(wid, estimated_hours=10)), Placed)
    share = 8 * 10 * 38.0 * 0.7
    assert c._ledger.budget_left("lion") == 10_000.0 - 2 * share
    assert isinstance(c.submit(req("c")), Queued)  # quota 16 in use
    c.cancel("a")
    assert c.site_usage("cyberport").gpus_reserved == 8
    assert c._ledger.budget_left("lion") == 10_000.0 - share
    c.requeue("b")
    assert c.site_usage("cyberport") == SiteUsage(16, 0, 0, 16)
    assert c._ledger.budget_left("lion") == 10_000.0
    assert c.queued_ids() == ["b", "c"]
    placed = c.schedule()
    assert [p.workload_id for p in placed] == ["b", "c"]
    c.finish("c")
    c.finish("c")  # twice: no-op
    assert c._ledger.gpus_in_use["lion"] == 8


def test_a_shrinking_report_never_makes_free_negative():
    c = one_site()
    c.submit(req("w1", gpus_per_replica=8))
    c.update_site("cyberport", nodes=[Node("cp-0", "H800", 4), Node("cp-1", "H800", 8, 8)])
    assert c.site_usage("cyberport") == SiteUsage(12, 8, 8, 0)
    assert isinstance(c.evaluate(req("w2", gpus_per_replica=1)), Queued)
    # the node comes back whole: the reservation still stands on it
    c.update_site("cyberport", nodes=nodes("cp", 2))
    assert c.site_usage("cyberport") == SiteUsage(16, 0, 8, 8)


def test_restore_after_restart_rereserves_until_reported_running():
    fed = fed_with_budget(quota=16)
    c = PlacementCore(fed)
    # restored before the site reports: the reservation waits for its node
    c.restore(req("w1", estimated_hours=10), "cyberport", ["cp-1"])
    c.update_site("cyberport", nodes=nodes("cp", 2))
    c.set_healthy("cyberport", True)
    assert c.site_usage("cyberport") == SiteUsage(16, 0, 8, 8)
    assert c._ledger.budget_left("lion") == 10_000.0 - 8 * 10 * 38.0 * 0.7
    d = c.submit(req("w2", replicas=2))
    assert isinstance(d, Queued)  # quota 16 with 8 restored; and only cp-0 free
    assert d.explanation.candidates[0].reasons == (
        "tenant quota 16 GPUs: 8 in use",
        "needs 2x8 H800 on single nodes; room for 1 of 2",
    )
    # restoring one the latest report lists running takes no GPU reservation
    c.update_site("cyberport", nodes=[Node("cp-0", "H800", 8, 8), Node("cp-1", "H800", 8)], running=["w0"])
    c.restore(req("w0"), "cyberport", ["cp-0"])
    assert c.site_usage("cyberport") == SiteUsage(16, 8, 8, 0)
    c.restore(req("w0"), "cyberport", ["cp-0"])  # idempotent
    assert c._ledger.gpus_in_use["lion"] == 16
    assert c.explain("w0").chosen == "cyberport"
    assert c.explain("w0").summary == "restored on cyberport after a broker restart"


def test_charge_pays_the_program_share_of_the_real_run_and_spends_the_budget():
    fed = federation(
        site("cyberport", programs=["aiss"], prices={"H800": 40.0}),
        programs=[SubsidyProgram("aiss", 0.7)],
        tenants=[TenantPolicy("lion", "aiss", budget_hkd=1000.0)],
    )
    c = core(fed, {"cyberport": nodes("cp", 2)})
    placed = c.submit(req("w1", subsidy="required", estimated_hours=2.0))  # reserves 8*2*40*0.7 = 448
    assert isinstance(placed, Placed)
    assert c.budget_left("lion") == pytest.approx(552.0)
    charge = c.charge("w1", hours=3.0)  # ran longer than estimated: 8*3*40 = 960
    assert charge is not None
    assert (charge.cost_hkd, charge.program_hkd, charge.tenant_hkd) == pytest.approx((960.0, 672.0, 288.0))
    c.finish("w1")
    assert c.budget_left("lion") == pytest.approx(328.0)  # spent for good, not released
    assert c.charge("w1", hours=1.0) is None  # settled once
    # The program never pays more than the budget has left.
    c.submit(req("w2", subsidy="required", estimated_hours=0.5))  # reserves 112 of 328
    big = c.charge("w2", hours=10.0)
    assert (
        big is not None
        and big.program_hkd == pytest.approx(328.0)
        and big.tenant_hkd == pytest.approx(3200 - 328)
    )
    c.finish("w2")
    assert c.budget_left("lion") == 0.0

"""Issue 13's placement policy, scenario by scenario, with the explanations asserted:
home site first with timed overflow, fair share between tenants, preemption by priority,
and refusal derived from the filter chain."""

from __future__ import annotations

from dataclasses import replace

import pytest
from placement_fixtures import core, federation, nodes, reasons_by_site, req, site

from broker.placement import (
    FairSharePolicy,
    Placed,
    PlacementCore,
    Queued,
    Refused,
    TenantPolicy,
)

T0 = 1_000_000.0  # the tests' epoch: the core only ever sees times passed in


HOME_CYBERPORT = (TenantPolicy("lion", home_site="cyberport"),)


def two_sites(**fed_kw) -> PlacementCore:
    fed = federation(site("cyberport"), site("sandy-ridge"), tenants=HOME_CYBERPORT, **fed_kw)
    return core(fed, {"cyberport": nodes("cp", 1), "sandy-ridge": nodes("sr", 1)})


# ------------------------------------------------------------------ home site, timed overflow
def test_home_site_first_then_overflow_after_its_time_with_the_round_explained():
    c = two_sites(overflow_after_s=600.0)
    first = c.submit(req("w1", submitted_at=T0), now=T0)
    assert isinstance(first, Placed) and first.site == "cyberport"
    assert first.explanation.summary == "placed on cyberport (score 2.00); a preferred site"

    second = c.submit(req("w2", submitted_at=T0), now=T0)
    assert isinstance(second, Queued)  # sandy-ridge is empty, but not a candidate yet
    assert reasons_by_site(second.explanation) == {
        "cyberport": ("needs 1x8 H800 on single nodes; largest free block is 0",),
        "sandy-ridge": ("not a preferred site: round 1 of 2 (only cyberport) until t=1,000,600s",),
    }
    assert second.explanation.summary == (
        "waiting: needs 1x8 H800 on single nodes; largest free block is 0 at cyberport; "
        "round 1 of 2: only cyberport until t=1,000,600s, then any site"
    )
    assert c.schedule(now=T0 + 599) == []  # still round 1
    placed = c.schedule(now=T0 + 600)  # its overflow time alone makes the pass run
    assert [(p.workload_id, p.site) for p in placed] == [("w2", "sandy-ridge")]
    assert placed[0].explanation.summary == (
        "placed on sandy-ridge (score 2.00); round 2 of 2: overflowed from cyberport at t=1,000,600s"
    )


def test_an_eligible_preferred_site_wins_whatever_the_scores_and_order_counts():
    fed = federation(site("cyberport", prices={"H800": 90.0}), site("sandy-ridge", prices={"H800": 10.0}))
    c = core(fed, {"cyberport": nodes("cp", 2), "sandy-ridge": nodes("sr", 2)})
    d = c.submit(req("w1", prefer=("sandy-ridge", "cyberport")), now=T0)
    assert isinstance(d, Placed) and d.site == "sandy-ridge"
    d = c.submit(req("w2", prefer=("cyberport", "sandy-ridge")), now=T0)
    assert isinstance(d, Placed) and d.site == "cyberport"  # dearer, but preferred first
    # Without a preference the score decides: the cheaper site.
    d = c.submit(req("w3"), now=T0)
    assert isinstance(d, Placed) and d.site == "sandy-ridge"


def test_a_workload_overflow_time_overrides_the_federation_default_and_zero_means_at_once():
    c = two_sites(overflow_after_s=3600.0)
    c.submit(req("w1", submitted_at=T0), now=T0)
    d = c.submit(req("w2", submitted_at=T0, overflow_after_s=0.0), now=T0)
    assert isinstance(d, Placed) and d.site == "sandy-ridge"  # "prefer A, use B when A is full"


def test_an_allow_list_without_the_home_site_has_no_preference():
    c = two_sites()
    c.submit(req("w1"), now=T0)
    d = c.submit(req("w2", sites=("sandy-ridge",)), now=T0)
    assert isinstance(d, Placed) and d.site == "sandy-ridge"
    assert d.explanation.summary == "placed on sandy-ridge (score 2.00)"


def test_overflow_is_counted_from_submission_across_a_requeue():
    c = two_sites(overflow_after_s=600.0)
    c.submit(req("w1", submitted_at=T0), now=T0)
    c.submit(req("w2", submitted_at=T0), now=T0)
    c.finish("w1")
    assert [p.site for p in c.schedule(now=T0 + 10)] == ["cyberport"]  # home freed first
    c.requeue("w2")
    c.submit(req("w3", submitted_at=T0 + 10), now=T0 + 10)  # takes nothing: home is full
    assert [p.workload_id for p in c.schedule(now=T0 + 600)] == ["w2"]  # w2's clock ran from T0


# ------------------------------------------------------------------ fair share
def fair_core(weights=(1.0, 1.0), gpus_nodes: int = 4) -> PlacementCore:
    tenants = (
        TenantPolicy("lion", fair_share_weight=weights[0]),
        TenantPolicy("tiger", fair_share_weight=weights[1]),
    )
    fed = federation(site("cyberport"), tenants=tenants)
    c = core(fed, {"cyberport": nodes("cp", gpus_nodes)}, healthy=False)
    return c


def test_a_flood_from_one_tenant_does_not_starve_another_of_equal_weight():
    c = fair_core()
    for i in range(20):  # lion floods first
        c.submit(req(f"lion-{i}", tenant="lion", seq=i), now=T0)
    for i in range(3):
        c.submit(req(f"tiger-{i}", tenant="tiger", seq=100 + i), now=T0)
    c.set_healthy("cyberport", True)
    placed = [p.workload_id for p in c.schedule(now=T0)]
    # 4 nodes: taken in turn, oldest of each tenant first (ties of share go to the oldest)
    assert placed == ["lion-0", "tiger-0", "lion-1", "tiger-1"]
    shares = c.fair_shares()
    assert shares == pytest.approx({"lion": 0.5, "tiger": 0.5})
    summary = c.explain("tiger-2").summary
    assert summary.endswith("; tenant tiger fair share 0.500 (weight 1)")
    # Queue positions as the next pass would take them: in turn, oldest first on a tie.
    assert c.queued_ids()[:4] == ["lion-2", "tiger-2", "lion-3", "lion-4"]


def test_weights_divide_the_federation_in_their_ratio():
    c = fair_core(weights=(3.0, 1.0), gpus_nodes=8)
    for i in range(10):
        c.submit(req(f"lion-{i}", tenant="lion", seq=i), now=T0)
        c.submit(req(f"tiger-{i}", tenant="tiger", seq=100 + i), now=T0)
    c.set_healthy("cyberport", True)
    placed = c.schedule(now=T0)
    by_tenant = {t: sum(p.workload_id.startswith(t) for p in placed) for t in ("lion", "tiger")}
    assert by_tenant == {"lion": 6, "tiger": 2}


def test_recent_usage_decays_with_the_half_life_and_orders_the_next_pass():
    fed = federation(
        site("cyberport"),
        tenants=(TenantPolicy("lion"), TenantPolicy("tiger")),
        fair_share=FairSharePolicy(half_life_s=3600.0),
    )
    c = core(fed, {"cyberport": nodes("cp", 1)})
    assert isinstance(c.submit(req("lion-0", tenant="lion"), now=T0), Placed)
    c.finish("lion-0", now=T0 + 3600)  # lion held the whole site for an hour
    c.schedule(now=T0 + 3600)
    # Recent use, the decayed average of what it held: all of it for one half-life = 1 - 1/2.
    assert c.fair_shares()["lion"] == pytest.approx(0.5)
    c.schedule(now=T0 + 2 * 3600)
    assert c.fair_shares()["lion"] == pytest.approx(0.25)  # halves with each half-life
    c.set_healthy("cyberport", False)
    c.submit(req("lion-1", tenant="lion", seq=1), now=T0 + 2 * 3600)
    c.submit(req("tiger-1", tenant="tiger", seq=2), now=T0 + 2 * 3600)
    c.set_healthy("cyberport", True)
    assert [p.workload_id for p in c.schedule(now=T0 + 2 * 3600)] == ["tiger-1"]  # lion used it lately
    c.finish("tiger-1", now=T0 + 2 * 3600)
    later = c.fair_shares()
    assert later["lion"] > later.get("tiger", 0.0) == 0.0  # placed and done at once: no use


def test_fair_share_off_keeps_first_come_first_served():
    fed = federation(
        site("cyberport"),
        tenants=(TenantPolicy("lion"), TenantPolicy("tiger")),
        fair_share=FairSharePolicy(enabled=False),
    )
    c = core(fed, {"cyberport": nodes("cp", 2)}, healthy=False)
    for i in range(3):
        c.submit(req(f"lion-{i}", tenant="lion", seq=i), now=T0)
    c.submit(req("tiger-0", tenant="tiger", seq=9), now=T0)
    c.set_healthy("cyberport", True)
    assert [p.workload_id for p in c.schedule(now=T0)] == ["lion-0", "lion-1"]
    assert "fair share" not in c.explain("tiger-0").summary


# ------------------------------------------------------------------ preemption
def preempting_core(sr_nodes: int = 0, **fed_kw) -> PlacementCore:
    fed = federation(
        site("cyberport"),
        site("sandy-ridge"),
        tenants=(TenantPolicy("lion"), TenantPolicy("tiger", home_site="sandy-ridge")),
        preempting_priorities=frozenset({10}),
        **fed_kw,
    )
    return core(fed, {"cyberport": nodes("cp", 2), "sandy-ridge": nodes("sr", sr_nodes)})


def test_higher_priority_preempts_the_cheapest_victim_and_is_placed_on_its_reserved_gpus():
    c = preempting_core()
    c.submit(req("old", seq=1), now=T0)  # placed first: has run longest
    c.submit(req("new", seq=2), now=T0 + 3600)
    d = c.submit(req("urgent", priority=10, seq=3), now=T0 + 7200)
    assert isinstance(d, Queued)
    result = c.schedule_pass(now=T0 + 7200)
    assert [(p.workload_id, p.site) for p in result.placed] == [("urgent", "cyberport")]
    (victim,) = result.preempted
    assert (victim.workload_id, victim.site, victim.preemptor) == ("new", "cyberport", "urgent")
    assert victim.reason == (
        "preempted at cyberport by urgent (priority 10 over 0): requeued without using an attempt"
    )
    assert c.queued_ids() == ["new"]  # back in the queue, at its place
    assert c.explain("new").summary.startswith("waiting: needs 1x8 H800 on single nodes")
    assert victim.reason in c.explain("new").summary
    # The broker charges the victim for what it ran, after the pass.
    charge = c.charge("new", 1.0)
    assert charge is not None and charge.gpus == 8 and c.charge("new", 1.0) is None


def test_overflowed_work_goes_before_home_work_and_newest_before_oldest():
    c = preempting_core()
    c.submit(req("home", tenant="lion", seq=1), now=T0)
    c.submit(req("away", tenant="tiger", seq=2, overflow_after_s=0.0), now=T0)  # home is sandy-ridge
    c.submit(req("urgent", priority=10, seq=3), now=T0)
    victims = [v.workload_id for v in c.schedule_pass(now=T0).preempted]
    assert victims == ["away"]  # equal GPU-hours lost (none): away from home goes first


def test_preemption_frees_whole_gangs_and_only_as_much_as_needed():
    fed = federation(site("cyberport"), preempting_priorities=frozenset({5}))
    c = core(fed, {"cyberport": nodes("cp", 4)})
    c.submit(req("gang", gpus_per_replica=8, replicas=2, seq=1), now=T0)
    c.submit(req("small-a", gpus_per_replica=4, seq=2), now=T0)
    c.submit(req("small-b", gpus_per_replica=4, seq=3), now=T0)
    c.submit(req("small-c", gpus_per_replica=8, seq=4), now=T0 + 1)
    result = c.schedule_pass(now=T0 + 10)
    assert result.preempted == ()
    c.submit(req("urgent", gpus_per_replica=8, priority=5, seq=5), now=T0 + 10)
    result = c.schedule_pass(now=T0 + 10)
    # small-c is newest and cheapest (8 GPUs x 9 s lost); small-a and -b together lose more
    assert [v.workload_id for v in result.preempted] == ["small-c"]
    assert [p.workload_id for p in result.placed] == ["urgent"]


def test_no_preemption_of_equal_priority_or_when_not_enabled_for_the_priority():
    c = preempting_core()
    c.submit(req("a", priority=10, seq=1), now=T0)
    c.submit(req("b", priority=10, seq=2), now=T0)
    c.submit(req("c", priority=10, seq=3), now=T0)
    assert c.schedule_pass(now=T0).preempted == ()
    c2 = preempting_core()
    c2.submit(req("a", seq=1), now=T0)
    c2.submit(req("b", seq=2), now=T0)
    c2.submit(req("c", priority=9, seq=3), now=T0)  # higher, but 9 may not preempt
    assert c2.schedule_pass(now=T0).preempted == ()


def test_a_preemptor_waits_for_running_victims_to_stop_and_holds_their_gpus():
    c = preempting_core()
    a = c.submit(req("a", seq=1), now=T0)
    b = c.submit(req("b", seq=2), now=T0)
    assert isinstance(a, Placed) and isinstance(b, Placed)
    # The site reports both running: their GPUs now show as allocated on the nodes.
    c.update_site("cyberport", nodes=nodes("cp", 2, allocated=8), running=["a", "b"])
    c.submit(req("urgent", priority=10, seq=3), now=T0 + 60)
    result = c.schedule_pass(now=T0 + 60)
    assert result.placed == () and [v.workload_id for v in result.preempted] == ["b"]
    explained = c.explain("urgent")
    assert explained.summary.startswith("waiting: needs 1x8 H800 on single nodes; largest free block is 0")
    # Until the report shows b stopped, its GPUs are held for urgent, and nothing preempts again.
    d = c.submit(req("late", seq=4), now=T0 + 61)
    assert isinstance(d, Queued)
    assert c.schedule_pass(now=T0 + 61, force=True).preempted == ()
    stopped = [nodes("cp", 2, allocated=8)[0], nodes("cp", 2)[1]]
    c.update_site("cyberport", nodes=stopped, running=["a"])
    placed = c.schedule_pass(now=T0 + 62).placed
    assert [(p.workload_id, p.nodes) for p in placed] == [("urgent", ("cp-1",))]


# ------------------------------------------------------------------ refusal from the filter chain
def test_refusal_is_the_filter_chain_on_empty_sites():
    fed = federation(
        site("cyberport", prices={"H800": 38.0}),
        site("sandy-ridge", prices={"A100": 20.0}),
        tenants=(TenantPolicy("lion", quota_gpus=8),),
    )
    c = core(fed, {"cyberport": nodes("cp", 2)})  # sandy-ridge never reported
    d = c.submit(req("w1", replicas=2), now=T0)
    assert isinstance(d, Refused)
    assert reasons_by_site(d.explanation) == {
        "cyberport": ("needs 16 GPUs; tenant quota is 8",),
        "sandy-ridge": ("no H800 GPUs here",),  # judged by its price list until it reports
    }
    # Every site full, none forever: queued, not refused (the chain fails on capacity only now).
    full = core(replace(fed, tenants=()), {"cyberport": nodes("cp", 1, allocated=8)})
    assert isinstance(full.submit(req("w2"), now=T0), Queued)


def test_same_shape_in_and_past_its_round_are_judged_apart_in_one_pass():
    c = two_sites(overflow_after_s=600.0)
    c.submit(req("home", submitted_at=T0), now=T0)  # fills cyberport
    c.set_healthy("sandy-ridge", False)
    # "late" is ahead in the queue (a smaller seq) but submitted later: its round lasts longer.
    c.submit(req("early", seq=2, submitted_at=T0), now=T0)
    c.submit(req("late", seq=1, submitted_at=T0 + 500), now=T0 + 500)
    c.set_healthy("sandy-ridge", True)
    # At T0 + 700 "early" is past its round, "late" is not: the same shape, other candidates.
    placed = c.schedule(now=T0 + 700)
    assert [(p.workload_id, p.site) for p in placed] == [("early", "sandy-ridge")]
    assert c.explain("late").summary.endswith(
        "round 1 of 2: only cyberport until t=1,001,100s, then any site"
    )


def test_a_preemption_lowers_the_victim_tenants_share_within_the_same_pass():
    # cyberport: 3 nodes x 8. tiger holds 12 GPUs (8 on cp-0, 4 on cp-1), lion 4 (cp-1),
    # wolf 8 on cp-2, half of which ends before the pass: 4 GPUs free there.
    fed = federation(
        site("cyberport"),
        tenants=(TenantPolicy("lion"), TenantPolicy("tiger"), TenantPolicy("puma"), TenantPolicy("wolf")),
        fair_share=FairSharePolicy(enabled=True),
        preempting_priorities=frozenset({2}),
    )
    c = core(fed, {"cyberport": nodes("cp", 3)})
    for wid, tenant, gpus in [("tiger-a", "tiger", 8), ("tiger-b", "tiger", 4), ("lion-a", "lion", 4)]:
        assert isinstance(c.submit(req(wid, tenant=tenant, gpus_per_replica=gpus), now=T0), Placed)
    for wid in ("wolf-a", "wolf-b"):
        assert isinstance(c.submit(req(wid, tenant="wolf", gpus_per_replica=4), now=T0), Placed)
    # Priority 2: puma's urgent gang fits nowhere (4 free) and preempts tiger-a (one victim
    # frees a whole node); tiger's priority-2 work asks for GPUs no site has, so tiger's
    # share is read (0.5) before the preemption lowers it to 4/24.
    c.submit(req("urgent", tenant="puma", priority=2, seq=1), now=T0)
    c.submit(req("tiger-x", tenant="tiger", gpu_model="A100", priority=2, seq=2), refuse=False, now=T0)
    # Priority 1: tiger's and lion's 4-GPU jobs, room for one on cp-2 once wolf ends.
    c.submit(req("tiger-p1", tenant="tiger", gpus_per_replica=4, priority=1, seq=10), now=T0)
    c.submit(req("lion-p1", tenant="lion", gpus_per_replica=4, priority=1, seq=11), now=T0)
    c.finish("wolf-a", now=T0)
    result = c.schedule_pass(now=T0)
    assert [p.workload_id for p in result.preempted] == ["tiger-a"]
    # tiger and lion now hold 4 each: equal shares, so the older job goes first. With the
    # share tiger had before the preemption (12/24) lion's would have.
    assert [p.workload_id for p in result.placed] == ["urgent", "tiger-p1"]
    assert c.fair_shares()["tiger"] == pytest.approx(8 / 24)
    assert c.explain("lion-p1").summary.startswith("waiting: needs 1x4 H800 on single nodes")

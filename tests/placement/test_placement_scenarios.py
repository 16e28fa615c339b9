"""The expected behaviours of DESIGN.md "Placement", each with its explanation asserted."""

from __future__ import annotations

import pytest
from placement_fixtures import core, federation, nodes, reasons_by_site, req, site

from broker.placement import (
    Dataset,
    Placed,
    Queued,
    Refused,
    ScoreTerms,
    SubsidyProgram,
    TenantPolicy,
)

LINK = {frozenset({"cyberport", "sandy-ridge"}): 100.0}


def pair(fed=None, cp=None, sr=None, **kw):
    fed = fed or federation(site("cyberport"), site("sandy-ridge"))
    return core(fed, {"cyberport": cp or nodes("cp", 4), "sandy-ridge": sr or nodes("sr", 4)}, **kw)


# ------------------------------------------------------------------ scores
def test_data_gravity_pulls_work_to_the_only_replica():
    speech = Dataset("cantonese-speech", 2000, frozenset({"sandy-ridge"}))
    fed = federation(site("cyberport"), site("sandy-ridge"), datasets=[speech], links=LINK)
    c = pair(fed)
    d = c.submit(req("w1", datasets=("cantonese-speech",)))
    assert isinstance(d, Placed) and d.site == "sandy-ridge"  # beats the name tie-break
    cp, sr = d.explanation.candidates
    assert cp.terms.locality_hours == pytest.approx(2000 * 8 / 100 / 3600)
    assert sr.terms.locality_hours == 0.0
    # Same price (cost 1.0 each) and load 0.25 each; cyberport adds the share of the
    # 1-hour job's time-to-result spent moving 2 TB.
    moving = cp.terms.locality_hours / (cp.terms.locality_hours + 1.0)
    assert (cp.score, sr.score) == pytest.approx((1.0 + moving + 0.25, 1.25))
    assert d.explanation.summary == "placed on sandy-ridge (score 1.25)"


@pytest.mark.parametrize(
    ("size_gb", "gbit_s", "chosen"),
    [
        (1, 100.0, "cyberport"),  # seconds of copying: the 6% cheaper site wins
        (15000, 10.0, "sandy-ridge"),  # 3.3 h of copying for a 1 h job: the data wins
    ],
)
def test_data_gravity_grows_with_the_data_not_just_its_presence(size_gb, gbit_s, chosen):
    lidar = Dataset("harbour-lidar", size_gb, frozenset({"sandy-ridge"}))
    fed = federation(
        site("cyberport", prices={"H800": 30.0}),
        site("sandy-ridge", prices={"H800": 32.0}),
        datasets=[lidar],
        links={frozenset({"cyberport", "sandy-ridge"}): gbit_s},
    )
    d = pair(fed).evaluate(req("w1", datasets=("harbour-lidar",)))
    assert d.explanation.chosen == chosen


def test_missing_link_uses_the_slow_default_and_reported_replicas_count():
    speech = Dataset("cantonese-speech", 2000, frozenset({"sandy-ridge"}))
    c = pair(federation(site("cyberport"), site("sandy-ridge"), datasets=[speech]))
    d = c.evaluate(req("w1", datasets=("cantonese-speech",)))
    assert d.explanation.candidates[0].terms.locality_hours == pytest.approx(2000 * 8 / 3600)
    c.update_site("cyberport", nodes=nodes("cp", 4), datasets=["cantonese-speech"])
    d = c.evaluate(req("w1", datasets=("cantonese-speech",)))
    assert d.site == "cyberport"  # now both hold it: all equal, name decides
    assert d.explanation.candidates[0].terms.locality_hours == 0.0


def test_subsidy_pulls_an_eligible_tenant_and_reserves_its_budget():
    fed = federation(
        site("cyberport"),
        site("sandy-ridge", programs=["aiss"]),
        tenants=[TenantPolicy("lion", "aiss", budget_hkd=3000.0)],
    )
    c = pair(fed)
    d = c.submit(req("w1", estimated_hours=12, subsidy="required"))
    assert isinstance(d, Placed) and d.site == "sandy-ridge"
    cp, sr = d.explanation.candidates
    assert cp.reasons == ("subsidy aiss not honoured here",) and cp.terms is None
    assert sr.terms == ScoreTerms(
        0.0, pytest.approx(8 * 12 * 38.0 * 0.3), 0.25, pytest.approx(8 * 12 * 38.0 * 0.7)
    )
    # the program's share (2,553.60) is reserved: a second one no longer fits the budget
    d2 = c.submit(req("w2", estimated_hours=12, subsidy="required"))
    assert isinstance(d2, Queued)
    assert reasons_by_site(d2.explanation) == {
        "cyberport": ("subsidy aiss not honoured here",),
        "sandy-ridge": ("subsidy budget HK$ 446.40 left; estimate needs HK$ 2,553.60",),
    }
    assert d2.explanation.summary == (
        "waiting: subsidy budget HK$ 446.40 left; estimate needs HK$ 2,553.60 at sandy-ridge"
    )
    # preferred: no budget left for it, so full price everywhere; the name tie-break wins
    d3 = c.evaluate(req("w3", estimated_hours=12, subsidy="preferred"))
    assert d3.site == "cyberport"
    assert [x.terms.cost_hkd for x in d3.explanation.candidates] == [3648.0, 3648.0]
    c.cancel("w1")  # budget released
    assert c.schedule()[0].workload_id == "w2"


def test_a_nearly_full_site_sheds_new_work():
    cp = nodes("cp", 3, allocated=8) + nodes("cp-free", 1)
    c = pair(cp=cp)
    d = c.submit(req("w1"))
    assert isinstance(d, Placed) and d.site == "sandy-ridge"
    cp_c, sr_c = d.explanation.candidates
    assert (cp_c.terms.load, sr_c.terms.load) == (1.0, 0.25)
    assert (cp_c.score, sr_c.score) == (2.0, 1.25)  # equal cost (1.0) + load


def test_a_site_without_room_is_never_chosen_whatever_its_scores():
    speech = Dataset("cantonese-speech", 9000, frozenset({"cyberport"}))
    fed = federation(
        site("cyberport", programs=["aiss"], prices={"H800": 1.0}),
        site("sandy-ridge", prices={"H800": 99.0}),
        tenants=[TenantPolicy("lion", "aiss", budget_hkd=1e9)],
        datasets=[speech],
    )
    c = pair(fed, cp=nodes("cp", 4, allocated=4))
    d = c.submit(req("w1", datasets=("cantonese-speech",)))
    assert isinstance(d, Placed) and d.site == "sandy-ridge"
    cp_c = d.explanation.candidates[0]
    assert cp_c.eligible is False and cp_c.score is None and cp_c.terms is None
    assert cp_c.reasons == ("needs 1x8 H800 on single nodes; largest free block is 4",)


def test_queued_explanation_says_what_it_waits_for():
    c = pair(cp=nodes("cp", 2, allocated=4), sr=nodes("sr", 1))
    d = c.submit(req("w1", replicas=2))
    assert isinstance(d, Queued)
    assert reasons_by_site(d.explanation) == {
        "cyberport": ("needs 2x8 H800 on single nodes; largest free block is 4",),
        "sandy-ridge": ("needs 2x8 H800 on single nodes; room for 1 of 2",),
    }
    assert d.explanation.summary == (
        "waiting: needs 2x8 H800 on single nodes; largest free block is 4 at cyberport"
    )
    assert c.queued_ids() == ["w1"] and c.explain("w1") == d.explanation


def test_quota_wait_is_tenant_wide():
    fed = federation(site("cyberport"), site("sandy-ridge"), tenants=[TenantPolicy("lion", quota_gpus=16)])
    c = pair(fed)
    c.submit(req("w1"))
    c.submit(req("w2"))
    d = c.submit(req("w3"))
    assert isinstance(d, Queued)
    assert set(reasons_by_site(d.explanation).values()) == {("tenant quota 16 GPUs: 16 in use",)}
    assert d.explanation.summary == "waiting: tenant quota 16 GPUs: 16 in use"
    assert c.metrics.filtered["quota"] == 2  # counters by filter, for the broker's metrics
    assert c.metrics.decisions == {"placed": 2, "queued": 1}
    c.finish("w1")
    assert [p.workload_id for p in c.schedule()] == ["w3"]


def test_cpus_and_memory_count_in_the_gang_fit():
    c = pair(
        cp=nodes("cp", 2, cpus=64, memory_gb=512),
        sr=nodes("sr", 1, cpus=64, memory_gb=512),
        fed=federation(site("cyberport"), site("sandy-ridge")),
    )
    d = c.submit(req("w1", gpus_per_replica=2, replicas=4, cpus_per_replica=32, sites=("cyberport",)))
    assert isinstance(d, Placed) and d.nodes == ("cp-0", "cp-0", "cp-1", "cp-1")
    d2 = c.submit(req("w2", gpus_per_replica=1, cpus_per_replica=40, replicas=2))
    assert isinstance(d2, Queued)
    assert reasons_by_site(d2.explanation) == {
        "cyberport": ("needs 2x1 H800 with 40 CPUs each on single nodes; room for 0 of 2",),
        "sandy-ridge": ("needs 2x1 H800 with 40 CPUs each on single nodes; room for 1 of 2",),
    }
    # memory alone fits (nothing holds it yet), on one node per replica
    d3 = c.evaluate(req("w3", gpus_per_replica=1, memory_gb_per_replica=300, replicas=2))
    assert isinstance(d3, Placed) and d3.nodes == ("cp-0", "cp-1")
    assert c.site_usage("cyberport").gpus_free == 8  # GPUs were free: CPUs were not


# ------------------------------------------------------------------ refused
def refused_reasons(c, r):
    d = c.submit(r)
    assert isinstance(d, Refused), d
    assert r.workload_id not in c.queued_ids() and c.explain(r.workload_id) is None
    return reasons_by_site(d.explanation), d.explanation.summary


def test_refused_unknown_gpu_model_with_every_sites_reason():
    got, summary = refused_reasons(pair(), req("w1", gpu_model="H100"))
    assert got == {"cyberport": ("no H100 GPUs here",), "sandy-ridge": ("no H100 GPUs here",)}
    assert summary == (
        "refused: no configured site can ever run it "
        "(cyberport: no H100 GPUs here; sandy-ridge: no H100 GPUs here)"
    )


def test_refused_gang_larger_than_any_site_even_when_full_now():
    c = pair(cp=nodes("cp", 2, allocated=8), sr=nodes("sr", 3, gpus=4))
    got, _ = refused_reasons(c, req("w1", replicas=3))
    assert got == {
        "cyberport": ("needs 3x8 H800 on single nodes; room for 2 of 3 even when empty",),
        "sandy-ridge": ("needs 3x8 H800 on single nodes; largest node has 4",),
    }


def test_not_refused_on_capacity_while_a_site_has_never_reported():
    c = core(federation(site("cyberport"), site("sandy-ridge")), {"cyberport": nodes("cp", 1)})
    d = c.submit(req("w1", replicas=3))
    assert isinstance(d, Queued)
    assert reasons_by_site(d.explanation)["sandy-ridge"] == (
        "agent not healthy",
        "no H800 GPUs here",
    )
    # ...but static reasons still refuse, and an unreported site is judged by its prices
    got, _ = refused_reasons(c, req("w2", gpu_model="A100"))
    assert got == {"cyberport": ("no A100 GPUs here",), "sandy-ridge": ("no A100 GPUs here",)}


def test_refused_backend_nowhere_and_allow_list_of_sites_that_cannot():
    fed = federation(site("cyberport", backends=["kubernetes"]), site("sandy-ridge"))
    c = pair(fed)
    got, _ = refused_reasons(c, req("w1", backend="slurm"))
    assert got == {
        "cyberport": ("backend slurm not offered here",),
        "sandy-ridge": ("backend slurm not offered here",),
    }
    got, _ = refused_reasons(c, req("w2", backend="ray", sites=("cyberport",)))
    assert got == {
        "cyberport": ("backend ray not offered here",),
        "sandy-ridge": ("not in the workload's allowed sites",),
    }


def test_refused_subsidy_required_without_program_honouring_site_or_budget():
    fed = federation(
        site("cyberport"),
        site("sandy-ridge", programs=["aiss"]),
        programs=[SubsidyProgram("aiss", 0.7)],
        tenants=[TenantPolicy("lion", "aiss", budget_hkd=100.0), TenantPolicy("poor")],
    )
    c = pair(fed)
    got, _ = refused_reasons(c, req("w1", tenant="poor", subsidy="required"))
    assert got == {
        "cyberport": ("tenant has no subsidy program",),
        "sandy-ridge": ("tenant has no subsidy program",),
    }
    got, _ = refused_reasons(c, req("w2", subsidy="required", sites=("cyberport",)))
    assert got == {
        "cyberport": ("subsidy aiss not honoured here",),
        "sandy-ridge": ("not in the workload's allowed sites",),
    }
    got, _ = refused_reasons(c, req("w3", subsidy="required"))
    assert got == {
        "cyberport": ("subsidy aiss not honoured here",),
        "sandy-ridge": ("subsidy budget HK$ 100.00 left; estimate needs HK$ 212.80",),
    }


def test_refused_above_the_tenant_quota():
    fed = federation(site("cyberport"), tenants=[TenantPolicy("lion", quota_gpus=64)])
    c = core(fed, {"cyberport": nodes("cp", 16)})
    got, _ = refused_reasons(c, req("w1", replicas=9))
    assert got == {"cyberport": ("needs 72 GPUs; tenant quota is 64",)}


def test_gpus_without_a_price_are_not_offered():
    # Sandy Ridge reports L40S nodes but its config prices only H800: nothing could be charged.
    fed = federation(site("cyberport", prices={"H800": 38.0, "L40S": 12.0}), site("sandy-ridge"))
    c = pair(fed, cp=nodes("cp", 1, model="L40S"), sr=nodes("sr", 2, model="L40S"))
    d = c.submit(req("w1", gpu_model="L40S"))
    assert isinstance(d, Placed) and d.site == "cyberport"
    assert reasons_by_site(d.explanation)["sandy-ridge"] == ("L40S not offered here (no price set)",)
    only_unpriced = core(federation(site("sandy-ridge")), {"sandy-ridge": nodes("sr", 2, model="L40S")})
    refused = only_unpriced.submit(req("w2", gpu_model="L40S"))
    assert isinstance(refused, Refused)

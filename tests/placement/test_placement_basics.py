"""First integration checks of the placement core: filters, choice, reasons, usage."""

from __future__ import annotations

import json

import pytest
from placement_fixtures import core, federation, nodes, reasons_by_site, req, site

from broker.placement import (
    DuplicateWorkload,
    InvalidRequest,
    Placed,
    PlacementCore,
    Queued,
    SiteUsage,
    UnknownSite,
)


def two_sites():
    fed = federation(site("cyberport"), site("sandy-ridge"))
    return core(fed, {"cyberport": nodes("cp", 2), "sandy-ridge": nodes("sr", 2)})


def test_places_whole_gang_best_fit_and_explains_every_site():
    c = two_sites()
    d = c.submit(req("w1", gpus_per_replica=4, replicas=3))
    assert isinstance(d, Placed)
    assert d.site == "cyberport"  # all terms equal: tie goes by name
    assert d.nodes == ("cp-0", "cp-0", "cp-1")  # fill one node before the next
    assert [x.site for x in d.explanation.candidates] == ["cyberport", "sandy-ridge"]
    assert all(x.eligible and x.reasons == () for x in d.explanation.candidates)
    assert d.explanation.summary == "placed on cyberport (score 1.75)"  # cost 1.0 (dearest) + load 0.75
    # best fit: the 4-GPU hole on cp-1 takes the next 4-GPU replica, not an empty node
    d2 = c.submit(req("w2", gpus_per_replica=4, sites=("cyberport",)))
    assert isinstance(d2, Placed) and d2.nodes == ("cp-1",)


def test_sites_start_unhealthy_and_unreported():
    c = PlacementCore(federation(site("cyberport")))
    d = c.submit(req("w1"))
    assert isinstance(d, Queued)
    assert reasons_by_site(d.explanation) == {"cyberport": ("agent not healthy", "no H800 GPUs here")}
    c.update_site("cyberport", nodes=nodes("cp", 1))
    # a queued workload's explanation is built when asked, from the state then: the
    # report brought H800s, so only the health stands in the way now
    assert c.explain("w1").candidates[0].reasons == ("agent not healthy",)
    assert c.schedule() == []  # still unhealthy
    assert c.explain("w1").candidates[0].reasons == ("agent not healthy",)
    c.set_healthy("cyberport", True)
    [placed] = c.schedule()
    assert placed.workload_id == "w1" and placed.nodes == ("cp-0",)


def test_site_usage_and_json_contract():
    c = two_sites()
    c.submit(req("w1", gpus_per_replica=2))
    assert c.site_usage("cyberport") == SiteUsage(16, 0, 2, 14)
    d = c.evaluate(req("w2", replicas=5))
    doc = json.loads(json.dumps(d.explanation.to_dict()))
    assert set(doc) == {"workload", "chosen", "candidates", "summary"}
    assert set(doc["candidates"][0]) == {"site", "eligible", "reasons", "score", "terms"}
    assert doc["chosen"] is None


def test_evaluate_changes_nothing_and_matches_submit():
    c = two_sites()
    r = req("w1", gpus_per_replica=8, replicas=2)
    before = c.site_usage("cyberport")
    assert c.evaluate(r) == c.evaluate(r)
    assert c.site_usage("cyberport") == before and c.queued_ids() == []
    assert c.evaluate(r) == c.submit(r)


def test_contract_errors():
    c = two_sites()
    with pytest.raises(InvalidRequest):
        c.submit(req("w1", replicas=0))
    with pytest.raises(InvalidRequest):
        c.submit(req("w1", subsidy="maybe"))
    with pytest.raises(UnknownSite):
        c.update_site("mars", nodes=[])
    c.submit(req("w1"))
    with pytest.raises(DuplicateWorkload):
        c.submit(req("w1"))
    c.cancel("nope")  # unknown ids are no-ops
    c.finish("nope")
    c.requeue("nope")
    assert c.explain("nope") is None

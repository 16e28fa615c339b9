"""Spend caps in the placement core (``SpendCapFilter``): what a tenant pays itself in a month.

Work whose estimate would cross the cap waits, with that reason; work whose estimate alone is
over the cap at every site can never fit and is refused; the month's spend is data the broker
gives the core (``spend``, ``new_month``), never a clock.
"""

from __future__ import annotations

from placement_fixtures import core, federation, nodes, reasons_by_site, req, site

from broker.placement import Placed, Queued, Refused, TenantPolicy

# 8 GPUs x 1 h: HK$ 304 at cyberport (38/h), HK$ 256 at sandy-ridge (32/h).
CAPPED = TenantPolicy("lion", max_hkd_per_month=700.0)


def pair(*tenants: TenantPolicy):
    fed = federation(
        site("cyberport", prices={"H800": 38.0}),
        site("sandy-ridge", prices={"H800": 32.0}, programs=["aiss"]),
        tenants=tenants or (CAPPED,),
    )
    return core(fed, {"cyberport": nodes("cp", 4), "sandy-ridge": nodes("sr", 4)})


def test_work_that_would_cross_the_cap_waits_with_that_reason():
    c = pair()
    assert isinstance(c.submit(req("w1", sites=("sandy-ridge",))), Placed)  # holds 256
    assert isinstance(c.submit(req("w2", sites=("sandy-ridge",))), Placed)  # 512
    d = c.submit(req("w3"))
    assert isinstance(d, Queued)
    assert reasons_by_site(d.explanation) == {
        "cyberport": (
            "monthly spend cap HK$ 700.00: HK$ 512.00 paid or held this month; "
            "the tenant's share here needs HK$ 304.00",
        ),
        "sandy-ridge": (
            "monthly spend cap HK$ 700.00: HK$ 512.00 paid or held this month; "
            "the tenant's share here needs HK$ 256.00",
        ),
    }
    assert d.explanation.summary.startswith("waiting: monthly spend cap HK$ 700.00")
    assert c.explain("w3") is not None and "monthly spend cap" in c.explain("w3").summary
    # w1 ended: its hold goes, what it cost stays paid this month
    c.spend("lion", 0.0, 150.0)
    c.finish("w1")
    placed = c.schedule()  # 150 paid + 256 held: 256 more fits under 700 at sandy-ridge, 304 not
    assert [(p.workload_id, p.site) for p in placed] == [("w3", "sandy-ridge")]


def test_refused_only_when_the_estimate_alone_is_over_the_cap_at_every_site():
    c = pair()
    d = c.submit(req("big", estimated_hours=3))  # 912 at cyberport, 768 at sandy-ridge
    assert isinstance(d, Refused)
    assert reasons_by_site(d.explanation) == {
        "cyberport": ("the tenant's share here, HK$ 912.00, exceeds its monthly spend cap HK$ 700.00",),
        "sandy-ridge": ("the tenant's share here, HK$ 768.00, exceeds its monthly spend cap HK$ 700.00",),
    }
    # 2.5 h: 760 at cyberport is over, 640 at sandy-ridge is not: it may run some day
    assert isinstance(c.submit(req("fits-one", estimated_hours=2.5)), Placed)


def test_subsidy_lowers_the_tenants_share_under_the_cap():
    subsidised = TenantPolicy("lion", "aiss", budget_hkd=10_000.0, max_hkd_per_month=700.0)
    c = pair(subsidised)
    # 3 h at sandy-ridge: 768 in all, the program pays 70%: the tenant 230.40
    d = c.submit(req("w1", estimated_hours=3))
    assert isinstance(d, Placed) and d.site == "sandy-ridge"
    assert isinstance(c.submit(req("w2", estimated_hours=3, subsidy="none")), Refused)  # 768 alone


def test_a_new_month_lets_waiting_work_run():
    c = pair()
    c.submit(req("w1", sites=("sandy-ridge",)))
    c.submit(req("w2", sites=("sandy-ridge",)))
    assert isinstance(c.submit(req("w3", sites=("sandy-ridge",))), Queued)
    for wid in ("w1", "w2"):  # both ran their hour and ended this month
        c.spend("lion", 0.0, 256.0)
        c.finish(wid)
    assert c.schedule() == []  # 512 paid this month: 256 more would make 768
    c.new_month({"lion": 0.0})
    placed = c.schedule()
    assert [p.workload_id for p in placed] == ["w3"]


def test_a_long_job_over_the_cap_does_not_keep_a_short_one_of_the_same_gang_waiting():
    c = pair()
    c.submit(req("w1", sites=("sandy-ridge",)))
    c.submit(req("w2", sites=("sandy-ridge",)))  # 512 held
    c.set_paused(True)
    c.submit(req("long", sites=("sandy-ridge",), estimated_hours=2))  # 512 more: over 700
    c.submit(req("short", sites=("sandy-ridge",), estimated_hours=0.5))  # 128 more: fits
    c.set_paused(False)
    # one pass, long first: its failure must not count for short (hours are in the shape)
    assert [p.workload_id for p in c.schedule()] == ["short"]
    assert "monthly spend cap" in c.explain("long").summary


def test_tenants_without_a_cap_are_not_limited():
    c = pair(TenantPolicy("lion"))
    for i in range(6):
        assert isinstance(c.submit(req(f"w{i}", estimated_hours=100, gpus_per_replica=1)), Placed)

"""The replay on the tiny trace of simulate_fixtures, every policy's outcome worked out by hand.

Scores below are the core's: locality h/(h+est) + cost/dearest + utilisation after placing.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from simulate_fixtures import (
    HEADER,
    TINY_TRACE,
    federation_data,
    mapping_data,
    tiny_config,
    tiny_mapping,
    write,
)

from broker.config import parse_federation
from broker.simulate import POLICIES, Run, build_scenario, read_trace, run_policies, summarise
from broker.simulate.mapping import parse_mapping
from broker.simulate.workload import gang
from broker.validation import InvalidInput


def run(tmp_path: Path, policy: str, seed: int = 1) -> Run:
    config = tiny_config()
    trace = read_trace(write(tmp_path / "tiny.csv", TINY_TRACE))
    scenario = build_scenario(config, trace, tiny_mapping(config), seed)
    (result,) = run_policies(scenario, [policy])
    return result


# policy -> ({job: (site, start s)}, refused, subsidy HK$, tenant HK$, data moved TB)
EXPECTED = {
    # j1 alpha (0.6 + 0.5 < 1.0 + 0.25); j2 beta (full price, emptier); j3 waits for beta to
    # empty; j4 beta (0.5 + 0.6 + 0.75 at alpha > 1.0 + 0.375 at beta: the data is at beta),
    # so j3 starts only when j4 ends at 4,200 s.
    "fedbroker": ({"j1": ("alpha", 0), "j2": ("beta", 0), "j3": ("beta", 4200), "j4": ("beta", 600)},
                  [], 56.0, 24 + 40 + 160 + 20, 0.0),
    # fair share orders tenants within a priority; here no two tenants wait at once: as fedbroker.
    "fedbroker-fairshare": (
        {"j1": ("alpha", 0), "j2": ("beta", 0), "j3": ("beta", 4200), "j4": ("beta", 600)},
        [], 56.0, 24 + 40 + 160 + 20, 0.0,
    ),
    # home (alpha) first, for the default overflow_after_s of 600 s: j1 and j2 fill alpha; j3
    # waits out its round (alpha can never hold it) and overflows to beta at 600 s; j4
    # overflows at 1,200 s but beta is full, so it takes alpha, preferred, when j1/j2 end
    # at 3,600 s, moving its data there (1 h).
    "fedbroker-overflow": (
        {"j1": ("alpha", 0), "j2": ("alpha", 0), "j3": ("beta", 600), "j4": ("alpha", 3600)},
        [], 56.0 + 56.0, 24 + 80 + 160 + 24, 0.45,
    ),
    # no job here has a priority above 0: nothing to preempt, as fedbroker-overflow.
    "fedbroker-preemption": (
        {"j1": ("alpha", 0), "j2": ("alpha", 0), "j3": ("beta", 600), "j4": ("alpha", 3600)},
        [], 56.0 + 56.0, 24 + 80 + 160 + 24, 0.45,
    ),
    # all at alpha: j3 (8 GPUs) can never fit its 4-GPU node; j4 waits for j1 and j2, then
    # moves the data (1 h) and runs (1 h): charged 2 h.
    "home-site": ({"j1": ("alpha", 0), "j2": ("alpha", 0), "j4": ("alpha", 3600)},
                  ["j3"], 56.0 + 56.0, 24 + 80 + 24, 0.45),
    # utilisation only: j1 beta (0.25 < 0.5), j2 alpha (tie at 0.5, by name), j4 beta.
    "least-loaded": ({"j1": ("beta", 0), "j2": ("alpha", 0), "j3": ("beta", 4200), "j4": ("beta", 600)},
                     [], 0.0, 40 + 80 + 160 + 20, 0.0),
    # tenant price only: subsidised work to alpha (j4 moves its data), the rest to beta.
    "cheapest": ({"j1": ("alpha", 0), "j2": ("beta", 0), "j3": ("beta", 3600), "j4": ("alpha", 600)},
                 [], 56.0 + 56.0, 24 + 40 + 160 + 24, 0.45),
    # in turn: j1 alpha, j2 beta, j3 only beta could ever take it, j4 alpha (its turn).
    "round-robin": ({"j1": ("alpha", 0), "j2": ("beta", 0), "j3": ("beta", 3600), "j4": ("alpha", 600)},
                    [], 56.0 + 56.0, 24 + 40 + 160 + 24, 0.45),
}  # fmt: skip


@pytest.mark.parametrize("policy", sorted(EXPECTED))
def test_each_policy_places_as_worked_out_by_hand(tmp_path: Path, policy: str) -> None:
    starts, refused, subsidy, tenant, moved_tb = EXPECTED[policy]
    result = run(tmp_path, policy)
    assert result.starts == {j: (site, float(t)) for j, (site, t) in starts.items()}
    assert result.refused_ids == refused
    row = summarise(result)
    assert row["completed"] == len(starts)
    assert row["refused"] == len(refused)
    assert row["unfinished"] == 0
    assert row["subsidy_hkd"] == pytest.approx(subsidy)
    assert row["tenant_paid_hkd"] == pytest.approx(tenant)
    assert row["data_moved_tb"] == pytest.approx(moved_tb)
    assert row["data_moving_h"] == pytest.approx(1.0 if moved_tb else 0.0)
    waits = sorted(t - (600 if j == "j4" else 0) for j, (_, t) in starts.items())
    assert sorted(result.waits_s) == waits
    # the least-served tenant: the longest p95 wait of any tenant's jobs
    worst = max(row["tenant_wait_p95_min"].values())
    assert row["worst_tenant_wait_p95_min"] == worst
    assert row["tenant_wait_p95_min"][row["worst_tenant"]] == worst


def test_fedbroker_figures(tmp_path: Path) -> None:
    row = summarise(run(tmp_path, "fedbroker"))
    # waits 0, 0, 0, 4200 s; nearest rank: p50 is the 2nd, p95 and p99 the 4th
    assert row["wait_mean_min"] == pytest.approx(4200 / 4 / 60)
    assert row["wait_p50_min"] == 0
    assert row["wait_p95_min"] == row["wait_p99_min"] == pytest.approx(70.0)
    # j1, j2 end at 1 h; j4 at 4,200 s; j3 at 7,800 s: makespan 7,800 s
    assert row["makespan_h"] == pytest.approx(7800 / 3600)
    assert row["jct_mean_h"] == pytest.approx((3600 + 3600 + 7800 + 3600) / 4 / 3600)
    # alpha held 2 GPUs for 1 h of 4 GPUs x 7,800 s; beta 2x1h + 8x1h + 1x1h of 8 GPUs
    assert row["utilisation"]["alpha"] == pytest.approx(2 * 3600 / (4 * 7800))
    assert row["utilisation"]["beta"] == pytest.approx(11 * 3600 / (8 * 7800))
    assert row["placed"] == {"alpha": 1, "beta": 3}


def test_random_draws_from_its_seed(tmp_path: Path) -> None:
    firsts = set()
    for seed in range(12):
        result = run(tmp_path, "random", seed)
        # j1 is the policy's first draw, between both sites (both have room at t=0)
        assert result.starts["j1"] == (random.Random(seed).choice(["alpha", "beta"]), 0.0)
        assert result.starts["j3"][0] == "beta"  # the only site that could ever take it
        assert result.refused == 0 and result.completed == 4
        firsts.add(result.starts["j1"][0])
    assert firsts == {"alpha", "beta"}


def test_every_policy_is_covered() -> None:
    assert set(EXPECTED) | {"random"} == set(POLICIES)


@pytest.mark.parametrize(
    ("gpus", "per_node", "expected"),
    [(0.46, 0.46, (1, 1)), (1, None, (1, 1)), (8, None, (1, 8)), (12, None, (2, 6)), (64, None, (8, 8)),
     (4, 2, (2, 2)), (2.5, None, (1, 3))],
)  # fmt: skip
def test_gang_shape_rounds_fractions_up(
    gpus: float, per_node: float | None, expected: tuple[int, int]
) -> None:
    assert gang(gpus, per_node, 8) == expected


def test_preemption_takes_running_work_back_for_an_urgent_job_and_restarts_it(tmp_path: Path) -> None:
    # beta (8 GPUs) runs j1 (8 GPUs, priority 0) from 0 s; j2 (8 GPUs, its tenant's jobs all
    # priority 1) arrives at 600 s and fits nowhere: it takes j1 back and starts at once; j1
    # waits again, and runs its whole hour again when j2 ends at 4,200 s.
    data = federation_data()
    data["priority_classes"] = [{"name": "urgent", "priority": 1, "preempt": True}]
    config = parse_federation(data)
    raw = mapping_data()
    raw["tenants"] = {
        "full": {"home": "beta", "subsidy_share": 0.0},
        "sub": {"home": "beta", "subsidy_share": 0.0, "priorities": {1: 1.0}},
    }
    raw["clusters"] = {"c-full": "full", "c-sub": "sub"}
    trace = read_trace(
        write(tmp_path / "urgent.csv", HEADER + "j1,0,8,,3600,,,,c-full\nj2,600,8,,3600,,,,c-sub\n")
    )
    scenario = build_scenario(config, trace, parse_mapping(raw, config), 1)
    without, preempting = run_policies(scenario, ["fedbroker-overflow", "fedbroker-preemption"])
    assert without.starts == {"j1": ("beta", 0.0), "j2": ("beta", 3600.0)}
    assert without.preempted == 0 and sorted(without.waits_s) == [0.0, 3000.0]
    assert preempting.starts == {"j1": ("beta", 4200.0), "j2": ("beta", 600.0)}
    assert preempting.preempted == 1 and preempting.completed == 2
    # j1 waited 0 s, then 600 s to 4,200 s; j2 none
    assert sorted(preempting.waits_s) == [0.0, 3600.0] and preempting.urgent_waits_s == [0.0]
    row = summarise(preempting)
    assert row["preempted"] == 1 and row["urgent_jobs"] == 1 and row["urgent_wait_p95_min"] == 0.0
    # j1's first 600 s are charged as well as its full rerun (beta: HK$ 20 per GPU-hour)
    assert row["tenant_paid_hkd"] == pytest.approx(8 * 20 * (600 / 3600 + 1) + 8 * 20)
    assert row["makespan_h"] == pytest.approx(7800 / 3600)


def test_priorities_come_from_their_own_draws_and_leave_the_others_as_they_were(tmp_path: Path) -> None:
    config = tiny_config()
    trace = read_trace(write(tmp_path / "tiny.csv", TINY_TRACE))
    plain = build_scenario(config, trace, tiny_mapping(config), 3).workload.jobs
    raw = mapping_data()
    for tenant in raw["tenants"].values():
        tenant["priorities"] = {1: 0.5, 2: 0.5}  # every job 1 or 2
    urgent = build_scenario(config, trace, parse_mapping(raw, config), 3).workload.jobs
    assert [replace(j.request, priority=0) for j in urgent] == [j.request for j in plain]
    assert {j.request.priority for j in urgent} <= {1, 2} and all(j.request.priority == 0 for j in plain)
    raw["tenants"]["sub"]["priorities"] = {1: 0.7, 2: 0.7}
    with pytest.raises(InvalidInput, match=r"tenants\.sub\.priorities: the chances add up to more than 1"):
        parse_mapping(raw, config)

"""The replay on the tiny trace of simulate_fixtures, every policy's outcome worked out by hand.

Scores below are the core's: locality h/(h+est) + cost/dearest + utilisation after placing.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from simulate_fixtures import TINY_TRACE, tiny_config, tiny_mapping, write

from broker.simulate import POLICIES, Run, build_scenario, read_trace, run_policies, summarise
from broker.simulate.workload import gang


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

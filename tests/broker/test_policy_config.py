"""Issue 13's contract fields: home sites, overflow, fair share and priority classes in
federation.yaml; `prefer` and `overflow_after_s` in a workload, across the wire; and what
the placement core is given from them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_config import example, problems

from broker.config import parse_federation
from broker.federation import check_references, placement_federation, placement_request
from broker.spec import parse_spec, spec_from_proto, spec_to_proto


def policy_federation() -> dict[str, Any]:
    data = example()
    data["tenants"][0]["home_site"] = "cyberport"
    data["tenants"][0]["fair_share_weight"] = 2.0
    data["overflow_after_s"] = 300
    data["fair_share"] = {"half_life_h": 24}
    data["priority_classes"] = [
        {"name": "urgent", "priority": 100, "preempt": True},
        {"name": "batch", "priority": -10},
    ]
    return data


def test_policy_fields_reach_the_placement_core() -> None:
    fed = placement_federation(parse_federation(policy_federation()))
    assert fed.overflow_after_s == 300
    assert fed.fair_share.enabled and fed.fair_share.half_life_s == 24 * 3600
    assert fed.preempting_priorities == frozenset({100})  # only classes that preempt
    tenant = fed.tenants[0]
    assert (tenant.home_site, tenant.fair_share_weight) == ("cyberport", 2.0)


def test_defaults_keep_old_files_valid() -> None:
    config = parse_federation(example())
    assert (config.overflow_after_s, config.fair_share.enabled, config.priority_classes) == (600.0, True, [])
    assert placement_federation(config).preempting_priorities == frozenset()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["tenants"][0].update(home_site="cyberprot"),
            "tenants[0].home_site: unknown site 'cyberprot'",
        ),
        (lambda d: d["tenants"][0].update(fair_share_weight=0), "tenants[0].fair_share_weight: must be > 0"),
        (lambda d: d.update(overflow_after_s=-1), "overflow_after_s: must be >= 0"),
        (
            lambda d: d["priority_classes"].append({"name": "again", "priority": 100}),
            "priority_classes[2].priority: 100 has another class",
        ),
    ],
)
def test_policy_errors_name_the_field(mutate, expected: str) -> None:
    data = copy.deepcopy(policy_federation())
    mutate(data)
    assert expected in problems(data)


def workload(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "train",
        "backend": "ray",
        "ray": {"entrypoint": "python train.py"},
        "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
    }
    data.update(changes)
    return data


def test_prefer_and_overflow_survive_the_wire_and_reach_the_request() -> None:
    spec = parse_spec(workload(prefer=["sandy-ridge", "cyberport"], overflow_after_s=0.0))
    back = spec_from_proto(spec_to_proto(spec))
    assert (back.prefer, back.overflow_after_s) == (["sandy-ridge", "cyberport"], 0.0)  # zero is kept
    plain = spec_from_proto(spec_to_proto(parse_spec(workload())))
    assert (plain.prefer, plain.overflow_after_s) == ([], None)
    request = placement_request("wl-1", "lion-rock-ai", back, seq=3, submitted_at=42.0)
    assert (request.prefer, request.overflow_after_s, request.submitted_at) == (
        ("sandy-ridge", "cyberport"),
        0.0,
        42.0,
    )


def test_a_misspelt_preferred_site_is_named() -> None:
    config = parse_federation(example())
    spec = parse_spec(workload(prefer=["sandy-rigde"]))
    assert check_references(config, spec) == [
        "prefer[0]: unknown site 'sandy-rigde' (did you mean 'sandy-ridge'?)"
    ]

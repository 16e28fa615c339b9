"""Federation config validation: every error names the field path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.config import load_federation, parse_federation
from broker.validation import InvalidInput

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "federation.yaml"


def example() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))


def problems(data: Any) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        parse_federation(data)
    return caught.value.problems


def test_example_is_valid() -> None:
    config = load_federation(EXAMPLE)
    assert [s.name for s in config.sites] == ["cyberport", "sandy-ridge"]
    assert config.site("cyberport") is not None
    assert config.site("cyberport").gpu_prices_hkd_per_hour == {"H800": 38.0}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["sites"][1]["gpu_prices_hkd_per_hour"].update(H800=0),
            "sites[1].gpu_prices_hkd_per_hour.H800: must be > 0",
        ),
        (
            lambda d: d["sites"][0].update(backends=["slurm"]),
            "sites[0].backends[0]: must be one of 'kubernetes' or 'ray'",
        ),
        (lambda d: d["sites"][0].pop("agent_token_sha256"), "sites[0].agent_token_sha256: is required"),
        (
            lambda d: d["sites"][0].update(agent_token_sha256="abc"),
            "sites[0].agent_token_sha256: must be a SHA-256 digest:"
            " 64 lowercase hex digits (sha256sum of the token)",
        ),
        (lambda d: d["subsidy_programs"][0].update(rate=1.5), "subsidy_programs[0].rate: must be <= 1"),
        (lambda d: d.update(heartbeat_ttl_s=-1), "heartbeat_ttl_s: must be > 0"),
        (lambda d: d["tenants"][0].update(quota_gpus=0), "tenants[0].quota_gpus: must be > 0"),
        (lambda d: d["sites"][0].update(colour="blue"), "sites[0].colour: is not a known field"),
        (
            lambda d: d["links"][0].update(sites=["cyberport", "kai-tak"]),
            "links[0].sites[1]: unknown site 'kai-tak'",
        ),
        (
            lambda d: d["datasets"][0].update(replicas=["tsuen-wan"]),
            "datasets[0].replicas[0]: unknown site 'tsuen-wan'",
        ),
        (
            lambda d: d["sites"][1].update(subsidy_programs=["nope"]),
            "sites[1].subsidy_programs[0]: unknown program 'nope'",
        ),
        (
            lambda d: d["tenants"][0]["subsidy"].update(program="nope"),
            "tenants[0].subsidy.program: unknown program 'nope'",
        ),
        (lambda d: d["sites"].append(copy.deepcopy(d["sites"][0])), "sites[2].name: duplicate 'cyberport'"),
        (lambda d: d.update(sites=[]), "sites: needs at least 1 item"),
        (
            lambda d: d["sites"][1].update(agent_token_sha256=d["sites"][0]["agent_token_sha256"]),
            "sites[1].agent_token_sha256: same token digest as sites[0].agent_token_sha256",
        ),
        (
            lambda d: d["operators"][0].update(token_sha256=d["tenants"][0]["token_sha256"]),
            "operators[0].token_sha256: same token digest as tenants[0].token_sha256",
        ),
    ],
)
def test_errors_name_the_field(mutate: Any, expected: str) -> None:
    data = example()
    mutate(data)
    assert expected in problems(data)


def test_every_problem_is_reported_not_just_the_first() -> None:
    data = example()
    data["sites"][0]["gpu_prices_hkd_per_hour"]["H800"] = -1
    data["tenants"][1]["quota_gpus"] = -5
    assert problems(data) == [
        "sites[0].gpu_prices_hkd_per_hour.H800: must be > 0",
        "tenants[1].quota_gpus: must be > 0",
    ]


def test_unreadable_and_malformed_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"missing\.yaml: cannot read"):
        load_federation(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites: [unclosed\n")
    with pytest.raises(InvalidInput, match=r"bad\.yaml: not valid YAML"):
        load_federation(bad)
